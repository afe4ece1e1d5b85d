#!/usr/bin/env python3
"""What does vupy cost per socket()?  socket(2)+close(2), side by side.

    python bench/socket_create.py [--rounds 5] [--iterations 20000] [--json PATH]

Run as root (vupy run and `ip netns add` need it), with the Python of the
venv vupy is installed in: `vupy` is looked up next to sys.executable.

Three modes, each timed by a C loop and by a Python loop:

native       no vupy: the loop alone.
filter-only  the loop under `vupy run -- ...` making AF_UNIX sockets.  The
             filter lets AF_UNIX through in BPF, with no round trip to the
             supervisor, so this is what every socket() of a program pays
             merely for running in a session; compared with native AF_UNIX.
             (AF_INET would not do: with no --stack the host stack is the
             session default for it, and every AF_INET socket is routed.)
routed       the loop under `vupy run --stack /dev/net/b=netns:vupyb-PID
             --default /dev/net/b -- ...` making AF_INET sockets: each one is
             trapped, made by the supervisor in the namespace and injected
             with SECCOMP_IOCTL_NOTIF_ADDFD; compared with native AF_INET.

Every measurement runs pinned to one CPU (`taskset -c CPU` in front of the
whole command, so vupy's supervisor thread and the target take turns on
that CPU, the case SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP is for) and unpinned
(the affinity this script was started with).  Rounds are interleaved, with
the order rotated each round, so that slow drift of the machine (frequency,
noisy neighbours) spreads over all configurations instead of biasing one.

Each run prints the mean time per call of its timed loop; a configuration's
result is the median of its rounds, with min-max and IQR as the spread.  The
script asserts nothing about the numbers: it only reports them.  It does
check that the sockets of each run come from the network namespace the mode
promises (SIOCGSKNS on one socket after the loop), because a "routed" time
that was not routed would be a wrong number, and says so if not.
"""
import argparse
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

from benchlib import BenchError, exit_on_sigterm, machine, run_main, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
C_SOURCE = os.path.join(HERE, "sockloop.c")
VUPY = os.path.join(os.path.dirname(sys.executable), "vupy")
STACK_PATH = "/dev/net/b"
RUN_TIMEOUT = 600  # seconds; a run that hangs must not hang the benchmark

# The Python loop: the same protocol as sockloop.c (argv: family, iterations,
# warmup; output: "NS_PER_CALL NETNS_INODE").  socket.socket() is what a
# Python program calls, so its object overhead is part of the workload; the
# ratio against native Python is what tells vupy's share.
PY_LOOP = r"""
import fcntl, os, socket, sys, time
family = socket.AF_INET if sys.argv[1] == "inet" else socket.AF_UNIX
n, warmup = int(sys.argv[2]), int(sys.argv[3])
sock = socket.socket
for _ in range(warmup):
    sock(family, socket.SOCK_STREAM).close()
t0 = time.perf_counter_ns()
for _ in range(n):
    sock(family, socket.SOCK_STREAM).close()
t1 = time.perf_counter_ns()
inode = 0
with sock(family, socket.SOCK_STREAM) as s:
    try:
        nsfd = fcntl.ioctl(s.fileno(), 0x894C)  # SIOCGSKNS
        inode = os.fstat(nsfd).st_ino
        os.close(nsfd)
    except OSError:
        pass
print(f"{(t1 - t0) / n:.1f} {inode}")
"""

FAMILY_NAME = {"inet": "AF_INET", "unix": "AF_UNIX"}

# (mode, family) in table order, and the native row each is compared with.
CONFIGS = [
    ("native", "inet"),
    ("native", "unix"),
    ("filter-only", "unix"),
    ("routed", "inet"),
]
BASELINE = {
    ("native", "inet"): ("native", "inet"),
    ("native", "unix"): ("native", "unix"),
    ("filter-only", "unix"): ("native", "unix"),
    ("routed", "inet"): ("native", "inet"),
}
LANGUAGES = ("C", "Python")


# Running ----------------------------------------------------------------

def compile_loop(tmpdir):
    exe = os.path.join(tmpdir, "sockloop")
    r = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", exe, C_SOURCE],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"cannot compile {C_SOURCE}:\n{r.stderr}")
    return exe


def loop_argv(language, exe, family, iterations, warmup):
    tail = [family, str(iterations), str(warmup)]
    if language == "C":
        return [exe, *tail]
    return [sys.executable, "-c", PY_LOOP, *tail]


