# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Stack modules found through entry points, and stacks mounted, used and
unmounted while a session runs (vumount, vuumount, vustack)."""
import json
import os
import subprocess

import pytest

from helpers import HOST_LABEL, NOBODY, PYTHON, SYSTEM_PYTHON, VUPY, ns_label, run, vupy

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "vupy-pidstack")
BIN = os.path.dirname(PYTHON)
VUMOUNT, VUUMOUNT = os.path.join(BIN, "vumount"), os.path.join(BIN, "vuumount")


def shell(*args, script, env=None):
    """A shell script in a session; the session's bin directory first in PATH."""
    env = dict(env or os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    return vupy(*args, "--", "sh", "-c", script, env=env)


@pytest.fixture(scope="module")
def pidstack(tmp_path_factory):
    """The example module, installed with pip into a directory of its own:
    an environment in which vupy finds it only through its entry point."""
    target = tmp_path_factory.mktemp("pidstack")
    r = run([PYTHON, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
             "--target", str(target), EXAMPLE], timeout=300)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ)
    env["PYTHONPATH"] = str(target)
    return env


@pytest.fixture
def process_in(netns):
    """start(ns) -> pid of a process that runs in namespace ns until teardown."""
    procs = []

    def start(ns):
        p = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "300"])
        procs.append(p)
        return p.pid

    yield start
    for p in procs:
        p.kill()
        p.wait()


# Modules -------------------------------------------------------------------

def test_entry_point_module_is_listed(pidstack):
    r = run([VUPY, "modules"], env=pidstack)
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert names == ["host", "lwip", "netns", "null", "pid", "vde"]
    assert "the network namespace of a running process" in r.stdout
    assert "pid" not in [line.split()[0] for line in run([VUPY, "modules"]).stdout.splitlines()]


def test_entry_point_module_works_with_stack_option(pidstack, netns, process_in, probe):
    a = netns()
    pid = process_in(a)
    r = vupy("--stack", f"/dev/net/p=pid:{pid}", "--default", "/dev/net/p", "--",
             PYTHON, probe, "sock", "inet", "stream", "msock", "/dev/net/p", "inet6", "dgram",
             env=pidstack)
    assert r.stdout.split() == [ns_label(a)] * 2, r.stderr


def test_entry_point_module_works_with_vumount(pidstack, netns, process_in, probe):
    a = netns()
    pid = process_in(a)
    r = shell(script=f"vumount -t pid {pid} /dev/net/q && {PYTHON} {probe} msock /dev/net/q inet dgram",
              env=pidstack)
    assert r.stdout.split() == [ns_label(a)], r.stderr


def test_followed_process_stack_fails_with_enetdown_once_process_is_gone(pidstack, netns, probe):
    a = netns()
    script = (f"ip netns exec {a} sleep 300 & pid=$!; sleep 0.2; "
              f"vumount -t pid -o follow=yes $pid /dev/net/q && "
              f"{PYTHON} {probe} msock /dev/net/q inet dgram && kill $pid && wait $pid; "
              f"{PYTHON} {probe} msock /dev/net/q inet dgram")
    r = shell(script=script, env=pidstack)
    assert r.stdout.split() == [ns_label(a), "ENETDOWN"], r.stderr


BROKEN = """
    raise ImportError("needs libfrobnicate, which is not installed")
"""


def test_broken_module_is_reported_and_the_others_still_work(stack_module):
    env = stack_module("vupytbad", BROKEN)
    r = run([VUPY, "modules"], env=env)
    assert r.returncode == 0, r.stderr
    bad = [line for line in r.stdout.splitlines() if line.startswith("vupytbad")]
    assert len(bad) == 1 and "BROKEN" in bad[0] and "libfrobnicate" in bad[0]
    assert any(line.startswith("netns ") for line in r.stdout.splitlines())
    ok = vupy("--stack", "/dev/net/a=netns:new", "--", "true", env=env)
    assert ok.returncode == 0, ok.stderr
    refused = vupy("--stack", "/dev/net/b=vupytbad", "--", "true", env=env)
    assert refused.returncode == 2
    assert "libfrobnicate" in refused.stderr and len(refused.stderr.splitlines()) == 1


# Mounting in a session -------------------------------------------------------

