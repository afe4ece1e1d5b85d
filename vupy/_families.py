# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Address families by name, as vustack(1) and `vupy run --default` spell them.

The names and aliases follow VUOS's vustack: `local`/`unix`, `inet`,
`inet6`, `netlink`, `packet`, plain numbers, and the aliases `ip` (every
family a kernel stack serves), `ipv4`/`ip4` and `ipv6`/`ip6`.
"""
import socket

from ._abi import KERNEL_FAMILIES  # the families of kernel stacks (re-exported by stack.py)

AF_UNSPEC = socket.AF_UNSPEC

NAMES = {
    "unix": socket.AF_UNIX,
    "local": socket.AF_UNIX,
    "inet": socket.AF_INET,
    "inet6": socket.AF_INET6,
    "netlink": socket.AF_NETLINK,
    "packet": socket.AF_PACKET,
}

ALIASES = {
    "ip": tuple(sorted(KERNEL_FAMILIES)),
    "ipv4": (socket.AF_INET,),
    "ip4": (socket.AF_INET,),
    "ipv6": (socket.AF_INET6,),
    "ip6": (socket.AF_INET6,),
}

# Kernel families are numbered below AF_MAX (46 on Linux 6.x).
AF_MAX = 46


def parse(text):
    """Families named by a comma list such as ``inet,ip6,17``.

    Returns a sorted tuple of family numbers; raises ValueError naming the
    first word that is not a family.
    """
    families = set()
    for word in text.split(","):
        word = word.strip().lower()
        if word in NAMES:
            families.add(NAMES[word])
        elif word in ALIASES:
            families.update(ALIASES[word])
        elif word.isdigit() and 0 < int(word) < AF_MAX:
            families.add(int(word))
        else:
            raise ValueError(f"unknown address family {word!r}")
    return tuple(sorted(families))


def name(family):
    """The name vustack prints for a family number."""
    for word, number in NAMES.items():
        if number == family and word != "local":
            return word
    return str(family)


# For traces: socket(2)'s arguments by name, as strace shows them.
_TYPE_FLAGS = ((socket.SOCK_NONBLOCK, "SOCK_NONBLOCK"), (socket.SOCK_CLOEXEC, "SOCK_CLOEXEC"))


def _constant(prefix, value, skip=()):
    for key, number in vars(socket).items():
        if key.startswith(prefix) and number == value and isinstance(number, int) and key not in skip:
            return key
    return str(value)


def family_symbol(family):
    """AF_INET for 2, and so on (the number if unknown)."""
    return _constant("AF_", family, skip=("AF_LOCAL", "AF_ROUTE", "AF_FILE"))


def type_symbol(type_):
    """SOCK_STREAM|SOCK_CLOEXEC for 0x80001, and so on."""
    if type_ < 0:
        return str(type_)
    words = [_constant("SOCK_", type_ & 0xF, skip=("SOCK_NONBLOCK", "SOCK_CLOEXEC"))]
    words += [name for flag, name in _TYPE_FLAGS if type_ & flag]
    rest = type_ & ~0xF & ~(socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    return "|".join(words + ([hex(rest)] if rest else []))


def protocol_symbol(family, protocol):
    """IPPROTO_TCP, NETLINK_ROUTE, ..., or the number."""
    if protocol == 0:
        return "0"
    if family in (socket.AF_INET, socket.AF_INET6):
        return _constant("IPPROTO_", protocol)
    if family == socket.AF_NETLINK:
        return _constant("NETLINK_", protocol)
    return str(protocol)
