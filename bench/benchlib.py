# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What the benchmark scripts share.

Every script measures the same workload natively (or on a baseline path)
and under vupy in one run, over several rounds interleaved with the order
rotated each round (so that slow drift of the machine spreads over every
configuration), and reports each side's median and spread and the ratio.
Scripts assert nothing about the numbers; each checks that every run took
the path it claims, and reports the runs that did not.

A script is a module with NAME, TOOLS (the commands it needs), QUICK (the
smallest arguments that still run every configuration, for tests/test_bench.py
and `all.py --quick`), parser() and run(args) -> document; script_main() makes
it a command and execute() runs it for bench/all.py.  A document is a dict:
title, notes (lines printed above the table), results (rows made by
compare()), checked (what was verified), and, added by execute(), name,
parameters, machine and command.
"""
import argparse
import datetime
import itertools
import json
import os
import platform
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
VUPY = os.path.join(os.path.dirname(sys.executable), "vupy")
STACK_PATH = "/dev/net/a"
RUN_TIMEOUT = 600       # seconds for one run: a hung run must not hang the benchmark
SETUP_TIMEOUT = 60      # seconds for one set-up command (ip, ...)
SECCOMP_FILTER = 2      # the Seccomp: field of a process under a filter


class BenchError(Exception):
    pass


def exit_on_sigterm(signum, frame):
    # An exception, so that the finally blocks remove what the run made.
    raise SystemExit(128 + signum)


# The machine --------------------------------------------------------------

def _first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return next(iter((r.stdout or r.stderr).strip().splitlines()), None)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def vupy_version():
    try:
        from importlib.metadata import version
        return version("vupy")
    except Exception:  # not installed as a distribution: not worth failing over
        return None


def machine():
    uname = os.uname()
    return {
        "kernel": uname.release,
        "uname": " ".join(uname),
        "nproc": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "loadavg": os.getloadavg(),
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "vupy": vupy_version(),
        "gcc": _first_line(["gcc", "--version"]),
        "vde_switch": _first_line(["vde_switch", "-v"]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def describe_machine(info):
    return (f"{info['cpu_model']}, {info['nproc']} CPUs (allowed {info['affinity']}), "
            f"Linux {info['kernel']}, Python {info['python']}, vupy {info['vupy']}; "
            f"load average {' '.join(f'{x:.2f}' for x in info['loadavg'])} at the end")


# Commands and processes ---------------------------------------------------

def session(command, *options):
    """`vupy run OPTIONS -- COMMAND`."""
    return [VUPY, "run", *options, "--", *command]


def netns_stack(namespace, default=True):
    """vupy run options: STACK_PATH on the namespace, and the session
    default for every family if `default`."""
    return ["--stack", f"{STACK_PATH}=netns:{namespace}"] + (["--default", STACK_PATH] if default else [])


def pin(argv, cpus):
    """argv under `taskset -c CPUS`; None: argv as it is.  In front of vupy,
    so that its supervisor shares the CPUs with the program."""
    return argv if cpus is None else ["taskset", "-c", str(cpus), *argv]


def command(argv, check=True):
    """Run a set-up command; BenchError if it fails and `check`."""
    r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=SETUP_TIMEOUT)
    if check and r.returncode != 0:
        raise BenchError(f"{shlex.join(argv)}: {r.stderr.strip() or f'exit status {r.returncode}'}")
    return r


def stop(p):
    """End a child: SIGTERM first, which vupy passes on to its COMMAND before
    ending the session (SIGKILL would orphan it); SIGKILL after 5 s."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def describe(argv):
    return shlex.join(argv)[:300]


