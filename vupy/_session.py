# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The session: start COMMAND under the filter, supervise it, end cleanly.

Order of a session, and why:

1. Stacks are made (and every SPEC checked) before anything else, so that a
   bad SPEC is refused before any process or namespace exists.  Their
   PATHs are names that the supervisor resolves (vupy/_paths.py): nothing
   is created on disk, nothing is covered, nothing a program writes can be
   lost or hidden.
2. vupy subscribes to process events (see _procs.py) and becomes a child
   subreaper, so that orphans of the session are reparented to it and it
   can end them with the session.
3. A keeper is forked, and COMMAND is forked from it; the child installs
   the filter (which, in a session with userspace stacks, also traps the
   calls of proxy descriptors: see _proxy.py), vupy takes a copy of the
   listener (pidfd_getfd), and the child executes COMMAND.  The keeper is
   a subreaper too, so everything COMMAND starts stays below it; should
   vupy die (even by SIGKILL), the keeper learns of it (PR_SET_PDEATHSIG)
   and kills every process below it at once: no process of the session
   runs on unsupervised, and trapped calls made in the meantime fail with
   ENOSYS, since the listener is gone.  When COMMAND ends, the keeper
   passes its wait status to vupy and exits.
4. The main thread waits for signals (blocked from vupy's start, in every
   thread: see block_signals): SIGCHLD reaps, and SIGINT, SIGTERM, SIGHUP
   and SIGQUIT are passed on to COMMAND if they were sent to vupy alone,
   not if its process group had them (the terminal's ^C, kill -INT -PGID):
   COMMAND, in that group, has had its own copy.  The keeper tells which
   (see _pass_on).  One that comes before COMMAND starts ends vupy
   (Interrupted), at once even while a stack takes its time to start
   (_interruptible).
5. When COMMAND ends, what it left running in the session (reparented to
   vupy, a subreaper) gets SIGTERM, then SIGKILL after two seconds; vupy
   exits with COMMAND's status.

A `vupy run` inside a session makes no filter of its own (`run_nested`):
the enclosing session's supervisor serves it.
"""
import contextlib
import errno
import os
import signal
import socket
import threading
import time

from . import _native
from ._dispatch import Defaults
from ._environment import session_environment
from ._notify import Supervisor
from ._paths import Resolver
from ._procs import ProcessEvents, ProcessTable, children, status_field
from .helpers import CAP_SYS_ADMIN, capable, host_namespace
from .stack import KernelStack
from ._stacks import MountError, StackTable, apply_defaults, apply_routes, name_key, parse_spec
from ._wrapper import control, default_dispositions

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
WAITED = frozenset({*FORWARDED, signal.SIGCHLD})
# vupy asks the keeper about a forwarded signal N with signal QUERY + N: a
# real-time signal, so that queries queue and are never merged.
QUERY = signal.SIGRTMIN
GRACE_SECONDS = 2.0
# While stacks are made, a forwarded signal is taken by a thread, which
# wakes the main thread with WAKE (_interruptible); it looks every TICK.
WAKE = signal.SIGUSR2
TICK_SECONDS = 0.05


class SessionError(Exception):
    """The session cannot start: the message says why."""


class Interrupted(SessionError):
    """A forwarded signal came before COMMAND started: vupy ends with
    `status`, 128+N, as a shell reports a command killed by signal N."""

    def __init__(self, signo):
        super().__init__(f"{signal.Signals(signo).name} before COMMAND started: nothing was run")
        self.status = 128 + signo


def block_signals():
    """Block the signals vupy's main thread waits for (WAITED); return the
    signal mask as it was, COMMAND's.

    Called first thing, before any stack or thread is made: a thread
    inherits its creator's mask, and a signal the main thread waits for
    must never be taken by another thread instead (a module's, such as
    vde's plug watcher, or rtnetlink's).  There Python would handle it: a
    SIGINT would raise KeyboardInterrupt in the main thread, a SIGCHLD be
    lost.  Blocked everywhere, each stays pending until the main thread
    takes it (sigwaitinfo).  Helpers unblock them (helpers.start_helper)."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)


def prepare(stack_options, default_options, route_options=()):
    """Make the session's stacks, defaults and routes.

    `stack_options`: [(path, spec)]; `route_options`: [(routes.Rule, path,
    text)]; `default_options`: [(families or None,
    path, text)].  Returns the StackTable, whose session scope holds them;
    SessionError, with everything made so far closed, on any problem."""
    if _native.lib.vupy_self_creds() < 0:
        raise SessionError("cannot read vupy's own credentials")
    stacks = StackTable((os.getuid(), os.getgid()))
    try:
        # vupy's own, whatever is registered under "host": and no
        # entry-point scan when there is no --stack.
        host = KernelStack(host_namespace())
        host.label = "host"
        stacks.keep(host)
        # The PATHs are names in vupy's own view, as a program's are in its.
        me = os.getpid()
        creds = _native.ffi.new("struct vupy_creds *")
        _native.lib.vupy_read_creds(me, creds)
        paths = Resolver()
        with _interruptible():
            for path, spec in stack_options:
                key = name_key(paths.key(me, me, os.fsencode(path), creds, free=True), path)
                stacks.mount(stacks.session, path, key, *parse_spec(spec))
        stacks.session.defaults = apply_defaults(
            {family: host for family in host.families}, stacks.session,
            lambda path: paths.key(me, me, os.fsencode(path), creds), default_options)
        stacks.session.routes = apply_routes(
            (), stacks.session, lambda path: paths.key(me, me, os.fsencode(path), creds),
            route_options)
    except BaseException as e:
        stacks.close()
        if isinstance(e, MountError):
            raise SessionError(str(e)) from None
        raise
    return stacks


@contextlib.contextmanager
def _interruptible():
    """In the main thread, for making stacks: a forwarded signal interrupts
    whatever the thread waits for (a worker that waits for a DHCP lease,
    say) with Interrupted.  The signals stay blocked (see block_signals): a
    thread takes them (sigtimedwait) and wakes the main thread with WAKE,
    whose handler, for the time, raises.  What the
    interrupted module had started ends with vupy, which exits then."""
    taken = []
    done = threading.Event()
    main = threading.get_ident()

    def watch():
        while not done.is_set():
            info = signal.sigtimedwait(FORWARDED, TICK_SECONDS)
            if info is not None:
                taken.append(info.si_signo)
                signal.pthread_kill(main, WAKE)
                return

    def interrupt(signo, _frame):
        raise _Signalled(taken[0] if taken else signo)      # else WAKE came from outside

    watcher = threading.Thread(target=watch, name="vupy-interrupt", daemon=True)
    watcher.start()
    previous = signal.signal(WAKE, interrupt)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {WAKE})
    try:
        try:
            yield
        finally:
            done.set()
            try:
                watcher.join()  # a WAKE it sent is handled here, at the latest
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                signal.signal(WAKE, previous)
    except _Signalled as e:
        raise Interrupted(e.args[0]) from None


