# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""A stack's PATH is a name, not a file: nothing appears in its directory,
what programs write there is kept, and /dev/net/tun stays usable.
"""
import os
import subprocess
import textwrap


from helpers import BIN, PYTHON, TIMEOUT, VUSTACK, files_kept, finish, started, vupy, wait_line


def test_files_written_beside_a_stack_are_kept(tmp_path):
    files_kept(tmp_path, lambda argv: vupy(*argv))


def test_stack_names_are_not_files():
    before = sorted(os.listdir("/dev/net"))
    with started(["--stack", "/dev/net/vupyt-a=netns:new", "--stack", "/dev/net/vupyt-b=null",
                  "--", "sh", "-c",
                  "ls -1 /dev/net; vumount | tail -n +2 | cut -d' ' -f1; echo ready; read x; exit 0"],
                 stdin=subprocess.PIPE, env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")) as proc:
        inside = wait_line(proc, "ready")
        during = sorted(os.listdir("/dev/net"))
        proc.stdin.close()
        assert finish(proc) == 0
    assert inside == before + ["/dev/net/vupyt-a", "/dev/net/vupyt-b"]
    assert during == before == sorted(os.listdir("/dev/net"))


TUN_PROBE = textwrap.dedent("""
    import fcntl, struct
    f = open("/dev/net/tun", "r+b", buffering=0)
    ifr = struct.pack("16sH", b"vupyt%d", 0x0001 | 0x1000)   # IFF_TUN | IFF_NO_PI
    r = fcntl.ioctl(f, 0x400454CA, ifr + bytes(40 - len(ifr)))   # TUNSETIFF
    print(r[:16].rstrip(b"\\0").decode())
""")


def test_tun_usable_inside():
    r = vupy("--stack", "/dev/net/vupyt-n=netns:new", "--",
             PYTHON, "-c", "open('/dev/net/tun', 'rb').close(); print('opened')")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "opened"
    r = vupy("--stack", "/dev/net/vupyt-n=netns:new", "--", PYTHON, "-c", TUN_PROBE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("vupyt")


def test_ip_tuntap_add_in_netns_stack(netns):
    ns = netns()
    dev = f"vupyt{os.getpid() % 100000}"
    try:
        r = vupy("--stack", "/dev/net/vupyt-n=netns:" + ns, "--",
                 VUSTACK, "/dev/net/vupyt-n", "ip", "tuntap", "add", "dev", dev, "mode", "tun")
        assert r.returncode == 0, r.stderr
    finally:
        # Wherever the kernel put it: tun makes its device in the namespace
        # of the process that opened /dev/net/tun (here, the host's), not in
        # the default stack's; only sockets follow the stacks.
        subprocess.run(["ip", "link", "del", dev], capture_output=True, timeout=TIMEOUT)
        subprocess.run(["ip", "-n", ns, "link", "del", dev], capture_output=True, timeout=TIMEOUT)