def command(mode, loop, namespace, cpu):
    """The full argv of one run; `cpu` None means unpinned."""
    if mode == "native":
        argv = list(loop)
    elif mode == "filter-only":
        argv = [VUPY, "run", "--", *loop]
    elif mode == "routed":
        argv = [VUPY, "run", "--stack", f"{STACK_PATH}=netns:{namespace}",
                "--default", STACK_PATH, "--", *loop]
    else:
        raise ValueError(mode)
    if cpu is not None:
        # In front of vupy, not of the loop: the supervisor must share the CPU.
        argv = ["taskset", "-c", str(cpu), *argv]
    return argv


def run_once(argv):
    """(ns per call, netns inode of the sockets) of one run."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except BaseException:
        # Interrupted or hung: SIGTERM first, which vupy passes on to its
        # COMMAND and then ends the session (SIGKILL would orphan the loop).
        # taskset execs its command, so proc is vupy or the loop itself.
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    if proc.returncode != 0:
        raise BenchError(f"exit status {proc.returncode}: {shlex.join(argv)[:200]}\n{err.strip()}")
    try:
        ns, inode = out.split()
        return float(ns), int(inode)
    except ValueError:
        raise BenchError(f"unexpected output {out!r}: {shlex.join(argv)[:200]}") from None


def summarise(samples_ns):
    us = sorted(x / 1000 for x in samples_ns)
    if len(us) >= 2:
        q1, _, q3 = statistics.quantiles(us, n=4, method="inclusive")
    else:
        q1 = q3 = us[0]
    return {"median_us": statistics.median(us), "min_us": us[0], "max_us": us[-1],
            "q1_us": q1, "q3_us": q3}


# Reporting --------------------------------------------------------------

def table(results):
    head = ("workload", "cpu", "mode", "family", "median us/call", "min-max us",
            "IQR us", "+us/call", "x native")
    rows = []
    for r in results:
        base = r["baseline"]
        rows.append((
            f"{r['language']} loop",
            "pinned" if r["pinned"] else "unpinned",
            r["mode"],
            FAMILY_NAME[r["family"]],
            f"{r['median_us']:.2f}",
            f"{r['min_us']:.2f}-{r['max_us']:.2f}",
            f"{r['q3_us'] - r['q1_us']:.2f}",
            "-" if base is None else f"{r['overhead_us']:+.2f}",
            "(base)" if base is None else f"{r['ratio']:.2f}",
        ))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    numeric = {4, 5, 6, 7, 8}

    def fmt(row):
        return "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))

    lines = [fmt(head), fmt(["-" * w for w in widths])]
    previous = None
    for r, row in zip(results, rows):
        group = (r["language"], r["pinned"])
        if previous is not None and group != previous:
            lines.append("")
        previous = group
        lines.append(fmt(row))
    return "\n".join(lines)


# Main -------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="runs per configuration (default 5)")
    p.add_argument("--iterations", type=int, default=20000,
                   help="timed socket()+close() pairs per run (default 20000)")
    p.add_argument("--warmup", type=int, default=1000,
                   help="untimed pairs before the timed loop of each run (default 1000)")
    p.add_argument("--cpu", type=int, default=None,
                   help="CPU for the pinned runs (default: the first one this script may use)")
    p.add_argument("--json", metavar="PATH", help="write every number and the machine here")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.iterations < 1 or args.warmup < 0:
        p.error("--rounds and --iterations must be >= 1, --warmup >= 0")

    if os.geteuid() != 0:
        sys.exit("socket_create.py: vupy run and ip netns add need root")
    for tool in ("gcc", "taskset", "ip"):
        if shutil.which(tool) is None:
            sys.exit(f"socket_create.py: {tool} not found")
    if not os.access(VUPY, os.X_OK):
        sys.exit(f"socket_create.py: no vupy next to {sys.executable} (expected {VUPY})")

    affinity = os.sched_getaffinity(0)
    cpu = args.cpu if args.cpu is not None else min(affinity)
    signal.signal(signal.SIGTERM, exit_on_sigterm)

    namespace = f"vupyb-{os.getpid()}"
    tmpdir = tempfile.mkdtemp(prefix="vupy-bench-")
    made_namespace = False
    try:
        exe = compile_loop(tmpdir)
        r = subprocess.run(["ip", "netns", "add", namespace], capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"ip netns add {namespace}: {r.stderr.strip()}")
        made_namespace = True
        home_ino = os.stat("/proc/self/ns/net").st_ino
        stack_ino = os.stat(f"/run/netns/{namespace}").st_ino
        expected_ino = {"native": home_ino, "filter-only": home_ino, "routed": stack_ino}

        # Every configuration, in the order of the table.
        configs = [(lang, pinned, mode, family)
                   for lang in LANGUAGES
                   for pinned in (True, False)
                   for mode, family in CONFIGS]
        samples = {c: [] for c in configs}
        wrong_ns = {c: 0 for c in configs}
        total = len(configs) * args.rounds
        done = 0
        progress = sys.stderr.isatty()  # a progress line only where it can be overwritten
        for rnd in range(args.rounds):
            k = rnd % len(configs)
            for config in configs[k:] + configs[:k]:
                lang, pinned, mode, family = config
                loop = loop_argv(lang, exe, family, args.iterations, args.warmup)
                ns, ino = run_once(command(mode, loop, namespace, cpu if pinned else None))
                samples[config].append(ns)
                if ino != expected_ino[mode]:
                    wrong_ns[config] += 1
                done += 1
                if progress:
                    print(f"\r  run {done}/{total}", end="", file=sys.stderr, flush=True)
        if progress:
            print("\r" + " " * 20 + "\r", end="", file=sys.stderr, flush=True)
    finally:
        if made_namespace:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        shutil.rmtree(tmpdir, ignore_errors=True)

    results = []
    for config in configs:
        lang, pinned, mode, family = config
        results.append({"language": lang, "pinned": pinned, "mode": mode, "family": family,
                        "samples_ns_per_call": samples[config],
                        "runs_with_sockets_from_wrong_namespace": wrong_ns[config],
                        **summarise(samples[config])})
    by_key = {(r["language"], r["pinned"], r["mode"], r["family"]): r for r in results}
    for r in results:
        bmode, bfamily = BASELINE[(r["mode"], r["family"])]
        if (bmode, bfamily) == (r["mode"], r["family"]):
            r["baseline"] = None
            continue
        base = by_key[(r["language"], r["pinned"], bmode, bfamily)]
        r["baseline"] = f"{bmode} {FAMILY_NAME[bfamily]}"
        r["overhead_us"] = r["median_us"] - base["median_us"]
        r["ratio"] = r["median_us"] / base["median_us"]

    reproduce = shlex.join([sys.executable, sys.argv[0],
                            "--rounds", str(args.rounds), "--iterations", str(args.iterations),
                            "--warmup", str(args.warmup), "--cpu", str(cpu)]
                           + (["--json", args.json] if args.json else []))
    info = machine(affinity, [["gcc", "--version"]])
    print(f"socket(FAMILY, SOCK_STREAM, 0) + close(): {args.iterations} timed calls per run "
          f"(after {args.warmup} untimed), {args.rounds} rounds; median of the rounds")
    print(f"{info['cpu_model']}, {info['nproc']} CPUs (allowed {info['affinity']}), "
          f"Linux {info['kernel']}, Python {info['python']}; pinned = taskset -c {cpu} "
          f"on the whole command, unpinned = CPUs {info['affinity']}")
    print("+us/call and x native: against native of the same language and pinning "
          "(filter-only vs native AF_UNIX, routed vs native AF_INET)")
    print()
    print(table(results))
    bad = [r for r in results if r["runs_with_sockets_from_wrong_namespace"]]
    for r in bad:
        print(f"WARNING: {r['language']} {'pinned' if r['pinned'] else 'unpinned'} {r['mode']}: "
              f"{r['runs_with_sockets_from_wrong_namespace']} of {args.rounds} runs made their "
              f"sockets outside the expected namespace: that time does not measure {r['mode']}")
    print()
    print(f"reproduce (as root): {reproduce}")

    if args.json:
        doc = {
            "benchmark": "socket(FAMILY, SOCK_STREAM, 0) + close() per call",
            "parameters": {"rounds": args.rounds, "iterations": args.iterations,
                           "warmup": args.warmup, "pinned_cpu": cpu,
                           "stack": f"{STACK_PATH}=netns:vupyb-PID"},
            "modes": {
                "native": "no vupy",
                "filter-only": "vupy run -- LOOP, AF_UNIX: allowed by the BPF filter, no round trip",
                "routed": f"vupy run --stack {STACK_PATH}=netns:NS --default {STACK_PATH} -- LOOP, "
                          "AF_INET: trapped, made in NS by the supervisor, injected with ADDFD",
            },
            "machine": info,
            "results": results,
            "command": reproduce,
        }
        write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    run_main(main, "socket_create.py")