class _Signalled(BaseException):
    """Raised in the main thread by _interruptible: a BaseException, so
    that no module's `except Exception` takes it for a failure of its own."""


def _refuse_if_signalled():
    """Interrupted if a forwarded signal is pending: it came before COMMAND
    started, when it can only have been meant for vupy."""
    info = signal.sigtimedwait(FORWARDED, 0)
    if info is not None:
        raise Interrupted(info.si_signo)


def _descendants():
    """Every process of the session below vupy (orphans of the session are
    reparented here).  Processes not under the filter are vupy's own
    helpers (stack workers, vde_plug): their stacks end them."""
    found, todo = [], [os.getpid()]
    while todo:
        below = children(todo.pop())
        found.extend(c for c in below if status_field(c, b"Seccomp") != 0)
        todo.extend(below)
    return found


def _reap_all():
    """Reap every child that has ended; return {pid: wait status}."""
    ended = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended[pid] = status


def _end_leftovers(signals=(signal.SIGTERM, signal.SIGKILL)):
    pids = _descendants()
    for sig in signals:
        for pid in pids:
            try:
                os.kill(pid, sig)
                os.kill(pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + GRACE_SECONDS
        while time.monotonic() < deadline:
            _reap_all()
            pids = _descendants()
            if not pids:
                return
            time.sleep(0.02)


def _keep(argv, to_parent, no_new_privs, mask, features, vupy_pid):
    """In the keeper: fork COMMAND, stay its ancestor while it runs; pass its
    wait status to vupy ("S STATUS"), or kill every process below if vupy
    dies first; answer vupy's queries about the signals it takes (see
    _pass_on).  Every signal but SIGKILL and SIGSTOP is blocked here, so
    that neither the terminal nor kill(1) of the process group ends the
    keeper before COMMAND, and so that what its process group is sent stays
    pending, as a witness."""
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.valid_signals()))
        _native.lib.prctl(PR_SET_PDEATHSIG, signal.SIGUSR1, 0, 0, 0)
        _native.lib.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        command = os.fork() if os.getppid() == vupy_pid else None
        if command == 0:
            _start_child(argv, to_parent, no_new_privs, mask, features)
        os.closerange(0, to_parent.fileno())
        os.closerange(to_parent.fileno() + 1, os.sysconf("SC_OPEN_MAX"))
        queries = {QUERY + signo for signo in FORWARDED}
        while command is not None and os.getppid() == vupy_pid:
            status = _reap_all().get(command)
            if status is not None:
                os.write(to_parent.fileno(), b"S %d\n" % status)
                os._exit(0)
            info = signal.sigwaitinfo({signal.SIGCHLD, signal.SIGUSR1} | queries)
            if info.si_signo in queries and info.si_pid == vupy_pid:
                _answer(info.si_signo - QUERY, command)
        _end_leftovers((signal.SIGKILL,))   # vupy is gone
    finally:
        os._exit(0)


