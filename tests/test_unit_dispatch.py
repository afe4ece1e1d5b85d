# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Unit tests of the dispatcher's rules: pure decisions, no kernel."""
import errno
import itertools
import socket

import pytest

from vupy import _dispatch as d
from vupy._abi import I386, X32, X86_64
from vupy._stacks import Scope
from vupy.stack import ProxyStack

INET, INET6, UNIX, UNSPEC = socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, socket.AF_UNSPEC
STREAM = socket.SOCK_STREAM


class FakeStack:
    def __init__(self, families=(INET, INET6, socket.AF_NETLINK, socket.AF_PACKET)):
        self.families = frozenset(families)


class FakeProxyStack(ProxyStack):
    families = frozenset((INET, INET6))


A, B, HOST = FakeStack(), FakeStack(), FakeStack()
INET_ONLY = FakeStack((INET,))
USERSPACE = FakeProxyStack()
SESSION = Scope(defaults={f: HOST for f in HOST.families})
ROOT = d.Creds(0, 0, (), (1 << 41) - 1)
NOBODY = d.Creds(65534, 65534, (), 0)


def target(stack=A, uid=0, gid=0, mode=0o644, namespace_file=False):
    return d.Target(stack, uid, gid, mode, namespace_file)


def msock(path, domain=INET, type_=STREAM):
    return d.SocketRequest(domain, type_, 0, msocket=True, path=path)


def test_socket_goes_to_session_default_when_process_has_none():
    assert d.decide(d.SocketRequest(INET, STREAM, 0), d.Defaults(None, SESSION)) == d.Create(HOST, INET, STREAM, 0, False)


def test_socket_goes_to_process_default():
    defaults = d.Defaults({INET: A}, SESSION)
    assert d.decide(d.SocketRequest(INET, STREAM, 0), defaults).stack is A
    assert d.decide(d.SocketRequest(INET6, STREAM, 0), defaults).stack is HOST


def test_unrouted_family_is_left_to_the_callers_kernel():
    assert d.decide(d.SocketRequest(UNIX, STREAM, 0), d.Defaults(None, SESSION)) is d.NATIVE


def test_cloexec_becomes_a_descriptor_flag_nonblock_stays_in_type():
    call = d.SocketRequest(INET, STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK, 0)
    decision = d.decide(call, d.Defaults(None, SESSION))
    assert decision.type == STREAM | socket.SOCK_NONBLOCK
    assert decision.cloexec


@pytest.mark.parametrize("err", [errno.EFAULT, errno.ENAMETOOLONG])
def test_unreadable_path_fails_with_its_errno(err):
    assert d.decide(msock(err), d.Defaults(None, SESSION), None, ROOT) == d.Fail(err)


@pytest.mark.parametrize("err", [errno.ENOENT, errno.ENOTDIR, errno.ELOOP])
def test_path_resolution_errors_pass_through(err):
    assert d.decide(msock(b"/x"), d.Defaults(None, SESSION), err, ROOT) == d.Fail(err)


def test_path_that_is_not_a_stack_is_eopnotsupp():
    assert d.decide(msock(b"/etc/passwd"), d.Defaults(None, SESSION), None, ROOT) == d.Fail(errno.EOPNOTSUPP)


@pytest.mark.parametrize(
    "creds,uid,gid,mode,allowed",
    [
        (NOBODY, 0, 0, 0o644, True),
        (NOBODY, 0, 0, 0o640, False),
        (NOBODY, 0, 65534, 0o640, True),
        (d.Creds(65534, 1, (65534,), 0), 0, 65534, 0o640, True),
        (NOBODY, 65534, 0, 0o044, False),  # owner bits decide for the owner
        (NOBODY, 0, 0, 0o600, False),
        (ROOT, 0, 0, 0o000, True),          # CAP_DAC_OVERRIDE
    ],
)
def test_stack_read_permission(creds, uid, gid, mode, allowed):
    decision = d.decide(msock(b"/dev/net/a"), d.Defaults(None, SESSION), target(A, uid, gid, mode), creds)
    assert (decision == d.Fail(errno.EACCES)) != allowed


def test_namespace_file_needs_cap_sys_admin():
    t = target(A, mode=0o444, namespace_file=True)
    assert d.decide(msock(b"/run/netns/x"), d.Defaults(None, SESSION), t, NOBODY) == d.Fail(errno.EACCES)
    assert isinstance(d.decide(msock(b"/run/netns/x"), d.Defaults(None, SESSION), t, ROOT), d.Create)


def test_family_the_stack_does_not_serve_is_eafnosupport():
    assert d.decide(msock(b"/s", INET6), d.Defaults(None, SESSION), target(INET_ONLY), ROOT) == d.Fail(errno.EAFNOSUPPORT)


def test_sock_default_for_unserved_family_is_eafnosupport():
    call = msock(b"/s", INET6, d.SOCK_DEFAULT)
    assert d.decide(call, d.Defaults(None, SESSION), target(INET_ONLY), ROOT) == d.Fail(errno.EAFNOSUPPORT)


def test_probe_type_is_einval_on_served_family():
    assert d.decide(msock(b"/s", INET, -1), d.Defaults(None, SESSION), target(), ROOT) == d.Fail(errno.EINVAL)
    assert d.decide(msock(b"/s", UNIX, -1), d.Defaults(None, SESSION), target(), ROOT) == d.Fail(errno.EAFNOSUPPORT)


def test_sock_default_unspec_selects_every_served_family():
    decision = d.decide(msock(b"/s", UNSPEC, d.SOCK_DEFAULT), d.Defaults(None, SESSION), target(INET_ONLY), ROOT)
    assert decision == d.SetDefault((INET,), INET_ONLY)


