# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vumount and vuumount: mount and unmount stacks inside a session.

    vumount                                        list the session's stacks
    vumount -t TYPE [-o OPTIONS] SOURCE PATH       mount a stack at PATH
    vuumount [-l] PATH                             unmount (lazily with -l)
    vumount | vuumount  --help | --version

The command names and the -t/-o syntax are VUOS's.  SOURCE `none` means an
empty source (for modules such as `null` that take none), as with mount(8).
"""
import argparse
import shlex
import sys

from . import __version__
from ._wrapper import control, default_dispositions, stack_path


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{self.prog}: {message}\n")
        sys.exit(2)


def _fail(prog, error):
    sys.stderr.write(f"{prog}: {error.strerror}\n")
    return 1


def list_stacks():
    rows = control({"op": "list"})["stacks"]
    print(f"{'PATH':20} {'TYPE':8} {'SOURCE':20} {'OPTIONS':16} {'MODE':5} {'OWNER':11} USERS")
    for row in rows:
        path = row["path"] + (" (detached)" if row["detached"] else "")
        print(f"{path:20} {row['type']:8} {row['source'] or '-':20} {row['options'] or '-':16} "
              f"{row['mode']:04o}  {row['uid']}:{row['gid']:<{10 - len(str(row['uid']))}} {row['users']}")
    return 0


def _version(parser):
    parser.add_argument("--version", action="version", version=f"%(prog)s (vupy) {__version__}")


def vumount(argv=None):
    default_dispositions()
    parser = _Parser(prog="vumount", usage="vumount [-t TYPE [-o OPTIONS] SOURCE PATH]",
                     description="Mount a stack in this vupy session, as `vupy run --stack "
                                 "PATH=TYPE:SOURCE,OPTIONS` does at start; with no arguments, "
                                 "list the session's stacks.",
                     epilog="TYPE is a module of `vupy modules`; SOURCE `none` is an empty "
                            "source.  See vumount(1).")
    _version(parser)
    parser.add_argument("-t", dest="type", metavar="TYPE", help="stack module")
    parser.add_argument("-o", dest="options", default="", metavar="OPTIONS",
                        help="KEY=VALUE,...: the module's options, and the mode, uid, gid of the "
                             "stack's name")
    parser.add_argument("operands", nargs="*", metavar="SOURCE PATH",
                        help="the module's source, and the stack's name (a path; no file is made)")
    args = parser.parse_args(argv)
    operands = args.operands
    if args.type is None and (operands or args.options):
        # The usual slip: TYPE given as the first operand, without -t.
        suggested = ["vumount", "-t", *(operands[:1] if len(operands) == 3 else ["TYPE"])]
        suggested += ["-o", args.options] if args.options else []
        suggested += operands[1:] if len(operands) == 3 else operands or ["SOURCE", "PATH"]
        parser.error(f"mounting needs -t TYPE, as in `{shlex.join(suggested)}`")
    if args.type is not None and len(operands) != 2:
        parser.error(f"mounting needs SOURCE and PATH after -t {args.type} "
                     f"(SOURCE none for a module that takes none)")
    try:
        if args.type is None:
            return list_stacks()
        source, path = operands
        control({"op": "mount", "type": args.type, "source": "" if source == "none" else source,
                 "options": args.options, "path": stack_path(path)})
    except OSError as e:
        return _fail("vumount", e)
    return 0


def vuumount(argv=None):
    default_dispositions()
    parser = _Parser(prog="vuumount", description="Unmount a stack of this vupy session: remove its "
                                                  "name PATH and, once nobody uses it, free the stack.",
                     epilog="See vumount(1).")
    _version(parser)
    parser.add_argument("-l", dest="lazy", action="store_true",
                        help="lazy: remove PATH now, free the stack when nobody uses it")
    parser.add_argument("path", metavar="PATH", help="the stack's name")
    args = parser.parse_args(argv)
    try:
        control({"op": "umount", "path": stack_path(args.path), "lazy": args.lazy})
    except OSError as e:
        return _fail("vuumount", e)
    return 0
