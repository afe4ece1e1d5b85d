# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""`vupy`: the command line.

    vupy run [--stack PATH=SPEC]... [--default [FAMILIES=]PATH]... [--route RULE=PATH]...
             [--userspace] [--trace[=FILE] | -v] [--] COMMAND [ARG...]
    vupy modules
    vupy --version

Every option and SPEC is checked, and every stack made, before anything is
started; a problem is reported in one line and vupy exits with status 2 (a
signal that comes first, as from ^C, in one line with status 128+N).
"""
import argparse
import datetime
import functools
import shlex
import signal
import sys

from . import __version__, _families, routes
from ._wrapper import default_dispositions, in_session, stack_path
from ._session import Interrupted, SessionError, block_signals, prepare, run, run_nested
from ._stacks import describe_modules

USAGE_ERROR = 2
COMMANDS = ("run", "modules")
RUN_USAGE = ("vupy run [--stack PATH=SPEC]... [--default [FAMILIES=]PATH]... [--route RULE=PATH]...\n"
             "                [--userspace] [--serving-threads N] [--trace[=FILE] | -v]\n"
             "                [--] COMMAND [ARG...]")
SPECS = """\
SPEC is MODULE[:SOURCE][,KEY=VALUE]...: a stack module (below), the module's
source, and its options; mode=OCTAL, uid=N and gid=N are the stack's
permission bits, owner and group, as a file's: who may use it.  For example:

  --stack /dev/net/blue=netns:blue      the namespace made by `ip netns add blue`
  --stack /dev/net/lab=netns:new        a fresh namespace, gone with the session
  --stack /dev/net/off=null,mode=0640   no networking, for root and vupy's group
  --stack /dev/net/u=lwip:vde:///tmp/sw,ip=10.0.0.2/24    lwIP on a VDE switch

FAMILIES is a comma list of unix, inet, inet6, netlink, packet, numbers,
and ip, ipv4, ipv6.  Inside the session vustack, vumount and vuumount
manage defaults and stacks.  See vupy(1)."""


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse_stack_option(text):
    """'PATH=SPEC' -> (absolute PATH, SPEC)."""
    path, eq, spec = text.partition("=")
    if not eq or not path or not spec:
        raise UsageError(f"--stack {text!r}: expected PATH=SPEC")
    return stack_path(path), spec


def parse_default_option(text):
    """'[FAMILIES=]PATH' -> (families or None, absolute path, text)."""
    left, eq, right = text.partition("=")
    if eq and "/" not in left:
        try:
            return _families.parse(left), stack_path(right), text
        except ValueError as e:
            raise UsageError(f"--default {text!r}: {e}") from None
    return None, stack_path(text), text


def parse_route_option(text):
    """'RULE=PATH' -> (routes.Rule, absolute PATH, text)."""
    try:
        rule, path = routes.parse_route(text)
    except routes.RuleError as e:
        raise UsageError(f"--route {text!r}: {e}") from None
    return rule, stack_path(path), text


def _count(text):
    """--serving-threads' N: a number, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of threads (0 or more)")
    return int(text)


def _tracer(destination):
    """The function that writes one trace line, with the time, to
    `destination`: standard error for "-", else a file (appended to).

    A trace that cannot be written (its reader gone, its disk full) ends,
    and the session goes on: the supervisor's work must not fail for it."""
    out = sys.stderr if destination == "-" else open(destination, "a", buffering=1)

    def trace(line):
        nonlocal out
        if out is None:
            return
        now = datetime.datetime.now().strftime("%H:%M:%S.%f")
        try:
            out.write(f"{now} vupy: {line}\n")
            out.flush()
        except (OSError, ValueError):
            out = None
    return trace


def module_lines():
    """One line for every module found: its name, the families it serves
    and its description; a broken or unavailable one with the reason."""
    lines = []
    for name, description, families, unavailable, error in describe_modules():
        if error:
            lines.append(f"{name:10} BROKEN: {error}")
        else:
            served = ",".join(_families.name(f) for f in sorted(families)) or "-"
            lines.append(f"{name:10} {served:28} "
                         + (f"UNAVAILABLE: {unavailable}" if unavailable else description))
    return lines


def list_modules():
    """`vupy modules`."""
    print("\n".join(module_lines()))
    return 0


class _RunFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows --trace as it is written: --trace[=FILE], not --trace [FILE]."""

    def _format_action_invocation(self, action):
        if action.dest == "trace" and action.nargs == "?":
            return "--trace[=FILE]"
        return super()._format_action_invocation(action)


class _RunHelp(argparse.Action):
    """`vupy run -h`: the options, the SPEC syntax and the modules found
    (with `mask`, COMMAND's signal mask, in force, as for `vupy modules`)."""

    def __init__(self, *args, mask, **kwargs):
        super().__init__(*args, **kwargs)
        self.mask = mask

    def __call__(self, parser, namespace, values, option_string=None):
        signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        modules = "\n".join("  " + line for line in module_lines())
        print(f"{parser.format_help()}\nstack modules (vupy modules):\n{modules}")
        parser.exit()


def _run_option(argv):
    """The option of `vupy run` that argv begins with, if any (for a
    command line that forgot `run`)."""
    first = argv[0].split("=", 1)[0] if argv else ""
    return first if first in ("--stack", "--default", "--route", "--userspace",
                              "--serving-threads", "--trace", "-v", "--verbose") else None


def _bare_trace(args):
    """`vupy run`'s arguments with each `--trace` before COMMAND written
    `--trace=-`: alone, it means standard error and never takes the next
    argument as FILE (only --trace=FILE names one)."""
    args = list(args)
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] not in ("-", "--"):
        if args[i] == "--trace":
            args[i] = "--trace=-"
        elif args[i] in ("--stack", "--default", "--route", "--serving-threads"):
            i += 1                  # their value
        i += 1
    return args


