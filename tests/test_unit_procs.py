# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Unit tests of vupy/_procs.py's ProcessTable: how defaults follow forks,
exits and threads, as events (or their stand-ins) come.  Pids are above
any pid_max, so no real process is ever looked at; where the table reads
/proc (a process it does not know), a made-up process tree stands in."""
import os
import socket

import pytest

from unitstacks import CountedStack
from vupy import _procs
from vupy._dispatch import Defaults
from vupy._procs import ProcessTable
from vupy._stacks import Scope


INET, INET6 = socket.AF_INET, socket.AF_INET6
P = 1 << 23                 # above pid_max: the kernel knows no such process
A, B, HOST = CountedStack(), CountedStack(), CountedStack()
SESSION = Scope(defaults={INET: HOST, INET6: HOST})


@pytest.fixture
def table():
    t = ProcessTable(exact=True)
    t.add(P, Defaults({INET: A}, SESSION))
    return t


@pytest.fixture
def tree(monkeypatch):
    """{pid: ppid}, the made-up processes the table finds in /proc."""
    parents = {}
    monkeypatch.setattr(_procs, "_read_tgid", lambda tid: tid if tid in parents else None)
    monkeypatch.setattr(_procs, "_read_ppid", lambda pid: parents.get(pid))
    monkeypatch.setattr(_procs, "children", lambda pid: [c for c, p in parents.items() if p == pid])
    return parents


def test_child_takes_its_parents_defaults_at_fork(table):
    table.forked(P, P, P + 1, P + 1)
    assert table.defaults[P + 1] is table.defaults[P]


def test_child_keeps_the_default_set_before_fork_not_after(table):
    table.forked(P, P, P + 1, P + 1)
    table.set(P, Defaults({INET: B}, SESSION))
    table.forked(P, P, P + 2, P + 2)
    assert table.defaults[P + 1].get(INET) is A
    assert table.defaults[P + 2].get(INET) is B


def test_grandchild_keeps_the_defaults_when_its_parent_is_gone(table):
    table.forked(P, P, P + 1, P + 1)
    table.forked(P + 1, P + 1, P + 2, P + 2)
    table.exited(P + 1, P + 1)
    assert P + 1 not in table.defaults
    assert table.defaults[P + 2].get(INET) is A


def test_fork_of_a_process_outside_the_session_adds_nothing(table):
    table.forked(P + 5, P + 5, P + 6, P + 6)
    assert sorted(table.defaults) == [P]


def test_a_fork_event_replaces_what_was_known_of_the_pid(table):
    """Pids are reused: the new process is its parent's child, whatever the
    table said of that pid before."""
    table.add(P + 1, Defaults({INET: B}, SESSION))
    table.creds[P + 1] = "old"
    table.forked(P, P, P + 1, P + 1)
    assert table.defaults[P + 1].get(INET) is A
    assert P + 1 not in table.creds


def test_thread_belongs_to_its_process_and_shares_its_defaults(table):
    # The kernel names the thread's process's parent as its parent: the
    # tgid says whose thread it is.
    table.creds[P + 3] = "stale"
    table.forked(P - 1, P - 1, P + 3, P)
    assert table.threads == {P + 3: P}
    assert table.tgid(P + 3) == P
    assert table.lookup(P + 3) == (P, table.defaults[P])
    assert P + 3 not in table.creds and P + 3 not in table.defaults


def test_thread_of_a_process_outside_the_session_is_not_kept(table):
    table.forked(P + 5, P + 5, P + 6, P + 5)
    assert table.threads == {}


def test_thread_exit_forgets_the_thread_not_the_process(table):
    table.forked(P, P, P + 3, P)
    table.creds[P + 3] = "c"
    table.exited(P + 3, P)
    assert (table.threads, table.creds) == ({}, {})
    assert P in table.defaults


def test_leader_exit_forgets_the_process(table):
    table.creds[P] = "c"
    table.exited(P, P)
    assert (table.defaults, table.creds) == ({}, {})


def test_set_replaces_the_processs_defaults(table):
    table.set(P, table.defaults[P].with_stack((INET6,), B))
    assert table.defaults[P].effective() == {INET: A, INET6: B}


def test_forget_creds(table):
    table.creds.update({P: "c", P + 1: "d"})
    table.forget_creds(P)
    assert table.creds == {P + 1: "d"}


def test_users_counts_own_defaults_and_the_scopes_for_unset_families(table):
    table.add(P + 1, Defaults({INET: A, INET6: A}, SESSION))    # counted once
    table.add(P + 2, Defaults(None, SESSION))
    table.add(P + 3, Defaults({INET: B, INET6: B}, SESSION))
    assert table.users(A) == 2
    assert table.users(B) == 1
    assert table.users(HOST) == 2               # P (for inet6) and P + 2
    assert table.users(CountedStack()) == 0


def test_lookup_outside_the_session_is_none(table, tree):
    assert table.lookup(P + 9) is None
    tree[P + 9] = 1
    assert table.lookup(P + 9) is None


def test_unknown_process_takes_its_nearest_known_ancestors_defaults(table, tree):
    tree.update({P + 1: P, P + 2: P + 1})
    assert table.lookup(P + 2) == (P + 2, table.defaults[P])
    assert table.defaults[P + 2] is table.defaults[P]
    assert P + 1 not in table.defaults


def test_adopt_gives_unknown_descendants_the_current_defaults(table, tree):
    tree.update({P + 1: P, P + 2: P + 1, P + 3: P})
    table.add(P + 3, Defaults({INET: B}, SESSION))
    table.adopt(P)
    assert table.defaults[P + 1] is table.defaults[P] is table.defaults[P + 2]
    assert table.defaults[P + 3].get(INET) is B             # known: kept
    table.set(P, Defaults({INET: B}, SESSION))
    assert table.defaults[P + 1].get(INET) is A


def test_adopt_by_an_unknown_process_adds_nothing(table, tree):
    tree.update({P + 8: P + 7})
    table.adopt(P + 7)
    assert sorted(table.defaults) == [P]


def test_without_events_a_process_is_followed_by_a_pidfd():
    table = ProcessTable(exact=False)
    table.add(P, Defaults(None, SESSION))                   # no such process: no pidfd
    me = os.getpid()
    table.add(me, Defaults(None, SESSION))
    table.add(me, Defaults({INET: A}, SESSION))             # one pidfd a process
    (fd, tgid), = table.exit_fds.items()
    assert tgid == me
    table.ended(fd)
    assert sorted(table.defaults) == [P] and table.exit_fds == {}
    with pytest.raises(OSError):
        os.fstat(fd)