def run_once(argv, timeout=RUN_TIMEOUT):
    """The standard output of argv, which must succeed in `timeout` s."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except BaseException:   # hung, interrupted or SIGTERM'd: end it too
        stop(p)
        raise
    if p.returncode != 0:
        raise BenchError(f"exit status {p.returncode}: {describe(argv)}\n{err.strip()}")
    return out


class Proc:
    """A child whose standard output is read line by line under a deadline;
    a daemon's (that prints nothing we read) goes nowhere and its standard
    error to a file, so that neither can fill up a pipe and block it."""

    def __init__(self, argv, stdin=subprocess.DEVNULL, daemon=False):
        self.argv = argv
        self.errfile = tempfile.TemporaryFile() if daemon else None
        self.p = subprocess.Popen(argv, stdin=stdin,
                                  stdout=subprocess.DEVNULL if daemon else subprocess.PIPE,
                                  stderr=self.errfile if daemon else subprocess.PIPE, bufsize=0)
        self.buf = b""

    def errors(self):
        """A daemon's standard error so far."""
        self.errfile.seek(0)
        return self.errfile.read().decode(errors="replace").strip()

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                raise BenchError(f"no answer in {timeout} s: {describe(self.argv)}")
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                self.p.wait()
                err = self.p.stderr.read().decode(errors="replace").strip()
                raise BenchError(f"exit status {self.p.returncode} before answering: "
                                 f"{describe(self.argv)}\n{err}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def result(self, timeout):
        """The JSON line the program prints last, once it has exited 0."""
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"no result in {timeout} s: {describe(self.argv)}") from None
        out = (self.buf + out).decode(errors="replace").strip()
        if self.p.returncode != 0:
            raise BenchError(f"exit status {self.p.returncode}: {describe(self.argv)}\n"
                             f"{err.decode(errors='replace').strip()}")
        try:
            return json.loads(out.splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"unexpected output {out[-300:]!r}: {describe(self.argv)}") from None

    def stop(self):
        stop(self.p)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr, self.errfile):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


# Network namespaces -------------------------------------------------------

_serial = itertools.count()


def netns_inode(name=None):
    """The inode of namespace `name` (made with ip netns add), or of ours."""
    return os.stat(f"/run/netns/{name}" if name else "/proc/self/ns/net").st_ino


