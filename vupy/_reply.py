# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What a trapped call gets: the outcomes, and the one place they are sent.

Every layer that serves a call (the notification loop, vupy/_notify.py; the
proxy layer, vupy/_proxy.py; the dispatcher's `Fail`) says what the call
gets as one of these values, and `send` carries it out.  The C fast path
(csrc/fastpath.c) answers with the same two kernel calls `send` uses:
vupy_respond, and vupy_inject (ADDFD+SEND, then the call failed with the
kernel's errno unless the caller is gone).

`Park` is the proxy layer's own: the call waits, and its `resume` gives the
outcome later (see ProxyServer).  It is never sent.
"""
import errno
import os
from collections import namedtuple

from ._native import lib

# Named tuples, not dataclasses: as dataclasses, these five took 3 ms of
# every session's start-up; as named tuples, a tenth of that.


class Answer(namedtuple("Answer", "value writes", defaults=(0, ()))):
    """The call returns `value`, after `writes` ((address, bytes), ...) are
    made in the caller's memory; EFAULT instead if one cannot be."""
    __slots__ = ()


class Fail(namedtuple("Fail", "errno")):
    """The call fails with this errno."""
    __slots__ = ()


class Continue(namedtuple("Continue", ())):
    """The call goes on in the caller's kernel, as if never trapped."""
    __slots__ = ()


CONTINUE = Continue()


class Inject(namedtuple("Inject", "fd cloexec writes", defaults=(False, ()))):
    """Descriptor `fd` (ours, given away) becomes the call's result, a new
    descriptor of the caller, close-on-exec if `cloexec`, after `writes` are
    made as an Answer's (EFAULT instead, and `fd` closed, if one cannot be)."""
    __slots__ = ()


class Park(namedtuple("Park", "fd events resume timed_out", defaults=(None,))):
    """The call waits until `fd` (ours, kept until then) has `events`;
    then `resume(fd)` gives its outcome.  If its timeout runs out first,
    `timed_out(fd)`, if given, is done before the call fails."""
    __slots__ = ()


def send(listener, id, outcome, memory=None):
    """Carry out `outcome` for notification `id`; `memory` (a
    _wire.CallerMemory) makes an Answer's or an Inject's writes.  Returns
    what the caller got: the Answer (for an Inject, Answer(new descriptor)),
    or the Fail (Fail(ENOENT) for an Inject whose caller is gone)."""
    kind = type(outcome)
    if kind is Continue:
        lib.vupy_respond(listener, id, 0, 0, 1)
        return outcome
    if kind is Answer or kind is Inject:
        try:
            for address, data in outcome.writes:
                memory.write(address, data)
        except OSError as e:
            if kind is Inject:
                os.close(outcome.fd)
            outcome = Fail(e.errno)
        else:
            if kind is Answer:
                lib.vupy_respond(listener, id, outcome.value, 0, 0)
                return outcome
            rc = lib.vupy_inject(listener, id, outcome.fd, os.O_CLOEXEC if outcome.cloexec else 0)
            return Answer(rc) if rc >= 0 else Fail(-rc)
    lib.vupy_respond(listener, id, 0, outcome.errno, 0)
    return outcome


def describe(outcome):
    """An outcome as a trace shows it."""
    kind = type(outcome)
    if kind is Answer:
        return str(outcome.value)
    if kind is Fail:
        return errno.errorcode.get(outcome.errno, str(outcome.errno))
    if kind is Park:
        return "waiting"
    return "native" if kind is Continue else repr(outcome)
