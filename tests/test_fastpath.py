# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The fast path (csrc/fastpath.c) repeats the dispatcher's decision for a
thread's later socket() calls, and msocket calls with a path; these tests
change, between two calls of the same thread, each thing the decision
depends on, and check that the second call follows the change: the default
stack, the caller's credentials (by a trapped call and by a process event
alone), the process (fork, exec), the stacks mounted, and the caller's
root.
"""
import os
import textwrap

import pytest

from helpers import BIN, PYTHON, VUPY, ns_inode, run

PRELUDE = """
    import errno, fcntl, os, socket, sys
    import vupy
    INET = (socket.AF_INET, socket.SOCK_DGRAM)
    def where(*args, path=None):
        try:
            with (socket.socket(*args) if path is None else vupy.msocket(path, *args)) as s:
                return 'ns %d' % os.fstat(fcntl.ioctl(s.fileno(), 0x894C)).st_ino
        except OSError as e:
            return errno.errorcode[e.errno]
"""


def _session(a, b, script, *args):
    return run([VUPY, "run", "--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}",
                "--default", "/dev/net/a", "--", PYTHON, "-c", textwrap.dedent(PRELUDE + script), *args])


def test_a_new_default_is_followed_at_once(netns):
    a, b = netns(), netns()
    r = _session(a, b, """
    print(where(), where())
    vupy.set_default('/dev/net/b', socket.AF_INET)
    print(where(), where(socket.AF_INET6))
    vupy.set_default(None, socket.AF_INET)
    print(where())
    """)
    assert r.returncode == 0, r.stderr
    ns_a, ns_b = f"ns {ns_inode(a)}", f"ns {ns_inode(b)}"
    assert r.stdout.splitlines() == [f"{ns_a} {ns_a}", f"{ns_b} {ns_a}", ns_a]


ICMP = "socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP"


def test_new_credentials_are_used_at_once(netns):
    """Stack a lets only group 0 make ICMP datagram sockets
    (ping_group_range): after the caller drops to uid/gid 65534 its next
    one is refused, whether the change was trapped (setgroups) or only
    reported by a process event (setresgid, setresuid)."""
    a, b = netns(), netns()
    assert run(["ip", "netns", "exec", a, "sysctl", "-q", "net.ipv4.ping_group_range=0 0"]).returncode == 0
    for drop in ("os.setgroups([]); os.setgid(65534); os.setuid(65534)",
                 "os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)"):
        r = _session(a, b, f"""
    print(where({ICMP}), where({ICMP}))
    {drop}
    print(where({ICMP}))
    """)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split("\n")[1:] == ["EACCES", ""], (drop, r.stdout)


def test_a_new_thread_is_served_with_its_own_credentials(netns):
    """A new thread starts with its process's routes, but with the
    credentials of the thread that made it: here a thread that gave up
    group 0 alone (raw setgroups and setresgid, as glibc's wrappers would
    for every thread) makes one, on stack a, which lets only group 0 make ICMP
    datagram sockets.  Its sockets are refused, as its maker's are, while
    the main thread's are still made."""
    a, b = netns(), netns()
    assert run(["ip", "netns", "exec", a, "sysctl", "-q", "net.ipv4.ping_group_range=0 0"]).returncode == 0
    r = _session(a, b, f"""
    import ctypes, threading
    def made():
        try:
            socket.socket({ICMP}).close()
            return 'made'
        except OSError as e:
            return errno.errorcode[e.errno]
    print(made(), made(), flush=True)
    def maker():
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.syscall(116, 0, None) == 0                  # setgroups([]), this thread's
        assert libc.syscall(119, -1, 65534, -1) == 0            # setresgid(-1, 65534, -1)
        got = []
        child = threading.Thread(target=lambda: got.extend([made(), made()]))
        child.start(); child.join()
        print(made(), *got, flush=True)
    t = threading.Thread(target=maker); t.start(); t.join()
    print(made())
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["made made", "EACCES EACCES EACCES", "made"], (r.stdout, r.stderr)


def test_children_and_exec_keep_their_own_defaults(netns):
    """A parent's route is not its child's: the child, after the parent's
    sockets, changes its own default, and an exec keeps it."""
    a, b = netns(), netns()
    r = _session(a, b, """
    print(where(), flush=True)
    pid = os.fork()
    if pid == 0:
        vupy.set_default('/dev/net/b', socket.AF_INET)
        print(where(), flush=True)
        os.execv(sys.executable, [sys.executable, '-c', sys.argv[1]])
    os.waitpid(pid, 0)
    print(where())
    """, textwrap.dedent(PRELUDE) + "print(where())")
    assert r.returncode == 0, r.stderr
    ns_a, ns_b = f"ns {ns_inode(a)}", f"ns {ns_inode(b)}"
    assert r.stdout.splitlines() == [ns_a, ns_b, ns_b, ns_a]


def test_msocket_by_path_follows_mounts_credentials_and_the_root(netns, tmp_path):
    """Each path, asked again and again (so the fast path serves it), still
    names its own stack; an unmounted one is gone at once and one mounted
    again is the new stack; a stack only root may use refuses the caller
    once it is uid 65534; after chroot the same path names nothing."""
    a, b, c = netns(), netns(), netns()
    jail = tmp_path / "jail"
    jail.mkdir()
    r = run([VUPY, "run", "--stack", f"/dev/net/a=netns:{a},mode=0600", "--stack", f"/dev/net/b=netns:{b}",
             "--", PYTHON, "-c", textwrap.dedent(PRELUDE + """
    import subprocess
    def made(path):     # (SIOCGSKNS, in where, is root's)
        try:
            vupy.msocket(path, *INET).close()
            return 'made'
        except OSError as e:
            return errno.errorcode[e.errno]
    print(*[where(*INET, path=p) for p in ('/dev/net/a', '/dev/net/b') * 3])
    subprocess.run([sys.argv[1] + '/vuumount', '/dev/net/b'], check=True)
    print(where(*INET, path='/dev/net/b'))
    subprocess.run([sys.argv[1] + '/vumount', '-t', 'netns', sys.argv[2], '/dev/net/b'], check=True)
    print(where(*INET, path='/dev/net/b'), where(*INET, path='/dev/net/b'))
    pid = os.fork()
    if pid == 0:
        os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
        print(made('/dev/net/a'), made('/dev/net/b'), made('/dev/net/b'), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    os.chroot(sys.argv[3])
    print(where(*INET, path='/dev/net/a'))
    """), BIN, c, str(jail)])
    assert r.returncode == 0, r.stderr
    ns_a, ns_b, ns_c = (f"ns {ns_inode(n)}" for n in (a, b, c))
    assert r.stdout.splitlines() == [" ".join([ns_a, ns_b] * 3), "ENOENT", f"{ns_c} {ns_c}",
                                     "EACCES made made", "ENOENT"], (r.stdout, r.stderr)


def test_msocket_by_path_follows_a_root_moved_by_another_thread_or_a_mount_namespace(netns, tmp_path):
    """The fast path starts a path's walk from vupy's own root for a thread
    whose root it found to be that one; after the thread moves to a mount
    namespace of its own, or another thread of its process chroots, the
    same path names what it names from the new root."""
    a = netns()
    jail = tmp_path / "jail"
    (jail / "dev" / "net").mkdir(parents=True)
    r = run([VUPY, "run", "--stack", f"/dev/net/a=netns:{a}", "--", PYTHON, "-c",
             textwrap.dedent(PRELUDE + """
    import ctypes, threading
    libc = ctypes.CDLL(None, use_errno=True)
    def twice():
        return [where(*INET, path='/dev/net/a') for _ in range(2)]
    print(*twice())
    pid = os.fork()
    if pid == 0:
        print(*twice(), flush=True)
        MS_REC, MS_PRIVATE, CLONE_NEWNS = 0x4000, 0x40000, 0x20000
        assert libc.unshare(CLONE_NEWNS) == 0, ctypes.get_errno()
        assert libc.mount(b'none', b'/', None, MS_REC | MS_PRIVATE, None) == 0, ctypes.get_errno()
        assert libc.mount(b'tmpfs', b'/dev/net', b'tmpfs', 0, None) == 0, ctypes.get_errno()
        print(*twice(), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    print(*twice())
    mover = threading.Thread(target=os.chroot, args=(sys.argv[1],))
    mover.start()
    mover.join()
    print(*twice())
    """), str(jail)])
    assert r.returncode == 0, r.stderr
    on_a = f"ns {ns_inode(a)} ns {ns_inode(a)}"
    assert r.stdout.splitlines() == [on_a, on_a, "ENOENT ENOENT", on_a, "ENOENT ENOENT"], \
        (r.stdout, r.stderr)



SPARES = 7             # spare serving threads per receiving one (csrc/fastpath.c)
SERVERS = """
    import collections, threading
    def parent(pid):
        with open(f'/proc/{pid}/stat') as f:
            return int(f.read().rsplit(')', 1)[1].split()[1])
    def load():
        got = collections.Counter()
        def worker():
            for _ in range(300):
                got[where(socket.AF_INET, socket.SOCK_DGRAM)] += 1
                got[where(socket.AF_INET, socket.SOCK_DGRAM, path='/dev/net/b')] += 1
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        return got
    children = []
    for _ in range(2):
        r, w = os.pipe()
        if os.fork() == 0:
            os.write(w, repr(dict(load())).encode()); os._exit(0)
        os.close(w)
        children.append(r)
    for r in children:
        with os.fdopen(r) as f: print(sorted(eval(f.read()).items()))
    vupy_pid = parent(parent(os.getpid()))     # COMMAND's parent is the keeper, whose parent is vupy
    cpus = []
    for tid in os.listdir(f'/proc/{vupy_pid}/task'):
        with open(f'/proc/{vupy_pid}/task/{tid}/status') as f:
            status = dict(line.rstrip('\\n').split(':\\t', 1) for line in f)
        if status['Name'] == 'vupy-serve':
            # A thread that made a socket stays in its stack's namespace.
            served = os.stat(f'/proc/{vupy_pid}/task/{tid}/ns/net').st_ino in STACKS
            cpus.append((status['Cpus_allowed_list'], served))
    print(sorted(cpus))
"""


@pytest.mark.parametrize("options, cpus, threads", [
    ((), None, 2),
    (("--serving-threads", "0"), None, 0),
    (("--serving-threads", "1"), None, 1),
    (("--serving-threads", "8"), "0,1", 2),
    ((), "1", 0),
    (("--route", "10.0.0.0/8=/dev/net/b"), None, 0),
    (("--route", "10.0.0.0/8=/dev/net/b", "--serving-threads", "2"), None, 2),
], ids=["default", "none", "one", "at-most-one-per-cpu", "one-cpu", "routes", "routes-asked"])
def test_serving_threads_one_per_cpu(netns, options, cpus, threads):
    """Two processes of eight threads each make sockets at once, by the
    default stack and by path (so the fast path serves them, in parallel
    where there are serving threads): every socket is of its stack.  vupy
    has a receiving serving thread per CPU it may run on (here, CPUs 0 and
    1), unless told otherwise, there is one CPU only, or the session
    routes; each with its spares (csrc/fastpath.c, SPARES), all on vupy's
    CPUs, and at least as many of them as receive served some calls."""
    if not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("needs CPUs 0 and 1")
    cpus = cpus or "0,1"
    a, b = netns(), netns()
    argv = [VUPY, "run", "--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}",
            "--default", "/dev/net/a", *options, "--", PYTHON, "-c",
            textwrap.dedent(PRELUDE + f"    STACKS = {{{ns_inode(a)}, {ns_inode(b)}}}" + SERVERS)]
    r = run(["taskset", "-c", cpus, *argv])
    assert r.returncode == 0, r.stderr
    cpus = cpus.replace(",", "-")   # as Cpus_allowed_list writes 0,1
    made = str(sorted({f"ns {ns_inode(a)}": 2400, f"ns {ns_inode(b)}": 2400}.items()))
    lines = r.stdout.splitlines()
    assert lines[:2] == [made, made], (r.stdout, r.stderr)
    servers = eval(lines[2])
    assert len(servers) == threads * (1 + SPARES), r.stdout
    assert {where for where, _ in servers} <= {cpus}, r.stdout
    assert sum(served for _, served in servers) >= threads, r.stdout
