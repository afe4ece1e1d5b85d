# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vupy/_resolver.py's pure parts: hosts files and the answers made from
them, and resolv.conf's nameservers (vupy/helpers.py)."""
import ipaddress
import struct

from vupy._resolver import answer_from_hosts, parse_hosts, server_failure
from vupy.helpers import resolv_conf


def query(name, qtype=1, ident=0x1234, flags=0x0100):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)


def test_hosts_and_resolv_conf_are_read_as_the_c_library_reads_them(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# comment\n10.9.9.9 Only-B.example alias  # trailing\nfd00::9 only-b.example.\n"
                     "not-an-address x\n\n")
    assert parse_hosts(hosts) == {"only-b.example": [ipaddress.ip_address("10.9.9.9"),
                                                     ipaddress.ip_address("fd00::9")],
                                  "alias": [ipaddress.ip_address("10.9.9.9")]}
    assert parse_hosts(tmp_path / "none") == {}
    conf = tmp_path / "resolv.conf"
    conf.write_text("search corp\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver bad\n")
    assert resolv_conf(conf)[0] == (ipaddress.ip_address("10.0.0.53"), ipaddress.ip_address("fe80::1"))
    assert resolv_conf(tmp_path / "none")[0] == ()


def test_an_a_and_an_aaaa_question_are_answered_from_the_hosts_file():
    hosts = {"only-b.example": [ipaddress.ip_address("10.9.9.9"), ipaddress.ip_address("fd00::9")]}
    reply = answer_from_hosts(query("Only-B.Example"), hosts)
    ident, flags, qd, an = struct.unpack_from("!HHHH", reply)
    assert (ident, flags, qd, an) == (0x1234, 0x8180 | 0x0100, 1, 1)
    assert reply.endswith(struct.pack("!HHHIH", 0xC00C, 1, 1, 0, 4) + bytes([10, 9, 9, 9]))
    reply6 = answer_from_hosts(query("only-b.example", qtype=28), hosts)
    assert reply6.endswith(ipaddress.ip_address("fd00::9").packed)
    assert answer_from_hosts(query("elsewhere.example"), hosts) is None
    assert answer_from_hosts(query("only-b.example", qtype=15), hosts) is None    # MX: asked on
    assert answer_from_hosts(query("only-b.example", flags=0x8100), hosts) is None  # a reply
    assert answer_from_hosts(b"\0" * 5, hosts) is None


def test_a_question_no_nameserver_answers_gets_servfail():
    ident, flags, qd = struct.unpack_from("!HHH", server_failure(query("x.example")))
    assert (ident, flags & 0xF, flags & 0x8000, qd) == (0x1234, 2, 0x8000, 0)
    assert server_failure(b"\1") is None


def test_a_replys_addresses_and_ttls_are_found_through_cnames_and_compression():
    from vupy._resolver import addresses_in, question
    q = query("www.corp.example")
    assert question(q)[:3] == ("www.corp.example", 1, 1)
    # the question, a CNAME to a name partly compressed, and its A record
    target = b"\x04real" + b"\xc0\x10"                  # "real" + pointer to "corp.example"
    answers = (struct.pack("!HHHIH", 0xC00C, 5, 1, 60, len(target)) + target
               + struct.pack("!HHHIH", 0xC000 | (12 + len(q) - 12 + 12), 1, 1, 30, 4) + bytes([10, 2, 0, 1]))
    reply = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 2, 0, 0) + q[12:] + answers
    assert addresses_in(reply) == [(ipaddress.ip_address("10.2.0.1"), 30)]
    assert addresses_in(reply[:40]) == []
    assert question(reply) is None                      # a reply is not a question


def test_search_domains_are_read_and_tried_as_the_c_library_would(tmp_path):
    from vupy._resolver import searched
    conf = tmp_path / "resolv.conf"
    conf.write_text("domain old.example\nsearch Corp.Example. lab.example\nnameserver 10.0.0.53\n")
    assert resolv_conf(conf)[1] == ("corp.example", "lab.example")     # the last line wins
    assert resolv_conf(tmp_path / "none")[1] == ()
    stack = ("corp.example", "lab.example")
    assert searched("wiki", (), stack) == ("wiki.corp.example", "wiki.lab.example")
    assert searched("wiki.host.example", ("host.example",), stack) == ("wiki.corp.example",
                                                                        "wiki.lab.example")
    assert searched("wiki.corp.example", ("corp.example",), stack) == ("wiki.lab.example",)
    assert searched("www.other.example", ("host.example",), stack) == ()   # asked as it is only
    assert searched("wiki", (), ()) == ()


def test_a_search_domains_answer_is_given_as_an_alias_of_the_name_asked():
    from vupy._resolver import _name, addresses_in, aliased, question, renamed
    q = query("wiki", ident=0x4321) + b"\0\0\x29\x10\0\0\0\0\0\0\0"     # with an EDNS record after
    asked = renamed(q, "wiki.corp.example")
    assert question(asked)[:3] == ("wiki.corp.example", 1, 1) and asked.endswith(q[-11:])
    found = struct.pack("!HHHHHH", 0x4321, 0x8180, 1, 1, 0, 0) + asked[12:asked.index(b"\0\0\x29")] \
        + struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + bytes([10, 2, 0, 1])
    reply = aliased(q, "wiki.corp.example", found)
    ident, flags, qd, an = struct.unpack_from("!HHHH", reply)
    assert (ident, flags, qd, an) == (0x4321, 0x8180 | 0x0100, 1, 2)
    assert _name(reply, 12)[0] == "wiki"                   # the question the program asked
    assert addresses_in(reply) == [(ipaddress.ip_address("10.2.0.1"), 300)]
    assert b"\x04wiki\x04corp\x07example\x00" in reply      # the CNAME's target
