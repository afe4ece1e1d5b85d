# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Real programs under vupy (tests/compat, also run standalone by
tests/compat/run.py to write docs/compatibility.md): each check must pass
with the peers' namespace as vupy's default stack, and with an lwip stack
on a switch plugged into that namespace, and fail when vupy is given
another stack, which shows that it tests the stack.  A
program that is not installed fails its check: `make test` installs them
all."""
import pytest

from compat.checks import CHECKS, perform
from compat.lab import KINDS

CASES = [(check, kind) for check in CHECKS for kind in KINDS]
IDS = [f"{check.id}-{kind}" for check, kind in CASES]


@pytest.mark.parametrize("check, kind", CASES, ids=IDS)
def test_program_works_through_the_stack(check, kind):
    result = perform(check, kind=kind)
    assert result.passed, result.note


@pytest.mark.parametrize("check, kind", CASES, ids=IDS)
def test_program_fails_through_another_stack(check, kind):
    result = perform(check, wrong_stack=True, kind=kind)
    assert not result.passed, f"{check.name} passed with the wrong stack"
