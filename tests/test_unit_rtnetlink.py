# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Unit tests of vupy/rtnetlink.py's changes: requests as iproute2 sends
them (ip addr add, ip link set, ip route add, ...), decided against a
made-up list of links, and the records the stack's `configure` is given,
or the kernel's errno in an NLMSG_ERROR quoting the request.  No kernel,
no session."""
import errno
import socket
import struct
from ipaddress import ip_address, ip_interface, ip_network

import pytest

from vupy import rtnetlink as rt
from vupy.rtnetlink import AddressChange, LinkChange, RouteChange

INET, INET6 = socket.AF_INET, socket.AF_INET6
ADD = rt.NLM_F_CREATE | rt.NLM_F_EXCL              # ip ... add
REPLACE = rt.NLM_F_CREATE | rt.NLM_F_REPLACE       # ip ... replace
MAC = bytes.fromhex("020000000002")


def links():
    lo = rt.Link("lo", 1, 65536, bytes(6), addresses=[ip_interface("127.0.0.1/8"), ip_interface("::1/128")],
                 loopback=True)
    vde0 = rt.Link("vde0", 2, 1500, MAC,
                   addresses=[ip_interface("10.9.0.2/24"), ip_interface("fd09::2/64"),
                              ip_interface("fe80::ff:fe00:2/64")],
                   routes=[(ip_network("10.9.0.0/24"), None), (ip_network("fd09::/64"), None),
                           (ip_network("fe80::/64"), None)])
    return [lo, vde0]


def with_default(gateway="10.9.0.1"):
    stack = links()
    stack[1].routes.append((ip_network("0.0.0.0/0"), ip_address(gateway)))
    return stack


def ask(kind, flags, body, stack=None):
    """(records given to configure, errno of the answer: 0 for an ack)."""
    made = []
    request = rt.message(kind, rt.NLM_F_REQUEST | rt.NLM_F_ACK | flags, 7, 0, body)
    replies = rt.answer(links() if stack is None else stack, request, 0x40000001, made.append)
    assert len(replies) == 1, replies
    length, reply_kind, _flags, seq, pid = rt.NLMSG.unpack_from(replies[0])
    assert (reply_kind, seq, pid, length) == (rt.NLMSG_ERROR, 7, 0x40000001, len(replies[0]))
    err, = struct.unpack_from("=i", replies[0], rt.NLMSG.size)
    assert replies[0][rt.NLMSG.size + 4:] == request[:rt.NLMSG.size]    # the request's header
    return made, -err


def address(text, index=2, family=None):
    iface = ip_interface(text)
    family = (INET if iface.version == 4 else INET6) if family is None else family
    body = rt.IFADDRMSG.pack(family, iface.network.prefixlen, 0, 0, index)
    if iface.version == 4:
        body += rt.attribute(rt.IFA_LOCAL, iface.ip.packed)
    return body + rt.attribute(rt.IFA_ADDRESS, iface.ip.packed)


def link(index=2, flags=0, change=0, **attrs):
    body = rt.IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)
    for kind, data in attrs.items():
        body += rt.attribute(getattr(rt, kind), data)
    return body


def route(destination, gateway=None, oif=None, table=rt.RT_TABLE_MAIN, kind=rt.RTN_UNICAST, src_len=0):
    net = ip_network(destination)
    body = rt.RTMSG.pack(INET if net.version == 4 else INET6, net.prefixlen, src_len, 0, table,
                         rt.RTPROT_BOOT, rt.RT_SCOPE_UNIVERSE, kind, 0)
    if net.prefixlen:
        body += rt.attribute(rt.RTA_DST, net.network_address.packed)
    if gateway:
        body += rt.attribute(rt.RTA_GATEWAY, ip_address(gateway).packed)
    if oif:
        body += rt.attribute(rt.RTA_OIF, struct.pack("=i", oif))
    return body


# Addresses ------------------------------------------------------------------

@pytest.mark.parametrize("text", ["10.9.0.7/24", "10.20.0.1/16", "fd09::7/64"])
def test_ip_addr_add_is_an_address_change(text):
    assert ask(rt.RTM_NEWADDR, ADD, address(text)) == ([AddressChange(True, 2, ip_interface(text))], 0)


@pytest.mark.parametrize("flags", [ADD, rt.NLM_F_CREATE, 0])
def test_adding_an_address_the_link_has_is_eexist_unless_replaced(flags):
    assert ask(rt.RTM_NEWADDR, flags, address("10.9.0.2/24")) == ([], errno.EEXIST)
    assert ask(rt.RTM_NEWADDR, flags, address("fd09::2/64")) == ([], errno.EEXIST)


def test_ip_addr_replace_changes_the_prefix_or_does_nothing():
    assert ask(rt.RTM_NEWADDR, REPLACE, address("10.9.0.2/16")) == \
        ([AddressChange(True, 2, ip_interface("10.9.0.2/16"))], 0)
    assert ask(rt.RTM_NEWADDR, REPLACE, address("10.9.0.2/24")) == ([], 0)


def test_ip_addr_del_is_an_address_change_if_the_link_has_it():
    assert ask(rt.RTM_DELADDR, 0, address("fd09::2/64")) == ([AddressChange(False, 2, ip_interface("fd09::2/64"))], 0)
    assert ask(rt.RTM_DELADDR, 0, address("10.9.0.9/24")) == ([], errno.EADDRNOTAVAIL)
    assert ask(rt.RTM_DELADDR, 0, address("10.9.0.2/16")) == ([], errno.EADDRNOTAVAIL)   # its prefix too
    assert ask(rt.RTM_DELADDR, 0, address("10.9.0.2/24", index=1)) == ([], errno.EADDRNOTAVAIL)


@pytest.mark.parametrize("body, err", [
    (address("10.9.0.7/24", index=9), errno.ENODEV),
    (address("10.9.0.7/24", family=socket.AF_UNSPEC), errno.EOPNOTSUPP),
    (rt.IFADDRMSG.pack(INET, 24, 0, 0, 2), errno.EINVAL),                       # no address
    (rt.IFADDRMSG.pack(INET, 33, 0, 0, 2) + rt.attribute(rt.IFA_LOCAL, bytes(4)), errno.EINVAL),
    (rt.IFADDRMSG.pack(INET, 24, 0, 0, 2) + rt.attribute(rt.IFA_LOCAL, bytes(3)), errno.EINVAL),
    (rt.IFADDRMSG.pack(INET, 32, 0, 0, 2) + rt.attribute(rt.IFA_LOCAL, bytes([10, 9, 0, 7]))
     + rt.attribute(rt.IFA_ADDRESS, bytes([10, 9, 0, 8])), errno.EOPNOTSUPP),   # a peer
])
def test_bad_address_requests_get_the_kernels_errno(body, err):
    assert ask(rt.RTM_NEWADDR, ADD, body) == ([], err)


# Links ------------------------------------------------------------------------

def test_ip_link_set_down_up_mtu_address():
    assert ask(rt.RTM_NEWLINK, 0, link(flags=0, change=rt.IFF_UP)) == ([LinkChange(2, up=False)], 0)
    assert ask(rt.RTM_NEWLINK, 0, link(flags=rt.IFF_UP, change=rt.IFF_UP)) == ([], 0)    # up already
    assert ask(rt.RTM_NEWLINK, 0, link(IFLA_MTU=struct.pack("=I", 1400))) == ([LinkChange(2, mtu=1400)], 0)
    new = bytes.fromhex("020000000042")
    assert ask(rt.RTM_SETLINK, 0, link(IFLA_ADDRESS=new)) == ([LinkChange(2, mac=new)], 0)


def test_a_link_is_found_by_name_when_its_index_is_not_given():
    assert ask(rt.RTM_NEWLINK, 0, link(index=0, flags=0, change=rt.IFF_UP, IFLA_IFNAME=b"lo\0")) == \
        ([LinkChange(1, up=False)], 0)


@pytest.mark.parametrize("kind, flags, body, err", [
    (rt.RTM_NEWLINK, 0, link(index=9), errno.ENODEV),
    (rt.RTM_NEWLINK, 0, link(index=0, IFLA_IFNAME=b"eth9\0"), errno.ENODEV),
    (rt.RTM_NEWLINK, ADD, link(index=0, IFLA_IFNAME=b"dummy0\0"), errno.EOPNOTSUPP),  # ip link add
    (rt.RTM_NEWLINK, ADD, link(), errno.EEXIST),
    (rt.RTM_DELLINK, 0, link(), errno.EOPNOTSUPP),
    (rt.RTM_NEWLINK, 0, link(IFLA_IFNAME=b"eth0\0"), errno.EOPNOTSUPP),            # a rename
    (rt.RTM_NEWLINK, 0, link(IFLA_MTU=struct.pack("=I", 67)), errno.EINVAL),
    (rt.RTM_NEWLINK, 0, link(IFLA_MTU=struct.pack("=I", 65536)), errno.EINVAL),
    (rt.RTM_NEWLINK, 0, link(IFLA_ADDRESS=bytes.fromhex("010000000042")), errno.EADDRNOTAVAIL),  # multicast
    (rt.RTM_NEWLINK, 0, link(IFLA_ADDRESS=bytes(6)), errno.EADDRNOTAVAIL),
    (rt.RTM_NEWLINK, 0, link(IFLA_ADDRESS=bytes(5)), errno.EINVAL),
    (rt.RTM_NEWLINK, 0, link(index=1, IFLA_ADDRESS=MAC), errno.EOPNOTSUPP),           # lo's
    (rt.RTM_NEWLINK, 0, link(IFLA_TXQLEN=struct.pack("=I", 10)), errno.EOPNOTSUPP),
    (rt.RTM_NEWLINK, 0, link(flags=rt.IFF_UP | 0x80, change=0x80), errno.EOPNOTSUPP),  # arp off
])
def test_link_requests_refused_with_the_kernels_errno(kind, flags, body, err):
    assert ask(kind, flags, body) == ([], err)


def test_flags_the_kernel_does_not_let_a_request_set_are_left_alone():
    # RUNNING, LOWER_UP, BROADCAST are the link's to say: no change asked.
    assert ask(rt.RTM_NEWLINK, 0, link(flags=rt.IFF_UP | rt.IFF_MULTICAST, change=0xFFFFFFFF)) == ([], 0)
    assert ask(rt.RTM_NEWLINK, 0, link(flags=rt.IFF_MULTICAST, change=0)) == ([LinkChange(2, up=False)], 0)


# Routes -----------------------------------------------------------------------

@pytest.mark.parametrize("args, change", [
    (("0.0.0.0/0", "10.9.0.1"), RouteChange(True, 2, ip_network("0.0.0.0/0"), ip_address("10.9.0.1"))),
    (("0.0.0.0/0", "10.9.0.1", 2), RouteChange(True, 2, ip_network("0.0.0.0/0"), ip_address("10.9.0.1"))),
    (("::/0", "fe80::1"), RouteChange(True, 2, ip_network("::/0"), ip_address("fe80::1"))),
    (("fd10::/64", None, 2), RouteChange(True, 2, ip_network("fd10::/64"))),
])
def test_ip_route_add_is_a_route_change(args, change):
    assert ask(rt.RTM_NEWROUTE, ADD, route(*args)) == ([change], 0)


@pytest.mark.parametrize("body, flags, err", [
    (route("0.0.0.0/0", "10.9.0.254"), ADD, errno.EEXIST),
    (route("10.9.0.0/24", None, 2), ADD, errno.EEXIST),                   # the connected one
    (route("0.0.0.0/0", "10.99.0.1"), REPLACE, errno.ENETUNREACH),         # gateway off every subnet
    (route("0.0.0.0/0", "10.9.0.1", 1), REPLACE, errno.ENETUNREACH),       # not on that link
    (route("0.0.0.0/0", "10.9.0.1", 9), REPLACE, errno.ENODEV),
    (route("10.20.0.0/16"), ADD, errno.ENODEV),                            # on-link, no link named
    (route("10.20.0.0/16", None, 2), rt.NLM_F_REPLACE, errno.ENOENT),      # change what is not there
    (route("10.20.0.0/16", "10.9.0.1", table=100), ADD, errno.EOPNOTSUPP),
    (route("10.20.0.0/16", None, 2, kind=6), ADD, errno.EOPNOTSUPP),       # blackhole
    (route("10.20.0.0/16", "10.9.0.1", src_len=8), ADD, errno.EOPNOTSUPP),
    (route("10.20.0.0/16", "10.9.0.1")[:-8] + rt.attribute(rt.RTA_DST, bytes([10, 20, 0, 1])), ADD,
     errno.EINVAL),                                                         # host bits set
])
def test_route_requests_refused_with_the_kernels_errno(body, flags, err):
    assert ask(rt.RTM_NEWROUTE, flags, body, with_default()) == ([], err)


def test_ip_route_replace_replaces_the_default_route():
    assert ask(rt.RTM_NEWROUTE, REPLACE, route("0.0.0.0/0", "10.9.0.254"), with_default()) == \
        ([RouteChange(True, 2, ip_network("0.0.0.0/0"), ip_address("10.9.0.254"))], 0)


def test_ip_route_del_needs_the_route_and_names_its_gateway():
    default = RouteChange(False, 2, ip_network("0.0.0.0/0"), ip_address("10.9.0.1"))
    assert ask(rt.RTM_DELROUTE, 0, route("0.0.0.0/0"), with_default()) == ([default], 0)
    assert ask(rt.RTM_DELROUTE, 0, route("0.0.0.0/0", "10.9.0.1", 2), with_default()) == ([default], 0)
    assert ask(rt.RTM_DELROUTE, 0, route("0.0.0.0/0", "10.9.0.7"), with_default()) == ([], errno.ESRCH)
    assert ask(rt.RTM_DELROUTE, 0, route("0.0.0.0/0")) == ([], errno.ESRCH)
    assert ask(rt.RTM_DELROUTE, 0, route("::/0")) == ([], errno.ESRCH)


# The answer ----------------------------------------------------------------------

def test_what_the_stack_refuses_is_answered_with_its_errno():
    def configure(_change):
        raise OSError(errno.ENOSPC, "full")
    request = rt.message(rt.RTM_NEWADDR, rt.NLM_F_REQUEST | rt.NLM_F_ACK | ADD, 3, 0, address("10.9.0.7/24"))
    reply, = rt.answer(links(), request, 5, configure)
    assert struct.unpack_from("=i", reply, rt.NLMSG.size)[0] == -errno.ENOSPC


def test_without_configure_every_change_is_eopnotsupp():
    request = rt.message(rt.RTM_NEWADDR, rt.NLM_F_REQUEST | rt.NLM_F_ACK | ADD, 3, 0, address("10.9.0.7/24"))
    reply, = rt.answer(links(), request, 5)
    assert struct.unpack_from("=i", reply, rt.NLMSG.size)[0] == -errno.EOPNOTSUPP


def test_a_change_without_nlm_f_ack_is_answered_only_if_it_fails():
    made = []
    good = rt.message(rt.RTM_NEWADDR, rt.NLM_F_REQUEST | ADD, 3, 0, address("10.9.0.7/24"))
    bad = rt.message(rt.RTM_NEWADDR, rt.NLM_F_REQUEST | ADD, 4, 0, address("10.9.0.2/24"))
    replies = rt.answer(links(), good + bad, 5, made.append)
    assert made == [AddressChange(True, 2, ip_interface("10.9.0.7/24"))]
    assert len(replies) == 1 and rt.NLMSG.unpack_from(replies[0])[3] == 4
    assert struct.unpack_from("=i", replies[0], rt.NLMSG.size)[0] == -errno.EEXIST


def test_loopback_is_shown_as_a_kernels_lo():
    lo = links()[0]
    request = rt.message(rt.RTM_GETLINK, rt.NLM_F_REQUEST, 1, 0, rt.IFINFOMSG.pack(0, 0, 1, 0, 0))
    reply, = rt.answer([lo], request, 5)
    _family, kind, _index, flags, _change = rt.IFINFOMSG.unpack_from(reply, rt.NLMSG.size)
    assert kind == rt.ARPHRD_LOOPBACK
    assert flags == rt.IFF_LOOPBACK | rt.IFF_UP | rt.IFF_RUNNING | rt.IFF_LOWER_UP
    request = rt.message(rt.RTM_GETADDR, rt.NLM_F_REQUEST | rt.NLM_F_DUMP, 2, 0, bytes(rt.IFADDRMSG.size))
    dump, = rt.answer([lo], request, 5)
    scopes, offset = [], 0
    while offset < len(dump):
        length, kind = rt.NLMSG.unpack_from(dump, offset)[:2]
        if kind == rt.RTM_NEWADDR:
            scopes.append(rt.IFADDRMSG.unpack_from(dump, offset + rt.NLMSG.size)[3])
        offset += length
    assert scopes == [rt.RT_SCOPE_HOST, rt.RT_SCOPE_HOST]


def test_the_lwip_workers_links_text_as_links():
    from vupy.modules.lwip import parse_links
    lo, vde0 = parse_links("link lo 1 65536 00:00:00:00:00:00 up loopback\n"
                           "addr 1 4 127.0.0.1 8\n"
                           "link vde0 2 1400 02:00:00:00:00:02 up\n"
                           "addr 2 4 10.9.0.2 24\n"
                           "route 2 4 10.9.0.0 24 -\n"
                           "route 2 4 10.9.0.0 24 -\n"       # an alias on the same subnet
                           "addr 2 6 fd09::2 64\n"
                           "route 2 6 fd09:: 64 -\n"          # given, and the address's own
                           "route 2 6 :: 0 fe80::1\n")
    assert (lo.loopback, lo.mtu, vde0.loopback, vde0.mtu) == (True, 65536, False, 1400)
    assert vde0.routes == [(ip_network("10.9.0.0/24"), None), (ip_network("fd09::/64"), None),
                           (ip_network("::/0"), ip_address("fe80::1"))]


def test_a_link_is_got_by_name():
    """ip link show DEV asks by name (index 0, IFLA_IFNAME), as ip addr
    show dev DEV does."""
    request = rt.message(rt.RTM_GETLINK, rt.NLM_F_REQUEST, 1, 0, link(index=0, IFLA_IFNAME=b"vde0\0"))
    reply, = rt.answer(links(), request, 5)
    assert rt.NLMSG.unpack_from(reply)[1] == rt.RTM_NEWLINK
    assert rt.IFINFOMSG.unpack_from(reply, rt.NLMSG.size)[2] == 2
    request = rt.message(rt.RTM_GETLINK, rt.NLM_F_REQUEST, 1, 0, link(index=0, IFLA_IFNAME=b"eth7\0"))
    reply, = rt.answer(links(), request, 5)
    assert struct.unpack_from("=i", reply, rt.NLMSG.size)[0] == -errno.ENODEV


def test_a_link_that_is_down_has_no_routes():
    from vupy.modules.lwip import parse_links
    vde0, = parse_links("link vde0 2 1500 02:00:00:00:00:02 down\n"
                        "addr 2 4 10.9.0.2 24\n"
                        "route 2 4 10.9.0.0 24 -\n"
                        "addr 2 6 fd09::2 64\n")
    assert (vde0.routes, len(vde0.addresses)) == ([], 2)


def get_route(destination, stack):
    """(type, table, dst_len, {attribute: bytes}) of ip route get's answer, or its errno."""
    net = ip_network(destination)
    body = rt.RTMSG.pack(INET if net.version == 4 else INET6, 0, 0, 0, 0, 0, 0, 0, 0) \
        + rt.attribute(rt.RTA_DST, net.network_address.packed)
    reply, = rt.answer(stack, rt.message(rt.RTM_GETROUTE, rt.NLM_F_REQUEST, 1, 0, body), 5)
    if rt.NLMSG.unpack_from(reply)[1] == rt.NLMSG_ERROR:
        return -struct.unpack_from("=i", reply, rt.NLMSG.size)[0]
    _family, dst_len, _src, _tos, table, _proto, _scope, kind, _flags = rt.RTMSG.unpack_from(reply, rt.NLMSG.size)
    attrs = rt._attributes(reply[rt.NLMSG.size:], rt.RTMSG.size)
    return kind, table, dst_len, {k: attrs[k] for k in (rt.RTA_DST, rt.RTA_OIF, rt.RTA_GATEWAY, rt.RTA_PREFSRC)
                                  if k in attrs}


