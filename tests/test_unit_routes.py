# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vupy/routes.py: parsing RULEs and choosing among routes (pure logic)."""
import ipaddress
import socket

import pytest

from vupy.routes import ALL_PORTS, Route, RuleError, added, choose, parse_rule

TCP, UDP = socket.IPPROTO_TCP, socket.IPPROTO_UDP


@pytest.mark.parametrize("text, protocol, network, ports", [
    ("10.0.0.0/8", None, "10.0.0.0/8", ALL_PORTS),
    ("192.0.2.7", None, "192.0.2.7/32", ALL_PORTS),
    ("fd00::/8", None, "fd00::/8", ALL_PORTS),
    ("::1", None, "::1/128", ALL_PORTS),
    ("tcp:443", TCP, None, (443, 443)),
    ("443", None, None, (443, 443)),
    ("udp:0.0.0.0/0:53", UDP, "0.0.0.0/0", (53, 53)),
    ("tcp:[::/0]:8000-8099", TCP, "::/0", (8000, 8099)),
    ("[fd00::1]:22", None, "fd00::1/128", (22, 22)),
    ("TCP:10.1.0.0/16:1-1024", TCP, "10.1.0.0/16", (1, 1024)),
    ("udp", UDP, None, ALL_PORTS),
])
def test_rules_parse(text, protocol, network, ports):
    rule = parse_rule(text)
    assert rule.protocol == protocol
    assert rule.network == (None if network is None else ipaddress.ip_network(network))
    assert rule.ports == ports
    assert rule.text == text


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("10.1.2.3/8", "host bits set (the network is 10.0.0.0/8)"),
    ("example", "not an IPv4 address"),
    ("tcp:70000", "not in 1-65535"),
    ("udp:1.2.3.4:5-3", "out of order"),
    ("10.0.0.0/8:", "not a port"),
    ("fd00::/8:80", "not an IPv6 address"),
    ("[fd00::1", "without ']'"),
    ("[fd00::1]80", "only ':PORTS'"),
    ("[10.0.0.1]:80", "not an IPv6 address"),
])
def test_bad_rules_say_why(text, why):
    with pytest.raises(RuleError, match=None) as e:
        parse_rule(text)
    assert why in str(e.value)


def routes(*pairs):
    return tuple(Route(parse_rule(rule), stack, stack) for rule, stack in pairs)


def pick(table, protocol, address, port):
    route = choose(table, protocol, ipaddress.ip_address(address), port)
    return None if route is None else route.stack


def test_longest_prefix_then_narrowest_ports_then_protocol():
    table = routes(("10.0.0.0/8", "corp"), ("10.1.0.0/16", "lab"), ("tcp:443", "web"),
                   ("10.1.0.0/16:1000-2000", "range"), ("10.1.0.0/16:1500", "one"),
                   ("udp:10.1.0.0/16:1500", "udp-one"))
    assert pick(table, TCP, "10.2.3.4", 80) == "corp"
    assert pick(table, TCP, "10.1.3.4", 80) == "lab"
    assert pick(table, TCP, "10.1.3.4", 1200) == "range"
    assert pick(table, TCP, "10.1.3.4", 1500) == "one"
    assert pick(table, UDP, "10.1.3.4", 1500) == "udp-one"
    assert pick(table, TCP, "192.0.2.1", 443) == "web"         # a prefix of length 0
    assert pick(table, TCP, "10.2.3.4", 443) == "corp"         # /8 is longer than none
    assert pick(table, UDP, "192.0.2.1", 443) is None
    assert pick(table, TCP, "fd00::1", 80) is None


def test_families_match_apart_and_mapped_addresses_count_as_ipv4():
    table = routes(("10.0.0.0/8", "four"), ("::/0", "six"))
    assert pick(table, TCP, "::ffff:10.1.2.3", 80) == "four"
    assert pick(table, TCP, "2001:db8::1", 80) == "six"
    assert pick(table, TCP, "192.0.2.1", 80) is None


def test_the_route_given_last_wins_a_tie_and_added_replaces_the_same_rule():
    table = routes(("10.0.0.0/8", "first"), ("10.0.0.0/8", "second"))
    assert pick(table, TCP, "10.0.0.1", 1) == "second"
    base = routes(("10.0.0.0/8", "session"), ("tcp:22", "ssh"))
    mine = added(base, routes(("10.0.0.0/8", "mine")))
    assert [r.stack for r in mine] == ["ssh", "mine"]
    assert pick(mine, TCP, "10.0.0.1", 80) == "mine"


def test_name_rules_match_names_and_no_address():
    below, exact = parse_rule("name:*.Corp.Example."), parse_rule("name:corp.example")
    assert (below.name, exact.name) == ("*.corp.example", "corp.example")
    assert below.matches_name("a.b.corp.example") and not below.matches_name("corp.example")
    assert exact.matches_name("corp.example") and not exact.matches_name("a.corp.example")
    assert not below.matches_name("xcorp.example")
    table = routes(("name:*.corp.example", "corp"))
    assert pick(table, TCP, "10.1.2.3", 80) is None
    for bad in ("name:", "name:*", "name:a..b", "name:a*b.example", "name:*.*.example"):
        with pytest.raises(RuleError):
            parse_rule(bad)