def _answer(signo, command):
    """In the keeper: vupy has taken `signo` (see _pass_on).  Pending here,
    it was sent to the process group: the keeper's copy is consumed, and
    COMMAND has had its own, unless it has left the group (an interactive
    shell makes one of its own).  Not pending, it was sent to vupy alone.
    COMMAND gets from the keeper what it has not had: the keeper's own
    child, not yet reaped, whose pid cannot have been reused."""
    if signo in signal.sigpending():
        signal.sigtimedwait({signo}, 0)
        if os.getpgid(command) == os.getpgrp():
            return
    os.kill(command, signo)


def _start_child(argv, to_parent, no_new_privs, mask, features):
    """In COMMAND's process: install the filter, hand over the listener, exec.
    With `features` None (a nested session: the enclosing session's filter
    is inherited, and one filter chain may have only one listener), no
    filter: the listener's number is given as -1."""
    try:
        # COMMAND must start with the dispositions it would have.  Python
        # ignores two (default_dispositions), and it catches SIGINT: a
        # SIGINT that comes before the execve (from the terminal) must act
        # as on a program that has not set its own disposition yet, not
        # raise KeyboardInterrupt here.
        default_dispositions()
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        listener = -1 if features is None else _native.lib.vupy_filter_install(no_new_privs, features)
        if listener < 0 and features is not None:
            os.write(2, f"vupy: cannot install the seccomp filter: {os.strerror(-listener)}\n".encode())
            os._exit(125)
        # The parent takes the listener with pidfd_getfd: sendmsg may be
        # trapped already, and nobody would answer it yet.
        os.write(to_parent.fileno(), b"L %d %d\n" % (os.getpid(), listener))
        os.read(to_parent.fileno(), 1)
        if listener >= 0:
            os.close(listener)
        to_parent.close()
        os.execvpe(argv[0], argv, session_environment())
    except FileNotFoundError:
        os.write(2, f"vupy: {argv[0]}: command not found\n".encode())
        os._exit(127)
    except OSError as e:
        os.write(2, f"vupy: {argv[0]}: {e.strerror}\n".encode())
        os._exit(126)
    except BaseException as e:  # never return into the parent's code
        os.write(2, f"vupy: {e}\n".encode())
        os._exit(125)


