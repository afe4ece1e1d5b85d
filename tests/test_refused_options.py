# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""A bad option or SPEC of `vupy run` is refused before anything starts:
one line on stderr, exit status 2, COMMAND not started, nothing made.
"""
import os
import textwrap

import pytest

from helpers import vupy


# A stack module that serves inet only, found by vupy through an entry point
# of a distribution on PYTHONPATH, for `--default inet6=PATH` to be refused.
INET_ONLY_MODULE = textwrap.dedent("""
    import socket
    from vupy.stack import Stack, StackModule

    class InetOnlyStack(Stack):
        families = frozenset({socket.AF_INET})

        def socket(self, domain, type, protocol, creds):
            raise OSError(97, "no")

        def close(self):
            pass

    class Module(StackModule):
        name = "vupytinet"
        description = "test: serves AF_INET only"
        families = frozenset({socket.AF_INET})

        def create(self, source, options):
            return InetOnlyStack()
""")


@pytest.fixture
def inet_only_env(stack_module):
    """Environment in which vupy knows the module `vupytinet` (inet only)."""
    return stack_module("vupytinet", INET_ONLY_MODULE)


def test_inet_only_module_is_usable(inet_only_env):
    """Control for the inet6 refusal below: the test module itself works."""
    r = vupy("--stack", "/dev/net/vupyt-i=vupytinet", "--default", "inet=/dev/net/vupyt-i",
             "--", "true", env=inet_only_env)
    assert r.returncode == 0, r.stderr


BAD = {
    # id: (vupy run arguments before COMMAND, a word the message must name)
    "unknown-module": (["--stack", "/dev/net/vupyt-n=nosuchmodule"], "nosuchmodule"),
    "unknown-module-with-source": (["--stack", "/dev/net/vupyt-n=nosuchmodule:x"], "nosuchmodule"),
    "missing-netns": (["--stack", "/dev/net/vupyt-n=netns:vupyt-nosuch"], "vupyt-nosuch"),
    "missing-netns-file": (["--stack", "/dev/net/vupyt-n=netns:/nonexistent/vupyt"],
                           "/nonexistent/vupyt"),
    "not-a-netns-file": (["--stack", "/dev/net/vupyt-n=netns:/etc/hostname"], "/etc/hostname"),
    "netns-without-source": (["--stack", "/dev/net/vupyt-n=netns"], "netns"),
    "netns-bad-option": (["--stack", "/dev/net/vupyt-n=netns:new,colour=red"], "colour"),
    "option-not-key-value": (["--stack", "/dev/net/vupyt-n=netns:new,colour"], "colour"),
    "null-with-source": (["--stack", "/dev/net/vupyt-n=null:x"], "null"),
    "no-equals": (["--stack", "/dev/net/vupyt-n"], "/dev/net/vupyt-n"),
    "empty-spec": (["--stack", "/dev/net/vupyt-n="], "/dev/net/vupyt-n"),
    "empty-path": (["--stack", "=netns:new"], "netns:new"),
    "relative-path-in-missing-directory": (["--stack", "dev/net/vupyt-n=netns:new"], "dev/net/vupyt-n"),
    "path-is-dir-slash": (["--stack", "/dev/net/=null"], "/dev/net/"),
    "path-in-missing-directory": (["--stack", "/nonexistent-vupyt/n=null"], "/nonexistent-vupyt"),
    "path-is-directory": (["--stack", "/dev/net=null"], "/dev/net"),
    "no-module-name": (["--stack", "/dev/net/vupyt-n=:x"], ":x"),
    "same-path-twice": (["--stack", "/dev/net/vupyt-n=null", "--stack", "/dev/net/vupyt-n=null"],
                        "/dev/net/vupyt-n"),
    "bad-after-good": (["--stack", "/dev/net/vupyt-a=netns:new", "--stack", "/dev/net/vupyt-b=nope"],
                       "nope"),
    "default-not-a-stack": (["--stack", "/dev/net/vupyt-n=null", "--default", "/dev/net/vupyt-x"],
                            "/dev/net/vupyt-x"),
    "default-families-not-a-stack": (["--default", "inet=/dev/net/vupyt-x"], "/dev/net/vupyt-x"),
    "default-unknown-family": (["--stack", "/dev/net/vupyt-n=null", "--default",
                                "klingon=/dev/net/vupyt-n"], "klingon"),
    "default-unix-not-served": (["--stack", "/dev/net/vupyt-n=netns:new", "--default",
                                 "unix=/dev/net/vupyt-n"], "unix"),
    "default-inet6-not-served": (["--stack", "/dev/net/vupyt-i=vupytinet", "--default",
                                  "inet6=/dev/net/vupyt-i"], "inet6"),
    "unknown-option": (["--colour"], "--colour"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_refused_in_one_line_exit_2(case, tmp_path, inet_only_env):
    args, named = BAD[case]
    marker = tmp_path / "started"
    dev_net = sorted(os.listdir("/dev/net"))
    r = vupy(*args, "--", "touch", str(marker), env=inet_only_env)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("vupy: "), r.stderr
    assert named in lines[0], r.stderr
    assert r.stdout == ""
    assert not marker.exists(), "COMMAND was started"
    assert sorted(os.listdir("/dev/net")) == dev_net


@pytest.mark.parametrize("args", [[], ["--"], ["--stack", "/dev/net/vupyt-n=netns:new"],
                                  ["--stack", "/dev/net/vupyt-n=netns:new", "--"]],
                         ids=["nothing", "dashdash", "stack", "stack-dashdash"])
def test_no_command_refused_in_one_line_exit_2(args):
    r = vupy(*args)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("vupy: "), r.stderr
    assert "COMMAND" in lines[0]
