# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""rtnetlink answers for stacks that are not kernel ones.

A userspace stack has no kernel to ask for its interfaces, so `ip addr`,
`ip link`, `ip route`, glibc's getaddrinfo (AI_ADDRCONFIG) and
if_nameindex would see nothing.  A module that can describe its stack as a
list of `Link`s gets NETLINK_ROUTE sockets served from it by `Responder`:
dumps and gets of links, addresses and routes are answered.

Requests that would change the stack (`ip addr add`, `ip link set`, `ip
route add`, ...) are decided here, as the kernel decides them, against the
links: which interface (ENODEV), whether the address or route is there
already (EEXIST, unless NLM_F_REPLACE), or is missing (EADDRNOTAVAIL,
ESRCH, ENOENT without NLM_F_CREATE).  What is left is one plain record,
`AddressChange`, `LinkChange` or `RouteChange`, given to the `configure`
a stack gives `answer` (through `Responder`'s `respond`), which makes the
change or refuses it with an OSError; without one every change is refused
with EOPNOTSUPP.  Either way the
answer is the kernel's: an NLMSG_ERROR quoting the request's header.

The message layouts are the kernel's (linux/netlink.h, linux/rtnetlink.h,
linux/if_link.h, linux/if_addr.h); so are the constants below.
"""
import errno
import os
import select
import socket
import struct
import threading
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_interface, ip_network

NLMSG = struct.Struct("=IHHII")          # len type flags seq pid
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400     # of a new object
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
IFINFOMSG = struct.Struct("=BxHiII")     # family type index flags change
IFADDRMSG = struct.Struct("=BBBBI")      # family prefixlen flags scope index
RTMSG = struct.Struct("=BBBBBBBBI")      # family dst_len src_len tos table protocol scope type flags
IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU = 1, 2, 3, 4
IFLA_TXQLEN, IFLA_OPERSTATE = 13, 16
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 4, 6, 8
IFA_CACHEINFO_STRUCT = struct.Struct("=IIII")   # prefered valid cstamp tstamp
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 7, 15
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x2, 0x8, 0x40
IFF_MULTICAST, IFF_LOWER_UP = 0x1000, 0x10000
# The flags a request may set (the kernel's dev_change_flags takes these).
IFF_SETTABLE = IFF_UP | 0x4 | 0x20 | 0x80 | 0x100 | 0x200 | IFF_MULTICAST | 0x2000 | 0x4000 | 0x8000
IF_OPER_UNKNOWN, IF_OPER_DOWN, IF_OPER_UP = 0, 2, 6
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
RTM_F_CLONED = 0x200                  # an answer to a route get, not a route of the table
RTPROT_KERNEL, RTPROT_BOOT = 2, 3
RTN_UNICAST, RTN_LOCAL = 1, 2
RTA_PRIORITY, RTA_PREF = 6, 20     # a route's metric and preference: taken, not kept
ETH_MIN_MTU, ETH_MAX_MTU = 68, 65535
NLA_TYPE_MASK = 0x3FFF
SOCKADDR_NL = struct.Struct("=HHII")     # family pad pid groups
KERNEL = SOCKADDR_NL.pack(socket.AF_NETLINK, 0, 0, 0)


@dataclass
class Link:
    """One interface: its addresses are ipaddress interfaces (IPv4Interface,
    IPv6Interface), its routes (network, gateway or None).  An address with
    lifetimes, (valid, preferred) seconds left (0xFFFFFFFF: for ever), came
    from the network (DHCP, SLAAC): the others are permanent.  A loopback
    one is shown as a kernel's lo is."""
    name: str
    index: int
    mtu: int
    mac: bytes
    up: bool = True
    addresses: list = field(default_factory=list)
    routes: list = field(default_factory=list)
    lifetimes: dict = field(default_factory=dict)
    loopback: bool = False


