# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The interface options of lwip and vde specs (modules/_options.py), and
what each module makes of them: pure checks, no kernel, no worker."""
import ipaddress

import pytest

from vupy.modules._options import Options, need_source
from vupy.modules.lwip import worker_arguments
from vupy.modules.vde import configuration
from vupy.stack import StackError

KNOWN = {"ip", "gw", "ip6", "gw6", "mac", "mtu"}


def refused(call, *args, **kw):
    with pytest.raises(StackError) as caught:
        call(*args, **kw)
    return str(caught.value)


def test_unknown_option_is_named_with_the_known_ones():
    assert refused(Options, "vde", {"ip": "10.0.0.1/24", "colour": "blue", "size": "9"}, KNOWN) == \
        "vde: unknown option 'colour' (known: gw, gw6, ip, ip6, mac, mtu)"


def test_missing_source_is_refused_with_an_example():
    assert refused(need_source, "lwip", "", "tap://tap0") == \
        "lwip: needs a SOURCE: a VDE URL such as vde:///tmp/switch or tap://tap0"
    need_source("lwip", "vde:///tmp/switch", "tap://tap0")


@pytest.mark.parametrize("key, version, text, expected", [
    ("ip", 4, "10.0.0.2/24", ["10.0.0.2/24"]),
    ("ip", 4, "10.0.0.2/24+10.1.0.2/16", ["10.0.0.2/24", "10.1.0.2/16"]),
    ("ip", 4, "10.0.0.2/255.255.255.0", ["10.0.0.2/24"]),
    ("ip", 4, "+10.0.0.2/24+", ["10.0.0.2/24"]),
    ("ip", 4, "", []),
    ("ip6", 6, "fd00::2/48", ["fd00::2/48"]),
    ("ip6", 6, "fd00::2/64+fd01::2/64", ["fd00::2/64", "fd01::2/64"]),
])
def test_interfaces_accepted(key, version, text, expected):
    found = Options("m", {key: text}, KNOWN).interfaces(key, version)
    assert [str(i) for i in found] == expected


@pytest.mark.parametrize("check, key, version, text, message", [
    ("interfaces", "ip", 4, "10.0.0.2", "m: ip=10.0.0.2: give the prefix length too, as in 10.0.0.2/24"),
    ("interfaces", "ip", 4, "10.0.0.2/24+10.0.0.3",
     "m: ip=10.0.0.3: give the prefix length too, as in 10.0.0.3/24"),
    ("interfaces", "ip", 4, "10.0.0.300/24",
     "m: ip=10.0.0.300/24: '10.0.0.300/24' does not appear to be an IPv4 or IPv6 interface"),
    ("interfaces", "ip", 4, "10.0.0.2/33",
     "m: ip=10.0.0.2/33: '10.0.0.2/33' does not appear to be an IPv4 or IPv6 interface"),
    ("interfaces", "ip", 4, "fd00::2/64", "m: ip=fd00::2/64: not an IPv4 address"),
    ("interfaces", "ip6", 6, "fd00::2", "m: ip6=fd00::2: give the prefix length too, as in fd00::2/64"),
    ("interfaces", "ip6", 6, "10.0.0.2/24", "m: ip6=10.0.0.2/24: not an IPv6 address"),
    ("interfaces", "ip6", 6, "fd00::g/64",
     "m: ip6=fd00::g/64: 'fd00::g/64' does not appear to be an IPv4 or IPv6 interface"),
    ("address", "gw", 4, "10.9.0", "m: gw=10.9.0: '10.9.0' does not appear to be an IPv4 or IPv6 address"),
    ("address", "gw", 4, "10.0.0.1/24",
     "m: gw=10.0.0.1/24: '10.0.0.1/24' does not appear to be an IPv4 or IPv6 address"),
    ("address", "gw", 4, "fd00::1", "m: gw=fd00::1: not an IPv4 address"),
    ("address", "gw6", 6, "10.0.0.1", "m: gw6=10.0.0.1: not an IPv6 address"),
])
def test_addresses_refused(check, key, version, text, message):
    assert refused(getattr(Options("m", {key: text}, KNOWN), check), key, version) == message


def test_interfaces_beyond_the_most_are_refused():
    text = "+".join(f"10.0.{n}.2/24" for n in range(3))
    options = Options("m", {"ip": text}, KNOWN)
    assert len(options.interfaces("ip", 4, most=3)) == 3
    assert refused(options.interfaces, "ip", 4, most=2) == f"m: ip={text}: at most 2 IPv4 addresses"


def test_one_prefix_length_may_be_left_out_and_no_other_given():
    options = Options("m", {"ip6": "fd00::2+fd01::2/64"}, KNOWN)
    assert [str(i) for i in options.interfaces("ip6", 6, length=64)] == ["fd00::2/64", "fd01::2/64"]
    assert refused(Options("m", {"ip6": "fd00::2/48"}, KNOWN).interfaces, "ip6", 6, length=64) == \
        "m: ip6=fd00::2/48: only /64 prefixes are supported"


@pytest.mark.parametrize("key, version, text", [("gw", 4, "10.0.0.1"), ("gw6", 6, "fd00::1")])
def test_gateway_accepted(key, version, text):
    assert Options("m", {key: text}, KNOWN).address(key, version) == ipaddress.ip_address(text)


@pytest.mark.parametrize("text", ["02:00:00:00:00:01", "aa:BB:cc:DD:ee:0f"])
def test_mac_accepted(text):
    assert Options("m", {"mac": text}, KNOWN).mac() == text


@pytest.mark.parametrize("text", ["01:00:5e:00:00:01", "02:00:00:00:00", "02-00-00-00-00-01",
                                  "02:00:00:00:00:0g", ""])
def test_mac_refused(text):
    assert refused(Options("m", {"mac": text}, KNOWN).mac) == \
        f"m: mac={text}: not a unicast MAC address XX:XX:XX:XX:XX:XX"


@pytest.mark.parametrize("text", ["576", "1500", "65535"])
def test_mtu_accepted(text):
    assert Options("m", {"mtu": text}, KNOWN).mtu(576) == int(text)


@pytest.mark.parametrize("text", ["575", "65536", "0", "", "+1500", " 1500", "1_500", "1500.0", "١٥٠٠"])
def test_mtu_refused(text):
    assert refused(Options("m", {"mtu": text}, KNOWN).mtu, 576) == f"m: mtu={text}: not a number from 576 to 65535"


def test_absent_options_give_none():
    options = Options("m", {}, KNOWN)
    assert (options.address("gw", 4), options.mac(), options.mtu(68), options.interfaces("ip", 4)) == \
        (None, None, None, [])
    assert "mac" not in options


# What lwip and vde make of them -------------------------------------------------

def test_lwip_worker_arguments():
    url, mac, mtu, ip, gw, *ip6 = worker_arguments(
        "vde:///tmp/sw", {"ip": "10.0.0.2/24+10.1.0.2/16", "gw": "10.0.0.1", "ip6": "fd00::2+fd01::2/64",
                          "mtu": "9000", "mac": "02:00:00:00:00:01"})
    assert (url, mac, mtu, ip, gw, ip6) == ("vde:///tmp/sw", "02:00:00:00:00:01", "9000",
                                            "10.0.0.2/24,10.1.0.2/16", "10.0.0.1", ["fd00::2", "fd01::2"])


def test_lwip_defaults_are_a_random_local_mac_and_1500():
    _url, mac, mtu, ip, gw = worker_arguments("slirp://", {})
    assert Options("m", {"mac": mac}, KNOWN).mac() == mac and int(mac[:2], 16) & 2
    assert (mtu, ip, gw) == ("1500", "-", "-")


@pytest.mark.parametrize("source, options, message", [
    ("slirp://", {"gw6": "fd00::1"}, "lwip: unknown option 'gw6' (known: gw, ip, ip6, mac, mtu)"),
    ("", {}, "lwip: needs a SOURCE"),
    ("slirp://", {"mtu": "68"}, "lwip: mtu=68: not a number from 576 to 65535"),
    ("slirp://", {"ip": "+".join(f"10.0.{n}.2/24" for n in range(9))}, "at most 8 IPv4 addresses"),
    ("slirp://", {"ip6": "+".join(f"fd0{n}::2" for n in range(6))}, "at most 5 IPv6 addresses"),
    ("slirp://", {"ip6": "fd00::2/56"}, "lwip: ip6=fd00::2/56: only /64 prefixes are supported"),
])
def test_lwip_refuses(source, options, message):
    assert message in refused(worker_arguments, source, options)


def test_lwip_addresses_from_the_network():
    *_, ip, gw, auto = worker_arguments("slirp://", {"ip": "dhcp", "ip6": "auto"})
    assert (ip, gw, auto) == ("dhcp", "-", "auto")
    *_, ip, gw, auto, static = worker_arguments("slirp://", {"ip": "10.0.0.2/24", "ip6": "fd00::2+auto"})
    assert (ip, gw, auto, static) == ("10.0.0.2/24", "-", "auto", "fd00::2")


@pytest.mark.parametrize("options, message", [
    ({"ip": "dhcp+10.0.0.2/24"}, "lwip: ip=dhcp+10.0.0.2/24: dhcp comes alone"),
    ({"ip": "10.0.0.2/24+dhcp"}, "lwip: ip=10.0.0.2/24+dhcp: dhcp comes alone"),
    ({"ip": "dhcp", "gw": "10.0.0.1"}, "lwip: gw= with ip=dhcp: the default gateway is the router DHCP gives"),
    ({"ip6": "auto+" + "+".join(f"fd0{n}::2" for n in range(5))}, "at most 4 IPv6 addresses"),
    ({"ip": "DHCP"}, "lwip: ip=DHCP: "),
])
def test_lwip_refuses_addresses_from_the_network(options, message):
    assert message in refused(worker_arguments, "slirp://", options)


def test_vde_configuration():
    assert configuration({"ip": "10.0.0.2/24", "ip6": "fd00::2/64", "gw": "10.0.0.1", "gw6": "fd00::1",
                          "mac": "02:00:00:00:00:01", "mtu": "68"}) == [
        ["link", "set", "vde0", "address", "02:00:00:00:00:01", "mtu", "68", "up"],
        ["addr", "add", "10.0.0.2/24", "dev", "vde0"],
        ["addr", "add", "fd00::2/64", "dev", "vde0", "nodad"],
        ["-4", "route", "add", "default", "via", "10.0.0.1"],
        ["-6", "route", "add", "default", "via", "fd00::1"]]


def test_vde_without_an_address_leaves_the_link_down():
    assert configuration({"mtu": "1400"}) == [["link", "set", "vde0", "mtu", "1400"]]
    assert configuration({}) == []


@pytest.mark.parametrize("options, message", [
    ({"colour": "blue"}, "vde: unknown option 'colour'"),
    ({"mtu": "67"}, "vde: mtu=67: not a number from 68 to 65535"),
    ({"ip": "10.0.0.2"}, "vde: ip=10.0.0.2: give the prefix length too"),
])
def test_vde_refuses(options, message):
    assert message in refused(configuration, options)
