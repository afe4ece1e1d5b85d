# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Routes per datagram: a UDP socket that sends to destinations of
different stacks.

A kernel socket lives in one network namespace, and a datagram that
arrives on another stack can reach it only through that stack.  So when a
program sends a datagram with an address (sendto, sendmsg, sendmmsg) that
its routes send to a stack other than its socket's (vupy/_router.py), the
socket *spans*: vupy puts in its place (same descriptor number and flags,
the options carried over, the same port) a socket of this module's *span
namespace*, lets the call go on, and relays from then on.

The span namespace is a network namespace of vupy's own whose routes, for
IPv4 and IPv6 alike, lead every destination out of one end (`span`) of a
veth pair; vupy holds the other end (`relay`) with a packet socket.  Each
UDP datagram a spanning socket sends comes out there as a packet: vupy
chooses its stack with the router's rules, destination by destination and
datagram by datagram (so no thread of the program can send it elsewhere
by changing an address after a check), and sends its payload with a
*relay socket* of that stack, bound to the program's port where it is free
there: the program's old socket for its own stack, a new one, with the
carried options, for each other stack it reaches.  What a relay socket
receives is written back through the veth as a UDP packet from the sender
to the program's socket, so recvfrom reports each sender's address and the
program reads natively: of its calls, only the sends with an address are
trapped.

Loopback destinations (127.0.0.0/8) are routed as any other: the span
namespace keeps `lo` down, so they too leave by the veth, and its
`route_localnet` lets their answers in.  The namespace's own
addresses are the IPv4 dummy address (RFC 7600) and one of IPv6's
discard-only prefix (RFC 6666), which no stack serves.

