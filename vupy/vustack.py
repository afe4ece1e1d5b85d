# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vustack: run a command with another default stack (VUOS-compatible).

    vustack [-h] [-s] [-v] [-f FAMILIES] [--route RULE=PATH]... STACK|- [COMMAND [ARG...]]
    vustack
    vustack --help | --version

Options come before STACK; everything after STACK belongs to COMMAND.
"""
import errno
import os
import socket
import sys

from . import __version__, _families, routes
from ._wrapper import SOCK_DEFAULT, SOCK_PROBE, _call, control, default_dispositions

USAGE = ("usage: vustack [-h] [-s] [-v] [-f FAMILIES] [--route RULE=PATH]... STACK|- "
         "[COMMAND [ARG...]]\n"
         "       vustack\n       vustack --help | --version\n")
HELP = USAGE + """
Run COMMAND with STACK as its default network stack (inside a vupy session).
With no arguments, print this process's default stack for each family, and
its routes.

  -f FAMILIES  only for these families: comma list of local, unix, inet,
               inet6, netlink, packet, numbers, or the aliases ip, ipv4/ip4,
               ipv6/ip6 (default: every family STACK serves)
  --route RULE=PATH
               connections to destinations RULE matches go to stack PATH
               (repeatable; added to the routes COMMAND inherits; needs a
               session started with vupy run --route).  STACK - keeps the
               default stacks as they are
  -s           list the families STACK serves
  -v           say what is set
  -h, --help   this help
  --version    vustack's version (vupy's)

STACK is a stack's name in the session (vupy run --stack, vumount) or a
network-namespace file.  Options come before STACK.  See vustack(1).
"""


def _fail(message, status=1):
    sys.stderr.write(f"vustack: {message}\n")
    return status


def parse(argv):
    """(options, stack, command) from argv; options stop at STACK."""
    opts = {"families": None, "list": False, "verbose": False, "help": False, "version": False,
            "routes": []}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg == "--route" or arg.startswith("--route="):
            value = arg.partition("=")[2] if arg != "--route" else None
            if value is None:
                i += 1
                if i == len(argv):
                    raise ValueError("--route needs RULE=PATH")
                value = argv[i]
            try:
                rule, path = routes.parse_route(value)
            except routes.RuleError as e:
                raise ValueError(f"--route {value!r}: {e}") from None
            opts["routes"].append([rule.text, path])
            i += 1
            continue
        if arg.startswith("--"):
            if arg not in ("--help", "--version"):
                raise ValueError(f"unknown option {arg}")
            opts[arg[2:]] = True
            i += 1
            continue
        letters = arg[1:]
        for j, letter in enumerate(letters):
            if letter == "s":
                opts["list"] = True
            elif letter == "v":
                opts["verbose"] = True
            elif letter == "h":
                opts["help"] = True
            elif letter == "f":
                value = letters[j + 1:]
                if not value:
                    i += 1
                    if i == len(argv):
                        raise ValueError("-f needs FAMILIES")
                    value = argv[i]
                opts["families"] = _families.parse(value)
                break
            else:
                raise ValueError(f"unknown option -{letter}")
        i += 1
    if opts["help"] or opts["version"]:
        return opts, None, []
    if i == len(argv):
        raise ValueError("no STACK given")
    if argv[i] == "-" and (not opts["routes"] or opts["list"] or opts["families"]):
        raise ValueError("STACK - (the defaults as they are) goes with --route, "
                         "and without -s or -f")
    return opts, argv[i], argv[i + 1:]


def print_defaults():
    """The default stack of each family, as this process (and so the shell
    that started it) has it, and its routes."""
    try:
        rows = control({"op": "defaults"})["defaults"]
        route_rows = control({"op": "routes"})["routes"]
    except OSError as e:
        return _fail(e.strerror)
    for family, stack, inherited in rows:
        print(f"{family:8} {stack}{' (session default)' if inherited else ''}")
    for rule, stack, inherited in route_rows:
        print(f"route    {rule} -> {stack}{' (session route)' if inherited else ''}")
    return 0


def main(argv=None):
    default_dispositions()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        return print_defaults()
    try:
        opts, stack, command = parse(argv)
    except ValueError as e:
        sys.stderr.write(USAGE)
        return _fail(str(e), 2)
    if opts["help"]:
        sys.stdout.write(HELP)
        return 0
    if opts["version"]:
        print(f"vustack (vupy) {__version__}")
        return 0
    if _call(None, socket.AF_INET, SOCK_PROBE, 0) == -errno.ENOSYS:
        return _fail("not in a vupy session (start one with: vupy run -- COMMAND)")
    if opts["routes"]:
        try:
            control({"op": "route", "routes": opts["routes"]})
        except OSError as e:
            return _fail(e.strerror)
        if opts["verbose"]:
            for rule, path in opts["routes"]:
                sys.stderr.write(f"vustack: route {rule} -> {path}\n")
    if opts["list"]:
        served = []
        for family in range(1, _families.AF_MAX):
            rc = _call(stack, family, SOCK_PROBE, 0)
            if rc == -errno.EINVAL:
                served.append(_families.name(family))
            elif rc != -errno.EAFNOSUPPORT:
                return _fail(f"{stack}: {os.strerror(-rc)}")
        print(" ".join(served))
        if not command:
            return 0
    if not command:
        if not opts["list"]:
            sys.stderr.write(USAGE)
            return _fail("no COMMAND given", 2)
    for family in () if stack == "-" else opts["families"] or (socket.AF_UNSPEC,):
        rc = _call(stack, family, SOCK_DEFAULT, 0)
        if rc < 0:
            return _fail(f"{stack} ({_families.name(family) if family else 'all families'}): "
                         f"{os.strerror(-rc)}")
        if opts["verbose"]:
            what = _families.name(family) if family else "every family it serves"
            sys.stderr.write(f"vustack: {stack} is the default for {what}\n")
    try:
        os.execvp(command[0], command)
    except OSError as e:
        return _fail(f"{command[0]}: {e.strerror}", 127 if e.errno == errno.ENOENT else 126)


if __name__ == "__main__":
    sys.exit(main())
