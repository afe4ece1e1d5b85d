# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Unit tests of vupy's control call (vupy/_control.py): requests in,
replies out, against a real StackTable and ProcessTable and no session.
The caller's paths are resolved by unitstacks.caller_key."""
import errno
import os
import socket

import pytest

from unitstacks import MODULES, OWNER, CountedStack, caller_key, key
from vupy._control import Caller, encode, handle, may_manage, parse_request
from vupy._dispatch import Defaults
from vupy._procs import ProcessTable
from vupy import _stacks
from vupy._stacks import StackTable


INET, INET6 = socket.AF_INET, socket.AF_INET6
ME = os.getpid()            # a nested session's vupy: it must exist (pidfd_open)
OTHER = 1 << 23             # above any pid_max: a process the kernel does not know


class Session:
    """A session's tables: `host` the session default of inet and inet6,
    process ME in the session's scope."""

    def __init__(self):
        self.stacks = StackTable(OWNER)
        self.host = CountedStack()
        self.host.label = "host"
        self.stacks.keep(self.host)
        self.stacks.session.defaults = {INET: self.host, INET6: self.host}
        self.table = ProcessTable(exact=True)
        self.table.add(ME, Defaults(None, self.stacks.session))

    def ask(self, tgid=ME, **request):
        caller = Caller(tgid, self.table.defaults[tgid], caller_key)
        return handle(request, self.stacks, self.table, caller)

    def listing(self, tgid=ME):
        return {row["path"]: row for row in self.ask(tgid, op="list")["stacks"]}


@pytest.fixture
def session(monkeypatch):
    """A Session whose control calls also know the modules of unitstacks."""
    registered = _stacks.find_modules()
    monkeypatch.setattr(_stacks, "find_modules", lambda: {**registered, **MODULES})
    s = Session()
    yield s
    s.stacks.close()


def failed(reply, err):
    assert set(reply) == {"errno", "error"} and reply["errno"] == err, reply
    return reply["error"]


# The call itself -------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"{", b"\xff", b"[]", b'"op"', b"{}", b'{"op": 1}', b'{"op": null}'])
def test_not_a_request_is_einval(data):
    with pytest.raises(OSError) as e:
        parse_request(data)
    assert e.value.errno == errno.EINVAL


def test_request_is_a_json_object_with_an_op():
    assert parse_request(b'{"op": "list", "x": [1]}') == {"op": "list", "x": [1]}
    assert encode({"depth": 2}) == b'{"depth": 2}'


@pytest.mark.parametrize("euid, allowed", [(1000, True), (0, True), (1001, False), (65534, False)])
def test_mount_and_umount_are_for_the_owner_and_root(euid, allowed):
    assert may_manage(euid, OWNER[0]) is allowed


def test_unknown_operation_is_einval(session):
    assert "'frobnicate'" in failed(session.ask(op="frobnicate"), errno.EINVAL)


# mount and list ----------------------------------------------------------------

def test_mount_then_list(session):
    assert session.ask(op="mount", type="null", path="/d/n", options="mode=0600,gid=5") == {"path": "/d/n"}
    assert session.listing() == {"/d/n": {"path": "/d/n", "type": "null", "source": "", "options": "",
                                          "mode": 0o600, "uid": OWNER[0], "gid": 5, "users": 0,
                                          "detached": False}}


@pytest.mark.parametrize("request_, err, words", [
    ({"path": "/missing/n"}, errno.ENOENT, "directory /missing does not exist"),
    ({"path": "/exists/n"}, errno.EEXIST, "must not be a file's"),
    ({"path": "/d/n", "type": "nosuch"}, errno.ENODEV, "'nosuch'"),
    ({"path": "/d/n", "source": "x"}, errno.EINVAL, "null: takes no source"),
    ({"path": "/d/n", "options": "colour"}, errno.EINVAL, "'colour'"),
    ({"path": "/d/n", "options": "mode=8"}, errno.EINVAL, "mode=8"),
    ({"path": 7}, errno.EINVAL, "'path' must be a string"),
    ({"path": "/d/n", "type": None}, errno.EINVAL, "'type' must be a string"),
    ({"path": "/d/n", "options": ["mode=0600"]}, errno.EINVAL, "'options' must be a string"),
])
def test_mount_refused_changes_nothing(session, request_, err, words):
    request = {"type": "null", **request_}
    assert words in failed(session.ask(op="mount", **request), err)
    assert session.stacks.mounts() == []


def test_mount_on_a_taken_name_is_ebusy(session):
    session.ask(op="mount", type="null", path="/d/n")
    failed(session.ask(op="mount", type="null", path="/d/n"), errno.EBUSY)
    assert list(session.listing()) == ["/d/n"]


