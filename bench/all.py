#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Every benchmark, one after the other, into one JSON file.

    python bench/all.py [--json bench/results.json] [--only LIST] [--quick] [--markdown]

`make bench` runs this.  Each benchmark runs with its default parameters
and prints its table and its own command line, which reproduces it alone.
The JSON file holds the machine, the command, and every benchmark's
document (its parameters, notes, result rows and what it checked); it is
rewritten after each benchmark, so that an interrupted run keeps what it
measured.  A benchmark that fails is reported and the others still run; the
exit status is then 1.  --quick runs each with its smallest parameters: a
check that the scripts work, not figures.
"""
import argparse
import os
import shlex
import signal
import sys

import benchlib
import busy_servers
import kernel_calls
import kernel_stack
import plain_calls
import processes
import routed_connect
import reply_floor
import socket_create
import userspace_stack
import wakeup

MODULES = (socket_create, reply_floor, wakeup, plain_calls, kernel_calls, kernel_stack, processes,
           busy_servers, routed_connect, userspace_stack)
NAMES = [m.NAME for m in MODULES]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="PATH", default=os.path.join(benchlib.HERE, "results.json"),
                   help="where to write every result (default bench/results.json)")
    p.add_argument("--only", default=",".join(NAMES), metavar="LIST",
                   help=f"comma list of benchmarks (default {','.join(NAMES)})")
    p.add_argument("--quick", action="store_true",
                   help="the smallest parameters of each benchmark (a smoke test)")
    p.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    args = p.parse_args()
    only = [x for x in args.only.split(",") if x]
    if not only or set(only) - set(NAMES):
        p.error(f"--only: a comma list of {', '.join(NAMES)}")

    signal.signal(signal.SIGTERM, benchlib.exit_on_sigterm)
    doc = {"machine": benchlib.machine(),
           "command": shlex.join([sys.executable, os.path.relpath(__file__), *sys.argv[1:]]),
           "benchmarks": [], "failed": []}
    for module in MODULES:
        if module.NAME not in only:
            continue
        argv = list(module.QUICK) if args.quick else []
        try:
            result = benchlib.execute(module, module.parser().parse_args(argv), argv)
        except benchlib.BenchError as e:
            print(f"{module.NAME}: {e}", file=sys.stderr)
            doc["failed"].append({"name": module.NAME, "error": str(e)})
        except KeyboardInterrupt:
            print(f"{module.NAME}: interrupted (everything it made is removed)", file=sys.stderr)
            sys.exit(130)
        else:
            print(benchlib.report(result, args.markdown), end="\n\n", flush=True)
            doc["benchmarks"].append(result)
        benchlib.write_json(args.json, doc)
    print("The issue's goals (median of the rounds; see each table for the spread)")
    print()
    print(benchlib.goals_table(doc["benchmarks"], args.markdown))
    print()
    print(f"wrote {args.json}")
    return 1 if doc["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