class Namespaces:
    """Network namespaces named vupyb-PID-N, each with lo up.  remove(),
    which a with block calls at its end, deletes them with every process
    still in them."""

    def __init__(self):
        self.made = []

    def add(self):
        name = f"vupyb-{os.getpid()}-{next(_serial)}"
        command(["ip", "netns", "add", name])
        self.made.append(name)
        command(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def remove(self):
        """Delete them all; the problems met, as a list of strings."""
        errors = []
        for name in reversed(self.made):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
            for pid in pids.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            r = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            if r.returncode != 0:
                errors.append(f"ip netns del {name}: {r.stderr.strip()}")
        self.made = []
        return errors

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


# The loop programs: loops.c and pyloop.py ---------------------------------

def compile_program(name, tmpdir):
    """bench/NAME.c compiled into `tmpdir`: the program's path."""
    exe, source = os.path.join(tmpdir, name), os.path.join(HERE, f"{name}.c")
    r = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", exe, source],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"cannot compile {source}:\n{r.stderr}")
    return exe


class Loop(NamedTuple):
    """One configuration of a loop benchmark."""
    language: str           # "C" (loops.c) or "Python" (pyloop.py)
    workload: tuple         # the program's arguments after WARMUP
    mode: str               # a key of the script's modes
    cpus: object = None     # taskset CPU list; None: unpinned


class Mode(NamedTuple):
    """How a loop runs, and what it must report if it ran that way."""
    options: object         # vupy run options; None: natively
    netns: int              # the namespace of its sockets
    seccomp: int            # its Seccomp: field
    under: tuple = ()       # another command to run it under, instead of vupy


class Elsewhere:
    """Mode.netns for sockets of a namespace of vupy's own: equal to any
    inode but `inodes`'."""

    def __init__(self, *inodes):
        self.inodes = inodes

    def __eq__(self, inode):
        return inode not in self.inodes

    def __hash__(self):
        return hash(self.inodes)

    def __str__(self):
        return f"a namespace other than {', '.join(map(str, self.inodes))}"


def native_mode():
    return Mode(None, netns_inode(), 0)


class Loops:
    """loops.c, compiled into `tmpdir`, and pyloop.py."""

    def __init__(self, tmpdir):
        self.exe = compile_program("loops", tmpdir)

    def argv(self, language, iterations, warmup, *workload):
        head = [self.exe] if language == "C" else [sys.executable, os.path.join(HERE, "pyloop.py")]
        return head + [str(iterations), str(warmup), *map(str, workload)]

    def check(self, out, mode):
        """(ns per iteration, problems) from a loop's output."""
        try:
            ns, inode, seccomp = out.split()
            ns, inode, seccomp = float(ns), int(inode), int(seccomp)
        except ValueError:
            raise BenchError(f"unexpected output of a loop: {out!r}") from None
        problems = []
        if inode != mode.netns:
            problems.append(f"its sockets came from netns {inode}, not {mode.netns}")
        if seccomp != mode.seccomp:
            problems.append(f"it ran with Seccomp: {seccomp}, not {mode.seccomp}")
        return ns, problems

    def runner(self, modes, iterations, warmup):
        """run_one(Loop) -> (us per iteration, problems), for interleave()."""
        def run_one(loop):
            mode = modes[loop.mode]
            argv = self.argv(loop.language, iterations, warmup, *loop.workload)
            if mode.under:
                argv = [*mode.under, *argv]
            elif mode.options is not None:
                argv = session(argv, *mode.options)
            ns, problems = self.check(run_once(pin(argv, loop.cpus)), mode)
            return ns / 1000, problems
        return run_one


def variant_name(language, cpus):
    return f"{language}, {'unpinned' if cpus is None else 'pinned'}"


def loop_benchmark(name, rows, variants, modes, args, goal=lambda mode, language, pinned: None,
                   unit="us/call"):
    """Result rows of a loop benchmark.  `rows`: (workload, mode, the loop's
    arguments in that mode, natively[, the base mode: "native" if left
    out]); `variants`: (language, cpus); every row runs in every variant, in
    `mode` and in its base (runs shared between rows once), args.rounds
    times args.iterations after args.warmup.  goal(mode, language, pinned)
    -> the row's Goal or None."""
    pairs = [(text, mode, language, cpus,
              Loop(language, native_args, base[0] if base else "native", cpus),
              Loop(language, mode_args, mode, cpus))
             for language, cpus in variants for text, mode, mode_args, native_args, *base in rows]
    configs = list(dict.fromkeys(c for pair in pairs for c in pair[4:]))
    tmpdir = tempfile.mkdtemp(prefix="vupy-bench-")
    try:
        loops = Loops(tmpdir)
        measured = interleave(configs, args.rounds, loops.runner(modes, args.iterations, args.warmup), name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return [compare(text, variant_name(language, cpus), unit, side(base.mode, measured[base]),
                    side(mode, measured[loop]), goal=goal(mode, language, cpus is not None))
            for text, mode, language, cpus, base, loop in pairs]


# Connections: bench/peer.py at both ends -----------------------------------

PEER = os.path.join(HERE, "peer.py")
START_TIMEOUT = 30      # seconds for a client or server to say it is ready
# workload -> (what it is, unit, which is better)
PEER_WORKLOADS = {
    "send": ("TCP bulk client->server", "Gbit/s", "higher"),
    "recv": ("TCP bulk server->client", "Gbit/s", "higher"),
    "rtt": ("TCP 64 B round trip", "us/rt", "lower"),
    "connect": ("TCP connection set-up", "conn/s", "higher"),
    "udp-rtt": ("UDP 64 B round trip", "us/rt", "lower"),
}


def peer_count(workload, args):
    """(count, warmup) of a peer run: bytes for bulk, connections (a tenth
    of the round trips) for set-up, round trips otherwise."""
    if PEER_WORKLOADS[workload][1] == "Gbit/s":
        return args.bytes * 1024 * 1024, 0
    if workload == "connect":
        return max(1, args.iterations // 10), args.warmup // 10
    return args.iterations, args.warmup


def peer_argv(role, workload, addr, port, count, warmup, program=None):
    """peer.py's command line, or `program`'s (cpeer, peer's client in C)."""
    head = [program] if program else [sys.executable, PEER]
    return head + [role, workload, addr, str(port), str(count), str(warmup)]


def connection(client_argv, server_argv, client_ready=None):
    """One measured connection: the client starts first (under vupy it
    makes its stacks before it says ready), then client_ready(), then the
    server; the client's and the server's JSON lines."""
    client = server = None
    try:
        client = Proc(client_argv, stdin=subprocess.PIPE)
        if client.readline(START_TIMEOUT) != "ready":
            raise BenchError(f"the client did not say ready: {describe(client_argv)}")
        if client_ready:
            client_ready()
        server = Proc(server_argv)
        if server.readline(START_TIMEOUT) != "listening":
            raise BenchError(f"the server did not say listening: {describe(server_argv)}")
        client.p.stdin.write(b"go\n")
        client.p.stdin.flush()
        return client.result(RUN_TIMEOUT), server.result(RUN_TIMEOUT)
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.stop()


def peer_value(workload, count, client):
    """Gbit/s of a bulk run, connections per second of a set-up run, us per
    round trip otherwise."""
    if PEER_WORKLOADS[workload][1] == "Gbit/s":
        return count * 8 / client["ns"]                 # bits per ns = Gbit/s
    if workload == "connect":
        return count / client["ns"] * 1e9
    return client["ns"] / count / 1000


def peer_problems(workload, count, warmup, client, server):
    """Whether both ends counted what the run was to move."""
    if workload == "send":
        if server.get("bytes") != count or client.get("server_bytes") != count:
            return [f"the server received {server.get('bytes')} bytes, not {count}"]
    elif workload == "recv":
        if client.get("bytes") != count or server.get("bytes") != count:
            return [f"the client received {client.get('bytes')} bytes, not {count}"]
    else:
        problems = []
        total = count + warmup
        if client.get("round_trips") != total or server.get("round_trips") != total \
                or not server.get("eof"):
            problems.append(f"client/server counted {client.get('round_trips')}/"
                            f"{server.get('round_trips')} round trips, not {total}")
        if workload == "rtt" and client.get("nodelay") != 1:
            problems.append("TCP_NODELAY is not set on the client's socket")
        return problems
    return []


# Rounds -------------------------------------------------------------------

def interleave(configs, rounds, run_one, name=""):
    """Run every configuration once per round, the order rotated each round.
    run_one(config) -> (value, problems: a list of strings, empty when the
    run took the path it claims).  Returns {config: {"samples": [value per
    run], "problems": [problems of each run that had some]}}."""
    measured = {c: {"samples": [], "problems": []} for c in configs}
    total, done = len(configs) * rounds, 0
    progress = sys.stderr.isatty()  # a progress line only where it can be overwritten
    try:
        for rnd in range(rounds):
            k = rnd % len(configs)
            for config in configs[k:] + configs[:k]:
                if progress:
                    print(f"\r  {name} run {done + 1}/{total}    ", end="", file=sys.stderr, flush=True)
                value, problems = run_one(config)
                measured[config]["samples"].append(value)
                if problems:
                    measured[config]["problems"].append(problems)
                done += 1
    finally:
        if progress:
            print("\r" + " " * 40 + "\r", end="", file=sys.stderr, flush=True)
    return measured


# Statistics, comparisons and goals ----------------------------------------

def summarise(values):
    v = sorted(values)
    if len(v) >= 2:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    else:
        q1 = q3 = v[0]
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "q1": q1, "q3": q3}


def side(label, measured):
    """One side of a comparison: a label and what interleave() measured."""
    return {"label": label, "samples": measured["samples"], **summarise(measured["samples"]),
            "runs": len(measured["samples"]), "bad_runs": len(measured["problems"]),
            "problems": measured["problems"]}


class Goal(NamedTuple):
    """A goal of the issue, as a fact to report, never an assertion.

    kind "same" (the goal 1.00x): vupy/base at most `limit` (at least
    1/`limit` for "higher is better"); "ratio":
    vupy/base at most `limit` (at least, for "higher is better");
    "difference": vupy - base at most `limit`;
    "value": vupy's median at most (for "lower is better") or at least
    `limit`."""
    text: str
    kind: str
    limit: float = 0.0

    def met(self, row):
        vupy, lower = row["vupy"], row["better"] == "lower"
        if self.kind == "same":
            return row["ratio"] <= self.limit if lower else row["ratio"] >= 1 / self.limit
        if self.kind == "ratio":
            return row["ratio"] <= self.limit if lower else row["ratio"] >= self.limit
        if self.kind == "difference":
            return row["difference"] <= self.limit
        return vupy["median"] <= self.limit if lower else vupy["median"] >= self.limit


# 1.00x, taken as "no more than 5% slower": less than this machine's noise.
SAME = Goal("1.00x", "same", 1.05)


def compare(workload, variant, unit, base, vupy, better="lower", goal=None):
    """A row of results: `base` and `vupy` are side()s (base None when there
    is nothing to compare with); ratio is vupy/base of the medians."""
    row = {"workload": workload, "variant": variant, "unit": unit, "better": better,
           "base": base, "vupy": vupy, "ratio": None, "difference": None, "goal": None}
    if base is not None:
        row["ratio"] = vupy["median"] / base["median"]
        row["difference"] = vupy["median"] - base["median"]
    if goal is not None:
        # a ratio or a difference needs the base measured in this run
        needs_base = goal.kind != "value"
        checked = (not vupy["bad_runs"] and not (base and base["bad_runs"])
                   and (base is not None or not needs_base))
        row["goal"] = {"text": goal.text, "kind": goal.kind, "limit": goal.limit,
                       "met": goal.met(row) if checked else None}
    return row


# Reports ------------------------------------------------------------------

def number(x):
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def table(head, rows, markdown=False):
    """Rows of strings as an aligned text table (numbers to the right) or
    as markdown."""
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    numeric = [all(c[:1] in "+-0123456789." for c in col) for col in zip(*rows)] if rows else []

    def fmt(row):
        return "  ".join(c.rjust(w) if right else c.ljust(w)
                         for c, w, right in zip(row, widths, numeric)).rstrip()

    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def results_table(doc, markdown=False):
    base_name, vupy_name = doc.get("columns", ("native", "vupy"))
    head = ("workload", "variant", "unit", base_name, "min-max", vupy_name, "min-max",
            "ratio", "difference", "goal", "met")
    rows = []
    for r in doc["results"]:
        base, vupy, goal = r["base"], r["vupy"], r["goal"]
        rows.append((
            r["workload"], r["variant"] or "-", r["unit"],
            number(base["median"]) if base else "-",
            f"{number(base['min'])}-{number(base['max'])}" if base else "-",
            number(vupy["median"]), f"{number(vupy['min'])}-{number(vupy['max'])}",
            "-" if r["ratio"] is None else number(r["ratio"]),
            "-" if r["difference"] is None else ("+" if r["difference"] >= 0 else "") + number(r["difference"]),
            goal["text"] if goal else "-",
            "-" if goal is None else MET[goal["met"]],
        ))
    return table(head, rows, markdown)


MET = {True: "yes", False: "no", None: "unchecked"}


def goals_table(docs, markdown=False):
    """Every row with a goal, of every document: the figure the goal is
    about next to it."""
    rows = []
    for doc in docs:
        for r in doc["results"]:
            goal = r["goal"]
            if goal is None:
                continue
            if goal["kind"] == "difference":
                figure = f"{'+' if r['difference'] >= 0 else ''}{number(r['difference'])} {r['unit']}"
            elif goal["kind"] == "value":
                figure = f"{number(r['vupy']['median'])} {r['unit']}"
            else:
                figure = f"{number(r['ratio'])}x"
            rows.append((doc["name"], r["workload"], r["variant"], goal["text"], figure,
                         MET[goal["met"]]))
    return table(("benchmark", "workload", "variant", "goal", "figure", "met"), rows, markdown)


def report(doc, markdown=False):
    lines = [doc["title"], describe_machine(doc["machine"]), *doc.get("notes", []), "",
             results_table(doc, markdown), ""]
    bad = False
    for r in doc["results"]:
        for s in (r["base"], r["vupy"]):
            for problems in (s or {}).get("problems", []):
                bad = True
                lines.append(f"WARNING: {r['workload']}, {r['variant']}, {s['label']}: a run did "
                             f"not take the path it claims: {'; '.join(problems)}")
    if not bad:
        lines.append(f"checked: {doc['checked']}")
    if any(r["goal"] and r["goal"]["met"] is None for r in doc["results"]):
        lines.append("goal met: unchecked where a run did not take the path it claims "
                     "or the goal's base was not measured")
    lines += [f"WARNING: cleanup: {e}" for e in doc.get("cleanup_errors", [])]
    lines.append(f"reproduce (as root): {doc['command']}")
    return "\n".join(lines)


def write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


# Scripts ------------------------------------------------------------------

def parser(module, rounds):
    """The command line every script has: --rounds, --json, --markdown."""
    p = argparse.ArgumentParser(description=module.__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=rounds,
                   help=f"runs of each configuration (default {rounds})")
    p.add_argument("--json", metavar="PATH", help="write every number and the machine here")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    return p


def loop_parser(module, rounds, iterations, warmup):
    """The command line of a loop benchmark: parser()'s, --iterations,
    --warmup and --cpu."""
    p = parser(module, rounds)
    p.add_argument("--iterations", type=positive, default=iterations,
                   help=f"timed iterations per run (default {iterations})")
    p.add_argument("--warmup", type=int, default=warmup,
                   help=f"untimed iterations before the timed ones of each run (default {warmup})")
    p.add_argument("--cpu", type=int, default=None,
                   help="CPU for the pinned runs (default: the first one this script may use)")
    return p


def connection_parser(module, rounds, mib, workloads):
    """The command line of a connection benchmark (bench/peer.py at both
    ends): parser()'s, --bytes, --iterations, --warmup and --workloads."""
    p = parser(module, rounds)
    p.add_argument("--bytes", type=positive, default=mib, metavar="MIB",
                   help=f"MiB per bulk transfer (default {mib})")
    p.add_argument("--iterations", type=positive, default=20000,
                   help="timed round trips per run (default 20000)")
    p.add_argument("--warmup", type=int, default=1000,
                   help="untimed round trips before the timed ones (default 1000)")
    p.add_argument("--workloads", default=",".join(workloads),
                   help=f"comma list of workloads (default {','.join(workloads)})")
    return p


def pinned_cpu(args):
    return args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def execute(module, args, argv):
    """Run a script's benchmark; its document, completed."""
    if os.geteuid() != 0:
        raise BenchError("vupy run and ip netns need root")
    for tool in module.TOOLS:
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found")
    if not os.access(VUPY, os.X_OK):
        raise BenchError(f"no vupy next to {sys.executable} (expected {VUPY})")
    doc = {"name": module.NAME}
    doc.update(module.run(args))
    doc["parameters"] = {k: v for k, v in vars(args).items() if k not in ("json", "markdown")}
    doc["machine"] = machine()
    doc["command"] = shlex.join([sys.executable, os.path.relpath(module.__file__), *argv])
    return doc


def script_main(module):
    """A script's command: run it, print the report, write --json."""
    argv = sys.argv[1:]
    args = module.parser().parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        doc = execute(module, args, argv)
    except BenchError as e:
        sys.exit(f"{module.NAME}: {e}")
    except KeyboardInterrupt:
        print(f"{module.NAME}: interrupted (everything it made is removed)", file=sys.stderr)
        sys.exit(130)
    print(report(doc, args.markdown))
    if args.json:
        write_json(args.json, doc)
