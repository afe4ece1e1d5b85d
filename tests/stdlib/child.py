# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Run test cases of one standard-library test module, one result line each.

    python3 child.py MODULE SECONDS NETWORK SKIP-FILE [ONLY-FILE]

Runs inside a vupy session (run.py starts it), with the system Python whose
`test` package is installed (Debian: libpython3.11-testsuite).  Prints, for
each test, `RESULT <json>` with its id, its outcome (pass, fail, error,
skip, timeout) and the last line of what went wrong (the exception), as
soon as it ends; and `START <id>` before it, so that run.py can name the
test that hung the process when nothing else can end it.  A test that runs for SECONDS is
interrupted (SIGALRM) and counted as timeout.  The resource "network"
(regrtest -u network) is on only if NETWORK is 1.  Tests named in SKIP-FILE
(one id a line) are left out; with ONLY-FILE, only those it names run
(by id, or by the id of their class or module).
"""
import json
import signal
import sys
import unittest

from test import support
from test.libregrtest.cmdline import ALL_RESOURCES


class TimedOut(BaseException):
    """Raised in the main thread when a test has run too long; a
    BaseException, so that no `except Exception` in a test swallows it."""


def _alarm(signo, frame):
    raise TimedOut()


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


class Result(unittest.TestResult):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def startTest(self, test):
        super().startTest(test)
        print("START", test.id(), flush=True)
        signal.alarm(self.seconds)

    def stopTest(self, test):
        signal.alarm(0)
        super().stopTest(test)

    def _say(self, test, outcome, why=""):
        print("RESULT", json.dumps({"id": test.id(), "outcome": outcome, "why": why}), flush=True)

    def addSuccess(self, test):
        self._say(test, "pass")

    def addSkip(self, test, reason):
        self._say(test, "skip", reason)

    def addExpectedFailure(self, test, err):
        self._say(test, "pass")

    def addUnexpectedSuccess(self, test):
        self._say(test, "fail", "unexpected success")

    def addFailure(self, test, err):
        self._say(test, "fail", last_line(self._exc_info_to_string(err, test)))

    def addError(self, test, err):
        if err[0] is TimedOut:
            self._say(test, "timeout", f"still running after {self.seconds} s")
        else:
            self._say(test, "error", last_line(self._exc_info_to_string(err, test)))

    def addSubTest(self, test, subtest, err):
        if err is not None:
            (self.addFailure if issubclass(err[0], test.failureException) else self.addError)(test, err)


def main():
    module, seconds, network, skip_file = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
    with open(skip_file) as f:
        skip = set(f.read().split())
    only = None
    if len(sys.argv) > 5:
        with open(sys.argv[5]) as f:
            only = set(f.read().split())
    # As regrtest -u all,-network: nothing may reach the Internet, unless
    # the module asks for "network" while it stays on the loopback.
    support.use_resources = [r for r in ALL_RESOURCES if r != "network" or network]
    signal.signal(signal.SIGALRM, _alarm)
    suite = unittest.defaultTestLoader.loadTestsFromName(f"test.{module}")
    chosen = unittest.TestSuite(t for t in flatten(suite) if t.id() not in skip and
                                (only is None or any(t.id() == o or t.id().startswith(o + ".") for o in only)))
    chosen.run(Result(seconds))     # TestSuite.run keeps the module and class fixtures
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
