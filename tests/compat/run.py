# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Run the compatibility checks (checks.py) and report them.

    python tests/compat/run.py [--markdown FILE] [--wrong-stack] [--kind netns|lwip]... [CHECK...]

Runs every check (or those named by id, such as `curl` or `ping-root`), as
root, each in a namespace of its own that vupy is given as the default
stack (--kind netns), and again with an lwip stack on a switch plugged into
that namespace (--kind lwip); by default both.  Prints one line per check
and kind.  --markdown FILE writes the table of docs/compatibility.md.
--wrong-stack gives vupy another stack than the peers': every check must
then fail.  The exit status is 0 when every check passed (with
--wrong-stack: failed); 1 otherwise.
"""
import argparse
import os
import platform
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compat.checks import CHECKS, perform  # noqa: E402
from compat.lab import ADDRESS, KINDS, LWIP_ADDRESS, PREFIX_LEN, STACK, find_vupy  # noqa: E402

INTRO = """\
# Compatibility

Real programs, unmodified, each run under vupy with a network namespace as
its default stack (column netns), and with an lwip stack (column lwip):

    vupy run --stack {stack}=netns:NAMESPACE --default {stack} -- PROGRAM ...
    vupy run --stack {stack}=lwip:vde://SWITCH,ip={lwip_address}/{prefix_len} --default {stack} -- PROGRAM ...

Each check makes a namespace of its own (`ip netns add`, named `vupyt-PID-N`)
with `lo` up and a veth pair whose end `vupyt0` holds {address}/{prefix_len},
an address no other namespace has; the program's peers (servers, clients)
run inside it with `ip netns exec`, on that address or on the namespace's
loopback, on ports nothing uses on the host.  So a check passes only if the
program's sockets were the namespace's.

For the lwip column, the namespace's `vupyt0` is a tap plugged into a VDE
switch of the check's own, and the lwip stack is {lwip_address}/{prefix_len}
on that switch: the program reaches its peers over lwIP.  A peer that the
netns column finds on the namespace's 127.0.0.1 listens on {address}
instead (the stack's own 127.0.0.1 is not the namespace's), and a server
under vupy that the netns column runs on 127.0.0.1 listens on
{lwip_address}; `ip` must list the stack's `vde0` with {lwip_address}/{prefix_len}.

Every check also fails when vupy is given another stack than the peers'
(`--wrong-stack`: another namespace, or an lwip stack alone on a switch);
`make test` runs both ways (`tests/test_compat.py`).

Generated as root on {system}, Linux {kernel}, by

    .venv/bin/python tests/compat/run.py --markdown docs/compatibility.md

| program | version | netns | lwip | notes |
| --- | --- | --- | --- | --- |
"""


def system_name():
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        return fields["PRETTY_NAME"].strip('"')
    except (OSError, KeyError):
        return platform.system()


def cell(text):
    return text.replace("|", "\\|")


def markdown(results):
    """The page, from {check: {kind: Result}}."""
    rows = []
    for check, by_kind in results.items():
        first = next(iter(by_kind.values()))
        verdicts = " | ".join(("pass" if by_kind[k].passed else "**fail**") if k in by_kind else "not run"
                              for k in KINDS)
        notes = [check.note]
        for k, r in by_kind.items():
            if not r.passed:
                notes.append(f"{k} fails: {r.note.removeprefix(check.note + '. ')}")
        rows.append(f"| {cell(check.name)} | {cell(first.version)} | {verdicts} "
                    f"| {cell('. '.join(notes))} |\n")
    return INTRO.format(stack=STACK, address=ADDRESS, lwip_address=LWIP_ADDRESS, prefix_len=PREFIX_LEN,
                        system=system_name(), kernel=platform.release()) + "".join(rows)


def _terminate(signo, frame):
    sys.exit(128 + signo)       # unwinds through every Lab, which cleans up


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", metavar="FILE", help="write the results as a Markdown page")
    parser.add_argument("--wrong-stack", action="store_true",
                        help="give vupy another namespace than the peers': every check must fail")
    parser.add_argument("--kind", choices=KINDS, action="append",
                        help="the program's stack: a namespace, or lwip on a switch (default: both)")
    parser.add_argument("checks", nargs="*", metavar="CHECK", help="check ids (default: all)")
    args = parser.parse_args()
    unknown = set(args.checks) - {c.id for c in CHECKS}
    if unknown:
        parser.error(f"no such check: {' '.join(sorted(unknown))} (known: {' '.join(c.id for c in CHECKS)})")
    if args.markdown and args.wrong_stack:
        parser.error("--markdown describes the real runs: not with --wrong-stack")
    if os.geteuid() != 0:
        parser.error("must run as root (it makes namespaces)")
    if not find_vupy():
        parser.error("no vupy next to this Python or on PATH")
    for signo in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signo, _terminate)

    results = {}
    as_expected = True
    for check in CHECKS:
        if args.checks and check.id not in args.checks:
            continue
        for kind in args.kind or KINDS:
            result = perform(check, args.wrong_stack, kind)
            print(f"{'pass' if result.passed else 'FAIL'}  {kind:5}  {result.name} {result.version}: "
                  f"{result.note}", flush=True)
            results.setdefault(check, {})[kind] = result
            as_expected &= result.passed != args.wrong_stack
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(results))
    return 0 if as_expected else 1


if __name__ == "__main__":
    sys.exit(main())