Limits, in docs/routing.md: IPv6 loopback (::1) is not reached from a
spanning socket (the kernel takes ::1 only on `lo`); ICMP errors (port
unreachable) are not reported on it; datagrams to userspace stacks are
not relayed (the send that would span fails with EOPNOTSUPP).  vupy ends
the relays of a spanning socket once the program has closed it (it looks
every SWEEP_SECONDS, with sock_diag).
"""
import array
import errno
import ipaddress
import os
import selectors
import socket
import struct
import threading
import time

from . import rtnetlink
from ._carry import sockaddr, sockcall
from ._native import lib
from .helpers import own_creds, private_namespace
from .sockdiag import (INET_DIAG_MSG_HEAD, INET_DIAG_MSG_TAIL, INET_DIAG_REQ_V2, NETLINK_SOCK_DIAG,
                       SOCK_DIAG_BY_FAMILY)

LOOPBACK, LINK, PEER = 1, 2, 3          # interface indexes in the span namespace
LINK_MAC, PEER_MAC = bytes.fromhex("027675707901"), bytes.fromhex("027675707902")
MTU = 65535                             # the most: no datagram is cut on the way
DUMMY = {4: ipaddress.ip_address("192.0.0.8"), 6: ipaddress.ip_address("100::8")}
ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
PACKET_OUTGOING = 4                     # a packet socket's pkttype for what its link sends
IFF_NOARP = 0x80
IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 18, 1, 2, 1
IFLA_AF_SPEC, IFLA_INET_CONF, IPV4_DEVCONF_ROUTE_LOCALNET = 26, 1, 26
NLA_F_NESTED = 0x8000
IFA_F_NODAD = 0x02
SWEEP_SECONDS = 5
BATCH = 64                              # datagrams taken from one socket before the others' turn
IPV4 = struct.Struct("!BBHHHBBH4s4s")   # version+ihl tos length id frag ttl protocol checksum src dst
IPV6 = struct.Struct("!IHBB16s16s")     # version+class+flow length next hops src dst
UDP = struct.Struct("!HHHH")            # sport dport length checksum
ANY = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}


# Packets ------------------------------------------------------------------

def checksum(data):
    """The Internet checksum (RFC 1071) of `data`, as bytes to put in place."""
    if len(data) % 2:
        data += b"\0"
    total = sum(array.array("H", data))     # in this machine's order: so is the result
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return struct.pack("=H", ~total & 0xFFFF)


def datagram(packet):
    """(source, destination, source port, destination port, payload) of an
    IPv4 or IPv6 UDP packet (addresses as ipaddress objects); None for
    anything else (other protocols, fragments, IPv6 extension headers)."""
    if len(packet) >= IPV4.size and packet[0] >> 4 == 4:
        first, _tos, length, _id, fragment, _ttl, protocol, _sum, src, dst = IPV4.unpack_from(packet)
        if protocol != socket.IPPROTO_UDP or fragment & 0x3FFF:
            return None
        start, end = (first & 0xF) * 4, length
    elif len(packet) >= IPV6.size and packet[0] >> 4 == 6:
        _first, length, following, _hops, src, dst = IPV6.unpack_from(packet)
        if following != socket.IPPROTO_UDP:
            return None
        start, end = IPV6.size, IPV6.size + length
    else:
        return None
    if end > len(packet) or start + UDP.size > end:
        return None
    sport, dport, length, _sum = UDP.unpack_from(packet, start)
    if length < UDP.size or start + length > end:
        return None
    return (ipaddress.ip_address(src), ipaddress.ip_address(dst), sport, dport,
            packet[start + UDP.size:start + length])


def packet(source, destination, sport, dport, payload):
    """(ethertype, the IPv4 or IPv6 UDP packet) carrying `payload` from
    `source`:`sport` to `destination`:`dport` (of one IP version)."""
    length = UDP.size + len(payload)
    if source.version == 4:
        head = IPV4.pack(0x45, 0, IPV4.size + length, 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                         source.packed, destination.packed)
        # IPv4 lets UDP go without a checksum (0).
        return ETH_P_IP, head[:10] + checksum(head) + head[12:] + UDP.pack(sport, dport, length, 0) + payload
    pseudo = source.packed + destination.packed + struct.pack("!I3xB", length, socket.IPPROTO_UDP)
    total = checksum(pseudo + UDP.pack(sport, dport, length, 0) + payload)
    return ETH_P_IPV6, (IPV6.pack(6 << 28, length, socket.IPPROTO_UDP, 64, source.packed, destination.packed)
                        + UDP.pack(sport, dport, length, 0)[:6] + (total if total != b"\0\0" else b"\xff\xff")
                        + payload)


def _unmapped(address):
    return getattr(address, "ipv4_mapped", None) or address


# The namespace --------------------------------------------------------------

class Span:
    """A spanning socket: its inode and family, its port in the span
    namespace, its local address (None: any), and what a relay socket for
    a new stack takes: the options (Carrier.changed), the caller's
    credentials and routes (`defaults`).  `relays`: netns inode -> the
    relay socket on that stack."""
    __slots__ = ("inode", "family", "port", "local", "home", "changed", "creds", "defaults", "relays")

    def __init__(self, inode, family, port, local, home, changed, creds, defaults):
        self.inode, self.family, self.port, self.local = inode, family, port, local
        self.home, self.changed, self.creds, self.defaults = home, changed, creds, defaults
        self.relays = {}


class SpanNamespace:
    """The span namespace of a session and its relay thread.  `choose(span,
    (ip_address, port))` gives the stack a datagram goes to and its netns
    inode, or raises OSError; `carrier` gives relay sockets their options."""

    def __init__(self, choose, carrier, trace=None):
        self.choose, self.carrier, self.trace = choose, carrier, trace
        self.private = private_namespace("the span namespace")
        self.spans = {}                 # (family, port) -> Span
        self.lock = threading.Lock()
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC)
        self.links = None
        try:
            with self._socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
                _configure(nl)
            self.links = self._socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
            self.links.bind(("relay", ETH_P_ALL))
            self.links.setblocking(False)
        except BaseException:
            self.close()
            raise
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.selector.register(self.links, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._serve, name="vupy-span", daemon=True)
        self.thread.start()

    def _socket(self, family, type_, protocol=0, creds=None):
        return socket.socket(fileno=self.private.socket(family, type_ | socket.SOCK_CLOEXEC, protocol,
                                                        creds if creds is not None else own_creds()))

    def adopt(self, old, kind, here, local, peer, changed, creds, defaults):
        """A socket of the span namespace for the caller's UDP socket, of
        which `old` is our copy (in namespace `here`, bound to `local`, a
        getsockname() tuple, connected to `peer` or None): the options
        `changed` set on it, the same port, the same peer.  `old` stays
        the relay socket of its stack.  Returns the new socket's
        descriptor (ours); OSError if it cannot be made."""
        family = kind[0]
        # (read and written with MSG_DONTWAIT: the open file's flags are the
        # caller's until its descriptor is replaced)
        mine = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP, fileno=os.dup(old))
        try:
            if not local[1]:
                mine.bind((ANY[family], 0))     # its port now: the span's is the same
                local = mine.getsockname()
            address = ipaddress.ip_address(local[0].split("%")[0])
            new = self._socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP, creds)
            try:
                self.carrier.give(changed, new.fileno(), creds)
                if not address.is_unspecified:
                    self._add_address(_unmapped(address))
                try:
                    new.bind(local)
                except OSError as e:
                    if e.errno != errno.EADDRINUSE:
                        raise
                    new.bind((local[0], 0, *local[2:]))     # another spanning socket has the port
                if peer is not None:
                    new.connect(peer)
                span = Span(os.fstat(new.fileno()).st_ino, family, new.getsockname()[1],
                            None if address.is_unspecified else _unmapped(address), here, changed, creds,
                            defaults)
                span.relays[here] = mine
                with self.lock:
                    self.spans[family, span.port] = span
                    self.selector.register(mine, selectors.EVENT_READ, span)
            except BaseException:
                new.close()
                raise
        except BaseException:
            mine.close()
            raise
        return new.detach()

    def _add_address(self, address):
        with self._socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
            try:
                rtnetlink.add_address(nl, LINK, address, "the span namespace", flags=IFA_F_NODAD)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise

    # The relay thread ---------------------------------------------------------

    def _serve(self):
        sweep = time.monotonic() + SWEEP_SECONDS
        while True:
            for key, _ in self.selector.select(SWEEP_SECONDS):
                if key.fileobj == self.wake_r:
                    return
                if key.fileobj is self.links:
                    self._outgoing()
                else:
                    self._incoming(key.data, key.fileobj)
            if time.monotonic() >= sweep:
                self._sweep()
                sweep = time.monotonic() + SWEEP_SECONDS

    def _outgoing(self):
        """The packets the spanning sockets sent, each to its stack."""
        for _ in range(BATCH):
            try:
                data, (_name, _protocol, kind, _hatype, _mac) = self.links.recvfrom(MTU)
            except BlockingIOError:
                return
            found = datagram(data) if kind != PACKET_OUTGOING else None
            if found is None:
                continue
            src, dst, sport, dport, payload = found
            with self.lock:
                span = self.spans.get((socket.AF_INET6, sport)) if src.version == 6 else \
                    self.spans.get((socket.AF_INET, sport)) or self.spans.get((socket.AF_INET6, sport))
            if span is not None:
                self._relay(span, dst, dport, payload)

    def _relay(self, span, dst, dport, payload):
        where = (dst, dport)
        try:
            stack, netns, note = self.choose(span, where)
            relay = span.relays.get(netns)
            if relay is None:
                relay = self._new_relay(span, stack, netns)
                self._trace(span, f"{note}: relayed by a socket of its stack, port {relay.getsockname()[1]}")
            if span.family == socket.AF_INET6 and dst.version == 4:
                dst = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + dst.packed)
            relay.sendto(payload, socket.MSG_DONTWAIT, (str(dst), dport))
        except OSError as e:
            self._trace(span, f"[{dst}]:{dport}: datagram dropped: {e.strerror or e}")

    def _new_relay(self, span, stack, netns):
        """A relay socket of `stack` for `span`: its options, its port if
        it is free there."""
        family = span.family
        relay = socket.socket(fileno=stack.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
                                                  | socket.SOCK_CLOEXEC, socket.IPPROTO_UDP, span.creds))
        try:
            self.carrier.give(span.changed, relay.fileno(), span.creds)
            if sockcall(lib.VUPY_SOCKCALL_BIND, relay.fileno(),
                        sockaddr(family, (ANY[family], span.port, 0, 0)), span.creds) < 0:
                relay.bind((ANY[family], 0))
        except BaseException:
            relay.close()
            raise
        with self.lock:
            span.relays[netns] = relay
            self.selector.register(relay, selectors.EVENT_READ, span)
        return relay

    def _incoming(self, span, relay):
        """What `relay` received, to the spanning socket, from its sender."""
        for _ in range(BATCH):
            try:
                data, sender = relay.recvfrom(MTU, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                continue                # an ICMP error the socket reports: not passed on
            source = _unmapped(ipaddress.ip_address(sender[0].split("%")[0]))
            to = span.local or DUMMY[source.version]
            if to.version != source.version:
                continue
            ethertype, frame = packet(source, to, sender[1], span.port, data)
            try:
                self.links.sendto(frame, ("relay", ethertype, 0, 0, LINK_MAC))
            except OSError as e:
                self._trace(span, f"a datagram from {sender[0]} dropped: {e.strerror}")

    def _sweep(self):
        """The relays of spanning sockets the programs closed, closed."""
        with self.lock:
            if not self.spans:
                return
        try:
            live = self._udp_inodes()
        except OSError:
            return
        with self.lock:
            for key, span in list(self.spans.items()):
                if span.inode not in live:
                    del self.spans[key]
                    for relay in span.relays.values():
                        self.selector.unregister(relay)
                        relay.close()

    def _udp_inodes(self):
        """The inodes of the UDP sockets of the span namespace (sock_diag)."""
        inodes = set()
        with self._socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
            for family in (socket.AF_INET, socket.AF_INET6):
                body = INET_DIAG_REQ_V2.pack(family, socket.IPPROTO_UDP, 0, 0xFFFFFFFF, bytes(48))
                nl.send(rtnetlink.message(SOCK_DIAG_BY_FAMILY, rtnetlink.NLM_F_REQUEST | rtnetlink.NLM_F_DUMP,
                                          0, 0, body))
                while not _dumped(nl.recv(65536), inodes):
                    pass
        return inodes

    def _trace(self, span, text):
        if self.trace is not None:
            self.trace(f"span: datagram from port {span.port}: {text}")

    def close(self):
        os.write(self.wake_w, b"x")
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.join(timeout=2)
        for span in self.spans.values():
            for relay in span.relays.values():
                relay.close()
        self.spans.clear()
        if self.links is not None:
            self.links.close()
        self.selector.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.private.close()


def _dumped(data, inodes):
    """The inodes of a sock_diag dump's datagram `data` added to `inodes`;
    whether it ends the dump."""
    offset = 0
    while offset + rtnetlink.NLMSG.size <= len(data):
        length, kind = rtnetlink.NLMSG.unpack_from(data, offset)[:2]
        if kind in (rtnetlink.NLMSG_DONE, rtnetlink.NLMSG_ERROR) or length < rtnetlink.NLMSG.size:
            return True
        tail = offset + rtnetlink.NLMSG.size + INET_DIAG_MSG_HEAD.size + 48
        inodes.add(INET_DIAG_MSG_TAIL.unpack_from(data, tail)[4])
        offset += (length + 3) & ~3
    return False


def _configure(nl):
    """Set up the span namespace through its NETLINK_ROUTE socket `nl`."""

    def link(index, name, mac):
        return (rtnetlink.IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
                + rtnetlink.attribute(rtnetlink.IFLA_IFNAME, name + b"\0")
                + rtnetlink.attribute(rtnetlink.IFLA_MTU, struct.pack("=I", MTU))
                + rtnetlink.attribute(rtnetlink.IFLA_ADDRESS, mac))

    def nest(kind, *inner):
        return rtnetlink.attribute(kind | NLA_F_NESTED, b"".join(inner))

    def change(index, flags, mask, *attributes):
        rtnetlink.ask(nl, rtnetlink.RTM_NEWLINK, 0,
                      rtnetlink.IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, mask) + b"".join(attributes),
                      what)

    what = "the span namespace"
    rtnetlink.ask(nl, rtnetlink.RTM_NEWLINK, rtnetlink.NLM_F_CREATE | rtnetlink.NLM_F_EXCL,
                  link(LINK, b"span", LINK_MAC)
                  + nest(IFLA_LINKINFO, rtnetlink.attribute(IFLA_INFO_KIND, b"veth"),
                         nest(IFLA_INFO_DATA, nest(VETH_INFO_PEER, link(PEER, b"relay", PEER_MAC)))),
                  f"{what}: a veth pair")
    # lo down and without 127.0.0.1: loopback destinations leave by the
    # veth too, and answers from them are not taken for the namespace's own
    rtnetlink.ask(nl, rtnetlink.RTM_DELADDR, 0,
                  rtnetlink.IFADDRMSG.pack(socket.AF_INET, 8, 0, rtnetlink.RT_SCOPE_HOST, LOOPBACK)
                  + rtnetlink.attribute(rtnetlink.IFA_LOCAL, ipaddress.ip_address("127.0.0.1").packed), what)
    change(LOOPBACK, 0, rtnetlink.IFF_UP)
    change(PEER, rtnetlink.IFF_UP, rtnetlink.IFF_UP)
    change(LINK, rtnetlink.IFF_UP | IFF_NOARP, rtnetlink.IFF_UP | IFF_NOARP,
           nest(IFLA_AF_SPEC, nest(socket.AF_INET, nest(IFLA_INET_CONF, rtnetlink.attribute(
               IPV4_DEVCONF_ROUTE_LOCALNET, struct.pack("=I", 1))))))
    for version, address in DUMMY.items():
        rtnetlink.add_address(nl, LINK, address, what, flags=IFA_F_NODAD)
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        rtnetlink.ask(nl, rtnetlink.RTM_NEWROUTE, rtnetlink.NLM_F_CREATE | rtnetlink.NLM_F_EXCL,
                      rtnetlink.RTMSG.pack(family, 0, 0, 0, rtnetlink.RT_TABLE_MAIN, rtnetlink.RTPROT_BOOT,
                                           rtnetlink.RT_SCOPE_LINK if version == 4 else rtnetlink.RT_SCOPE_UNIVERSE,
                                           rtnetlink.RTN_UNICAST, 0)
                      + rtnetlink.attribute(rtnetlink.RTA_OIF, struct.pack("=I", LINK)),
                      f"{what}: the default route of IPv{version}")
