# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Default stacks: per process, shared by threads, copied at fork (exactly),
kept across execve; set by --default, vustack and msocket(SOCK_DEFAULT);
with process events and without."""
import os
import textwrap

import pytest

from helpers import HOST_LABEL, PYTHON, VUSTACK, ns_label, run, vupy

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "probe.py")

# Every test twice: with the process-events connector and without it.
pytestmark = pytest.mark.usefixtures("process_events")

PRELUDE = textwrap.dedent("""
    import fcntl, os, socket, sys, threading, vupy
    def where(family=socket.AF_INET):
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            fd = fcntl.ioctl(s.fileno(), 0x894C)  # SIOCGSKNS
            ino = os.fstat(fd).st_ino
            os.close(fd)
            return f"ns:{ino}"
""")


@pytest.fixture
def two(netns):
    """Two namespaces and the vupy options that mount them at /dev/net/a and /dev/net/b."""
    a, b = netns(), netns()
    return a, b, ["--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}"]


def in_session(options, code):
    r = vupy(*options, "--", PYTHON, "-c", PRELUDE + textwrap.dedent(code))
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_child_keeps_default_set_before_fork(two):
    a, b, options = two
    out = in_session(options, """
        vupy.set_default('/dev/net/a')
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.read(r, 1)          # the parent has changed its default by now
            print('child', where(), flush=True)
            os._exit(0)
        vupy.set_default('/dev/net/b')
        print('parent', where(), flush=True)
        os.write(w, b'x')
        os.waitpid(pid, 0)
    """)
    assert out == ["parent", ns_label(b), "child", ns_label(a)]


def test_double_forked_daemon_keeps_default_of_its_starter(two):
    a, b, options = two
    out = in_session(options, """
        vupy.set_default('/dev/net/a')
        go_r, go_w = os.pipe()
        out_r, out_w = os.pipe()
        middle = os.fork()
        if middle == 0:
            if os.fork() == 0:
                os.setsid()
                os.read(go_r, 1)   # its parent is gone and the starter has moved on
                os.write(out_w, f"daemon {where()} {os.getppid() != middle}".encode())
                os._exit(0)
            os._exit(0)
        os.waitpid(middle, 0)
        vupy.set_default('/dev/net/b')
        os.write(go_w, b'x')
        os.close(out_w)
        print(os.read(out_r, 100).decode())
        print('starter', where())
    """)
    assert out == ["daemon", ns_label(a), "True", "starter", ns_label(b)]


def test_default_is_kept_across_execve(two):
    a, _, options = two
    r = vupy(*options, "--", VUSTACK, "/dev/net/a", "sh", "-c",
             f"exec {PYTHON} {PROBE} sock inet dgram sock inet6 dgram sock netlink dgram")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [ns_label(a)] * 3


def test_threads_of_a_process_share_its_defaults(two):
    a, _, options = two
    out = in_session(options, """
        t = threading.Thread(target=vupy.set_default, args=('/dev/net/a',))
        t.start(); t.join()
        print(where())
    """)
    assert out == [ns_label(a)]


def test_msocket_null_sock_default_restores_session_default(two):
    a, b, options = two
    out = in_session(options + ["--default", "/dev/net/b"], """
        print(where())
        vupy.set_default('/dev/net/a')
        print(where())
        vupy.set_default(None, socket.AF_INET)
        print(where(), where(socket.AF_INET6))
        vupy.set_default('/dev/net/a')
        vupy.set_default(None)
        print(where(), where(socket.AF_INET6))
    """)
    assert out == [ns_label(b), ns_label(a), ns_label(b), ns_label(a), ns_label(b), ns_label(b)]


def test_vustack_family_list_sets_only_those_families(two):
    a, _, options = two
    r = vupy(*options, "--", VUSTACK, "-f", "ip6", "/dev/net/a", PYTHON, PROBE,
             "sock", "inet", "dgram", "sock", "inet6", "dgram")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [HOST_LABEL, ns_label(a)]


def test_default_option_for_one_family(two):
    a, b, options = two
    r = vupy(*options, "--default", "/dev/net/b", "--default", "inet6=/dev/net/a", "--",
             PYTHON, PROBE, "sock", "inet", "dgram", "sock", "inet6", "dgram", "sock", "packet", "dgram")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [ns_label(b), ns_label(a), ns_label(b)]


def test_families_without_default_use_host(two):
    _, _, options = two
    r = vupy(*options, "--", PYTHON, PROBE, "sock", "inet", "dgram", "sock", "netlink", "dgram")
    assert r.stdout.split() == [HOST_LABEL, HOST_LABEL], r.stderr


def test_null_default_disables_networking_but_not_unix_sockets():
    r = vupy("--stack", "/dev/net/off=null", "--default", "/dev/net/off", "--",
             PYTHON, PROBE, "sock", "inet", "stream", "sock", "inet6", "dgram",
             "sock", "netlink", "dgram", "sock", "packet", "dgram", "sock", "unix", "stream")
    assert r.stdout.split() == ["EAFNOSUPPORT"] * 4 + [HOST_LABEL], r.stderr


def test_vustack_options_after_stack_belong_to_command(two):
    _, _, options = two
    r = vupy(*options, "--", VUSTACK, "/dev/net/a", "ls", "-l", "/dev/net")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("total") and " tun\n" in r.stdout


def test_vustack_lists_served_families(two):
    _, _, options = two
    r = vupy(*options, "--stack", "/dev/net/off=null", "--", "sh", "-c",
             f"{VUSTACK} -s /dev/net/a; {VUSTACK} -s /dev/net/off")
    assert r.stdout.splitlines() == ["inet inet6 netlink packet"] * 2, r.stderr


def test_vustack_outside_a_session_says_so():
    r = run([VUSTACK, "/dev/net/a", "true"])
    assert r.returncode == 1
    assert "not in a vupy session" in r.stderr


def test_vustack_unknown_stack_fails_naming_the_error(two):
    _, _, options = two
    r = vupy(*options, "--", VUSTACK, "/dev/net/zz", "true")
    assert r.returncode == 1
    assert "/dev/net/zz" in r.stderr and os.strerror(2) in r.stderr


def test_new_thread_does_not_reset_its_process_defaults(two):
    # COMMAND's child, not COMMAND: the thread's reported parent is then a
    # session process too.
    a, _, options = two
    code = PRELUDE + textwrap.dedent("""
        print(where())
        t = threading.Thread(target=lambda: print(where(), flush=True))
        t.start(); t.join()
        print(where())
    """)
    r = vupy(*options, "--", "sh", "-c", f"{VUSTACK} /dev/net/a {PYTHON} -c \"$0\"", code)
    assert r.stdout.split() == [ns_label(a)] * 3, r.stderr


def test_namespace_file_can_be_a_default(netns):
    a = netns(iface="vupyt-nsf")
    r = vupy("--", VUSTACK, f"/run/netns/{a}", "sh", "-c", "ip -br link; ip -br link")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("vupyt-nsf@") == 2


def test_msocket_with_sock_default_sets_the_default_and_returns_no_socket(two):
    a, _, options = two
    out = in_session(options, """
        print(vupy.msocket('/dev/net/a', socket.AF_INET, vupy.SOCK_DEFAULT))
        print(where())
    """)
    assert out == ["None", ns_label(a)]


def test_a_deep_process_tree_keeps_its_defaults(two):
    """100 levels of fork: each process inherits its parent's defaults as
    they were at the fork, though every ancestor changes its own right
    after (level 50 picks the other stack for the levels below it)."""
    a, b, options = two
    out = in_session(options, """
        import os
        vupy.set_default('/dev/net/a')
        r, w = os.pipe()
        for level in range(100):
            if level == 50:
                vupy.set_default('/dev/net/b')
            if os.fork():
                vupy.set_default('/dev/net/a' if level >= 50 else '/dev/net/b')
                os.close(w)
                os.read(r, 1)      # until the deepest one is done
                os._exit(0) if level else None
                break
        else:
            print(where(), flush=True)
            os.close(w)
    """)
    assert out == [ns_label(b)], out
