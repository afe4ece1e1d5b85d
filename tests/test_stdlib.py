# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The standard library's own network tests on an lwip stack: a subset
that runs in about a minute and passes whole (tests/stdlib/run.py runs
all of them, on a kernel stack too, and lists what differs)."""
import pytest

from stdlib.run import run_module

# Module -> the test classes (or None: all of it) run; each passed whole
# on lwip when chosen, and each is quick.
SUBSET = {
    "test_socketserver": None,
    "test_httpservers": None,
    "test_urllib2_localnet": None,
    "test_asyncio.test_sock_lowlevel": None,
    "test_smtplib": None,
    "test_socket": ("BasicTCPTest", "BasicTCPTest2", "BasicUDPTest", "NonBlockingTCPTests",
                    "FileObjectClassTestCase", "NetworkConnectionNoServer", "GeneralModuleTests",
                    "SendmsgUDPTest", "RecvmsgUDPTest", "SendmsgTCPTest", "RecvmsgIntoTCPTest",
                    "InheritanceTest", "NonblockConstantTest", "TCPTimeoutTest", "UDPTimeoutTest"),
}


@pytest.mark.parametrize("module", SUBSET)
def test_stdlib_tests_pass_on_lwip(module):
    only = None if SUBSET[module] is None else [f"test.{module}.{c}" for c in SUBSET[module]]
    results = run_module("lwip", module, only=only)
    passed = [test for test, r in results.items() if r["outcome"] == "pass"]
    lost = {test: f"{r['outcome']}: {r['why']}" for test, r in results.items()
            if r["outcome"] not in ("pass", "skip")}
    assert not lost
    assert len(passed) >= 10, results
