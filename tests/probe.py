# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""A test program that calls msocket exactly as a C program built against
VUOS's header would: syscall(-5, path, domain, type, protocol), through
ctypes, with no vupy import (so that it runs under any python3, as any user).

    probe.py STEP [STEP...]

Steps, each printing one line:
    sock FAM TYPE[/PROTO]      socket(2)
    msock PATH FAM TYPE        msocket; PATH may be NULL
    default PATH FAM           msocket(PATH, FAM, SOCK_DEFAULT, 0)
    rawptr ADDR                msocket((char *)ADDR, AF_INET, SOCK_STREAM, 0)
    pageend TEXT               ... with TEXT, no NUL, ending at an unmapped page
    pageend0 TEXT              ... with TEXT and its NUL ending there
    control JSON               vupy's control call (-1000): prints the reply
A socket prints "ns:INODE" (the inode of its network namespace, from the
SIOCGSKNS ioctl, or "ok" where the caller may not ask) and is kept open; an
error prints its errno name (ENOENT, ...); SOCK_DEFAULT prints "0".
FAM: unix inet inet6 netlink packet unspec or a number; TYPE: stream dgram
raw or a number (0 is SOCK_DEFAULT, -1 the probe).
"""
import ctypes
import errno
import fcntl
import os
import socket
import sys

SIOCGSKNS = 0x894C
FAMILIES = {"unix": 1, "inet": 2, "inet6": 10, "netlink": 16, "packet": 17, "unspec": 0}
TYPES = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM, "raw": socket.SOCK_RAW}
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
PAGE = os.sysconf("SC_PAGE_SIZE")
kept = []


def number(table, word):
    return table[word] if word in table else int(word, 0)


def report(rc, is_socket=True):
    if rc < 0:
        return errno.errorcode[ctypes.get_errno()]
    if not is_socket:
        return str(rc)
    kept.append(rc)
    try:
        nsfd = fcntl.ioctl(rc, SIOCGSKNS)
    except OSError:
        return "ok"
    ino = os.fstat(nsfd).st_ino
    os.close(nsfd)
    return f"ns:{ino}"


def msocket(address, fam, typ):
    return libc.syscall(ctypes.c_long(-5), ctypes.c_void_p(address), ctypes.c_long(fam),
                        ctypes.c_long(typ), ctypes.c_long(0))


def at_page_end(data):
    """The address of `data` placed so that it ends where an unmapped page starts."""
    base = libc.mmap(None, 2 * PAGE, 3, 0x22, -1, 0)  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
    libc.munmap(base + PAGE, PAGE)
    address = base + PAGE - len(data)
    ctypes.memmove(address, data, len(data))
    return address


def main(args):
    while args:
        step = args.pop(0)
        if step == "sock":
            fam = number(FAMILIES, args.pop(0))
            typ, _, proto = args.pop(0).partition("/")
            print(report(libc.socket(fam, number(TYPES, typ), int(proto or 0))), flush=True)
        elif step in ("msock", "default"):
            path = args.pop(0)
            cpath = None if path == "NULL" else path.encode()
            fam = number(FAMILIES, args.pop(0))
            typ = 0 if step == "default" else number(TYPES, args.pop(0))
            rc = libc.syscall(ctypes.c_long(-5), ctypes.c_char_p(cpath), ctypes.c_long(fam),
                              ctypes.c_long(typ), ctypes.c_long(0))
            print(report(rc, is_socket=step == "msock"), flush=True)
        elif step == "control":
            request = args.pop(0).encode()
            reply = ctypes.create_string_buffer(65536)
            rc = libc.syscall(ctypes.c_long(-1000), ctypes.c_char_p(request),
                              ctypes.c_long(len(request)), reply, ctypes.c_long(len(reply)))
            print(reply.raw[:rc].decode() if rc >= 0 else report(rc), flush=True)
        elif step == "rawptr":
            print(report(msocket(int(args.pop(0), 0), 2, 1)), flush=True)
        elif step in ("pageend", "pageend0"):
            data = args.pop(0).encode() + (b"\0" if step == "pageend0" else b"")
            print(report(msocket(at_page_end(data), 2, 1)), flush=True)
        else:
            sys.exit(f"probe.py: unknown step {step!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
