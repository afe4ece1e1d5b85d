# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""msocket end to end: the errno table row by row, sockets on several stacks
in one process, real programs pointed at a stack."""
import errno
import os
import subprocess
import tempfile

import pytest

from helpers import HOST_LABEL, NOBODY, PYTHON, SYSTEM_PYTHON, VUSTACK, ns_label, run, vupy

HERE = os.path.dirname(os.path.abspath(__file__))


def name(err):
    return errno.errorcode[err]


def session(probe, stacks, *steps, prefix=(), python=PYTHON, extra=()):
    args = []
    for path, spec in stacks.items():
        args += ["--stack", f"{path}={spec}"]
    r = vupy(*args, *extra, "--", *prefix, python, probe, *steps)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


# The errno table, one row each ------------------------------------------------

@pytest.mark.parametrize(
    "steps,expected",
    [
        (["rawptr", "1"], name(errno.EFAULT)),
        (["rawptr", "0xffff880000000000"], name(errno.EFAULT)),
        (["pageend", "/dev/net/a"], name(errno.EFAULT)),
        (["msock", "/" * 5000, "inet", "stream"], name(errno.ENAMETOOLONG)),
        (["msock", "/dev/net/nosuch", "inet", "stream"], name(errno.ENOENT)),
        (["msock", "", "inet", "stream"], name(errno.ENOENT)),
        (["msock", "/etc/passwd", "inet", "stream"], name(errno.EOPNOTSUPP)),
        (["msock", "/dev/net", "inet", "stream"], name(errno.EOPNOTSUPP)),
        (["msock", "/dev/net/a", "unix", "stream"], name(errno.EAFNOSUPPORT)),
        (["default", "/dev/net/a", "unix"], name(errno.EAFNOSUPPORT)),
        (["msock", "/dev/net/a", "unspec", "stream"], name(errno.EAFNOSUPPORT)),
        (["msock", "/dev/net/a", "inet", "-1"], name(errno.EINVAL)),
        (["msock", "/dev/net/null", "inet", "stream"], name(errno.EAFNOSUPPORT)),
        (["default", "/dev/net/a", "inet"], "0"),
    ],
)
def test_errno_table_row(netns, probe, steps, expected):
    ns = netns()
    out = session(probe, {"/dev/net/a": f"netns:{ns}", "/dev/net/null": "null"}, *steps)
    assert out == [expected]


def test_path_ending_with_its_nul_at_a_page_boundary_is_read_whole(netns, probe):
    ns = netns()
    assert session(probe, {"/dev/net/a": f"netns:{ns}"}, "pageend0", "/dev/net/a") == [ns_label(ns)]


def test_relative_path_resolves_against_callers_cwd(netns, probe):
    ns = netns()
    out = session(probe, {"/dev/net/a": f"netns:{ns}"}, "msock", "net/a", "inet", "dgram",
                  prefix=["env", "--chdir=/dev"])
    assert out == [ns_label(ns)]


def test_any_spelling_that_reaches_the_stacks_directory_names_it(netns, probe, tmp_path):
    """A stack is its directory and its name: a symbolic link to the
    directory, a relative path, a link to the stack's path all name it; a
    dangling link is ENOENT, a loop of links ELOOP, and a file created at
    the stack's path later does not take its name away."""
    ns = netns()
    d = tmp_path / "d"
    d.mkdir()
    (tmp_path / "dirlink").symlink_to(d)
    (tmp_path / "stacklink").symlink_to(d / "s")
    (tmp_path / "relative").symlink_to("d/s")
    (tmp_path / "dangling").symlink_to(d / "nothing")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    steps = [f"{tmp_path}/dirlink/s", "d/s", f"{tmp_path}/stacklink", f"{tmp_path}/relative",
             f"{tmp_path}/dangling", f"{tmp_path}/loop"]
    script = " ".join(f"msock {step} inet stream" for step in steps)
    r = vupy("--stack", f"{d}/s=netns:{ns}", "--", "sh", "-c",
             f"cd {tmp_path} && {PYTHON} {probe} {script} && touch {d}/s && "
             f"{PYTHON} {probe} msock {d}/s inet stream")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [ns_label(ns)] * 4 + [name(errno.ENOENT), name(errno.ELOOP), ns_label(ns)]


def test_namespace_file_is_a_stack_path(netns, probe):
    ns = netns()
    out = session(probe, {}, "msock", f"/run/netns/{ns}", "inet", "stream",
                  "msock", "/proc/self/ns/net", "inet6", "dgram")
    assert out == [ns_label(ns), HOST_LABEL]