@dataclass(frozen=True)
class AddressChange:
    """Add `address` (an ipaddress interface) to link `index`, or change the
    prefix of the one it has (an `ip addr replace`); or delete it."""
    add: bool
    index: int
    address: object


@dataclass(frozen=True)
class LinkChange:
    """Set what is not None on link `index`."""
    index: int
    up: bool = None
    mtu: int = None
    mac: bytes = None


@dataclass(frozen=True)
class RouteChange:
    """Add (or replace: there is one per destination) the route to
    `network` through link `index`, via `gateway` or on-link (None); or
    delete it."""
    add: bool
    index: int
    network: object
    gateway: object = None


def attribute(kind, data):
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def message(kind, flags, seq, pid, body):
    return NLMSG.pack(NLMSG.size + len(body), kind, flags, seq, pid) + body


def ask(nl, kind, flags, body, what):
    """Send request `kind` (NLM_F_REQUEST and NLM_F_ACK added to `flags`)
    on the kernel's NETLINK_ROUTE socket `nl` and read its ack; OSError
    naming `what` if the kernel refuses it."""
    nl.send(message(kind, NLM_F_REQUEST | NLM_F_ACK | flags, 0, 0, body))
    reply = nl.recv(4096)
    err = -struct.unpack_from("=i", reply, NLMSG.size)[0] \
        if NLMSG.unpack_from(reply)[1] == NLMSG_ERROR else 0
    if err:
        raise OSError(err, f"{what}: {os.strerror(err)}")


def add_address(nl, index, address, what, scope=RT_SCOPE_UNIVERSE, flags=0):
    """Put `address` (an ipaddress address, alone in its prefix) on link
    `index` of `what` (named in errors) with `scope` and IFA_F_ `flags`,
    through `nl` (see ask)."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    body = (IFADDRMSG.pack(family, address.max_prefixlen, flags, scope, index)
            + attribute(IFA_LOCAL, address.packed) + attribute(IFA_ADDRESS, address.packed))
    ask(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"cannot add {address} to {what}")


def link_flags(link):
    """The IFF_ flags of a link, as netlink and SIOCGIFFLAGS give them."""
    kind = IFF_LOOPBACK if link.loopback else IFF_BROADCAST | IFF_MULTICAST
    return kind | ((IFF_UP | IFF_RUNNING | IFF_LOWER_UP) if link.up else 0)


def link_hardware(link):
    """(ARPHRD_ type, address) of a link, as netlink and SIOCGIFHWADDR give
    them: a kernel's lo has no MAC."""
    return (ARPHRD_LOOPBACK, bytes(6)) if link.loopback else (ARPHRD_ETHER, link.mac)


def _link(link):
    kind, mac = link_hardware(link)
    # lo has no broadcast address and no operational state of its own (UNKNOWN).
    if link.loopback:
        broadcast, state = bytes(6), IF_OPER_UNKNOWN
    else:
        broadcast, state = b"\xff" * 6, IF_OPER_UP if link.up else IF_OPER_DOWN
    return (IFINFOMSG.pack(socket.AF_UNSPEC, kind, link.index, link_flags(link), 0xFFFFFFFF)
            + attribute(IFLA_IFNAME, link.name.encode() + b"\0")
            + attribute(IFLA_MTU, struct.pack("=I", link.mtu))
            + attribute(IFLA_ADDRESS, mac)
            + attribute(IFLA_BROADCAST, broadcast)
            + attribute(IFLA_TXQLEN, struct.pack("=I", 1000))
            + attribute(IFLA_OPERSTATE, bytes([state])))


