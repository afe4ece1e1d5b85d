# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vupy run by an ordinary user (uid 65534, as `setpriv` makes it): what works
without privileges (its own namespace, userspace stacks on VDE networks,
stack paths anywhere, vustack, vumount), and what is refused, before the
session starts, with the reason."""
import contextlib
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap

import pytest

from helpers import HOST_LABEL, NOBODY, SYSTEM_PYTHON, files_kept, run
from vdenet import (LAN_IP, PROGRAM_SECONDS, TCP_ECHO, assert_ok, http_server, processes_with, py, site,
                    two_machines, vxvde_group)

NOBODY_UID = 65534


@pytest.fixture
def own_dir():
    """A directory uid 65534 owns."""
    directory = tempfile.mkdtemp(prefix="vupyt-nobody-")
    os.chown(directory, NOBODY_UID, NOBODY_UID)
    yield directory
    shutil.rmtree(directory)


def as_nobody(unprivileged, argv):
    return run(NOBODY + [unprivileged["vupy"], "run", *argv], env=unprivileged["env"],
               timeout=PROGRAM_SECONDS)


def test_lwip_session_without_root(vde_lan, background, unprivileged, own_dir, tmp_path):
    """An lwip stack on a vde:// switch: curl through it, ip addr shows it,
    the program keeps its identity, no file is made for the stack."""
    directory, name, content = site(tmp_path)
    background(vde_lan.ns_argv(http_server(directory, LAN_IP, 8000)), ready="Serving")
    stack = os.path.join(own_dir, "u")
    r = as_nobody(unprivileged, [f"--stack={vde_lan.stack(stack)}", f"--stack={own_dir}/off=null", "--",
                                 "sh", "-c",
                                 f"id -u; id -g; id -G; vustack {stack} ip -br addr; "
                                 f"vustack {own_dir}/off curl -sS http://{LAN_IP}:8000/ >/dev/null 2>&1; "
                                 f"echo null=$?; vustack {stack} curl -sS --max-time 10 -o {own_dir}/got "
                                 f"http://{LAN_IP}:8000/{name}; stat -c %u {own_dir}/got; cat {own_dir}/got"])
    lines = assert_ok(r).splitlines()
    assert lines[:3] == ["65534", "65534", "65534"], lines
    assert re.match(r"lo\s+UNKNOWN\s+127\.0\.0\.1/8 ::1/128", lines[3]), lines   # the stack's own, as a kernel's lo
    assert re.match(r"vde0\s+UP\s+10\.9\.0\.2/24", lines[4]), lines
    assert re.match(r"null=[1-9]", lines[5]), lines             # no networking on null
    assert lines[6] == str(NOBODY_UID), lines                    # files are the user's
    assert "\n".join(lines[7:]) + "\n" == content
    assert os.listdir(own_dir) == ["got"]


def test_host_stack_without_root(unprivileged):
    """The session default, vupy's own namespace, serves an unprivileged
    session: its sockets reach this namespace's loopback, and are the user's."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    script = textwrap.dedent("""
        import os, socket, sys
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        s.sendall(b"owner %d" % os.fstat(s.fileno()).st_uid)
    """)
    with listener:
        r = as_nobody(unprivileged, ["--", SYSTEM_PYTHON, "-c", script, str(listener.getsockname()[1])])
        listener.settimeout(PROGRAM_SECONDS)
        conn, _ = listener.accept()
        with conn:
            assert conn.recv(100) == b"owner %d" % NOBODY_UID
    assert_ok(r)


def test_root_command_lines_run_unchanged_without_root(unprivileged, probe):
    """Stack paths anywhere, /dev/net included, as in a root session:
    --stack and --default, vustack, vumount, vuumount and msocket."""
    r = as_nobody(unprivileged, [
        "--stack", "/dev/net/vupyt-n=netns:new", "--default", "/dev/net/vupyt-n", "--", "sh", "-c",
        f"vustack; vustack /dev/net/vupyt-n ip -br link; vumount -t netns new /dev/net/vupyt-m && "
        f"vumount | cut -d' ' -f1; {SYSTEM_PYTHON} {probe} sock inet stream msock /dev/net/vupyt-m "
        f"inet stream && vuumount /dev/net/vupyt-m && {SYSTEM_PYTHON} {probe} msock /dev/net/vupyt-m "
        f"inet stream"])
    lines = assert_ok(r).splitlines()
    assert lines[0].split() == ["inet", "/dev/net/vupyt-n", "(session", "default)"], lines
    assert lines[4].split()[0] == "lo", lines
    assert lines[5:8] == ["PATH", "/dev/net/vupyt-n", "/dev/net/vupyt-m"], lines
    own, other = lines[8:10]
    assert own.startswith("ns:") and other.startswith("ns:") and own != other, lines
    assert HOST_LABEL not in (own, other) and lines[10:] == ["ENOENT"], lines


def test_nested_session_without_root(unprivileged, probe):
    r = as_nobody(unprivileged, [
        "--stack", "/dev/net/vupyt-n=netns:new", "--", "vupy", "run", "--stack",
        "/dev/net/vupyt-m=netns:new", "--default", "/dev/net/vupyt-m", "--",
        SYSTEM_PYTHON, probe, "sock", "inet", "stream", "msock", "/dev/net/vupyt-n", "inet", "stream"])
    inner, outer = assert_ok(r).split()
    assert inner.startswith("ns:") and outer.startswith("ns:") and len({inner, outer, HOST_LABEL}) == 3


def test_files_written_beside_a_stack_are_kept_without_root(unprivileged, own_dir):
    files_kept(pathlib.Path(own_dir), lambda argv: as_nobody(unprivileged, argv),
               ["env", f"PYTHONPATH={unprivileged['lib']}", SYSTEM_PYTHON])


def test_netns_new_without_root(unprivileged, own_dir):
    """netns:new without root: a private namespace (in a user namespace of
    the session's) holding only lo, where the program, keeping its
    identity, binds a port below 1024; its sockets are the user's."""
    stack = os.path.join(own_dir, "n")
    script = textwrap.dedent("""
        import os, socket
        listener = socket.socket()
        listener.bind(("127.0.0.1", 80))
        listener.listen(1)
        c = socket.create_connection(("127.0.0.1", 80))
        a, _ = listener.accept()
        c.sendall(b"port 80")
        print(a.recv(10).decode(), os.fstat(c.fileno()).st_uid, os.getuid())
    """)
    r = as_nobody(unprivileged, [f"--stack={stack}=netns:new", "--", "sh", "-c",
                                 f"vustack {stack} ip -br link; vustack {stack} {SYSTEM_PYTHON} -c '{script}'"])
    lines = assert_ok(r).splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["lo"], lines
    assert lines[-1] == f"port 80 {NOBODY_UID} {NOBODY_UID}", lines


@pytest.mark.parametrize("spec, says", [
    ("{dir}/n=netns:{ns}", "netns:{ns}: cannot enter the namespace: Operation not permitted "
                           "(a vupy without root can use its own namespace, netns:new"),
    ("{dir}/v=vde:vde:///tmp/nothing,netns=x", "vde:vde:///tmp/nothing: netns= needs root"),
    ("{dir}/t=lwip:tap://vupyt0,ip=10.9.9.2/24", "lwip:tap://vupyt0: cannot open tap://vupyt0"),
])
def test_refused_without_root_with_the_reason(spec, says, netns, unprivileged, own_dir):
    ns = netns()
    r = as_nobody(unprivileged, [f"--stack={spec.format(dir=own_dir, ns=ns)}", "--", "echo", "started"])
    assert r.returncode == 2 and "started" not in r.stdout, r
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert says.format(ns=ns) in r.stderr, r.stderr
    assert os.listdir(own_dir) == []


def test_vumount_without_root(vde_lan, background, unprivileged, own_dir, tmp_path):
    directory, name, content = site(tmp_path)
    background(vde_lan.ns_argv(http_server(directory, LAN_IP, 8001)), ready="Serving")
    stack = os.path.join(own_dir, "w")
    r = as_nobody(unprivileged, ["--userspace", "--", "sh", "-c", "; ".join([
        f"vumount -t lwip -o ip=10.9.0.7/24 {vde_lan.url} {stack}",
        f"vustack {stack} curl -sS --max-time 10 http://{LAN_IP}:8001/{name}",
        f"vuumount {stack}", f"ls {own_dir}", "echo done"])])
    assert assert_ok(r) == content + "done\n"


def test_namespace_files_the_user_cannot_enter_give_errors(netns, unprivileged):
    """Escape attempts from an unprivileged session: msocket on root's
    namespace files (a named one, pid 1's) fails; no socket is made
    anywhere."""
    ns = netns()
    script = textwrap.dedent("""
        import errno, sys, vupy, socket
        for path in sys.argv[1:]:
            try:
                vupy.msocket(path, socket.AF_INET, socket.SOCK_STREAM)
                print(path, 'SOCKET')
            except OSError as e:
                print(path, errno.errorcode[e.errno])
    """)
    paths = [f"/run/netns/{ns}", "/proc/1/ns/net"]
    r = as_nobody(unprivileged, ["--", SYSTEM_PYTHON, "-c",
                                 f"import sys; sys.path.insert(0, {unprivileged['lib']!r})\n" + script,
                                 *paths])
    out = dict(line.split() for line in assert_ok(r).splitlines())
    assert out.keys() == set(paths) and set(out.values()) <= {"EPERM", "EACCES"}, out


def test_two_stacks_in_one_program_without_root(unprivileged):
    """The core scenario, unprivileged, with the command line of a root
    session: one program listens on 127.0.0.1:8000 of two private stacks
    named in /dev/net through vupy.msocket and reaches each server only
    through its own stack."""
    a, b = "/dev/net/vupyt-a", "/dev/net/vupyt-b"
    script = textwrap.dedent("""
        import socket, sys, vupy
        a, b = sys.argv[1:3]
        servers = {}
        for path in (a, b):
            s = vupy.msocket(path, socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 8000))
            s.listen(1)
            servers[path] = s
        for path in (a, b):
            c = vupy.msocket(path, socket.AF_INET, socket.SOCK_STREAM)
            c.connect(("127.0.0.1", 8000))
            conn, _ = servers[path].accept()
            conn.sendall(path.encode())
            print(c.recv(100).decode() == path)
        try:
            socket.create_connection(("127.0.0.1", 8000), timeout=2)   # the host: nothing there
            print("host reached")
        except OSError:
            print("host refused")
    """)
    r = as_nobody(unprivileged, [f"--stack={a}=netns:new", f"--stack={b}=netns:new", "--",
                                 SYSTEM_PYTHON, "-c",
                                 f"import sys; sys.path.insert(0, {unprivileged['lib']!r})\n" + script, a, b])
    assert assert_ok(r).split() == ["True", "True", "host", "refused"]


def test_lwip_on_slirp_without_root(unprivileged, own_dir):
    """lwip on slirp:// needs no privileges: it reaches this namespace's
    loopback as 10.0.2.2."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    stack = os.path.join(own_dir, "s")
    script = ("import socket, sys; s = socket.create_connection(('10.0.2.2', int(sys.argv[1])), timeout=10); "
              "s.sendall(b'via slirp'); print(s.recv(20).decode())")
    with listener:
        session = subprocess.Popen(NOBODY + [unprivileged["vupy"], "run",
                                             f"--stack={stack}=lwip:slirp://,ip=10.0.2.15/24,gw=10.0.2.2",
                                             "--", "vustack", stack, SYSTEM_PYTHON, "-c", script, str(port)],
                                   env=unprivileged["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        try:
            listener.settimeout(PROGRAM_SECONDS)
            conn, _ = listener.accept()
            with conn:
                conn.sendall(conn.recv(20).upper())
            out, err = session.communicate(timeout=PROGRAM_SECONDS)
        finally:
            session.kill()
            session.wait()
    assert session.returncode == 0, err
    assert out.strip() == "VIA SLIRP"


def test_vde_stack_without_root(vde_lan, background, unprivileged, own_dir):
    """A vde stack without root (its namespace in a user namespace of the
    session's, linked through a veth pair and vde_plug's pcap://) reaches a
    namespace plugged into the same switch; vuumount takes it down, with
    its vde_plugs."""
    echo = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7040)), ready="ready")
    stack = os.path.join(own_dir, "v")
    client = [SYSTEM_PYTHON, *py("""
        s = connect(sys.argv[1], 7040)
        s.sendall(b'rootless\\n')
        say(recvline(s).decode().strip(), s.getsockname()[0])
    """, LAN_IP)[1:]]                   # a Python every user can run
    r = as_nobody(unprivileged, [f"--stack={stack}=vde:{vde_lan.url},ip=10.9.0.4/24,mtu=1400", "--",
                                 "sh", "-c", f"vustack {stack} ip -br addr show vde0; "
                                 f'vustack {stack} "$0" "$@"', *client])
    lines = assert_ok(r).splitlines()
    assert re.match(r"vde0@vde0p\s+UP\s+10\.9\.0\.4/24", lines[0]), lines
    assert lines[-1] == "echo:rootless 10.9.0.4", lines
    assert echo.expect("conn") == "conn 10.9.0.4"
    assert not processes_with(f"{vde_lan.url} =")


def test_vumount_cannot_reach_other_users_namespaces(netns, unprivileged, own_dir):
    """From inside an unprivileged session, vumount of root's namespaces
    (a named one, pid 1's) is refused, and nothing is mounted."""
    ns = netns()
    script = "; ".join(f"vumount -t netns {source} {own_dir}/x; echo status=$?"
                       for source in (ns, "/proc/1/ns/net"))
    r = as_nobody(unprivileged, ["--", "sh", "-c", script + f"; ls {own_dir}"])
    out = assert_ok(r)
    assert out.split() == ["status=1", "status=1"], (out, r.stderr)
    errors = r.stderr.strip().splitlines()
    assert f"netns:{ns}: cannot enter the namespace: Operation not permitted" in errors[0], errors
    assert "/proc/1/ns/net: Permission denied" in errors[1], errors


def test_vxvde_between_two_machines_without_root(netns, background, unprivileged, own_dir):
    """Unprivileged sessions started in two "machines" (namespaces joined by
    a veth pair): a vde stack on B and an lwip stack on A, on one vxvde://
    group, talk TCP."""
    a, b = two_machines(netns)
    group = vxvde_group()

    def on(machine, stack, spec, program):
        return ["ip", "netns", "exec", machine, *NOBODY, unprivileged["vupy"], "run",
                f"--stack={stack}={spec}", "--", unprivileged["vustack"], stack,
                SYSTEM_PYTHON, *program[1:]]

    server = background(on(b, f"{own_dir}/b", f"vde:{group},ip=10.10.0.2/24",
                           py(TCP_ECHO, "10.10.0.2", 7050)), ready="ready")
    client = py("""
        s = connect(sys.argv[1], 7050)
        s.sendall(b'over vxvde\\n')
        say(recvline(s).decode().strip(), s.getsockname()[0])
    """, "10.10.0.2")
    r = run(on(a, f"{own_dir}/a", f"lwip:{group},ip=10.10.0.1/24", client), timeout=PROGRAM_SECONDS,
            env=unprivileged["env"])
    assert assert_ok(r).split() == ["echo:over", "vxvde", "10.10.0.1"]
    assert server.expect("conn") == "conn 10.10.0.1"


STUCK_HOLDER = textwrap.dedent("""
    import errno, fcntl, os, socket, sys, time, vupy
    a, b = sys.argv[1:]
    def ns(s):
        fd = fcntl.ioctl(s.fileno(), 0x894C)        # SIOCGSKNS: the socket's namespace
        ino = os.fstat(fd).st_ino
        os.close(fd)
        return ino
    print(ns(vupy.msocket(a, socket.AF_INET, socket.SOCK_STREAM)), flush=True)
    sys.stdin.readline()                            # the test has stopped a's holder
    for _ in range(2):
        start = time.monotonic()
        try:
            vupy.msocket(a, socket.AF_INET, socket.SOCK_STREAM)
            print("made", flush=True)
        except OSError as e:
            print(errno.errorcode[e.errno], round(time.monotonic() - start), flush=True)
    print(ns(vupy.msocket(b, socket.AF_INET, socket.SOCK_STREAM)), flush=True)
    socket.socket().close()                         # on the host, the default
    print("host", flush=True)
""")


def test_stuck_namespace_holder_downs_its_stack_not_the_session(unprivileged, own_dir):
    """netns:new without root is a namespace held by a process of its own:
    if that process stops answering (SIGSTOP), a socket call on the stack
    fails with ENETDOWN within helpers.ANSWER_SECONDS, and the later ones
    at once, with one line from vupy naming the stack, instead of holding
    up the session: its other stacks (another holder's, the host) go on."""
    from vupy.helpers import ANSWER_SECONDS
    a, b = os.path.join(own_dir, "a"), os.path.join(own_dir, "b")
    session = subprocess.Popen(NOBODY + [unprivileged["vupy"], "run", f"--stack={a}=netns:new",
                                         f"--stack={b}=netns:new", "--", SYSTEM_PYTHON, "-c", STUCK_HOLDER, a, b],
                               env=unprivileged["env"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    stopped = []
    try:
        line = session.stdout.readline()
        assert line, session.communicate(timeout=PROGRAM_SECONDS)
        held = int(line)
        stopped = [pid for pid in processes_with("vupy._nsholder")
                   if os.stat(f"/proc/{pid}/ns/net").st_ino == held]
        assert len(stopped) == 1, stopped
        os.kill(stopped[0], signal.SIGSTOP)
        out, err = session.communicate("\n", timeout=ANSWER_SECONDS + PROGRAM_SECONDS)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if session.poll() is None:
            session.kill()
            session.communicate()
    assert session.returncode == 0, (out, err)
    first, again, other, host = out.splitlines()
    assert first.split()[0] == "ENETDOWN" and int(first.split()[1]) <= ANSWER_SECONDS + 1, out
    assert again == "ENETDOWN 0", out
    assert int(other) not in (held, os.stat("/proc/self/ns/net").st_ino) and host == "host", out
    said = [line for line in err.splitlines() if "ENETDOWN" in line]
    assert len(said) == 1 and "netns:new" in said[0] and "did not answer" in said[0], err
