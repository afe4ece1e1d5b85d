# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""When COMMAND ends, no process of the session is left: leftovers (double
forks, nohup, setsid, stopped, ignoring SIGTERM) get SIGTERM, then SIGKILL.
"""
import textwrap

import pytest

from helpers import PYTHON, gone, kill_quietly, vupy_to_files


LEFTOVERS = {
    # sh -c SCRIPT PIDFILE: leave one process running, write its pid.
    "setsid-double-fork": """setsid sh -c 'sleep 1000 & echo $! > "$0"' "$1" """,
    "nohup-double-fork": """(nohup sleep 1000 >/dev/null 2>&1 & echo $! > "$1") """,
    "setsid-nohup": """(setsid nohup sleep 1000 >/dev/null 2>&1 & echo $! > "$1") """,
    "ignores-sigterm": """( (trap '' TERM; exec sleep 1000) & echo $! > "$1") """,
    "stopped": """(sleep 1000 & p=$!
                   while [ "$(cat /proc/$p/comm)" != sleep ]; do sleep 0.05; done
                   kill -STOP $p; echo $p > "$1") """,
}


@pytest.mark.parametrize("how", sorted(LEFTOVERS))
def test_leftover_processes_are_ended(how, tmp_path):
    pidfile = tmp_path / "pid"
    script = LEFTOVERS[how] + textwrap.dedent("""
        while [ ! -s "$1" ]; do sleep 0.05; done
        p=$(cat "$1")
        # wait until it is sleep itself that runs
        while [ "$(cat /proc/$p/comm 2>/dev/null)" != sleep ]; do
            [ -d /proc/$p ] || exit 99
            sleep 0.05
        done
        exit 0
    """)
    # Output to files, not pipes: a leftover holding a pipe open must not
    # make this wait for it.
    status, err = vupy_to_files(tmp_path, "--", "sh", "-c", script, "sh", str(pidfile))
    pid = int(pidfile.read_text())
    try:
        assert status == 0, err
        assert gone(pid), f"{how}: pid {pid} still there after vupy returned"
    finally:
        kill_quietly(pid)


TERM_CATCHER = textwrap.dedent("""
    import os, signal, sys, time
    out = sys.argv[1]
    if os.fork():
        os._exit(0)          # COMMAND's child exits: the grandchild is orphaned
    os.setsid()
    def handler(signo, frame):
        with open(out, "w") as f:
            f.write(signal.Signals(signo).name)
        os._exit(0)
    signal.signal(signal.SIGTERM, handler)
    with open(out + ".pid", "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.sleep(1)
""")


def test_leftover_processes_get_sigterm_first(tmp_path):
    out = tmp_path / "got"
    script = textwrap.dedent("""
        "$2" -c "$3" "$1"
        while [ ! -s "$1.pid" ]; do sleep 0.05; done
        exit 5
    """)
    status, err = vupy_to_files(tmp_path, "--", "sh", "-c", script, "sh", str(out),
                                PYTHON, TERM_CATCHER)
    pid = int((tmp_path / "got.pid").read_text())
    try:
        assert status == 5, err
        assert out.read_text() == "SIGTERM"
        assert gone(pid)
    finally:
        kill_quietly(pid)
