# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Help, versions, and the errors of a slip that name the fix."""
import os
import signal
from importlib.metadata import version

import pytest

import vupy
from helpers import BIN, VUPY, VUSTACK, run

VUMOUNT, VUUMOUNT = os.path.join(BIN, "vumount"), os.path.join(BIN, "vuumount")


def test_one_version_everywhere():
    assert vupy.__version__ == version("vupy")          # pyproject takes it from vupy/__init__.py
    for argv, expected in (([VUPY, "--version"], f"vupy {vupy.__version__}"),
                           ([VUSTACK, "--version"], f"vustack (vupy) {vupy.__version__}"),
                           ([VUMOUNT, "--version"], f"vumount (vupy) {vupy.__version__}"),
                           ([VUUMOUNT, "--version"], f"vuumount (vupy) {vupy.__version__}")):
        r = run(argv)
        assert (r.returncode, r.stdout.strip(), r.stderr) == (0, expected, ""), argv


@pytest.mark.parametrize("argv", [
    [VUPY, "-h"], [VUPY, "--help"], [VUPY, "modules", "--help"], [VUPY, "run", "-h"],
    [VUSTACK, "-h"], [VUSTACK, "--help"], [VUMOUNT, "-h"], [VUMOUNT, "--help"], [VUUMOUNT, "--help"],
])
def test_every_command_has_help(argv):
    r = run(argv)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.startswith("usage: " + os.path.basename(argv[0])), r.stdout


@pytest.mark.parametrize("argv", [[VUPY, "run", "--help"], [VUPY, "modules"], [VUPY, "--help"],
                                  [VUMOUNT, "--help"], [VUSTACK, "--help"]])
def test_printing_commands_end_quietly_when_the_reader_goes(argv):
    """`vupy run --help | head -1`: no BrokenPipeError traceback, but the
    quiet end of any filter whose reader has gone (SIGPIPE)."""
    r = run(["sh", "-c", '"$@" | (exec 0<&-)', "sh", *argv])
    assert r.stderr == "", r.stderr


def test_vustack_command_starts_with_the_signals_ignored_that_a_native_one_has():
    """Python ignores SIGPIPE and SIGXFSZ; the command vustack executes
    must not inherit that (`vustack STACK yes | head` must end): it ignores
    what the same command started directly ignores."""
    ignored = "grep SigIgn /proc/self/status"
    r = run([VUPY, "run", "--stack", "/dev/net/vupyt-x=null", "--", "sh", "-c",
             f"{ignored}; {VUSTACK} /dev/net/vupyt-x {ignored}"])
    native, through_vustack = (int(line.split()[1], 16) for line in r.stdout.splitlines())
    assert through_vustack == native, r.stderr
    assert not native & (1 << signal.SIGPIPE - 1 | 1 << signal.SIGXFSZ - 1)


def test_run_help_shows_the_spec_syntax_and_the_modules(stack_module):
    env = stack_module("vupytbad", 'raise ImportError("needs libfrobnicate")')
    r = run([VUPY, "run", "--help"], env=env)
    assert r.returncode == 0, r.stderr
    assert "SPEC is MODULE[:SOURCE][,KEY=VALUE]..." in r.stdout
    assert "--trace[=FILE]" in r.stdout
    listed = run([VUPY, "modules"], env=env).stdout.splitlines()
    assert any(line.startswith("vupytbad") and "BROKEN" in line and "libfrobnicate" in line
               for line in listed)
    shown = r.stdout.split("stack modules (vupy modules):\n")[1].splitlines()
    assert [line.strip() for line in shown] == [line.strip() for line in listed]


def test_vupy_options_without_run_name_the_fix():
    r = run([VUPY, "--stack", "/dev/net/x=null", "--", "true"])
    assert r.returncode == 2
    assert r.stderr == ("vupy: --stack is an option of `vupy run`: "
                        "vupy run --stack /dev/net/x=null -- true\n")
    r = run([VUPY, "bash", "-c", "true"])
    assert r.returncode == 2
    assert r.stderr == ("vupy: 'bash' is not a vupy command (run, modules); "
                        "to run it in a session: vupy run -- bash -c true\n")


def test_vumount_without_t_names_the_fix():
    r = run([VUMOUNT, "netns", "new", "/dev/net/y"])
    assert (r.returncode, r.stderr) == (
        2, "vumount: mounting needs -t TYPE, as in `vumount -t netns new /dev/net/y`\n")
    r = run([VUMOUNT, "-o", "mode=0600", "none", "/dev/net/y"])
    assert (r.returncode, r.stderr) == (
        2, "vumount: mounting needs -t TYPE, as in `vumount -t TYPE -o mode=0600 none /dev/net/y`\n")


def test_vustack_long_options():
    r = run([VUSTACK, "--frob", "/x"])
    assert r.returncode == 2 and r.stderr.endswith("vustack: unknown option --frob\n"), r.stderr


@pytest.mark.parametrize("option, message", [
    ("mode=999", "mode=999: not an octal mode from 0 to 7777 (as in mode=0640)"),
    ("mode=-1", "mode=-1: not an octal mode from 0 to 7777 (as in mode=0640)"),
    ("uid=-1", "uid=-1: not a user id from 0 to 4294967294 (as in uid=1000)"),
    ("gid=staff", "gid=staff: not a group id from 0 to 4294967294 (as in gid=100)"),
])
def test_file_options_name_what_they_take(option, message):
    r = run([VUPY, "run", "--stack", f"/dev/net/x=null,{option}", "--", "true"])
    assert (r.returncode, r.stderr) == (2, f"vupy: {message}\n")
    r = run([VUPY, "run", "--", VUMOUNT, "-t", "null", "-o", option, "none", "/dev/net/x"])
    assert (r.returncode, r.stderr) == (1, f"vumount: {message}\n")
