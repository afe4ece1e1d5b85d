# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""msocket with arbitrary arguments (property-based, hypothesis): whatever
the pointer (NULL, a stack, a file that is not one, unmapped, a kernel
address, text ending at an unmapped page without its NUL), family, type and
protocol, the call gives a socket of the stack it named or an error the
documentation lists, never a socket of another stack, and the supervisor
goes on serving.  The examples run inside one session, so that thousands
of calls cost one vupy start."""
import errno
import textwrap

from helpers import PYTHON, ns_inode, run, vupy
from vupy._dispatch import MSOCKET_ERRORS

# What socket(2) itself may answer once a stack is chosen (docs/msocket.2.md).
SOCKET_ERRORS = {errno.EINVAL, errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EPERM,
                 errno.EACCES, errno.ENOBUFS, errno.ENOMEM, errno.ENFILE, errno.EMFILE,
                 errno.EAFNOSUPPORT, errno.EPROTOTYPE}

PROGRAM = textwrap.dedent("""
    import ctypes, errno, fcntl, os, socket, sys
    from hypothesis import given, settings, strategies as st, HealthCheck

    ALLOWED = set(map(int, sys.argv[2].split(",")))
    STACK, STACK_NS, NOT_A_STACK = sys.argv[3], int(sys.argv[4]), sys.argv[5]
    HOST_NS = os.stat("/proc/self/ns/net").st_ino     # the session's default stack, host
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    PAGE = os.sysconf("SC_PAGE_SIZE")
    # Two pages, the second unmapped: text at the end of the first has no NUL.
    base = libc.mmap(None, 2 * PAGE, 3, 0x22, -1, 0)
    libc.munmap(ctypes.c_void_p(base + PAGE), PAGE)
    keep = []

    def pointer(kind, text):
        if kind == "null":
            return 0
        if kind == "unmapped":
            return base + PAGE
        if kind == "kernel":
            return 0xffff888000000000
        if kind == "page-end":
            ctypes.memmove(base + PAGE - len(text), text, len(text))
            return base + PAGE - len(text)
        data = {"stack": STACK, "not-a-stack": NOT_A_STACK, "text": text}[kind]
        buf = ctypes.create_string_buffer(data if isinstance(data, bytes) else data.encode())
        keep.append(buf)
        return ctypes.addressof(buf)

    ints = st.one_of(st.integers(-2**31, 2**31 - 1), st.sampled_from([0, -1, 1, 2, 3, 10, 16, 17, 45, 46]))
    calls = [0]

    @settings(max_examples=int(sys.argv[1]), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(["null", "stack", "not-a-stack", "unmapped", "kernel", "page-end", "text"]),
           st.binary(min_size=1, max_size=64).filter(lambda b: b"\\0" not in b),
           ints, st.one_of(ints, st.sampled_from([1, 2, 3, 0x80001, 0x801])), ints)
    def check(kind, text, domain, type_, protocol):
        calls[0] += 1
        del keep[:]
        rc = libc.syscall(-5, ctypes.c_void_p(pointer(kind, text)), ctypes.c_int(domain),
                          ctypes.c_int(type_), ctypes.c_int(protocol))
        if rc < 0:
            err = ctypes.get_errno()
            assert err in ALLOWED, (kind, text, domain, type_, protocol, errno.errorcode.get(err, err))
            return
        if type_ == 0:
            return          # SOCK_DEFAULT: no socket
        try:
            assert kind in ("stack", "null"), ("a socket from", kind, domain, type_, protocol)
            ns = os.fstat(fcntl.ioctl(rc, 0x894C)).st_ino     # SIOCGSKNS
            # NULL: the default, which earlier examples may have set to the stack.
            assert ns == STACK_NS if kind == "stack" else ns in (STACK_NS, HOST_NS), \
                (kind, domain, type_, protocol, ns)
        finally:
            os.close(rc)

    check()
    # And the supervisor still serves, on the stack named.
    s = socket.socket(fileno=libc.syscall(-5, ctypes.c_char_p(STACK.encode()), 2, 1, 0))
    print(calls[0], os.fstat(fcntl.ioctl(s.fileno(), 0x894C)).st_ino == STACK_NS)
""")


def test_msocket_with_arbitrary_arguments(netns, tmp_path):
    ns = netns()
    not_a_stack = tmp_path / "plain-file"
    not_a_stack.write_text("not a stack\\n")
    allowed = {code for code, _ in MSOCKET_ERRORS} | SOCKET_ERRORS
    r = vupy("--stack", f"/dev/net/h=netns:{ns}", "--", PYTHON, "-c", PROGRAM, "1500",
             ",".join(map(str, sorted(allowed))), "/dev/net/h",
             str(ns_inode(ns)), str(not_a_stack), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    calls, served = r.stdout.split()
    assert int(calls) >= 1500 and served == "True", r.stdout


RACE = r"""
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char path[64] = "/dev/net/a";
static volatile int done;

static void *rewrite(void *arg)
{
	(void)arg;
	for (unsigned long i = 0; !done; i++)
		memcpy(path, i & 1 ? "/dev/net/bb" : "/dev/net/a\0", 12);
	return NULL;
}

int main(void)
{
	pthread_t t;
	int enoent = 0, other = 0;
	pthread_create(&t, NULL, rewrite, NULL);
	for (int i = 0; i < 5000; i++) {
		int fd = syscall(-5, path, AF_INET, SOCK_DGRAM, 0);
		if (fd < 0) {
			if (errno == ENOENT) enoent++; else other++;
			continue;
		}
		int ns = ioctl(fd, 0x894C);   /* SIOCGSKNS */
		struct stat st;
		fstat(ns, &st);
		printf("%lu\n", (unsigned long)st.st_ino);
		close(ns);
		close(fd);
	}
	done = 1;
	pthread_join(t, NULL);
	printf("enoent %d other %d\n", enoent, other);
	return 0;
}
"""


def test_path_rewritten_while_the_call_is_in_flight(netns, tmp_path):
    """Another thread rewrites the path between "/dev/net/a" and
    "/dev/net/bb" while msocket reads it: each socket belongs to a or to bb
    (the stack named in what vupy read), a torn read names no stack
    (ENOENT), and nothing else happens."""
    a, b = netns(), netns()
    source = tmp_path / "race.c"
    source.write_text(RACE)
    program = str(tmp_path / "race")
    r = run(["gcc", "-O2", "-pthread", "-o", program, str(source)])
    assert r.returncode == 0, r.stderr
    r = vupy("--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/bb=netns:{b}", "--", program,
             timeout=300)
    assert r.returncode == 0, r.stderr
    *inodes, summary = r.stdout.splitlines()
    seen = set(map(int, inodes))
    assert seen <= {ns_inode(n) for n in (a, b)}, seen
    assert len(inodes) > 0 and summary.startswith("enoent ") and summary.endswith(" other 0"), summary