def test_mount_use_unmount_in_one_session(netns, probe):
    a = netns()
    r = shell(script=f"vumount -t netns {a} /dev/net/x && {PYTHON} {probe} msock /dev/net/x inet stream"
                     f" && vuumount /dev/net/x && {PYTHON} {probe} msock /dev/net/x inet stream; "
                     "vumount | grep -c /dev/net/x")
    assert r.stdout.split() == [ns_label(a), "ENOENT", "0"], r.stderr


def test_vumount_lists_the_sessions_stacks(netns):
    a = netns()
    r = shell("--stack", "/dev/net/a=null", "--default", "inet6=/dev/net/a",
              script=f"vumount -t netns -o mode=0600 {a} /dev/net/x && vumount")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[1:]]
    # path, type, source, options, mode, owner, users: every process of the
    # session uses /dev/net/a, the session default for inet6 (sh and vumount)
    assert rows == [["/dev/net/a", "null", "-", "-", "0644", "0:0", "2"],
                    ["/dev/net/x", "netns", a, "-", "0600", "0:0", "0"]]


def test_busy_stack_is_not_unmounted_and_its_default_still_works(netns, probe):
    a = netns()
    r = shell(script=f"vumount -t netns {a} /dev/net/x && vustack /dev/net/x sh -c "
                     f"'vuumount /dev/net/x; echo rc=$?; vumount | grep -c /dev/net/x; "
                     f"{PYTHON} {probe} sock inet stream'")
    assert r.stdout.split() == ["rc=1", "1", ns_label(a)], r.stderr
    assert "in use as a default by 2 processes" in r.stderr


def test_lazy_unmount_detaches_now_and_frees_when_the_last_user_is_gone(netns, probe):
    a = netns()
    r = shell(script=f"vumount -t netns {a} /dev/net/x && vustack /dev/net/x sh -c "
                     f"'vuumount -l /dev/net/x; echo rc=$?; {PYTHON} {probe} msock /dev/net/x inet stream; "
                     f"vumount | grep -c detached; {PYTHON} {probe} sock inet stream'; "
                     "vumount | grep -c /dev/net/x")
    assert r.stdout.split() == ["rc=0", "ENOENT", "1", ns_label(a), "0"], r.stderr


def test_mount_refused_for_another_uid(probe):
    request = json.dumps({"op": "mount", "type": "null", "source": "", "options": "",
                          "path": "/dev/net/n"})
    r = shell(script=f"{' '.join(NOBODY)} {SYSTEM_PYTHON} {probe} control '{request}'; "
                     f"{PYTHON} {probe} control '{request}'; vumount | grep -c /dev/net/n")
    assert r.stdout.split() == ["EPERM", '{"path":', '"/dev/net/n"}', "1"], r.stderr


def test_unmount_refused_for_another_uid(probe):
    request = json.dumps({"op": "umount", "path": "/dev/net/n"})
    r = shell("--stack", "/dev/net/n=null",
              script=f"{' '.join(NOBODY)} {SYSTEM_PYTHON} {probe} control '{request}'; "
                     "vumount | grep -c /dev/net/n")
    assert r.stdout.split() == ["EPERM", "1"], r.stderr


def test_stack_mode_and_owner_options_are_enforced(netns, probe):
    a = netns()
    as_uid = "setpriv --reuid={0} --regid={0} --clear-groups"
    script = (f"vumount -t netns -o mode=0640,uid=65534,gid=65533 {a} /dev/net/x && "
              f"vumount | awk '/x/ {{print $5, $6}}' && "
              f"{as_uid.format(65534)} {SYSTEM_PYTHON} {probe} msock /dev/net/x inet stream; "
              f"{as_uid.format(65532)} {SYSTEM_PYTHON} {probe} msock /dev/net/x inet stream; "
              f"setpriv --reuid=65532 --regid=65532 --groups=65533 {SYSTEM_PYTHON} {probe} "
              f"msock /dev/net/x inet stream")
    r = shell(script=script)
    assert r.stdout.split() == ["0640", "65534:65533", "ok", "EACCES", "ok"], r.stderr


def test_stack_option_takes_mode_and_owner_too(netns):
    a = netns()
    r = shell("--stack", f"/dev/net/x=netns:{a},mode=0600,gid=7",
              script="vumount | awk '/x/ {print $5, $6}'")
    assert r.stdout.split() == ["0600", "0:7"], r.stderr