def test_list_counts_the_processes_that_use_a_stack(session):
    session.ask(op="mount", type="null", path="/d/n")
    stack = session.stacks.session.mounts[key("/d/n")].stack
    session.table.add(OTHER, Defaults({INET: stack}, session.stacks.session))
    session.table.add(OTHER + 1, Defaults({INET: stack, INET6: stack}, session.stacks.session))
    assert session.listing()["/d/n"]["users"] == 2


# umount --------------------------------------------------------------------------

def test_umount_of_an_unused_stack_frees_it(session):
    mount = session.stacks.mount(session.stacks.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    assert session.ask(op="umount", path="/d/a") == {"path": "/d/a"}
    assert session.listing() == {}
    assert mount.stack.closes == 1


def test_umount_of_what_is_not_mounted_is_einval(session):
    assert "not a mounted stack" in failed(session.ask(op="umount", path="/d/a"), errno.EINVAL)
    failed(session.ask(op="umount", path="/missing/a"), errno.ENOENT)


def test_umount_of_a_process_default_is_ebusy_unless_lazy(session):
    mount = session.stacks.mount(session.stacks.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    session.table.add(OTHER, Defaults({INET: mount.stack}, session.stacks.session))
    assert "by 1 process" in failed(session.ask(op="umount", path="/d/a"), errno.EBUSY)
    assert session.ask(op="umount", path="/d/a", lazy=True) == {"path": "/d/a"}
    assert session.listing()["/d/a"]["detached"] is True
    assert mount.stack.closes == 0


def test_umount_of_a_stack_with_open_sockets_is_ebusy(session):
    mount = session.stacks.mount(session.stacks.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    mount.stack.sockets = 2
    assert "by 2 open sockets" in failed(session.ask(op="umount", path="/d/a"), errno.EBUSY)
    assert session.listing()["/d/a"]["detached"] is False


def test_umount_of_a_session_default_is_ebusy_unless_lazy(session):
    mount = session.stacks.mount(session.stacks.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    session.stacks.session.defaults = {INET: mount.stack}
    assert "a session default" in failed(session.ask(op="umount", path="/d/a"), errno.EBUSY)
    session.ask(op="umount", path="/d/a", lazy=True)
    assert session.stacks.detached == [mount]


# defaults and depth ------------------------------------------------------------

def test_defaults_name_each_familys_stack_and_whether_the_session_gave_it(session):
    session.ask(op="mount", type="null", path="/d/n")
    stack = session.stacks.session.mounts[key("/d/n")].stack
    session.table.set(ME, Defaults({INET6: stack, socket.AF_UNIX: stack}, session.stacks.session))
    assert session.ask(op="defaults") == {"defaults": [["unix", "/d/n", False], ["inet", "host", True],
                                                       ["inet6", "/d/n", False]]}


def test_depth_of_the_session_is_1(session):
    assert session.ask(op="depth") == {"depth": 1}


# nest and end --------------------------------------------------------------------

def test_nest_makes_a_scope_for_the_caller_with_its_stacks_and_defaults(session):
    session.ask(op="mount", type="null", path="/d/outer")
    reply = session.ask(op="nest", stacks=[["/d/a", "counted"], ["/d/b", "null"]],
                        defaults=[[[int(INET6)], "/d/a", "inet6=/d/a"]])
    assert reply == {"depth": 2}
    assert session.ask(op="depth") == {"depth": 2}
    assert list(session.listing()) == ["/d/a", "/d/b", "/d/outer"]
    assert session.ask(op="defaults") == {"defaults": [["inet", "host", True], ["inet6", "/d/a", True]]}
    # the enclosing session's view is unchanged
    session.table.add(OTHER, Defaults(None, session.stacks.session))
    assert list(session.listing(OTHER)) == ["/d/outer"]


def test_a_nested_scope_cannot_umount_an_enclosing_ones_stack(session):
    session.ask(op="mount", type="null", path="/d/outer")
    session.ask(op="nest")
    assert "enclosing session" in failed(session.ask(op="umount", path="/d/outer"), errno.EINVAL)


@pytest.mark.parametrize("request_, words", [
    ({"stacks": [["/d/a"]]}, "'stacks' must be a list of [PATH, SPEC]"),
    ({"stacks": "x"}, "'stacks' must be"),
    ({"defaults": [["inet", "/d/a", "x"]]}, "'defaults' must be a list of [FAMILIES, PATH, TEXT]"),
    ({"defaults": [[[True], "/d/a", "x"]]}, "'defaults' must be"),
    ({"stacks": [["/d/a", "null"], ["/d/b", "nosuch"]]}, "'nosuch'"),
    ({"stacks": [["/d/a", "null"], ["/d/a", "null"]]}, "/d/a"),
    ({"defaults": [[None, "/d/x", "/d/x"]]}, "not a --stack PATH"),
])
def test_nest_refused_makes_nothing(session, request_, words):
    reply = session.ask(op="nest", **request_)
    assert words in reply.get("error", ""), reply
    assert session.stacks.nested == [] and session.stacks.mounts() == []
    assert session.table.defaults[ME].scope is session.stacks.session


def test_nest_refuses_userspace_when_the_session_does_not_trap_proxy_calls(session):
    session.stacks.serves_proxies = False
    failed(session.ask(op="nest", userspace=True), errno.EOPNOTSUPP)
    session.stacks.serves_proxies = True
    assert session.ask(op="nest", userspace=True) == {"depth": 2}


def test_nest_of_a_process_that_is_gone_is_its_errno(session):
    session.table.add(OTHER, Defaults(None, session.stacks.session))
    failed(session.ask(OTHER, op="nest"), errno.ESRCH)
    assert session.stacks.nested == []


def test_end_is_for_the_nested_sessions_vupy_only(session):
    session.ask(op="nest", stacks=[["/d/a", "counted"]])
    scope = session.table.defaults[ME].scope
    session.table.add(OTHER, Defaults(None, scope))
    assert "not the vupy" in failed(session.ask(OTHER, op="end"), errno.EINVAL)
    session.table.add(OTHER + 1, Defaults(None, session.stacks.session))
    assert "not the vupy" in failed(session.ask(OTHER + 1, op="end"), errno.EINVAL)
    assert session.stacks.nested == [scope]


def test_end_frees_the_nested_sessions_stacks_unless_in_use(session):
    session.ask(op="nest", stacks=[["/d/a", "counted"], ["/d/b", "counted"]])
    scope = session.table.defaults[ME].scope
    used, unused = scope.mounts[key("/d/a")], scope.mounts[key("/d/b")]
    session.table.add(OTHER, Defaults({INET: used.stack}, scope))
    assert session.ask(op="end") == {}
    assert session.stacks.nested == [] and scope.mounts == {}
    assert (used.stack.closes, unused.stack.closes) == (0, 1)
    assert session.stacks.detached == [used]


# Routes ----------------------------------------------------------------------

def test_route_adds_routes_for_the_caller_only_and_routes_lists_them(session):
    session.stacks.routes_connects = True
    session.ask(op="mount", type="counted", path="/d/a")
    session.ask(op="mount", type="counted", path="/d/b")
    session.table.add(OTHER, Defaults(None, session.stacks.session))
    assert session.ask(op="route", routes=[["10.0.0.0/8", "/d/a"], ["tcp:443", "/d/b"]]) == {}
    assert session.ask(op="route", routes=[["10.0.0.0/8", "/d/b"]]) == {}     # replaces
    assert session.ask(op="routes") == {"routes": [["tcp:443", "/d/b", False],
                                                   ["10.0.0.0/8", "/d/b", False]]}
    assert session.ask(OTHER, op="routes") == {"routes": []}


def test_routes_of_a_nested_session_follow_its_callers(session):
    session.stacks.routes_connects = True
    session.ask(op="mount", type="counted", path="/d/outer")
    session.ask(op="route", routes=[["fd00::/8", "/d/outer"]])
    assert session.ask(op="nest", stacks=[["/d/in", "counted"]],
                       routes=[["10.0.0.0/8", "/d/in"]]) == {"depth": 2}
    assert session.ask(op="routes") == {"routes": [["fd00::/8", "/d/outer", True],
                                                   ["10.0.0.0/8", "/d/in", True]]}


@pytest.mark.parametrize("routes, err, words", [
    ([["10.1.2.3/8", "/d/a"]], errno.EINVAL, "host bits set"),
    ([["10.0.0.0/8", "/d/none"]], errno.EINVAL, "/d/none is not a stack of this session"),
    ([["fd00::/8", "/d/u"]], errno.EINVAL, "/d/u serves neither inet6"),
    ([["10.0.0.0/8"]], errno.EINVAL, "'routes' must be a list of [RULE, PATH]"),
])
def test_route_refused_changes_nothing(session, routes, err, words):
    session.stacks.routes_connects = True
    session.ask(op="mount", type="counted", path="/d/a")
    session.ask(op="mount", type="userspace", path="/d/u")
    assert words in failed(session.ask(op="route", routes=routes), err)
    assert session.ask(op="routes") == {"routes": []}


def test_route_is_refused_where_connect_is_not_trapped_and_to_a_stack_the_caller_may_not_use(session):
    session.ask(op="mount", type="counted", path="/d/a")
    assert "does not trap connect" in failed(
        session.ask(op="route", routes=[["10.0.0.0/8", "/d/a"]]), errno.EOPNOTSUPP)
    assert "does not trap connect" in failed(
        session.ask(op="nest", routes=[["10.0.0.0/8", "/d/a"]]), errno.EOPNOTSUPP)
    session.stacks.routes_connects = True
    caller = Caller(ME, session.table.defaults[ME], caller_key, lambda mount: False)
    reply = handle({"op": "route", "routes": [["10.0.0.0/8", "/d/a"]]}, session.stacks,
                   session.table, caller)
    assert "permission denied" in failed(reply, errno.EACCES)