def parser(mask):
    """vupy's argument parser; `mask` is COMMAND's signal mask."""
    top = _Parser(prog="vupy", description="several network stacks for unmodified programs "
                                            "(see vupy(1))")
    top.add_argument("--version", action="version", version=f"vupy {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="{run,modules}")
    p_run = sub.add_parser("run", help="run COMMAND in a session", usage=RUN_USAGE,
                           add_help=False, allow_abbrev=False, epilog=SPECS,
                           formatter_class=_RunFormatter,
                           description="Run COMMAND in a session: its programs can make each socket "
                                       "on a stack of their choice.")
    p_run.add_argument("-h", "--help", action=functools.partial(_RunHelp, mask=mask), nargs=0,
                       help="this help, with the stack modules found")
    p_run.add_argument("--stack", action="append", default=[], metavar="PATH=SPEC",
                       help="make a stack named PATH (repeatable)")
    p_run.add_argument("--default", action="append", default=[], metavar="[FAMILIES=]PATH",
                       help="default stack for the families it serves, or for FAMILIES")
    p_run.add_argument("--route", action="append", default=[], metavar="RULE=PATH",
                       help="connections to destinations RULE matches go to stack PATH "
                            "(repeatable; RULE: 10.0.0.0/8, fd00::/8, tcp:443, udp:0.0.0.0/0:53, "
                            "...; see vupy(1), Routing)")
    p_run.add_argument("--userspace", action="store_true",
                       help="trap the calls userspace stacks need even if none is mounted at "
                            "start (for vumount -t lwip later)")
    p_run.add_argument("--trace", nargs="?", const="-", metavar="FILE",
                       help="one line for every trapped call: time, pid, the call, where it went, "
                            "its result; to standard error, or to FILE with --trace=FILE")
    p_run.add_argument("--serving-threads", type=_count, metavar="N",
                       help="threads that receive the session's socket calls and serve them in "
                            "parallel, at most one per CPU vupy may run on, each with 7 spare "
                            "ones (default: one per CPU, none in a session that routes or serves "
                            "userspace stacks; 0: one thread serves every call)")
    p_run.add_argument("-v", "--verbose", action="store_const", const="-", dest="trace",
                       help="--trace to standard error")
    p_run.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                       help="the program to run, looked up in PATH (after --, if it begins with -)")
    sub.add_parser("modules", help="list the stack modules found",
                   description="List the stack modules found: name, families, description.")
    return top


def main(argv=None):
    mask = block_signals()      # before anything else: see block_signals
    default_dispositions()      # for --help, --version and modules; a session's is below
    argv = sys.argv[1:] if argv is None else list(argv)
    stacks = None
    try:
        if not argv:
            raise UsageError("no command given: vupy run [OPTIONS] -- COMMAND [ARG...], "
                             "or vupy modules (vupy --help)")
        if argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
            if _run_option(argv):
                raise UsageError(f"{_run_option(argv)} is an option of `vupy run`: "
                                 f"vupy run {shlex.join(argv)}")
            if argv[0].startswith("-"):
                raise UsageError(f"unknown option {argv[0]} (vupy --help)")
            raise UsageError(f"{argv[0]!r} is not a vupy command ({', '.join(COMMANDS)}); "
                             f"to run it in a session: vupy run -- {shlex.join(argv)}")
        if argv[:1] == ["run"]:
            argv = ["run"] + _bare_trace(argv[1:])
        args = parser(mask).parse_args(argv)
        if args.command == "modules":
            # No session: signals act on `vupy modules` as on any command
            # (^C must stop it, if a module hangs in its import, say).
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return list_modules()
        # A session's vupy gets EPIPE, not death, from a reader gone (of
        # its trace, say): the session must not end for that.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        if args.argv[:1] == ["--"]:
            args.argv = args.argv[1:]
        if not args.argv:
            raise UsageError("no COMMAND given (vupy run [OPTIONS] -- COMMAND [ARG...])")
        stack_options = [parse_stack_option(text) for text in args.stack]
        default_options = [parse_default_option(text) for text in args.default]
        route_options = [parse_route_option(text) for text in args.route]
        if in_session():
            if args.trace is not None:
                raise UsageError("--trace: a session inside a session is traced by the enclosing "
                                 "one's vupy: start that one with --trace")
            if args.serving_threads is not None:
                raise UsageError("--serving-threads: a session inside a session is served by the "
                                 "enclosing one's vupy: start that one with --serving-threads")
            return run_nested(args.argv, stack_options, default_options, mask, args.userspace,
                              route_options)
        try:
            trace = None if args.trace is None else _tracer(args.trace)
        except OSError as e:
            raise UsageError(f"--trace={args.trace}: {e.strerror}") from None
        stacks = prepare(stack_options, default_options, route_options)
        return run(args.argv, stacks, mask, trace, args.userspace, bool(route_options),
                   args.serving_threads)
    except Interrupted as e:
        print(f"vupy: {e}", file=sys.stderr)
        return e.status
    except (UsageError, SessionError) as e:
        print(f"vupy: {e}", file=sys.stderr)
        return USAGE_ERROR
    finally:
        if stacks is not None:
            stacks.close()

if __name__ == "__main__":
    sys.exit(main())
