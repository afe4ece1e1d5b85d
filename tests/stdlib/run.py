# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Run the standard library's network test modules under vupy and compare stacks.

    python tests/stdlib/run.py [--stack kernel|lwip]... [--seconds N] [--json FILE] [MODULE...]

Runs each MODULE (default: MODULES) under `vupy run` with, as the default
stack, a fresh kernel namespace (`kernel`: netns:new) and an lwip stack on
slirp (`lwip`), each test case on its own clock (child.py), and prints
for each module and stack how many tests passed, failed, raised, were
skipped or timed out, then every test that passed on the kernel stack and
not on lwip, with its reason.  A test that hangs its process beyond the
reach of its clock is counted `hung`, and the module goes on in a new
session without it.  --json FILE keeps every test's outcome.  As root
(netns:new makes a namespace); needs the system Python's `test` package
(Debian: libpython3.11-testsuite).
"""
import argparse
import collections
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from compat.lab import SYSTEM_PYTHON, find_vupy  # noqa: E402

CHILD = os.path.join(HERE, "child.py")
MODULES = ("test_socket", "test_asyncio.test_events", "test_asyncio.test_sock_lowlevel",
           "test_asyncio.test_streams", "test_asyncio.test_server", "test_socketserver",
           "test_httpservers", "test_urllib2_localnet", "test_ftplib", "test_smtplib",
           "test_xmlrpc", "test_selectors")
# They ask for the resource "network" (regrtest -u network) but talk only
# to their own servers on the loopback.
LOOPBACK_ONLY = ("test_socketserver",)
STACKS = {
    "kernel": ("/dev/net/k", "netns:new"),
    "lwip": ("/dev/net/u", "lwip:slirp://,ip=10.0.2.15/24,gw=10.0.2.2"),
}
OUTCOMES = ("pass", "fail", "error", "skip", "timeout", "hung")
SECONDS = 30            # a test's own clock
GRACE = 30              # beyond it, the process is hung


def session_argv(stack, argv):
    path, spec = STACKS[stack]
    return [find_vupy(), "run", "--stack", f"{path}={spec}", "--default", path, "--", *argv]


def _end(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _session(stack, module, seconds, skip, only, results, workdir):
    """One session running child.py on module until it ends or hangs;
    results gains what it reports.  True if it ran to its end."""
    skip_file = os.path.join(workdir, "skip")
    with open(skip_file, "w") as f:
        f.write("\n".join(skip))
    argv = [SYSTEM_PYTHON, "-u", CHILD, module, str(seconds), str(int(module in LOOPBACK_ONLY)), skip_file]
    if only is not None:
        only_file = os.path.join(workdir, "only")
        with open(only_file, "w") as f:
            f.write("\n".join(only))
        argv.append(only_file)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | {"LC_ALL": "C"}
    proc = subprocess.Popen(session_argv(stack, argv), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=workdir,
                            env=env, start_new_session=True)
    started, done, buffered = None, False, b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        last = time.monotonic()
        while True:
            if not sel.select(timeout=1):
                if time.monotonic() - last > seconds + GRACE:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            last = time.monotonic()
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                word, _, rest = line.decode(errors="replace").partition(" ")
                if word == "START":
                    started = rest
                elif word == "RESULT":
                    r = json.loads(rest)
                    worse = results.get(r["id"], {"outcome": "pass"})
                    if r["id"] not in results or OUTCOMES.index(r["outcome"]) > OUTCOMES.index(worse["outcome"]) \
                            or worse["outcome"] == "skip":
                        results[r["id"]] = {"outcome": r["outcome"], "why": r["why"]}
                    started = None if r["id"] == started else started
                elif word == "DONE":
                    done = True
    _end(proc)
    if not done and started is not None and started not in results:
        results[started] = {"outcome": "hung", "why": f"its process hung (killed after {seconds + GRACE} s)"}
    return done or started is None


def run_module(stack, module, seconds=SECONDS, only=None):
    """{test id: {"outcome": ..., "why": ...}} of module on stack."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="vupyt-stdlib-") as workdir:
        while not _session(stack, module, seconds, set(results), only, results, workdir):
            pass
    return results


def counts(results):
    c = collections.Counter(r["outcome"] for r in results.values())
    return {o: c[o] for o in OUTCOMES}


def report(runs, stacks):
    out = []
    modules = sorted({m for s in stacks for m in runs[s]}, key=lambda m: (m not in MODULES, m))
    out.append("module".ljust(34) + "".join(f"{s:>8}:" + "".join(f"{o:>8}" for o in OUTCOMES) for s in stacks))
    for m in modules:
        row = m.ljust(34)
        for s in stacks:
            c = counts(runs[s].get(m, {}))
            row += " " * 9 + "".join(f"{c[o]:>8}" for o in OUTCOMES)
        out.append(row)
    if "kernel" in stacks and "lwip" in stacks:
        out.append("\nPassed on kernel, not on lwip, by what went wrong (tests by class):")
        lost = collections.defaultdict(collections.Counter)
        for m in modules:
            k, u = runs["kernel"].get(m, {}), runs["lwip"].get(m, {})
            for test, r in k.items():
                got = u.get(test, {"outcome": "missing", "why": ""})
                if r["outcome"] == "pass" and got["outcome"] != "pass":
                    lost[f"{got['outcome']}: {got['why']}"][test.rsplit(".", 1)[0]] += 1
        for why, classes in sorted(lost.items(), key=lambda item: -sum(item[1].values())):
            out.append(f"  {sum(classes.values())} {why}")
            out.extend(f"      {n} {name}" for name, n in sorted(classes.items()))
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", action="append", choices=STACKS, help="default: both")
    parser.add_argument("--seconds", type=int, default=SECONDS, help="each test's clock")
    parser.add_argument("--json", metavar="FILE", help="write every test's outcome")
    parser.add_argument("--report", metavar="FILE", nargs="+",
                        help="run nothing: report the outcomes kept in these --json files")
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"default: {' '.join(MODULES)}")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("must run as root (netns:new makes a namespace)")
    if not find_vupy():
        parser.error("no vupy next to this Python or on PATH")
    stacks = args.stack or list(STACKS)
    if args.report:
        runs = {}
        for name in args.report:
            with open(name) as f:
                runs.update(json.load(f))
        print(report(runs, [s for s in STACKS if s in runs]))
        return 0
    runs = {s: {} for s in stacks}
    for module in args.modules or MODULES:
        for s in stacks:
            began = time.monotonic()
            runs[s][module] = run_module(s, module, args.seconds)
            c = counts(runs[s][module])
            print(f"{module} on {s}: " + ", ".join(f"{c[o]} {o}" for o in OUTCOMES)
                  + f" ({time.monotonic() - began:.0f} s)", flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(runs, f, indent=1, sort_keys=True)
    print(report(runs, stacks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
