# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Per-datagram routes, the pure parts: the UDP packets of the span
namespace (vupy/_span.py) and the destinations a send gives
(vupy/_wire.send_addresses)."""
import errno
import ipaddress
import socket
import struct

import pytest

from vupy._wire import send_addresses
from vupy._span import ETH_P_IP, ETH_P_IPV6, checksum, datagram, packet

V4 = (ipaddress.ip_address("10.99.0.1"), ipaddress.ip_address("192.0.0.8"))
V6 = (ipaddress.ip_address("fd99::1"), ipaddress.ip_address("100::8"))


def test_checksum_is_rfc_1071s():
    # RFC 1071's example words sum to ddf2 (in network order): the checksum is its complement.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == struct.pack("!H", 0xFFFF - 0xDDF2)
    assert checksum(b"\x01") == struct.pack("!H", 0xFFFF - 0x0100)     # an odd byte, padded


@pytest.mark.parametrize("src, dst, ethertype", [(*V4, ETH_P_IP), (*V6, ETH_P_IPV6)])
@pytest.mark.parametrize("payload", [b"", b"ping", bytes(range(256)) * 5 + b"x"])
def test_a_packet_reads_back_and_its_checksums_hold(src, dst, ethertype, payload):
    kind, data = packet(src, dst, 53, 47124, payload)
    assert kind == ethertype
    assert datagram(data) == (src, dst, 53, 47124, payload)
    if src.version == 4:
        assert checksum(data[:20]) == b"\0\0"                   # the header's checksum holds
        assert data[26:28] == b"\0\0"                           # UDP without one, as IPv4 allows
    else:
        pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(payload) + 8, socket.IPPROTO_UDP)
        assert checksum(pseudo + data[40:]) == b"\0\0"


def test_what_is_not_a_whole_udp_packet_is_left():
    _kind, v4 = packet(*V4, 1, 2, b"data")
    assert datagram(v4[:9] + bytes([socket.IPPROTO_TCP]) + v4[10:]) is None      # TCP
    assert datagram(v4[:6] + b"\x20\x00" + v4[8:]) is None                        # a fragment
    assert datagram(v4[:-1]) is None                                              # cut short
    _kind, v6 = packet(*V6, 1, 2, b"data")
    assert datagram(v6[:6] + bytes([58]) + v6[7:]) is None                        # ICMPv6
    assert datagram(b"") is None and datagram(b"\x00" * 40) is None


class Memory:
    """A caller's memory: {address: bytes}."""

    def __init__(self, blocks):
        self.blocks = blocks

    def read(self, addr, size):
        for base, data in self.blocks.items():
            if base <= addr and addr + size <= base + len(data):
                return data[addr - base:addr - base + size]
        raise OSError(errno.EFAULT, "bad address")


SIN = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 53) + bytes([10, 99, 0, 1]) + bytes(8)


def test_sendto_gives_its_address():
    memory = Memory({0x1000: SIN})
    assert send_addresses("sendto", (3, 0x2000, 4, 0, 0x1000, 16), memory, False) == [SIN]
    assert send_addresses("sendto", (3, 0x2000, 4, 0, 0, 0), memory, False) == []
    with pytest.raises(OSError) as e:
        send_addresses("sendto", (3, 0x2000, 4, 0, 0x1000, 129), memory, False)
    assert e.value.errno == errno.EINVAL


def test_sendmsg_and_sendmmsg_give_their_messages_addresses_native_and_compat():
    # struct msghdr starts with msg_name and msg_namelen: 8+4 bytes on
    # x86-64 (an mmsghdr is 64 bytes), 4+4 on i386 and x32 (32).
    native = struct.pack("=QI", 0x1000, 16).ljust(64, b"\0") + struct.pack("=QI", 0, 0).ljust(64, b"\0") \
        + struct.pack("=QI", 0x1000, 16).ljust(64, b"\0")
    compat = struct.pack("=II", 0x1000, 16).ljust(32, b"\0") + struct.pack("=II", 0, 16).ljust(32, b"\0")
    for data, is_compat, found in ((native, False, 2), (compat, True, 1)):
        memory = Memory({0x1000: SIN, 0x3000: data})
        assert send_addresses("sendmsg", (3, 0x3000, 0), memory, is_compat) == [SIN]
        assert send_addresses("sendmmsg", (3, 0x3000, len(data) // (32 if is_compat else 64), 0),
                              memory, is_compat) == [SIN] * found
    assert send_addresses("sendmmsg", (3, 0x3000, 0, 0), Memory({}), False) == []
