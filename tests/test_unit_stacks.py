# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Unit tests of vupy/_stacks.py: SPEC and option parsing, and the table of
mounted stacks (mount, unmount, nested scopes, close).  No kernel, no
session; `pytest -m unit` runs them with the other unit tests."""
import errno
import os
import socket

import pytest

from unitstacks import MODULES, OWNER, CountedStack, UserspaceModule, key, pidfd
from vupy._stacks import (DEFAULT_MODE, MountError, Scope, StackTable, apply_defaults, file_attributes,
                          name_key, parse_options, parse_spec)


INET, INET6 = socket.AF_INET, socket.AF_INET6


def refused(err, call, *args):
    with pytest.raises(MountError) as e:
        call(*args)
    assert e.value.errno == err
    return str(e.value)


# SPEC and options -----------------------------------------------------------

@pytest.mark.parametrize("spec, parsed", [
    ("null", ("null", "", {})),
    ("netns:new", ("netns", "new", {})),
    ("netns:/run/netns/a", ("netns", "/run/netns/a", {})),
    ("lwip:vde:///tmp/sw,ip=10.0.0.2/24", ("lwip", "vde:///tmp/sw", {"ip": "10.0.0.2/24"})),
    ("null,mode=0640,uid=7", ("null", "", {"mode": "0640", "uid": "7"})),
    ("m:s,,k=v,", ("m", "s", {"k": "v"})),                   # empty items are skipped
    ("m:s,k=a=b", ("m", "s", {"k": "a=b"})),                 # the first = splits
    ("m:s,k=1,k=2", ("m", "s", {"k": "2"})),                 # the last one counts
    ("m,k=", ("m", "", {"k": ""})),
])
def test_spec_is_module_source_and_options(spec, parsed):
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize("spec, named", [(":x", ":x"), ("", "''"), (",k=v", ",k=v")])
def test_spec_without_module_name_is_einval(spec, named):
    assert named in refused(errno.EINVAL, parse_spec, spec)


@pytest.mark.parametrize("text, item", [("colour", "colour"), ("k=v,colour", "colour"), ("=v", "=v")])
def test_option_not_key_value_is_einval_naming_it(text, item):
    message = refused(errno.EINVAL, parse_options, text, "-o")
    assert repr(item) in message and "'-o'" in message


def test_file_attributes_default_to_mode_644_and_the_owner():
    assert file_attributes({"ip": "x"}, OWNER) == (DEFAULT_MODE, *OWNER, {"ip": "x"})


def test_file_attributes_are_split_off_the_modules_options():
    options = {"mode": "0640", "uid": "0", "gid": "4294967294", "ip": "x"}
    assert file_attributes(options, OWNER) == (0o640, 0, 2**32 - 2, {"ip": "x"})
    assert options["mode"] == "0640"            # the caller's dict is left alone


@pytest.mark.parametrize("key, value", [
    ("mode", "0o640"), ("mode", "8"), ("mode", "17777"), ("mode", ""), ("mode", "-1"), ("mode", "rw"),
    ("uid", "4294967295"), ("uid", "-1"), ("uid", "0x10"), ("uid", ""), ("uid", " 1"),
    ("gid", "4294967295"), ("gid", "users"),
])
def test_bad_file_attribute_is_einval_naming_it(key, value):
    assert f"{key}={value}:" in refused(errno.EINVAL, file_attributes, {key: value}, OWNER)


def test_mode_7777_is_the_largest():
    assert file_attributes({"mode": "7777"}, OWNER)[0] == 0o7777


@pytest.mark.parametrize("err", [errno.ENOENT, errno.EEXIST, errno.EINVAL, errno.EACCES])
def test_name_key_turns_an_errno_into_a_mount_error(err):
    message = refused(err, name_key, err, "/d/n")
    assert message.startswith("/d/n: ")


def test_name_key_passes_a_key():
    assert name_key(key("/d/n"), "/d/n") == key("/d/n")


# --default ---------------------------------------------------------------------

@pytest.fixture
def table():
    stacks = StackTable(OWNER)
    yield stacks
    stacks.close()


def test_default_without_families_takes_every_family_of_the_stack(table):
    a = table.mount(table.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES).stack
    host = object()
    defaults = apply_defaults({INET: host, socket.AF_UNIX: host}, table.session, key,
                              [(None, "/d/a", "/d/a")])
    assert defaults == {INET: a, INET6: a, socket.AF_UNIX: host}


def test_defaults_apply_in_order(table):
    a = table.mount(table.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES).stack
    b = table.mount(table.session, "/d/b", key("/d/b"), "counted", "", {}, MODULES).stack
    defaults = apply_defaults({}, table.session, key, [(None, "/d/a", "/d/a"),
                                                       ((INET6,), "/d/b", "inet6=/d/b")])
    assert defaults == {INET: a, INET6: b}


def test_default_must_name_a_stack_of_the_scope(table):
    outer = table.mount(table.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    inner = Scope(parent=table.session)
    assert outer is inner.lookup(key("/d/a"))        # seen, but not this command line's
    message = refused(errno.EINVAL, apply_defaults, {}, inner, key, [(None, "/d/a", "/d/a")])
    assert "'/d/a'" in message and "not a --stack PATH" in message


def test_default_for_a_family_the_stack_does_not_serve_is_einval(table):
    table.mount(table.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    message = refused(errno.EINVAL, apply_defaults, {}, table.session, key,
                      [((socket.AF_UNIX,), "/d/a", "unix=/d/a")])
    assert "does not serve unix" in message


# The table ---------------------------------------------------------------------

def test_mount_names_a_stack_with_its_file_attributes(table):
    mount = table.mount(table.session, "/d/a", key("/d/a"), "counted", "src",
                        {"mode": "0600", "x": "1"}, MODULES)
    assert (mount.path, mount.type, mount.source, mount.options) == ("/d/a", "counted", "src", {"x": "1"})
    assert (mount.mode, mount.uid, mount.gid) == (0o600, *OWNER)
    assert isinstance(mount.stack, CountedStack)
    assert table.session.mounts == {key("/d/a"): mount}
    assert table.name_of(mount.stack) == "/d/a"


def test_mount_on_a_taken_name_is_ebusy_and_makes_nothing(table):
    first = table.mount(table.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    refused(errno.EBUSY, table.mount, table.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    assert table.session.mounts == {key("/d/a"): first}
    assert table.mounts() == [first]


def test_mount_of_an_unknown_module_is_enodev_naming_the_known_ones(table):
    message = refused(errno.ENODEV, table.mount, table.session, "/d/a", key("/d/a"), "nosuch", "", {},
                      MODULES)
    assert "'nosuch'" in message and "counted, userspace" in message
    assert table.mounts() == []


def test_mount_with_a_bad_file_attribute_makes_nothing(table):
    refused(errno.EINVAL, table.mount, table.session, "/d/a", key("/d/a"), "counted", "",
            {"mode": "9"}, MODULES)
    assert table.mounts() == []


def test_userspace_stack_refused_when_the_session_does_not_trap_proxy_calls(table):
    table.serves_proxies = False
    UserspaceModule.made.clear()
    refused(errno.EOPNOTSUPP, table.mount, table.session, "/d/u", key("/d/u"), "userspace", "", {},
            MODULES)
    assert [s.closes for s in UserspaceModule.made] == [1]
    assert table.mounts() == []


def test_userspace_stack_mounted_before_the_session_starts(table):
    assert table.serves_proxies is None
    table.mount(table.session, "/d/u", key("/d/u"), "userspace", "", {}, MODULES)
    assert table.has_proxy_stacks()


def test_unmount_of_an_unused_stack_closes_it(table):
    mount = table.mount(table.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    assert table.unmount(table.session, mount, users=0, lazy=False) is mount
    assert mount.stack.closes == 1
    assert table.mounts() == []


@pytest.mark.parametrize("users, sockets, words", [
    (1, 0, "as a default by 1 process ("), (2, 0, "as a default by 2 processes"),
    (0, 1, "by 1 open socket ("), (3, 2, "by 3 processes and by 2 open sockets")])
def test_unmount_of_a_used_stack_is_ebusy_saying_by_what(table, users, sockets, words):
    mount = table.mount(table.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    assert words in refused(errno.EBUSY, table.unmount, table.session, mount, users, False, sockets)
    assert table.session.mounts == {key("/d/a"): mount}
    assert mount.stack.closes == 0


def test_lazy_unmount_detaches_and_collect_frees_when_unused(table):
    mount = table.mount(table.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    table.unmount(table.session, mount, users=1, lazy=True)
    assert table.session.mounts == {}
    assert table.detached == [mount] and mount.detached
    assert table.name_of(mount.stack) == "/d/a (unmounted)"
    table.collect(lambda stack: True)
    assert mount.stack.closes == 0
    table.collect(lambda stack: False)
    assert (table.detached, mount.stack.closes) == ([], 1)


def test_nested_scope_sees_the_enclosing_names_and_shadows_them(table):
    outer = table.mount(table.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    scope = table.nest(table.session, {}, pidfd(), os.getpid())
    assert (scope.depth, table.session.depth) == (2, 1)
    assert scope.lookup(key("/d/a")) is outer
    inner = table.mount(scope, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    own = table.mount(scope, "/d/b", key("/d/b"), "counted", "", {}, MODULES)
    assert scope.lookup(key("/d/a")) is inner
    assert scope.visible() == [inner, own]
    assert table.session.lookup(key("/d/b")) is None


def test_end_of_a_scope_ends_the_scopes_inside_it_and_frees_unused_stacks(table):
    scope = table.nest(table.session, {}, pidfd(), os.getpid())
    inner = table.nest(scope, {}, pidfd(), os.getpid())
    used = table.mount(scope, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    unused = table.mount(inner, "/d/b", key("/d/b"), "counted", "", {}, MODULES)
    ended = table.end(scope, lambda stack: stack is used.stack)
    assert ended == [used]
    assert table.nested == [] and scope.mounts == {} and inner.mounts == {}
    assert (used.stack.closes, unused.stack.closes) == (0, 1)
    assert table.detached == [used]
    for owner in (scope.owner, inner.owner):
        with pytest.raises(OSError):
            os.fstat(owner)


def test_close_closes_every_stack_once_and_forgets_them(table):
    """Named, detached, nested and unnamed stacks alike; a second close
    finds none, and the nested scopes' pidfds are closed."""
    named = table.mount(table.session, "/d/a", key("/d/a"), "counted", "", {}, MODULES)
    detached = table.mount(table.session, "/d/b", key("/d/b"), "counted", "", {}, MODULES)
    table.unmount(table.session, detached, users=1, lazy=True)
    scope = table.nest(table.session, {}, pidfd(), os.getpid())
    nested = table.mount(scope, "/d/c", key("/d/c"), "counted", "", {}, MODULES)
    unnamed = CountedStack()
    table.keep(unnamed)
    table.close()
    table.close()
    stacks = [named.stack, detached.stack, nested.stack, unnamed]
    assert [s.closes for s in stacks] == [1, 1, 1, 1]
    assert table.mounts() == [] and table.scopes() == [table.session]
    assert (table.nested, table.detached, table.unnamed) == ([], [], [])
    assert table.session.lookup(key("/d/a")) is None and scope.lookup(key("/d/c")) is None
    assert not any(table.name_of(s) in ("/d/a", "/d/b (unmounted)", "/d/c") for s in stacks)
    with pytest.raises(OSError):
        os.fstat(scope.owner)