def test_sock_nonblock_and_cloexec_take_effect(netns):
    ns = netns()
    code = (
        "import fcntl, os, socket, vupy\n"
        "s = vupy.msocket('/dev/net/a', socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)\n"
        "t = vupy.msocket('/dev/net/a', socket.AF_INET, socket.SOCK_STREAM)\n"
        "print(bool(fcntl.fcntl(s.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK), bool(fcntl.fcntl(s.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC))\n"
        "print(bool(fcntl.fcntl(t.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK), bool(fcntl.fcntl(t.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC))\n"
    )
    r = vupy("--stack", f"/dev/net/a=netns:{ns}", "--", PYTHON, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["True True", "False False"]


# Permissions, judged with the caller's credentials ------------------------------

def test_unreadable_stack_is_eacces_for_another_uid(netns, probe):
    ns = netns()
    r = vupy("--stack", f"/dev/net/a=netns:{ns},mode=0600", "--stack", f"/dev/net/b=netns:{ns}",
             "--", *NOBODY, SYSTEM_PYTHON, probe, "msock", "/dev/net/a", "inet", "stream",
             "msock", "/dev/net/b", "inet", "stream")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [name(errno.EACCES), "ok"]


def test_vustack_refuses_unreadable_stack_with_eacces(netns):
    ns = netns()
    r = vupy("--stack", f"/dev/net/a=netns:{ns},mode=0600", "--", *NOBODY, VUSTACK, "/dev/net/a", "true")
    assert r.returncode != 0
    assert os.strerror(errno.EACCES) in r.stderr


def test_namespace_file_is_eacces_without_cap_sys_admin(netns, probe):
    ns = netns()
    r = vupy("--", *NOBODY, SYSTEM_PYTHON, probe, "msock", f"/run/netns/{ns}", "inet", "stream")
    assert r.stdout.split() == [name(errno.EACCES)], r.stderr


def test_unprivileged_caller_gets_no_raw_socket_from_a_root_supervisor(netns, probe):
    ns = netns()
    r = vupy("--stack", f"/dev/net/a=netns:{ns}", "--default", "/dev/net/a", "--",
             *NOBODY, SYSTEM_PYTHON, probe, "sock", "inet", "raw/1", "sock", "packet", "raw",
             "sock", "inet", "stream")
    assert r.stdout.split() == [name(errno.EPERM), name(errno.EPERM), "ok"], r.stderr


# Several stacks in one process ---------------------------------------------------

TWO_SERVERS = """
import socket, sys, vupy
for path in sys.argv[1:]:
    s = vupy.msocket(path, socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect(('127.0.0.1', {port}))
        print(path, s.recv(100).decode().strip())
    except ConnectionRefusedError:
        print(path, 'refused')
    s.close()
"""


def test_one_process_talks_to_a_server_on_each_of_two_stacks(netns, server):
    a, b, c = netns(), netns(), netns()
    server(a, 7001, "from-a")
    server(b, 7001, "from-b")
    r = vupy("--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}",
             "--stack", f"/dev/net/c=netns:{c}", "--",
             PYTHON, "-c", TWO_SERVERS.format(port=7001), "/dev/net/a", "/dev/net/b", "/dev/net/c")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["/dev/net/a from-a", "/dev/net/b from-b", "/dev/net/c refused"]


def test_vustack_ip_addr_shows_the_stacks_interfaces(netns):
    a = netns(iface="vupyt-blue")
    r = vupy("--stack", f"/dev/net/a=netns:{a}", "--", VUSTACK, "/dev/net/a", "ip", "-br", "addr")
    assert r.returncode == 0, r.stderr
    names = [line.split()[0].split("@")[0] for line in r.stdout.splitlines()]
    assert "vupyt-blue" in names and "lo" in names
    host = run(["ip", "-br", "addr"]).stdout
    assert "vupyt-blue" not in host


def test_curl_under_vustack_reaches_a_server_only_in_that_namespace(netns):
    a, b = netns(), netns()
    srv = subprocess.Popen(["ip", "netns", "exec", a, PYTHON, "-m", "http.server", "--bind",
                            "127.0.0.1", "7002", "--directory", HERE],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = "http://127.0.0.1:7002/probe.py"
        retry = ["--retry", "20", "--retry-connrefused", "--retry-delay", "1"]
        r = vupy("--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}", "--",
                 "sh", "-c", f"{VUSTACK} /dev/net/a curl -sf {' '.join(retry)} {url} && "
                             f"{VUSTACK} /dev/net/b curl -sf {url}; echo curl-b=$?")
        assert "def at_page_end" in r.stdout
        assert "curl-b=7" in r.stdout  # 7: could not connect
    finally:
        srv.kill()
        srv.wait()


def test_socat_with_default_stack_reaches_server(netns, server):
    a = netns()
    server(a, 7003, "via-socat")
    r = vupy("--stack", f"/dev/net/a=netns:{a}", "--default", "/dev/net/a", "--",
             "socat", "-", "TCP:127.0.0.1:7003", input="")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "via-socat"


def test_unix_sockets_stay_with_the_callers_kernel(netns, probe):
    a = netns()
    out = session(probe, {"/dev/net/a": f"netns:{a}"}, "sock", "unix", "stream",
                  "msock", "NULL", "unix", "dgram", extra=["--default", "/dev/net/a"])
    assert out == [HOST_LABEL, HOST_LABEL]


def test_proc_self_in_a_path_names_the_caller(netns, probe):
    a = netns()
    r = vupy("--", "ip", "netns", "exec", a, PYTHON, probe, "msock", "/proc/self/ns/net", "inet", "dgram",
             "msock", "/proc/thread-self/ns/net", "inet", "dgram")
    assert r.stdout.split() == [ns_label(a)] * 2, r.stderr


def test_search_permission_on_the_stack_files_directory_is_checked(netns, probe):
    a = netns()
    directory = tempfile.mkdtemp(prefix="vupyt-dir-")
    try:
        os.chmod(directory, 0o700)
        path = os.path.join(directory, "s")
        r = vupy("--stack", f"{path}=netns:{a}", "--", *NOBODY, SYSTEM_PYTHON, probe,
                 "msock", path, "inet", "stream")
        assert r.stdout.split() == [name(errno.EACCES)], r.stderr
        assert not os.path.exists(path)  # a stack's name is not a file
    finally:
        os.rmdir(directory)


def test_io_uring_is_refused_so_it_cannot_make_unrouted_sockets():
    code = ("import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); "
            "params = ctypes.create_string_buffer(120); "
            "print(libc.syscall(425, 8, params), os.strerror(ctypes.get_errno()))")  # io_uring_setup
    r = vupy("--", PYTHON, "-c", code)
    assert r.stdout.strip() == f"-1 {os.strerror(errno.ENOSYS)}", r.stderr


BROKEN_MODULE = """
    from vupy.stack import Stack, StackModule, KERNEL_FAMILIES

    class Broken(Stack):
        families = KERNEL_FAMILIES

        def socket(self, domain, type, protocol, creds):
            raise RuntimeError("a bug in the module")

    class Module(StackModule):
        name = "vupytbroken"
        description = "test: every socket raises a non-OSError exception"
        families = KERNEL_FAMILIES

        def create(self, source, options):
            return Broken()
"""


def test_internal_failure_is_eio_and_the_supervisor_goes_on(netns, probe, stack_module):
    a = netns()
    env = stack_module("vupytbroken", BROKEN_MODULE)
    r = vupy("--stack", "/dev/net/broken=vupytbroken", "--stack", f"/dev/net/a=netns:{a}", "--",
             PYTHON, probe, "msock", "/dev/net/broken", "inet", "stream",
             "msock", "/dev/net/a", "inet", "stream", env=env)
    assert r.stdout.split() == [name(errno.EIO), ns_label(a)], r.stderr
    assert "a bug in the module" in r.stderr


def test_in_session_tells_inside_from_outside():
    code = "import vupy; print(vupy.in_session())"
    assert run([PYTHON, "-c", code]).stdout.strip() == "0"
    assert vupy("--", PYTHON, "-c", code).stdout.strip() == "1"


def test_python_msocket_outside_a_session_is_socket_or_enosys():
    code = ("import errno, socket, vupy\n"
            "print(vupy.msocket(None, socket.AF_INET, socket.SOCK_DGRAM).family.name)\n"
            "try:\n"
            "    vupy.msocket('/dev/net/a', socket.AF_INET, socket.SOCK_DGRAM)\n"
            "except OSError as e:\n"
            "    print(errno.errorcode[e.errno])\n")
    r = run([PYTHON, "-c", code])
    assert r.stdout.split() == ["AF_INET", "ENOSYS"], r.stderr


def test_targets_killed_mid_call_do_not_disturb_the_supervisor(netns, probe):
    # Processes hammer msocket with paths (the slowest calls) and are killed
    # at random moments; afterwards the session still routes correctly.
    a = netns()
    script = (
        "import os, random, signal, subprocess, sys, time\n"
        "for round in range(6):\n"
        "    kids = [subprocess.Popen([sys.executable, '-c', 'import vupy, socket\\n"
        "while True: vupy.msocket(\"/dev/net/a\", socket.AF_INET, socket.SOCK_DGRAM).close()'])"
        " for _ in range(4)]\n"
        "    time.sleep(random.uniform(0.15, 0.3))  # well into their loops\n"
        "    for k in kids: k.kill()\n"
        "    for k in kids: k.wait()\n"
        f"os.execv(sys.executable, [sys.executable, {probe!r}, 'msock', '/dev/net/a', 'inet', 'dgram'])\n"
    )
    r = vupy("--stack", f"/dev/net/a=netns:{a}", "--", PYTHON, "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [ns_label(a)]
    assert "Traceback" not in r.stderr
