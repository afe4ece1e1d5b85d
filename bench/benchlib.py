"""What the benchmark scripts share: the machine's description for their
reports, their error type, and SIGTERM turned into an exit that runs the
scripts' cleanup."""
import datetime
import json
import os
import platform
import subprocess
import sys


class BenchError(Exception):
    pass


def exit_on_sigterm(signum, frame):
    # An exception, so that the finally blocks remove what the run made.
    raise SystemExit(128 + signum)


def _first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return next(iter(out.strip().splitlines()), None)


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


def machine(affinity, tools=()):
    """The machine, and the first line of `TOOL --version`-like commands
    (argv lists) in `tools`, keyed by the command's name."""
    uname = os.uname()
    info = {
        "kernel": uname.release,
        "uname": " ".join(uname),
        "nproc": os.cpu_count(),
        "affinity": sorted(affinity),
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "vupy": vupy_version(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    for argv in tools:
        info[argv[0]] = _first_line(argv)
    return info


def write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def run_main(main, name):
    """Exit with main()'s status; a BenchError or ^C as one line."""
    try:
        sys.exit(main())
    except BenchError as e:
        sys.exit(f"{name}: {e}")
    except KeyboardInterrupt:
        print(f"{name}: interrupted (everything it made is removed)", file=sys.stderr)
        sys.exit(130)
