"""The session: start COMMAND under the filter, supervise it, end cleanly.

Order of a session, and why:

1. Stacks are made (and every SPEC checked) before anything else, so that a
   bad SPEC is refused before any process or namespace exists.
2. vupy enters a mount namespace of its own, a slave of the original one, and
   shadows each directory holding a stack file with a tmpfs in which every
   original entry is bind-mounted back (so /dev/net/tun stays usable).  The
   session's processes inherit this view; nobody outside sees it.
3. vupy subscribes to process events (see _procs.py) and becomes a child
   subreaper, so that orphans of the session are reparented to it and it
   can end them with the session.
4. COMMAND is forked; the child installs the filter (which, in a session
   with userspace stacks, also traps the calls of proxy descriptors: see
   _proxy.py), vupy takes a copy of the listener (pidfd_getfd), and the
   child executes COMMAND.
5. The main thread waits for signals: SIGCHLD reaps, and SIGINT, SIGTERM,
   SIGHUP and SIGQUIT sent by a process (not by the terminal, which signals
   COMMAND's process group itself) are passed on to COMMAND, and so is a
   terminal hangup when vupy leads the terminal's session.
6. When COMMAND ends, what it left running in the session gets SIGTERM, then
   SIGKILL after two seconds; vupy exits with COMMAND's status.
"""
import os
import signal
import socket
import threading
import time

from . import _families, _native
from ._dispatch import Defaults
from ._notify import Supervisor
from ._procs import ProcessEvents, ProcessTable, children, status_field
from .stack import CAP_SYS_ADMIN, capable
from ._stacks import MountError, StackTable, make_stack, parse_spec, sys_mount

CLONE_NEWNS = 0x00020000
MS_REC = 16384
MS_SLAVE = 1 << 19
PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
SI_KERNEL = 0x80
GRACE_SECONDS = 2.0


class SessionError(Exception):
    """The session cannot start: the message says why."""


def enter_mount_namespace():
    """Give vupy (and so the session) a mount namespace of its own, a slave
    of the original one: mounts from outside still appear in it, and the
    stack files made in it appear nowhere else."""
    if _native.lib.vupy_unshare(CLONE_NEWNS) < 0:
        raise SessionError("cannot make a mount namespace for the stack files: "
                           "vupy run needs root (CAP_SYS_ADMIN)")
    try:
        sys_mount(None, "/", None, MS_REC | MS_SLAVE)
    except OSError as e:
        raise SessionError(str(e)) from None


def prepare(stack_options, default_options):
    """Make the session's stacks and defaults, in a new mount namespace
    (without CAP_SYS_ADMIN, in none: see StackTable).

    `stack_options`: [(path, spec)]; `default_options`: [(families or None,
    path, text)].  Returns (StackTable, session defaults: family -> stack);
    SessionError, with everything made so far closed, on any problem."""
    privileged = capable(CAP_SYS_ADMIN)
    stacks = StackTable((os.getuid(), os.getgid()), private=privileged)
    try:
        host = make_stack("host", "", {})
        host.label = "host"
        stacks.keep(host)
        if privileged:
            enter_mount_namespace()
        for path, spec in stack_options:
            stacks.mount(path, *parse_spec(spec))
        defaults = {family: host for family in host.families}
        for families, path, text in default_options:
            mount = stacks.by_path.get(path)
            if mount is None:
                raise SessionError(f"--default {text!r}: {path} is not a --stack PATH of this session")
            for family in families or sorted(mount.stack.families):
                if family not in mount.stack.families:
                    raise SessionError(f"--default {text!r}: {path} does not serve "
                                       f"{_families.name(family)}")
                defaults[family] = mount.stack
    except BaseException as e:
        stacks.close()
        if isinstance(e, MountError):
            raise SessionError(str(e)) from None
        raise
    return stacks, defaults


