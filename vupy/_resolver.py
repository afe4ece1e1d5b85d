# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Each stack's own name resolution.

A program resolves names by asking the nameservers of /etc/resolv.conf,
the host's, over UDP or TCP port 53.  For a stack with nameservers or a
hosts file of its own (the `dns=`, `search=` and `hosts=` options of any stack; a
`netns:NAME` stack's /etc/netns/NAME files, as `ip netns exec` takes
them), and for a process with name routes (vupy/routes.py), the router
(vupy/_router.py) moves a socket of that stack that connects to port 53
of a host nameserver into this module's *resolver namespace* for the
stack: a network namespace of vupy's own whose loopback holds the host
nameservers' addresses, where a forwarder listens on them.  The program
talks to the address it read in /etc/resolv.conf and gets the answers from
it (glibc drops a reply whose source is not the nameserver it asked), and
the forwarder asks the stack's nameservers with sockets of the stack: no
query is sent to the host's resolver on the stack's behalf.  A name in the
stack's hosts file (/etc/netns/NAME/hosts, or `hosts=FILE`) is answered
from it for A and AAAA questions.  A name of a process's name route is
answered by the route's stack instead (its hosts file, its nameservers),
and the addresses found are told to the router, which routes connections
to them.

A name with no answer that the program asked bare, or below one of the
host's search domains, is looked up below the stack's search domains
(`search=`) and answered as an alias of the first found.

