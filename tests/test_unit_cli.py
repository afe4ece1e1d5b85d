# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Unit tests of `vupy run`'s own options as vupy/cli.py reads them:
--stack PATH=SPEC, --default [FAMILIES=]PATH, family names, --trace.
(What a SPEC means is vupy/_stacks.py's: tests/test_unit_stacks.py.)"""
import socket

import pytest

from vupy import _families
from vupy._wrapper import stack_path
from vupy.cli import UsageError, _bare_trace, _run_option, parse_default_option, parse_stack_option


INET, INET6, NETLINK, PACKET = socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return str(tmp_path)


@pytest.mark.parametrize("text, parsed", [
    ("/dev/net/a=netns:new", ("/dev/net/a", "netns:new")),
    ("/dev/net/a=lwip:vde:///s,ip=10.0.0.2/24", ("/dev/net/a", "lwip:vde:///s,ip=10.0.0.2/24")),
    ("//dev/./net//a=null", ("/dev/net/a", "null")),
    ("/d/../a=null", ("/d/../a", "null")),                # .. may cross a link: kept
    ("/dev/net/=null", ("/dev/net/", "null")),            # a directory's: _stacks refuses it
])
def test_stack_option_is_an_absolute_path_and_a_spec(text, parsed):
    assert parse_stack_option(text) == parsed


def test_relative_stack_path_is_made_absolute(cwd):
    assert parse_stack_option("a/./b=null") == (f"{cwd}/a/b", "null")
    assert stack_path(".") == f"{cwd}/."


@pytest.mark.parametrize("text", ["/dev/net/a", "/dev/net/a=", "=netns:new", "="])
def test_stack_option_without_path_and_spec_is_a_usage_error(text):
    with pytest.raises(UsageError, match="expected PATH=SPEC") as e:
        parse_stack_option(text)
    assert repr(text) in str(e.value)


@pytest.mark.parametrize("text, parsed", [
    ("/dev/net/a", (None, "/dev/net/a")),
    ("inet=/dev/net/a", ((INET,), "/dev/net/a")),
    ("inet6,inet=/dev/net/a", ((INET, INET6), "/dev/net/a")),
    ("ip=/dev/net/a", (tuple(sorted((INET, INET6, NETLINK, PACKET))), "/dev/net/a")),
    ("/dev/net/a=b", (None, "/dev/net/a=b")),             # a / before the =: all of it is PATH
])
def test_default_option_is_families_and_a_path(text, parsed):
    assert parse_default_option(text) == (*parsed, text)


def test_default_option_relative_path(cwd):
    assert parse_default_option("inet=st") == ((INET,), f"{cwd}/st", "inet=st")
    assert parse_default_option("st") == (None, f"{cwd}/st", "st")


def test_default_option_with_an_unknown_family_is_a_usage_error_naming_it():
    with pytest.raises(UsageError) as e:
        parse_default_option("klingon=/dev/net/a")
    assert "'klingon=/dev/net/a'" in str(e.value) and "'klingon'" in str(e.value)


@pytest.mark.parametrize("text, families", [
    ("inet", (INET,)), ("INET6", (INET6,)), ("unix", (socket.AF_UNIX,)), ("local", (socket.AF_UNIX,)),
    ("ip4, ip6", (INET, INET6)), ("ipv4,ipv4", (INET,)), ("17", (17,)), ("45", (45,)),
    ("ip", tuple(sorted(_families.KERNEL_FAMILIES))),
])
def test_family_names(text, families):
    assert _families.parse(text) == families


@pytest.mark.parametrize("word", ["", "0", "46", "-1", "inet4", "ip,"])
def test_not_a_family_is_a_value_error_naming_it(word):
    with pytest.raises(ValueError, match="unknown address family"):
        _families.parse(word)


def test_family_name_is_the_first_name_of_its_number():
    assert [_families.name(f) for f in (socket.AF_UNIX, INET, INET6)] == ["unix", "inet", "inet6"]


@pytest.mark.parametrize("args, written", [
    (["--trace", "cmd"], ["--trace=-", "cmd"]),
    (["--trace", "--", "x"], ["--trace=-", "--", "x"]),
    (["--trace=f", "cmd"], ["--trace=f", "cmd"]),
    (["--stack", "--trace", "--trace", "cmd"], ["--stack", "--trace", "--trace=-", "cmd"]),
    (["--", "--trace"], ["--", "--trace"]),              # COMMAND's own
    (["cmd", "--trace"], ["cmd", "--trace"]),
])
def test_bare_trace_before_command_means_standard_error(args, written):
    assert _bare_trace(args) == written


@pytest.mark.parametrize("argv, option", [
    (["--stack", "x"], "--stack"), (["--default=x"], "--default"), (["-v"], "-v"),
    (["--trace=f"], "--trace"), (["run"], None), ([], None), (["--colour"], None),
])
def test_run_option_a_command_line_begins_with(argv, option):
    assert _run_option(argv) == option