def _fork_keeper(argv, no_new_privs, mask, features):
    """Fork the keeper, which forks COMMAND (see _keep); return (the keeper's
    pid, vupy's end of their socket, COMMAND's first line: "L PID
    LISTENER", or why it ended)."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    vupy_pid = os.getpid()
    keeper = os.fork()
    if keeper == 0:
        parent_end.close()
        _keep(argv, child_end, no_new_privs, mask, features, vupy_pid)
    child_end.close()
    return keeper, parent_end, os.read(parent_end.fileno(), 64).split()


def run(argv, stacks, mask, trace=None, userspace=False, routing=False, servers=None):
    """Run argv in a session; return its exit status.

    `stacks`: the StackTable from `prepare`;
    `mask`: COMMAND's signal mask, the one vupy started with (block_signals);
    `userspace`: trap the calls of proxy descriptors even if no userspace
    stack is mounted yet (they are trapped anyway if one is);
    `routing`: trap connect for routes (vupy/_router.py), which vustack
    --route can then set too (trapped anyway for a stack with name
    resolution of its own);
    `servers`: receiving serving threads, at most one per CPU vupy may run
    on, each with its spares (None: one per CPU if there are several, in a
    session that neither routes nor serves proxies; 0: the notification
    thread alone).
    """
    _refuse_if_signalled()
    events = None
    if os.environ.get("VUPY_PROCESS_EVENTS") != "off":
        try:
            events = ProcessEvents()
        except OSError as e:
            # Unprivileged, or in another network namespace than the first:
            # defaults are kept exact without events (see _procs.py).
            if trace:
                trace(f"no process events ({e.strerror}): following forks without them")
    table = ProcessTable(exact=events is not None)
    _native.lib.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    no_new_privs = 0 if capable(CAP_SYS_ADMIN) else 1
    userspace = userspace or stacks.has_proxy_stacks()
    stacks.serves_proxies = userspace
    routing = routing or stacks.resolves()
    stacks.routes_connects = routing
    keeper, parent_end, line = _fork_keeper(
        argv, no_new_privs, mask, (_native.lib.VUPY_TRAP_PROXY_CALLS if userspace else 0)
        | (_native.lib.VUPY_TRAP_ROUTE_CALLS if routing else 0)
        | (0 if table.exact else _native.lib.VUPY_TRAP_EXITS))
    with parent_end:
        if line[:1] != [b"L"]:  # COMMAND said why on stderr, and ended
            return _exit_code(_wait_command(keeper, None, parent_end, line))
        command = int(line[1])
        table.add(command, Defaults(None, stacks.session))
        listener = _native.lib.vupy_getfd(command, int(line[2]))
        if listener < 0:
            os.kill(command, signal.SIGKILL)
            raise SessionError(f"cannot take the seccomp listener: {os.strerror(-listener)}")
        os.write(parent_end.fileno(), b"!")
        if _native.lib.vupy_set_sync_wakeup(listener) < 0 and trace:
            trace("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP not available")
        cpus = len(os.sched_getaffinity(0))
        if servers is None:
            # A call that needs Python costs about 15 us more unpinned when a
            # serving thread hands it over (docs/performance.md): by default
            # only where Python serves few calls, without routes or proxies.
            servers = cpus if cpus > 1 and not (routing or userspace) else 0
        supervisor = Supervisor(listener, table, events, stacks, trace, userspace, routing,
                                min(servers, cpus))
        thread = threading.Thread(target=supervisor.run, name="vupy-notify", daemon=True)
        thread.start()
        status = _wait_command(keeper, command, parent_end)
    _end_leftovers()
    # Helpers that the supervisor thread started (vde_plug of a stack that
    # vumount made) die with that thread (PR_SET_PDEATHSIG): the stacks end
    # them first.
    stacks.close()
    supervisor.released.set()
    thread.join(timeout=GRACE_SECONDS)
    if events is not None:
        events.close()
    return _exit_code(status)


def run_nested(argv, stack_options, default_options, mask, userspace=False, route_options=()):
    """Run argv in a session nested in the one vupy itself runs in; return
    its exit status.

    A process may be under one filter with a listener only (the kernel
    refuses a second with EBUSY), and it is the enclosing session's: so its
    supervisor makes this session's stacks and defaults (the control call's
    "nest"), in a scope of their own that vupy and what it starts belong
    to, in front of the enclosing session's stacks and unseen by its other
    processes.  vupy then does what a session's vupy does but supervise:
    start COMMAND below a keeper, pass signals on, end what COMMAND leaves;
    and last it ends the scope (should vupy die first, the enclosing
    supervisor sees it and ends the scope itself).  Options as for
    `prepare`; SessionError for a session that cannot start."""
    request = {"op": "nest", "userspace": userspace,
               "stacks": [[path, spec] for path, spec in stack_options],
               "defaults": [[None if families is None else list(families), path, text]
                            for families, path, text in default_options],
               "routes": [[rule.text, path] for rule, path, _text in route_options]}
    try:
        control(request)
    except OSError as e:
        if e.errno == errno.EPERM:
            raise SessionError("a session inside a session is made by the enclosing session's "
                               "vupy, for its owner's uid and root only") from None
        raise SessionError(e.strerror) from None
    try:
        _refuse_if_signalled()
        _native.lib.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        keeper, parent_end, line = _fork_keeper(argv, None, mask, None)
        with parent_end:
            if line[:1] != [b"L"]:  # COMMAND said why on stderr, and ended
                status = _wait_command(keeper, None, parent_end, line)
            else:
                os.write(parent_end.fileno(), b"!")
                status = _wait_command(keeper, int(line[1]), parent_end)
        _end_leftovers()
    finally:
        control({"op": "end"})
    return _exit_code(status)


def _wait_command(keeper, command, parent_end, line=()):
    """Wait for COMMAND's end and return its wait status, passing on the
    signals of FORWARDED meanwhile (_pass_on).  The keeper reports the
    status (`line`, if already read); if the keeper itself was killed,
    COMMAND is reparented to vupy and reaped here."""
    while True:
        info = signal.sigwaitinfo(WAITED)
        if info.si_signo == signal.SIGCHLD:
            ended = _reap_all()
            if command in ended:
                return ended[command]
            if keeper in ended:
                line = line or os.read(parent_end.fileno(), 64).split()
                if line[:1] == [b"S"]:
                    return int(line[1])
                if command is None:
                    return ended[keeper]
                keeper = None
        else:
            _pass_on(info.si_signo, keeper, command)


def _pass_on(signo, keeper, command):
    """vupy has taken `signo`, one of FORWARDED: COMMAND must have it once.

    If it was sent to vupy's process group (the terminal's ^C, kill -INT
    -PGID, kill(-1)), COMMAND, in that group, has had its own copy (unless
    it has left the group: see _answer); if to vupy alone (kill PID, or the
    hangup the kernel sends to a session's leader alone), it has not, and
    vupy passes it on.  The siginfo cannot tell these apart (both are
    SI_USER from the same sender, say), but the keeper can: it is in vupy's
    process group and blocks every signal, so a group's signal is pending
    there, and one sent to vupy alone is not.  vupy asks the keeper (QUERY
    + signo, a real-time signal: queued), and the keeper either consumes
    its copy or sends signo to COMMAND (_answer).

    The keeper's copy must be pending before the keeper looks.  In Linux,
    kill(2) of a process group (kill_something_info) and the terminal's
    signals (kill_pgrp) deliver to every member in one loop,
    __kill_pgrp_info, under read_lock(&tasklist_lock); and setpgid(2) takes
    write_lock_irq(&tasklist_lock) before any of its checks.  So vupy's
    setpgid(0, getpgrp()), a change to nothing that may even fail (EPERM for
    a session leader), returns only once any group delivery under way has
    reached every member, the keeper included.  (It usually has already: a
    process group lists its newest member first, attach_pid adding at the
    head, and the keeper is newer than vupy.)

    If the keeper has been killed, nothing can tell the two apart any more:
    the signal goes to COMMAND, now vupy's own child."""
    if keeper is None:
        os.kill(command, signo)
        return
    try:
        os.setpgid(0, os.getpgrp())
    except OSError:
        pass
    os.kill(keeper, QUERY + signo)      # not yet reaped: it cannot have gone


def _exit_code(status):
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