def _descendants():
    """Every process of the session below vupy (orphans of the session are
    reparented here).  Processes not under the filter are vupy's own
    helpers (stack workers, vde_plug): their stacks end them."""
    found, todo = [], [os.getpid()]
    while todo:
        below = children(todo.pop())
        found.extend(c for c in below if status_field(c, b"Seccomp:") != 0)
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


def _end_leftovers():
    pids = _descendants()
    for sig in (signal.SIGTERM, signal.SIGKILL):
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


def _start_child(argv, to_parent, no_new_privs, mask, features):
    """In the forked child: install the filter, hand over the listener, exec."""
    try:
        # Python ignores these two; an ignored signal stays ignored across
        # execve, and COMMAND must start with the dispositions it would have.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        listener = _native.lib.vupy_filter_install(no_new_privs, features)
        if listener < 0:
            os.write(2, f"vupy: cannot install the seccomp filter: {os.strerror(-listener)}\n".encode())
            os._exit(125)
        # The parent takes the listener with pidfd_getfd: sendmsg may be
        # trapped already, and nobody would answer it yet.
        os.write(to_parent.fileno(), b"%d\n" % listener)
        os.read(to_parent.fileno(), 1)
        os.close(listener)
        to_parent.close()
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        os.write(2, f"vupy: {argv[0]}: command not found\n".encode())
        os._exit(127)
    except OSError as e:
        os.write(2, f"vupy: {argv[0]}: {e.strerror}\n".encode())
        os._exit(126)
    except BaseException as e:  # never return into the parent's code
        os.write(2, f"vupy: {e}\n".encode())
        os._exit(125)


def run(argv, stacks, session_defaults, trace=None, userspace=False):
    """Run argv in a session; return its exit status.

    `stacks`: the StackTable from `prepare`; `session_defaults`: family -> stack;
    `userspace`: trap the calls of proxy descriptors even if no userspace
    stack is mounted yet (they are trapped anyway if one is).
    """
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
    if _native.lib.vupy_self_creds() < 0:
        raise SessionError("cannot read vupy's own credentials")

    waited = set(FORWARDED) | {signal.SIGCHLD}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    no_new_privs = 0 if capable(CAP_SYS_ADMIN) else 1
    userspace = userspace or stacks.has_proxy_stacks()
    stacks.serves_proxies = userspace
    pid = os.fork()
    if pid == 0:
        parent_end.close()
        _start_child(argv, child_end, no_new_privs, mask,
                     (_native.lib.VUPY_TRAP_PROXY_CALLS if userspace else 0)
                     | (0 if table.exact else _native.lib.VUPY_TRAP_EXITS))
    child_end.close()
    table.add(pid, Defaults())
    try:
        number = os.read(parent_end.fileno(), 32)
        listener = _native.lib.vupy_getfd(pid, int(number)) if number else -1
        os.write(parent_end.fileno(), b"!")
    finally:
        parent_end.close()
    if listener < 0:  # the child said why on stderr
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    if _native.lib.vupy_set_sync_wakeup(listener) < 0 and trace:
        trace("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP not available")
    supervisor = Supervisor(listener, table, events, stacks, session_defaults, trace, userspace)
    thread = threading.Thread(target=supervisor.run, name="vupy-notify", daemon=True)
    thread.start()

    session_leader = os.getsid(0) == os.getpid()
    status = None
    while status is None:
        info = signal.sigwaitinfo(waited)
        if info.si_signo == signal.SIGCHLD:
            status = _reap_all().get(pid)
        elif info.si_code != SI_KERNEL or (info.si_signo == signal.SIGHUP and session_leader):
            # From a process (kill(1)), not from the terminal: the terminal
            # signals COMMAND's process group itself.  Except a hangup, which
            # the kernel sends to the session leader alone: when that is
            # vupy, COMMAND learns of it only from vupy.
            try:
                os.kill(pid, info.si_signo)
            except ProcessLookupError:
                pass
    _end_leftovers()
    thread.join(timeout=GRACE_SECONDS)
    if events is not None:
        events.close()
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