def test_sock_default_with_null_path_restores_session_default():
    assert d.decide(msock(None, INET, d.SOCK_DEFAULT), d.Defaults({INET: A}, SESSION)) == d.SetDefault((INET,), None)
    assert d.decide(msock(None, UNSPEC, d.SOCK_DEFAULT), d.Defaults({INET: A}, SESSION)) == d.SetDefault(None, None)


def test_msocket_null_path_uses_process_default():
    assert d.decide(msock(None, INET), d.Defaults({INET: B}, SESSION)).stack is B


def test_defaults_are_copied_not_shared_on_change():
    parent = d.Defaults({INET: A}, SESSION)
    child = parent
    parent = parent.with_stack((INET,), B)
    assert child.get(INET) is A and parent.get(INET) is B
    assert parent.with_stack((INET,), None).get(INET) is None


def test_back_to_the_session_default_keeps_the_scope():
    inner = Scope(SESSION, {INET: B})
    defaults = d.Defaults({INET: A}, inner)
    assert defaults.cleared() == d.Defaults(None, inner)
    assert d.decide(d.SocketRequest(INET, STREAM, 0), defaults.cleared()).stack is B
    assert d.decide(d.SocketRequest(INET6, STREAM, 0), defaults.cleared()) is d.NATIVE


def test_a_nested_scope_sees_its_names_first_then_the_enclosing_ones():
    outer = Scope()
    outer.mounts[(1, 2, b"a")] = "outer a"
    outer.mounts[(1, 2, b"b")] = "outer b"
    inner = Scope(outer)
    inner.mounts[(1, 2, b"a")] = "inner a"
    assert (inner.lookup((1, 2, b"a")), inner.lookup((1, 2, b"b"))) == ("inner a", "outer b")
    assert outer.lookup((1, 2, b"a")) == "outer a" and inner.lookup((1, 2, b"c")) is None
    assert sorted(inner.visible()) == ["inner a", "outer b"]
    assert (outer.depth, inner.depth, Scope(inner).depth) == (1, 2, 3)


def test_errno_table_names_every_errno_decide_returns():
    """decide over a systematic set of calls: every errno it returns is
    one of the table's codes, or named in a row's text (ENOTDIR and ELOOP,
    from a path's resolution, as for stat(2))."""
    named = {err for err, text in d.MSOCKET_ERRORS} | {
        e for e, name in errno.errorcode.items() if any(name in text for _, text in d.MSOCKET_ERRORS)}
    stacks = (A, INET_ONLY, USERSPACE)
    paths = (None, b"/dev/net/a", errno.EFAULT, errno.ENAMETOOLONG)
    targets = [None, errno.ENOENT, errno.ENOTDIR, errno.ELOOP] + [
        target(stack, uid, 0, mode, ns) for stack in stacks for uid in (0, 65534)
        for mode in (0o600, 0o644) for ns in (False, True)]
    defaults = [d.Defaults(None, SESSION)] + [d.Defaults({INET: stack}, SESSION) for stack in stacks]
    returned = set()
    for path, tgt, creds, domain, type_, msocket, abi, dflt in itertools.product(
            paths, targets, (ROOT, NOBODY), (INET, INET6, UNIX, UNSPEC, socket.AF_PACKET),
            (STREAM, STREAM | socket.SOCK_CLOEXEC, d.SOCK_DEFAULT, d.SOCK_PROBE),
            (False, True), (X86_64, I386, X32), defaults):
        if path is not None and not msocket:
            continue                    # socket(2) has no path
        request = d.SocketRequest(domain, type_, 0, msocket=msocket, path=path, abi=abi)
        decision = d.decide(request, dflt, tgt if isinstance(path, bytes) else None, creds)
        if isinstance(decision, d.Fail):
            returned.add(decision.errno)
    assert returned <= named, {errno.errorcode[e] for e in returned - named}
    assert {errno.EFAULT, errno.ENAMETOOLONG, errno.ENOENT, errno.EOPNOTSUPP, errno.EACCES,
            errno.EAFNOSUPPORT, errno.EINVAL} <= returned


@pytest.mark.parametrize("abi", [I386, X32])
def test_userspace_stack_refuses_i386_and_x32_callers(abi):
    """Calls on proxies are trapped for x86_64 code only: other code gets
    no proxy (EAFNOSUPPORT), but may make it its default."""
    dflt = d.Defaults({INET: USERSPACE}, SESSION)
    assert d.decide(d.SocketRequest(INET, STREAM, 0, abi=abi), dflt) == d.Fail(errno.EAFNOSUPPORT)
    assert d.decide(d.SocketRequest(INET, STREAM, 0, msocket=True, path=b"/u", abi=abi),
                    dflt, target(USERSPACE), ROOT) == d.Fail(errno.EAFNOSUPPORT)
    assert isinstance(d.decide(d.SocketRequest(INET, STREAM, 0), dflt), d.Create)
    assert d.decide(d.SocketRequest(INET, d.SOCK_DEFAULT, 0, msocket=True, path=b"/u", abi=abi),
                    dflt, target(USERSPACE), ROOT) == d.SetDefault((INET,), USERSPACE)


def test_errno_table_in_the_man_page_is_the_codes():
    import os
    page = os.path.join(os.path.dirname(__file__), "..", "docs", "msocket.2.md")
    rows = [line for line in open(page) if line.startswith("| `E")]
    assert rows == [f"| `{errno.errorcode[e] if e != errno.EOPNOTSUPP else 'EOPNOTSUPP'}` | {text} |\n"
                    for e, text in d.MSOCKET_ERRORS]
