# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The options of a stack spec that configure an Ethernet interface, for the
modules that make one (lwip, vde): ``ip=``, ``gw=``, ``ip6=``, ``gw6=``,
``mac=``, ``mtu=``.

Each check takes the option's text and gives its value, or raises
StackError saying ``MODULE: KEY=TEXT: why``; nothing here touches the
system, so every rule is unit-tested alone (tests/test_unit_options.py).
"""
import contextlib
import ipaddress
import re

from vupy.stack import StackError

MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
EXAMPLE_LENGTH = {4: 24, 6: 64}     # the prefix length the hint suggests


def need_source(module, source, example):
    """StackError unless the spec names a SOURCE (a VDE URL)."""
    if not source:
        raise StackError(f"{module}: needs a SOURCE: a VDE URL such as vde:///tmp/switch or {example}")


class Options:
    """A spec's options for `module`, all of them among `known`."""

    def __init__(self, module, options, known):
        unknown = set(options) - set(known)
        if unknown:
            raise StackError(f"{module}: unknown option {sorted(unknown)[0]!r} "
                             f"(known: {', '.join(sorted(known))})")
        self.module = module
        self.options = options

    def __contains__(self, key):
        return key in self.options

    @contextlib.contextmanager
    def _checking(self, key, text):
        """ValueError inside, as StackError naming KEY=TEXT."""
        try:
            yield
        except ValueError as e:
            raise StackError(f"{self.module}: {key}={text}: {e}") from None

    def interfaces(self, key, version, most=None, length=None):
        """`key`'s IPv`version` addresses with their prefixes, separated by
        ``+`` (ipaddress interfaces; [] without the option).  A prefix length
        is required, unless `length` is given: then it is the only one taken,
        and the one meant where none is written.  At most `most`."""
        found = []
        for text in filter(None, self.options.get(key, "").split("+")):
            with self._checking(key, text):
                if "/" not in text and length is None:
                    raise ValueError(f"give the prefix length too, as in {text}/{EXAMPLE_LENGTH[version]}")
                interface = ipaddress.ip_interface(text if "/" in text else f"{text}/{length}")
                if interface.version != version:
                    raise ValueError(f"not an IPv{version} address")
                if length is not None and interface.network.prefixlen != length:
                    raise ValueError(f"only /{length} prefixes are supported")
            found.append(interface)
        if most is not None and len(found) > most:
            raise StackError(f"{self.module}: {key}={self.options[key]}: at most {most} IPv{version} addresses")
        return found

    def from_network(self, key, word, alone):
        """Whether `key` asks for addresses from the network: `word` (such as
        ``dhcp``) among its ``+``-separated items.  If `alone`, it may have
        nothing with it; otherwise the other items are left to interfaces()."""
        items = self.options.get(key, "").split("+")
        if word not in items:
            return False
        rest = "+".join(item for item in items if item != word)
        if alone and rest:
            raise StackError(f"{self.module}: {key}={self.options[key]}: {word} comes alone")
        self.options = {**self.options, key: rest}
        return True

    def address(self, key, version):
        """`key`'s one IPv`version` address (ipaddress), or None without it."""
        if key not in self.options:
            return None
        text = self.options[key]
        with self._checking(key, text):
            address = ipaddress.ip_address(text)
            if address.version != version:
                raise ValueError(f"not an IPv{version} address")
        return address

    def mac(self, key="mac"):
        """`key`'s unicast MAC address (text), or None without it."""
        if key not in self.options:
            return None
        text = self.options[key]
        with self._checking(key, text):
            if not MAC.match(text) or int(text[:2], 16) & 1:
                raise ValueError("not a unicast MAC address XX:XX:XX:XX:XX:XX")
        return text

    def mtu(self, lowest, key="mtu"):
        """`key`'s MTU, from `lowest` to 65535 (an int), or None without it."""
        if key not in self.options:
            return None
        text = self.options[key]
        with self._checking(key, text):
            # Digits only: int() would also take "+1500", " 1500" and "1_500".
            if not (text.isascii() and text.isdigit()) or not lowest <= int(text) <= 65535:
                raise ValueError(f"not a number from {lowest} to 65535")
        return int(text)
