"""`vupy`: the command line.

    vupy run [--stack PATH=SPEC]... [--default [FAMILIES=]PATH]... [-v] -- COMMAND [ARG...]

Every option and SPEC is checked, and every stack made, before anything is
started; a problem is reported in one line and vupy exits with status 2.
"""
import argparse
import os
import sys
from importlib.metadata import entry_points

from . import _families
from ._session import SessionError, run
from .stack import StackError

USAGE_ERROR = 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def stack_modules():
    """name -> entry point, for every module registered under vupy.stacks."""
    return {ep.name: ep for ep in entry_points(group="vupy.stacks")}


def parse_spec(spec):
    """'MODULE[:SOURCE][,KEY=VALUE]...' -> (module, source, options)."""
    head, _, rest = spec.partition(",")
    module, _, source = head.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"{spec!r}: option {item!r} is not KEY=VALUE")
        options[key] = value
    if not module:
        raise UsageError(f"{spec!r}: no module name")
    return module, source, options


def parse_stack_option(text):
    path, eq, spec = text.partition("=")
    if not eq or not path or not spec:
        raise UsageError(f"--stack {text!r}: expected PATH=SPEC")
    if not os.path.isabs(path) or os.path.normpath(path) != path or path == "/":
        raise UsageError(f"--stack {text!r}: PATH must be a normalised absolute file path")
    if not os.path.isdir(os.path.dirname(path)):
        raise UsageError(f"--stack {text!r}: directory {os.path.dirname(path)} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"--stack {text!r}: {path} is a directory")
    return path, spec


def parse_default_option(text):
    """'[FAMILIES=]PATH' -> (families or None, path)."""
    left, eq, right = text.partition("=")
    if eq and "/" not in left:
        try:
            return _families.parse(left), right
        except ValueError as e:
            raise UsageError(f"--default {text!r}: {e}") from None
    return None, text


def make_stack(spec, modules):
    module_name, source, options = parse_spec(spec)
    entry = modules.get(module_name)
    if entry is None:
        known = ", ".join(sorted(modules)) or "none"
        raise UsageError(f"{spec!r}: unknown stack module {module_name!r} (known: {known})")
    try:
        module = entry.load()
    except Exception as e:  # a broken module is the module's problem, named as such
        raise UsageError(f"{spec!r}: module {module_name!r} failed to load: {e}") from None
    try:
        return module().create(source, options)
    except StackError as e:
        raise UsageError(str(e)) from None


def build_session(args):
    """Make every stack and the session defaults, or raise UsageError."""
    modules = stack_modules()
    made = []
    try:
        host = make_stack("host", modules)
        host.label = "host"
        made.append(("", "host", host))
        stacks = {}
        for text in args.stack:
            path, spec = parse_stack_option(text)
            if path in stacks:
                raise UsageError(f"--stack {path}: given twice")
            stacks[path] = (spec, make_stack(spec, modules))
            made.append((path, spec, stacks[path][1]))
        defaults = {family: host for family in host.families}
        for text in args.default:
            families, path = parse_default_option(text)
            if path not in stacks:
                raise UsageError(f"--default {text!r}: {path} is not a --stack PATH of this session")
            stack = stacks[path][1]
            for family in families or sorted(stack.families):
                if family not in stack.families:
                    raise UsageError(f"--default {text!r}: {path} does not serve "
                                     f"{_families.name(family)}")
                defaults[family] = stack
        return [(p, s, st) for p, (s, st) in stacks.items()], defaults, [m[2] for m in made]
    except BaseException:
        for _path, _spec, stack in made:
            stack.close()
        raise


def main(argv=None):
    parser = _Parser(prog="vupy", description="several network stacks for unmodified programs")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run COMMAND in a session")
    p_run.add_argument("--stack", action="append", default=[], metavar="PATH=SPEC",
                       help="make a stack and its file PATH (repeatable)")
    p_run.add_argument("--default", action="append", default=[], metavar="[FAMILIES=]PATH",
                       help="default stack for the families it serves, or for FAMILIES")
    p_run.add_argument("-v", "--verbose", action="store_true", help="trace every routed call")
    p_run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")
    try:
        args = parser.parse_args(argv)
        if args.argv[:1] == ["--"]:
            args.argv = args.argv[1:]
        if not args.argv:
            raise UsageError("no COMMAND given (vupy run [OPTIONS] -- COMMAND [ARG...])")
        stacks, defaults, owned = build_session(args)
    except UsageError as e:
        print(f"vupy: {e}", file=sys.stderr)
        return USAGE_ERROR
    trace = None
    if args.verbose:
        def trace(line):
            sys.stderr.write(f"vupy: {line}\n")
    try:
        return run(args.argv, stacks, defaults, trace)
    except SessionError as e:
        print(f"vupy: {e}", file=sys.stderr)
        return USAGE_ERROR
    finally:
        for stack in owned:
            stack.close()


if __name__ == "__main__":
    sys.exit(main())
