"""vumount and vuumount: mount and unmount stacks inside a session.

    vumount                                        list the session's stacks
    vumount -t TYPE [-o OPTIONS] SOURCE PATH       mount a stack at PATH
    vuumount [-l] PATH                             unmount (lazily with -l)

The command names and the -t/-o syntax are VUOS's.  SOURCE `none` means an
empty source (for modules such as `null` that take none), as with mount(8).
"""
import argparse
import os
import sys

from ._wrapper import control


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


def vumount(argv=None):
    parser = _Parser(prog="vumount", description="mount a stack in this vupy session "
                                                 "(no arguments: list the session's stacks)")
    parser.add_argument("-t", dest="type", metavar="TYPE", help="stack module")
    parser.add_argument("-o", dest="options", default="", metavar="OPTIONS",
                        help="KEY=VALUE,...: the module's options, and mode, uid, gid of PATH")
    parser.add_argument("source", nargs="?", metavar="SOURCE")
    parser.add_argument("path", nargs="?", metavar="PATH")
    args = parser.parse_args(argv)
    try:
        if args.source is None and args.type is None and not args.options:
            return list_stacks()
        if args.type is None or args.path is None:
            parser.error("mounting needs -t TYPE, SOURCE and PATH")
        source = "" if args.source == "none" else args.source
        control({"op": "mount", "type": args.type, "source": source,
                 "options": args.options, "path": os.path.join(os.getcwd(), args.path)})
    except OSError as e:
        return _fail("vumount", e)
    return 0


def vuumount(argv=None):
    parser = _Parser(prog="vuumount", description="unmount a stack of this vupy session")
    parser.add_argument("-l", dest="lazy", action="store_true",
                        help="lazy: remove PATH now, free the stack when nobody uses it")
    parser.add_argument("path", metavar="PATH")
    args = parser.parse_args(argv)
    try:
        control({"op": "umount", "path": os.path.join(os.getcwd(), args.path), "lazy": args.lazy})
    except OSError as e:
        return _fail("vuumount", e)
    return 0
