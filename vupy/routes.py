# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Routes: which stack a destination calls for.

A route is RULE=PATH (`vupy run --route`, `vustack --route`): a socket
made on a default and connected to a destination RULE matches goes to the
stack PATH names (vupy/_router.py moves it there at connect).  This module
is the pure part: parsing a RULE and choosing among routes, with no I/O,
unit-tested in tests/test_unit_routes.py.

    RULE := [PROTO:]PREFIX[:PORTS] | [PROTO:][PREFIX6]:PORTS | [PROTO:]PORTS
          | PREFIX6 | PROTO | name:DOMAIN | name:*.DOMAIN
    PROTO := tcp | udp
    PREFIX := an IPv4 address or network (10.0.0.0/8, 192.0.2.7), or IPv6
              in brackets when ports follow ([fd00::/8]:443)
    PORTS := N | N-M

    10.0.0.0/8          anything to 10/8, TCP or UDP, any port
    fd00::/8            the same for IPv6
    tcp:443             TCP to port 443 of any address, IPv4 or IPv6
    udp:0.0.0.0/0:53    UDP to port 53 of any IPv4 address
    tcp:[::/0]:8000-8099
    udp                 every UDP destination
    name:*.corp.example the addresses that names below corp.example
                        resolve to (see vupy/_resolver.py): such names
                        are looked up through the route's stack, and
                        its answers route connections for their TTL

Among the routes that match, the longest prefix wins; then the narrowest
port range; then a route with a protocol over one without; then the one
given last (so `vustack --route` overrides an inherited route with the
same RULE).  A RULE with no prefix matches both families with a prefix of
length 0.
"""
import ipaddress
import socket
from dataclasses import dataclass

PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
ALL_PORTS = (0, 65535)


class RuleError(ValueError):
    """A RULE that cannot be parsed: the message says why."""


@dataclass(frozen=True)
class Rule:
    """What a route matches: a protocol (None: TCP and UDP), a network
    (None: any address of either family) and a port range; or, for a name
    rule, the names it matches (`name`: "corp.example", or "*.corp.example"
    for every name below it), which match no address by themselves."""
    protocol: object
    network: object
    ports: tuple
    text: str
    name: str = None

    def matches(self, protocol, address, port):
        if self.name is not None:
            return False
        if self.protocol is not None and self.protocol != protocol:
            return False
        if self.network is not None and (address.version != self.network.version
                                         or address not in self.network):
            return False
        return self.ports[0] <= port <= self.ports[1]

    def matches_name(self, qname):
        """Whether a looked-up name (lower case, no final dot) is one of
        this name rule's."""
        if self.name is None:
            return False
        if self.name.startswith("*."):
            return qname.endswith(self.name[1:])
        return qname == self.name

    def specificity(self):
        """A key: larger is more specific."""
        prefix = self.network.prefixlen if self.network is not None else -1
        return (prefix, -(self.ports[1] - self.ports[0]), self.protocol is not None)


@dataclass(frozen=True)
class Route:
    """A Rule and the stack it sends to (`where`: the path it was given as)."""
    rule: Rule
    stack: object
    where: str


def parse_rule(text):
    """The Rule of `text`; RuleError naming what is wrong."""
    rest = text.strip()
    if not rest:
        raise RuleError("empty RULE")
    if rest.lower().startswith("name:"):
        return Rule(None, None, ALL_PORTS, text, _name_pattern(rest[5:]))
    if rest.lower() in PROTOCOLS:       # every connection of the protocol
        return Rule(PROTOCOLS[rest.lower()], None, ALL_PORTS, text)
    protocol = None
    head, colon, tail = rest.partition(":")
    if colon and head.lower() in PROTOCOLS:
        protocol, rest = PROTOCOLS[head.lower()], tail
    network, ports = _address_and_ports(rest)
    if network is None and ports == ALL_PORTS and protocol is None:
        raise RuleError("no address, port or protocol to match")
    return Rule(protocol, network, ports, text)


def parse_route(text):
    """'RULE=PATH' (an option's value) -> (Rule, PATH); RuleError naming
    what is wrong."""
    rule, eq, path = text.partition("=")
    if not eq or not rule or not path:
        raise RuleError("expected RULE=PATH")
    return parse_rule(rule), path


def _name_pattern(text):
    """A name rule's pattern, lower case without a final dot."""
    name = text.lower().rstrip(".")
    labels = name[2:].split(".") if name.startswith("*.") else name.split(".")
    if not name or not all(label and len(label) <= 63 and "*" not in label
                           and all(c.isalnum() or c in "-_" for c in label) for label in labels):
        raise RuleError(f"{text!r} is not a domain name or *.DOMAIN")
    return name


def _address_and_ports(rest):
    """(network or None, (low, high)) of a RULE without its protocol."""
    if rest.startswith("["):
        inner, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise RuleError("'[' without ']'")
        if after and not after.startswith(":"):
            raise RuleError("after ']' only ':PORTS' may follow")
        return _network(inner, 6), _ports(after[1:]) if after else ALL_PORTS
    if rest.count(":") > 1:             # IPv6, no ports
        return _network(rest, 6), ALL_PORTS
    address, colon, ports = rest.partition(":")
    if not colon and _is_ports(address):
        return None, _ports(address)
    return _network(address, 4), _ports(ports) if colon else ALL_PORTS


def _is_ports(text):
    return bool(text) and text.replace("-", "", 1).isdigit()


def _network(text, version):
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        network = None
    if network is None or network.version != version:
        raise RuleError(f"{text!r} is not an IPv{version} address or network")
    if ipaddress.ip_interface(text).ip != network.network_address:
        raise RuleError(f"{text!r} has host bits set (the network is "
                        f"{network.with_prefixlen})")
    return network


def _ports(text):
    if not _is_ports(text):
        raise RuleError(f"{text!r} is not a port or a range of ports (N or N-M)")
    low, _, high = text.partition("-")
    low, high = int(low), int(high or low)
    if not 0 < low <= high <= 65535:
        raise RuleError(f"ports {text!r} out of order or not in 1-65535")
    return (low, high)


def choose(routes, protocol, address, port):
    """The Route of `routes` for a connection to `address` (an
    ipaddress.ip_address; an IPv4-mapped IPv6 address counts as IPv4) on
    `port` with `protocol` (IPPROTO_TCP or IPPROTO_UDP); None if none
    matches."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    best = None
    for route in routes:
        if route.rule.matches(protocol, address, port) and (
                best is None or route.rule.specificity() >= best.rule.specificity()):
            best = route
    return best


def added(routes, new):
    """`routes` with the routes of `new` after them, each replacing an
    earlier route with the same RULE text."""
    texts = {route.rule.text for route in new}
    return tuple(r for r in routes if r.rule.text not in texts) + tuple(new)