@pytest.mark.parametrize("args,words", [
    (["-t", "nosuch", "x", "/dev/net/y"], "nosuch"),
    (["-t", "netns", "vupyt-nosuch", "/dev/net/y"], "vupyt-nosuch"),
    (["-t", "null", "none", "/dev/net/tun"], "/dev/net/tun"),
    (["-t", "null", "none", "/nonexistent-vupyt/y"], "/nonexistent-vupyt"),
    (["-t", "null", "-o", "mode=rw", "none", "/dev/net/y"], "mode"),
])
def test_vumount_errors_name_the_problem(args, words):
    r = shell(script=" ".join(["vumount", *args]) + "; echo rc=$?; vumount | wc -l")
    assert r.stdout.split() == ["rc=1", "1"]
    assert len(r.stderr.splitlines()) == 1 and words in r.stderr


def test_vustack_without_arguments_prints_the_defaults():
    r = shell("--stack", "/dev/net/a=null", "--stack", "/dev/net/b=netns:new",
              "--default", "inet6=/dev/net/a",
              script="vustack -f inet /dev/net/b vustack")
    assert r.stdout.splitlines() == [
        "inet     /dev/net/b",
        "inet6    /dev/net/a (session default)",
        "netlink  host (session default)",
        "packet   host (session default)",
    ], r.stderr


def test_tutorial_shows_the_example_module_as_it_is():
    tutorial = open(os.path.join(os.path.dirname(HERE), "docs", "modules.md")).read()
    for name in ("vupy_pidstack.py", "pyproject.toml"):
        assert open(os.path.join(EXAMPLE, name)).read() in tutorial, name


def test_session_default_is_not_unmounted_and_lazy_keeps_it(netns, probe):
    a = netns()
    r = shell("--stack", f"/dev/net/x=netns:{a}", "--default", "/dev/net/x",
              script=f"vustack -f ip /dev/net/x true; "
                     f"vuumount /dev/net/x; echo rc=$?; vuumount -l /dev/net/x; echo rc=$?; "
                     f"ls /dev/net; vustack -f inet /dev/net/x 2>/dev/null; "
                     f"{PYTHON} {probe} sock inet stream")
    assert r.stdout.split() == ["rc=1", "rc=0", "tun", ns_label(a)], r.stderr
    assert "session default" in r.stderr


def test_host_mounted_during_a_session_is_vupys_namespace(probe):
    r = shell("--stack", "/dev/net/n=netns:new", "--default", "/dev/net/n",
              script=f"{PYTHON} {probe} sock inet dgram >/dev/null && vumount -t host none /dev/net/h && "
                     f"{PYTHON} {probe} msock /dev/net/h inet dgram")
    assert r.stdout.split() == [HOST_LABEL], r.stderr


def test_unavailable_module_is_listed_and_refused_with_its_reason(tmp_path):
    """vde needs vde_plug: without it on PATH the module says so, and the
    others work as before."""
    env = dict(os.environ, PATH=str(tmp_path))     # no vde_plug there
    r = run([VUPY, "modules"], env=env)
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    reason = "vde_plug not found on PATH (Debian package vdeplug)"
    assert lines["vde"].split(None, 2) == ["vde", "inet,inet6,netlink,packet", f"UNAVAILABLE: {reason}"]
    assert "UNAVAILABLE" not in lines["netns"]
    refused = vupy("--stack", "/dev/net/v=vde:vde:///tmp/vupyt-sw", "--", "/bin/true", env=env)
    assert (refused.returncode, refused.stderr) == (2, f"vupy: module 'vde' is unavailable: {reason}\n")
    ok = vupy("--stack", "/dev/net/n=netns:new", "--", "/bin/true", env=env)
    assert ok.returncode == 0, ok.stderr


def test_stack_paths_are_made_absolute_keeping_what_changes_their_meaning(monkeypatch, tmp_path):
    """`.` and repeated slashes go; `..` (which may cross a link) and a
    trailing `/` or `.` (a directory, never a stack) stay."""
    from vupy._wrapper import stack_path
    monkeypatch.chdir(tmp_path)
    assert [stack_path(p) for p in ("./x", "x", "//dev//net/./a", "../x", "/dev/net/", "/dev/net/.")] == \
        [f"{tmp_path}/x", f"{tmp_path}/x", "/dev/net/a", f"{tmp_path}/../x", "/dev/net/", "/dev/net/."]