def _address(link, iface):
    v4 = iface.version == 4
    scope = RT_SCOPE_HOST if link.loopback else RT_SCOPE_LINK if iface.ip.is_link_local else RT_SCOPE_UNIVERSE
    lifetimes = link.lifetimes.get(iface)
    flags = 0 if lifetimes else IFA_F_PERMANENT     # `ip addr` says "dynamic", and the lifetimes
    body = (IFADDRMSG.pack(socket.AF_INET if v4 else socket.AF_INET6, iface.network.prefixlen,
                           flags, scope, link.index)
            + attribute(IFA_ADDRESS, iface.ip.packed))
    if v4:
        body += (attribute(IFA_LOCAL, iface.ip.packed)
                 + attribute(IFA_BROADCAST, iface.network.broadcast_address.packed)
                 + attribute(IFA_LABEL, link.name.encode() + b"\0"))
    if lifetimes:
        valid, preferred = lifetimes
        body += attribute(IFA_CACHEINFO, IFA_CACHEINFO_STRUCT.pack(preferred, valid, 0, 0))
    return body + attribute(IFA_FLAGS, struct.pack("=I", flags))


def _route(link, network, gateway):
    v4 = network.version == 4
    connected = gateway is None
    body = RTMSG.pack(socket.AF_INET if v4 else socket.AF_INET6, network.prefixlen, 0, 0,
                      RT_TABLE_MAIN, RTPROT_KERNEL if connected else RTPROT_BOOT,
                      RT_SCOPE_LINK if connected else RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
    body += attribute(RTA_TABLE, struct.pack("=I", RT_TABLE_MAIN))
    if network.prefixlen:
        body += attribute(RTA_DST, network.network_address.packed)
    if gateway is not None:
        body += attribute(RTA_GATEWAY, gateway.packed)
    if connected and v4:
        # The address whose subnet it is, as the kernel's connected route has it.
        mine = [a for a in link.addresses if a.version == 4 and a.ip in network]
        source = next((a.ip for a in mine if a.network == network), mine[0].ip if mine else None)
        if source is not None:
            body += attribute(RTA_PREFSRC, source.packed)
    return body + attribute(RTA_OIF, struct.pack("=I", link.index))


def _route_to(links, body):
    """ip route get: the route a packet to RTA_DST takes, as the kernel
    answers it (the longest prefix; an address of the stack's own is local,
    through its loopback); ENETUNREACH if none does."""
    if len(body) < RTMSG.size:
        raise _refuse(errno.EINVAL)
    version = _family_of(body[0])
    destination = _attributes(body, RTMSG.size).get(RTA_DST)
    target = _ip(destination, version) if destination is not None else ip_address(bytes(4 if version == 4 else 16))
    width = target.max_prefixlen
    loopback = next((link for link in links if link.loopback), None)
    local = [a for link in links for a in link.addresses
             if a.ip == target or (link.loopback and target in a.network)]
    if local:
        kind, table, link, gateway, source = RTN_LOCAL, RT_TABLE_LOCAL, loopback, None, target
        link = link or next(link for link in links if local[0] in link.addresses)
    else:
        routes = [(net.prefixlen, link, gw) for link in links for net, gw in link.routes if target in net]
        if not routes:
            raise _refuse(errno.ENETUNREACH)
        _length, link, gateway = max(routes, key=lambda route: route[0])
        kind, table = RTN_UNICAST, RT_TABLE_MAIN
        hop = gateway or target
        mine = [a.ip for a in link.addresses if a.version == version and not a.ip.is_link_local]
        source = next((a.ip for a in link.addresses if a.version == version and hop in a.network
                       and a.ip.is_link_local == hop.is_link_local), mine[0] if mine else None)
    reply = (RTMSG.pack(body[0], width, 0, 0, table, 0, RT_SCOPE_HOST if kind == RTN_LOCAL else RT_SCOPE_UNIVERSE,
                        kind, RTM_F_CLONED)
             + attribute(RTA_TABLE, struct.pack("=I", table))
             + attribute(RTA_DST, target.packed)
             + attribute(RTA_OIF, struct.pack("=I", link.index)))
    if gateway is not None:
        reply += attribute(RTA_GATEWAY, gateway.packed)
    if source is not None:
        reply += attribute(RTA_PREFSRC, source.packed)
    return reply


def requests(datagram):
    """(header, kind, flags, seq, body) of each request in a datagram of
    netlink messages; what follows a malformed length is ignored, and
    messages without NLM_F_REQUEST are skipped, as the kernel does."""
    offset = 0
    while offset + NLMSG.size <= len(datagram):
        length, kind, flags, seq, _pid = NLMSG.unpack_from(datagram, offset)
        if length < NLMSG.size or offset + length > len(datagram):
            return
        if flags & NLM_F_REQUEST:
            yield (datagram[offset:offset + NLMSG.size], kind, flags, seq,
                   datagram[offset + NLMSG.size:offset + length])
        offset += (length + 3) & ~3


def answer(links, request, pid, configure=None):
    """The reply messages to one request datagram (bytes of several
    netlink messages), as a list of datagrams; changes are made with
    `configure` (see the top of this file)."""
    replies = []
    for header, kind, flags, seq, body in requests(request):
        family = body[0] if body else socket.AF_UNSPEC
        if kind == RTM_GETLINK:
            try:
                named = links if flags & NLM_F_DUMP == NLM_F_DUMP else [_link_named(links, body)[0]]
            except (OSError, struct.error):
                named = []
            items = [(RTM_NEWLINK, _link(link)) for link in named if link is not None]
        elif kind == RTM_GETADDR:
            items = [(RTM_NEWADDR, _address(link, a)) for link in links for a in link.addresses
                     if family in (socket.AF_UNSPEC, socket.AF_INET if a.version == 4 else socket.AF_INET6)]
        elif kind == RTM_GETROUTE and flags & NLM_F_DUMP != NLM_F_DUMP:
            try:
                items = [(RTM_NEWROUTE, _route_to(links, body))]
            except OSError as e:
                replies.append(error(e.errno, header, seq, pid))
                continue
        elif kind == RTM_GETROUTE:
            items = [(RTM_NEWROUTE, _route(link, net, gw)) for link in links for net, gw in link.routes
                     if family in (socket.AF_UNSPEC, socket.AF_INET if net.version == 4 else socket.AF_INET6)]
        else:
            try:
                change = decide(links, kind, flags, body)
                if change is not None:
                    if configure is None:
                        raise OSError(errno.EOPNOTSUPP, "the stack cannot be changed")
                    configure(change)
            except OSError as e:
                replies.append(error(e.errno, header, seq, pid))
                continue
            if flags & NLM_F_ACK:
                replies.append(error(0, header, seq, pid))
            continue
        if flags & NLM_F_DUMP == NLM_F_DUMP:
            datagram = b"".join(message(k, NLM_F_MULTI, seq, pid, b) for k, b in items)
            replies.append(datagram + message(NLMSG_DONE, NLM_F_MULTI, seq, pid, struct.pack("=i", 0)))
        elif items:
            replies.append(message(items[0][0], 0, seq, pid, items[0][1]))
        else:
            replies.append(error(errno.ENODEV, header, seq, pid))
            continue
        if flags & NLM_F_ACK:
            replies.append(error(0, header, seq, pid))
    return replies


def error(err, header, seq, pid):
    """NLMSG_ERROR (an ack if err is 0), quoting the request's header."""
    return message(NLMSG_ERROR, 0, seq, pid, struct.pack("=i", -err) + header)


# Changes ------------------------------------------------------------------------

def _refuse(err):
    return OSError(err, os.strerror(err))


def _attributes(body, offset):
    """{type: data} of the attributes in body from offset on."""
    found = {}
    while offset + 4 <= len(body):
        length, kind = struct.unpack_from("=HH", body, offset)
        if length < 4 or offset + length > len(body):
            raise _refuse(errno.EINVAL)
        found[kind & NLA_TYPE_MASK] = body[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return found


def _family_of(family):
    if family == socket.AF_INET:
        return 4
    if family == socket.AF_INET6:
        return 6
    raise _refuse(errno.EOPNOTSUPP)     # the kernel has no handler for it


def _ip(data, version):
    if len(data) != (4 if version == 4 else 16):
        raise _refuse(errno.EINVAL)
    return ip_address(data)


def _link_named(links, body):
    """The link an ifinfomsg request names (by index, or by IFLA_IFNAME if
    the index is 0) or None, the name it gives, and its other attributes."""
    index = IFINFOMSG.unpack_from(body)[2]
    attrs = _attributes(body, IFINFOMSG.size)
    name = attrs.pop(IFLA_IFNAME, b"").split(b"\0")[0].decode(errors="replace")
    return next((link for link in links if (link.index == index if index else link.name == name)), None), name, attrs


def _link_by_index(links, index):
    link = next((link for link in links if link.index == index), None)
    if link is None:
        raise _refuse(errno.ENODEV)
    return link


def decide(links, kind, flags, body):
    """The change a request (its type, flags and body) asks of a stack whose
    interfaces are `links`: a record for its `configure`, None if there is
    nothing to change, or OSError with the errno the kernel would answer."""
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        return _address_change(links, kind == RTM_NEWADDR, flags, body)
    if kind in (RTM_NEWLINK, RTM_SETLINK, RTM_DELLINK):
        return _link_change(links, kind, flags, body)
    if kind in (RTM_NEWROUTE, RTM_DELROUTE):
        return _route_change(links, kind == RTM_NEWROUTE, flags, body)
    raise _refuse(errno.EOPNOTSUPP)


def _address_change(links, add, flags, body):
    if len(body) < IFADDRMSG.size:
        raise _refuse(errno.EINVAL)
    family, prefixlen, _flags, _scope, index = IFADDRMSG.unpack_from(body)
    version = _family_of(family)
    attrs = _attributes(body, IFADDRMSG.size)
    local, peer = attrs.get(IFA_LOCAL), attrs.get(IFA_ADDRESS)
    if local is None and peer is None:
        raise _refuse(errno.EINVAL)
    if local is not None and peer is not None and local != peer:
        raise _refuse(errno.EOPNOTSUPP)     # a point-to-point peer: no such links here
    if prefixlen > (32 if version == 4 else 128):
        raise _refuse(errno.EINVAL)
    address = ip_interface((_ip(local if local is not None else peer, version), prefixlen))
    link = _link_by_index(links, index)
    present = next((a for a in link.addresses if a.ip == address.ip), None)
    if add:
        # As inet_rtm_newaddr and inet6_rtm_newaddr: an address the link
        # has is changed only when asked to replace it.
        if present is not None and (flags & NLM_F_EXCL or not flags & NLM_F_REPLACE):
            raise _refuse(errno.EEXIST)
        if present == address:
            return None
    elif present != address:
        raise _refuse(errno.EADDRNOTAVAIL)
    return AddressChange(add, index, address)


def _link_change(links, kind, flags, body):
    if len(body) < IFINFOMSG.size:
        raise _refuse(errno.EINVAL)
    ifi_flags, ifi_change = IFINFOMSG.unpack_from(body)[3:]
    link, name, attrs = _link_named(links, body)
    if link is None:
        # Making links (ip link add) is not something these stacks do.
        if kind == RTM_NEWLINK and flags & NLM_F_CREATE:
            raise _refuse(errno.EOPNOTSUPP)
        raise _refuse(errno.ENODEV)
    if kind == RTM_DELLINK:
        raise _refuse(errno.EOPNOTSUPP)
    if kind == RTM_NEWLINK and flags & NLM_F_EXCL:
        raise _refuse(errno.EEXIST)
    if kind == RTM_NEWLINK and flags & NLM_F_REPLACE or (name and name != link.name):
        raise _refuse(errno.EOPNOTSUPP)     # replacing or renaming a link
    mtu = mac = up = None
    if IFLA_MTU in attrs:
        mtu, = struct.unpack("=I", attrs.pop(IFLA_MTU)[:4].ljust(4, b"\0"))
        if not ETH_MIN_MTU <= mtu <= ETH_MAX_MTU:
            raise _refuse(errno.EINVAL)
        mtu = None if mtu == link.mtu else mtu
    if IFLA_ADDRESS in attrs:
        mac = attrs.pop(IFLA_ADDRESS)
        if link.loopback:
            raise _refuse(errno.EOPNOTSUPP)     # a loopback has no address to set
        if len(mac) != 6:
            raise _refuse(errno.EINVAL)
        if mac[0] & 1 or mac == bytes(6):     # eth_prepare_mac_addr_change's test
            raise _refuse(errno.EADDRNOTAVAIL)
        mac = None if mac == link.mac else mac
    if attrs:
        raise _refuse(errno.EOPNOTSUPP)     # txqlen, master, netns, ...: not here
    # ifi_change 0 means every flag, as rtnl_dev_combine_flags takes it.
    mask = (ifi_change or (0xFFFFFFFF if ifi_flags else 0)) & IFF_SETTABLE
    now = link_flags(link)
    wanted = (now & ~mask) | (ifi_flags & mask)
    if (wanted ^ now) & IFF_SETTABLE & ~IFF_UP:
        raise _refuse(errno.EOPNOTSUPP)     # arp, multicast, promisc, ...
    if (wanted ^ now) & IFF_UP:
        up = bool(wanted & IFF_UP)
    if up is None and mtu is None and mac is None:
        return None
    return LinkChange(link.index, up, mtu, mac)


def _route_change(links, add, flags, body):
    if len(body) < RTMSG.size:
        raise _refuse(errno.EINVAL)
    family, dst_len, src_len, _tos, table, _protocol, _scope, kind, _flags = RTMSG.unpack_from(body)
    version = _family_of(family)
    attrs = _attributes(body, RTMSG.size)
    table = struct.unpack("=I", attrs.pop(RTA_TABLE)[:4])[0] if RTA_TABLE in attrs else table
    destination = attrs.pop(RTA_DST, None)
    gateway = attrs.pop(RTA_GATEWAY, None)
    oif = attrs.pop(RTA_OIF, None)
    attrs.pop(RTA_PRIORITY, None)
    attrs.pop(RTA_PREF, None)
    # One table, unicast routes by destination alone: other tables, route
    # types, source routes, multipath, metrics are beyond these stacks.
    if attrs or src_len or table not in (0, RT_TABLE_MAIN) or kind not in (0, RTN_UNICAST):
        raise _refuse(errno.EOPNOTSUPP)
    if dst_len > (32 if version == 4 else 128):
        raise _refuse(errno.EINVAL)
    address = _ip(destination, version) if destination is not None else ip_address(bytes(4 if version == 4 else 16))
    try:
        network = ip_network((address, dst_len))
    except ValueError:
        raise _refuse(errno.EINVAL) from None   # host bits set
    gateway = _ip(gateway, version) if gateway is not None else None
    link = _link_by_index(links, struct.unpack("=i", oif[:4])[0]) if oif is not None else None
    present = [(owner, net, gw) for owner in links for net, gw in owner.routes if net == network]
    if not add:
        for owner, _net, gw in present:
            if (gateway is None or gw == gateway) and (link is None or owner is link):
                return RouteChange(False, owner.index, network, gw)
        raise _refuse(errno.ESRCH)
    # The next hop first, as fib_create_info checks it before the table.
    if gateway is None:
        if link is None:
            raise _refuse(errno.ENODEV)     # an on-link route names its link
    else:
        # The gateway must be on a link's own subnet, as fib_check_nh finds it.
        onlink = [owner for owner in ([link] if link else links)
                  for net, gw in owner.routes if gw is None and gateway in net]
        if not onlink:
            raise _refuse(errno.ENETUNREACH)
        link = onlink[0]
    if present and (flags & NLM_F_EXCL or not flags & NLM_F_REPLACE):
        raise _refuse(errno.EEXIST)
    if not present and not flags & NLM_F_CREATE:
        raise _refuse(errno.ENOENT)
    return RouteChange(True, link.index, network, gateway)


class Responder:
    """Serves NETLINK_ROUTE proxies of one stack from `links()`, in a thread
    (or, given `respond`, proxies of another netlink protocol: `respond`
    takes the place of `answer`, and `links()` gives what it answers from,
    as vupy.sockdiag does).

    A proxy is the program's end of a SOCK_SEQPACKET socketpair; requests
    arrive on the other end (from send(), or from `request` for sendto and
    sendmsg served by vupy), and each reply datagram goes back with the
    kernel's address (see "Proxy stacks" in stack.py)."""

    def __init__(self, links, respond=None):
        self.links = links
        self.respond = respond or answer
        self.ends = {}                  # our end -> (sock id, port id)
        self.lock = threading.Lock()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC)
        self.address = os.memfd_create("vupy-netlink-address", os.MFD_CLOEXEC)
        os.write(self.address, KERNEL)
        self.thread = None
        self.next_port = 1
        self.gone = set()               # socks whose program end is closed
        self.stopped = False

    def socket(self):
        """A new proxy's program end; its sock id is its inode."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        ours.setblocking(False)
        with self.lock:
            self.ends[ours] = (os.fstat(theirs.fileno()).st_ino, 0)
        if self.thread is None:
            self.thread = threading.Thread(target=self._serve, name="vupy-netlink", daemon=True)
            self.thread.start()
        else:
            os.write(self.wake_w, b"!")
        return theirs.detach()

    def port(self, sock):
        """The port id a proxy is bound to (assigned at bind, as the kernel's)."""
        with self.lock:
            for end, (s, port) in self.ends.items():
                if s == sock:
                    if not port:
                        port = 0x40000000 + self.next_port
                        self.next_port += 1
                        self.ends[end] = (s, port)
                    return port
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    def request(self, sock, data):
        """A request sent with an address (sendto, sendmsg)."""
        with self.lock:
            end = next((e for e, (s, _p) in self.ends.items() if s == sock), None)
        if end is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        self._reply(end, data)
        return len(data)

    def _reply(self, end, data):
        port = self.port(self.ends[end][0])
        try:
            datagrams = self.respond(self.links(), data, port)
        except OSError as e:            # the stack could not say (it is gone)
            if len(data) < NLMSG.size:
                return
            datagrams = [error(e.errno, data[:NLMSG.size], NLMSG.unpack_from(data)[3], port)]
        for datagram in datagrams:
            try:
                socket.send_fds(end, [datagram], [self.address], socket.MSG_DONTWAIT)
            except OSError:
                return                      # full, or closed: netlink drops too

    def _serve(self):
        while not self.stopped:
            with self.lock:
                ends = list(self.ends)
            readable, _, _ = select.select(ends + [self.wake_r], [], [])
            for end in readable:
                if self.stopped:            # by close(), maybe on this thread in _reply
                    return
                if end == self.wake_r:
                    os.read(self.wake_r, 64)
                    continue
                try:
                    data = end.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self._reply(end, data)
                    continue
                with self.lock:             # the program closed it
                    self.gone.add(self.ends.pop(end)[0])
                end.close()

    def closed(self):
        with self.lock:
            gone, self.gone = self.gone, set()
        return gone

    def close(self):
        self.stopped = True
        os.write(self.wake_w, b"!")
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()
        with self.lock:
            for end in self.ends:
                end.close()
            self.ends.clear()
        for fd in (self.wake_r, self.wake_w, self.address):
            os.close(fd)
