# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Real programs under vupy (tests/compat, also run standalone by
tests/compat/run.py to write docs/compatibility.md): each check must pass
with the peers' namespace as vupy's default stack, and fail when vupy is
given another namespace, which shows that it tests the stack.  A program
that is not installed fails its check: `make test` installs them all."""
import pytest

from compat.checks import CHECKS, perform


@pytest.mark.parametrize("check", CHECKS, ids=[c.id for c in CHECKS])
def test_program_works_through_the_namespace(check):
    result = perform(check)
    assert result.passed, result.note


@pytest.mark.parametrize("check", CHECKS, ids=[c.id for c in CHECKS])
def test_program_fails_through_another_namespace(check):
    result = perform(check, wrong_stack=True)
    assert not result.passed, f"{check.name} passed with the wrong stack"