def test_ip_route_get_finds_the_route_a_destination_takes():
    oif = lambda index: struct.pack("=i", index)           # noqa: E731
    a = lambda text: ip_address(text).packed                # noqa: E731
    stack = with_default()
    assert get_route("10.9.0.7", stack) == (rt.RTN_UNICAST, rt.RT_TABLE_MAIN, 32, {
        rt.RTA_DST: a("10.9.0.7"), rt.RTA_OIF: oif(2), rt.RTA_PREFSRC: a("10.9.0.2")})
    assert get_route("10.10.0.1", stack) == (rt.RTN_UNICAST, rt.RT_TABLE_MAIN, 32, {
        rt.RTA_DST: a("10.10.0.1"), rt.RTA_OIF: oif(2), rt.RTA_GATEWAY: a("10.9.0.1"),
        rt.RTA_PREFSRC: a("10.9.0.2")})
    assert get_route("10.9.0.2", stack) == (rt.RTN_LOCAL, rt.RT_TABLE_LOCAL, 32, {
        rt.RTA_DST: a("10.9.0.2"), rt.RTA_OIF: oif(1), rt.RTA_PREFSRC: a("10.9.0.2")})
    assert get_route("127.0.0.9", stack)[:3] == (rt.RTN_LOCAL, rt.RT_TABLE_LOCAL, 32)
    assert get_route("fd09::1", stack) == (rt.RTN_UNICAST, rt.RT_TABLE_MAIN, 128, {
        rt.RTA_DST: a("fd09::1"), rt.RTA_OIF: oif(2), rt.RTA_PREFSRC: a("fd09::2")})
    assert get_route("fd10::1", stack) == errno.ENETUNREACH
    assert get_route("10.10.0.1", links()) == errno.ENETUNREACH


def test_a_connected_route_says_the_address_whose_subnet_it_is():
    stack = links()
    stack[1].addresses.append(ip_interface("10.9.0.3/16"))
    stack[1].routes.append((ip_network("10.9.0.0/16"), None))
    request = rt.message(rt.RTM_GETROUTE, rt.NLM_F_REQUEST | rt.NLM_F_DUMP, 1, 0, bytes(rt.RTMSG.size))
    dump, = rt.answer(stack, request, 5)
    sources, offset = {}, 0
    while offset < len(dump):
        length, kind = rt.NLMSG.unpack_from(dump, offset)[:2]
        if kind == rt.RTM_NEWROUTE:
            body = dump[offset + rt.NLMSG.size:offset + length]
            attrs = rt._attributes(body, rt.RTMSG.size)
            if rt.RTA_PREFSRC in attrs:
                sources[body[1]] = ip_address(attrs[rt.RTA_PREFSRC])
        offset += length
    assert sources == {24: ip_address("10.9.0.2"), 16: ip_address("10.9.0.3")}
