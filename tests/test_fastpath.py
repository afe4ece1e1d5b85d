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

from helpers import BIN, PYTHON, VUPY, ns_inode, run

PRELUDE = """
    import errno, fcntl, os, socket, sys
    import vupy
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
    INET = (socket.AF_INET, socket.SOCK_DGRAM)
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