A query sent without connecting (musl's resolver: sendto) reaches the
resolver namespace as a datagram of a spanning socket (vupy/_span.py),
whose relay socket there sends it to the forwarder.  Limits, in
docs/routing.md: programs that ask a local daemon over AF_UNIX
(nss-resolve) are not served.
"""
import ipaddress
import os
import selectors
import socket
import struct
import threading

from . import _native, rtnetlink
from .helpers import own_creds, private_namespace

DNS_PORT = 53
UPSTREAM_SECONDS = 5            # for an answer from the stack's nameserver, per try
MAX_QUERIES = 64                # relayed at once; more are dropped (the program asks again)
HEADER = struct.Struct("!HHHHHH")   # id flags qdcount ancount nscount arcount
TYPE_A, TYPE_CNAME, TYPE_AAAA, CLASS_IN = 1, 5, 28, 1
LOOPBACK_INDEX = 1              # lo's, in a new namespace


def parse_hosts(path):
    """{lower-case name without a final dot: [ip_address, ...]} of a hosts
    file; {} if there is none."""
    names = {}
    try:
        with open(path) as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if len(words) < 2:
                    continue
                try:
                    address = ipaddress.ip_address(words[0])
                except ValueError:
                    continue
                for name in words[1:]:
                    names.setdefault(name.lower().rstrip("."), []).append(address)
    except OSError:
        return {}
    return names


def question(query):
    """(name, type, class, offset after the question) of a DNS query with
    one question (the name lower case, without a final dot); None for
    anything else."""
    if len(query) < HEADER.size + 5:
        return None
    flags, qdcount = HEADER.unpack_from(query)[1:3]
    if qdcount != 1 or flags & 0x8000 or (flags >> 11) & 0xF:
        return None
    name, offset = _name(query, HEADER.size)
    if name is None or offset + 4 > len(query):
        return None
    qtype, qclass = struct.unpack_from("!HH", query, offset)
    return name, qtype, qclass, offset + 4


def _name(message, offset, hops=16):
    """(the name at `offset` of a DNS message, lower case, following
    compression pointers; the offset after it where it stands), or
    (None, None) if malformed."""
    labels, end = [], None
    while hops and offset < len(message):
        length = message[offset]
        if length & 0xC0 == 0xC0:               # a pointer
            if offset + 2 > len(message):
                return None, None
            end = offset + 2 if end is None else end
            offset, hops = struct.unpack_from("!H", message, offset)[0] & 0x3FFF, hops - 1
        elif length & 0xC0 or offset + 1 + length > len(message):
            return None, None
        elif length == 0:
            return ".".join(labels), offset + 1 if end is None else end
        else:
            labels.append(message[offset + 1:offset + 1 + length].decode("ascii", "replace").lower())
            offset += 1 + length
    return None, None


def addresses_in(reply):
    """[(ip_address, TTL in seconds)] of the A and AAAA records in the
    answer section of a DNS reply (the question's name and the names its
    CNAMEs lead to alike); [] if malformed."""
    if len(reply) < HEADER.size:
        return []
    qdcount, ancount = HEADER.unpack_from(reply)[2:4]
    offset, found = HEADER.size, []
    for _ in range(qdcount):
        _n, offset = _name(reply, offset)
        if offset is None:
            return []
        offset += 4
    for _ in range(ancount):
        _n, offset = _name(reply, offset)
        if offset is None or offset + 10 > len(reply):
            return found
        rtype, rclass, ttl, length = struct.unpack_from("!HHIH", reply, offset)
        data = reply[offset + 10:offset + 10 + length]
        offset += 10 + length
        if rclass == CLASS_IN and (rtype, len(data)) in ((TYPE_A, 4), (TYPE_AAAA, 16)):
            found.append((ipaddress.ip_address(data), ttl))
    return found


def hosts_of(stack):
    """parse_hosts of `stack`'s hosts file, read afresh ({} if it has none)."""
    return parse_hosts(stack.hosts) if stack.hosts else {}


def answer_from_hosts(query, hosts):
    """The reply to a DNS `query` from `hosts` (parse_hosts), or None if
    the question is not an A or AAAA one for a name there."""
    asked = question(query)
    if asked is None:
        return None
    name, qtype, qclass, end = asked
    addresses = hosts.get(name)
    if addresses is None or qclass != CLASS_IN or qtype not in (TYPE_A, TYPE_AAAA):
        return None
    ident, flags = HEADER.unpack_from(query)[:2]
    version = 4 if qtype == TYPE_A else 6
    records = [a for a in addresses if a.version == version]
    question_ = query[HEADER.size:end]
    out = HEADER.pack(ident, 0x8180 | (flags & 0x0100), 1, len(records), 0, 0) + question_
    for address in records:     # the name by a pointer to the question's
        out += struct.pack("!HHHIH", 0xC00C, qtype, CLASS_IN, 0, len(address.packed)) + address.packed
    return out


def answered(reply):
    """Whether a DNS reply has answers."""
    return bool(reply) and len(reply) >= HEADER.size and HEADER.unpack_from(reply)[3] > 0


def searched(name, host_search, search):
    """The names to look `name` up as below the stack's `search` domains:
    a bare name (no dot), or one below one of the host's search domains
    (`host_search`: the program tried it there first), under each of
    them; () for any other name."""
    base = next((name[:-len(d) - 1] for d in host_search if name.endswith("." + d)), None)
    if base is None and "." not in name:
        base = name
    return tuple(f"{base}.{d}" for d in search if base and f"{base}.{d}" != name)


def encoded(name):
    """A name in a DNS message's form: its labels, each after its length."""
    return b"".join(bytes([len(p)]) + p for p in name.encode("ascii").split(b".") if p) + b"\0"


def renamed(query, name):
    """`query` asking the same about `name` instead."""
    _asked, qtype, qclass, end = question(query)
    return query[:HEADER.size] + encoded(name) + struct.pack("!HH", qtype, qclass) + query[end:]


def aliased(query, name, found):
    """The reply to `query` from `found`, the reply for `name` (a search
    domain's): its name an alias (CNAME) of `name`, whose A and AAAA
    records follow."""
    ident, flags = HEADER.unpack_from(query)[:2]
    _asked, qtype, _qclass, end = question(query)
    records = [(a, ttl) for a, ttl in addresses_in(found) if a.version == (4 if qtype == TYPE_A else 6)]
    target, ttl = encoded(name), min((t for _a, t in records), default=0)
    out = HEADER.pack(ident, 0x8180 | (flags & 0x0100), 1, 1 + len(records), 0, 0) + query[HEADER.size:end]
    at = len(out) + 12                  # where the CNAME's target name will be
    out += struct.pack("!HHHIH", 0xC00C, TYPE_CNAME, CLASS_IN, ttl, len(target)) + target
    for address, ttl in records:
        out += struct.pack("!HHHIH", 0xC000 | at, qtype, CLASS_IN, ttl, len(address.packed)) + address.packed
    return out


def server_failure(query):
    """SERVFAIL for `query` (no nameserver answered), so that the program
    need not wait for its own timeout; None for what is not a query."""
    if len(query) < HEADER.size:
        return None
    ident, flags = HEADER.unpack_from(query)[:2]
    if flags & 0x8000:
        return None
    return HEADER.pack(ident, 0x8182 | (flags & 0x0100), 0, 0, 0, 0)


class Resolver:
    """The resolver namespace of one stack, and its forwarder thread."""

    def __init__(self, stack, host_servers, host_search, creds, name_routes=(), learn=None):
        """For `stack`: its hosts file, then its nameservers (none: the
        host's, `host_servers`, asked through the stack as `ip netns exec`
        would), below its search domains too for a name asked bare or
        below one of `host_search`, the host's.  `name_routes`: routes
        with name rules (vupy/routes.py), whose names are answered by
        their route's stack instead (its hosts file, its nameservers), and
        `learn(route, [(address, ttl)])` told the addresses found."""
        self.stack, self.host_servers, self.host_search = stack, host_servers, host_search
        self.creds, self.name_routes, self.learn = creds, name_routes, learn
        self.slots = threading.BoundedSemaphore(MAX_QUERIES)
        self.private = private_namespace("the resolver namespace")
        self.listeners = []
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC)
        try:
            self._add_addresses(host_servers)
            for address in host_servers:
                self._listen(address)
        except BaseException:
            self.close()
            raise
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._serve, name="vupy-dns", daemon=True)
        self.thread.start()

    def _socket(self, stack, family, type_):
        return socket.socket(fileno=stack.socket(family, type_, 0, self.creds))

    def _add_addresses(self, addresses):
        """The host nameservers' addresses on the resolver namespace's lo."""
        with self._socket(self.private, socket.AF_NETLINK, socket.SOCK_RAW) as nl:
            for address in addresses:
                rtnetlink.add_address(nl, LOOPBACK_INDEX, address, "the resolver namespace",
                                      rtnetlink.RT_SCOPE_HOST)

    def _listen(self, address):
        for type_ in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = self._socket(self.private, _family(address), type_)
            self.listeners.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((str(address), DNS_PORT))
            if type_ == socket.SOCK_STREAM:
                s.listen(64)
            s.setblocking(False)
            self.selector.register(s, selectors.EVENT_READ)

    # The forwarder -------------------------------------------------------------

    def _serve(self):
        while True:
            for key, _ in self.selector.select():
                if key.fileobj == self.wake_r:
                    return
                listener = key.fileobj
                try:
                    if listener.type == socket.SOCK_DGRAM:
                        query, client = listener.recvfrom(65535)
                        worker = (self._datagram, (listener, query, client))
                    else:
                        connection, _ = listener.accept()
                        worker = (self._stream, (connection,))
                except OSError:
                    continue
                if not self.slots.acquire(blocking=False):
                    if listener.type == socket.SOCK_STREAM:
                        worker[1][0].close()
                    continue                    # too many at once: dropped, as a busy server would
                threading.Thread(target=self._run, args=worker, daemon=True).start()

    def _run(self, work, args):
        try:
            work(*args)
        finally:
            self.slots.release()

    def _datagram(self, listener, query, client):
        reply = self._answer(query, socket.SOCK_DGRAM)
        if reply:
            try:
                listener.sendto(reply, client)
            except OSError:
                pass

    def _stream(self, connection):
        with connection:
            connection.settimeout(UPSTREAM_SECONDS)
            try:
                while True:
                    query = _read_framed(connection)
                    if query is None:
                        return
                    reply = self._answer(query, socket.SOCK_STREAM)
                    if not reply:
                        return
                    connection.sendall(_framed(reply))
            except OSError:
                return

    def _answer(self, query, type_):
        """The reply to `query`: a name of a name route's asked through its
        stack (its addresses learnt), else from the hosts file or the
        stack's nameservers; SERVFAIL if none answers."""
        asked = question(query)
        route = next((r for r in self.name_routes if asked and r.rule.matches_name(asked[0])), None)
        stack = self.stack if route is None else route.stack
        reply = self._look_up(query, type_, stack)
        if asked and not answered(reply):
            for name in searched(asked[0], self.host_search, stack.search):
                found = self._look_up(renamed(query, name), type_, stack)
                if answered(found):
                    reply = aliased(query, name, found)
                    break
        if route is not None and reply and self.learn is not None:
            self.learn(route, addresses_in(reply))
        return reply or server_failure(query)

    def _look_up(self, query, type_, stack):
        """`stack`'s answer to `query`: its hosts file's, else its
        nameservers' (None if none answers)."""
        return answer_from_hosts(query, hosts_of(stack)) or self._ask(query, type_, stack)

    def _ask(self, query, type_, stack):
        """The answer to `query` of `stack`'s nameservers (or the host's),
        each tried in turn, with a socket of the stack; None if none
        answers."""
        for server in stack.nameservers or self.host_servers:
            try:
                with self._socket(stack, _family(server), type_) as s:
                    s.settimeout(UPSTREAM_SECONDS)
                    s.connect((str(server), DNS_PORT))
                    if type_ == socket.SOCK_DGRAM:
                        s.send(query)
                        return s.recv(65535)
                    s.sendall(_framed(query))
                    return _read_framed(s)
            except OSError:
                continue
        return None

    def close(self):
        os.write(self.wake_w, b"x")
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.join(timeout=2)
        for s in self.listeners:
            s.close()
        self.selector.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.private.close()


def _family(address):
    """AF_INET or AF_INET6, for an ipaddress address."""
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _framed(message):
    """A DNS message as TCP carries it: its length first."""
    return struct.pack("!H", len(message)) + message


def _read_framed(s):
    """One length-prefixed DNS message from stream `s`; None at its end."""
    head = _read_exactly(s, 2)
    return None if head is None else _read_exactly(s, struct.unpack("!H", head)[0])


def _read_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data
