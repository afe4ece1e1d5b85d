# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The C wrapper library (csrc/msocket.h, libmsocket): C programs choose a
stack per socket, inside a vupy session and outside one."""
import errno
import os
import shutil
import tempfile
import textwrap

import pytest

from helpers import NOBODY, SYSTEM_PYTHON, run, vupy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(REPO, "csrc")
STATIC_LIB = os.path.join(CSRC, "libmsocket.a")
PORT = 7000

# argv: PATH PORT [default].  PATH "-" is NULL.  Connects to 127.0.0.1:PORT
# through msocket(PATH, AF_INET, SOCK_STREAM, 0) and prints what it reads;
# with "default", first makes PATH the default AF_INET stack (SOCK_DEFAULT)
# and then uses plain socket(2).  On failure prints "msocket: errno N".
CLIENT = r"""
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <msocket.h>

static int fetch(int fd, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	char buf[256];
	ssize_t n;

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		printf("connect: errno %d\n", errno);
		return 1;
	}
	while ((n = read(fd, buf, sizeof buf)) > 0)
		fwrite(buf, 1, n, stdout);
	return n < 0;
}

int main(int argc, char **argv)
{
	const char *path;
	int fd;

	if (argc < 3)
		return 2;
	path = strcmp(argv[1], "-") ? argv[1] : NULL;
	if (argc > 3 && strcmp(argv[3], "default") == 0) {
		if (msocket(path, AF_INET, SOCK_DEFAULT, 0) != 0) {
			printf("msocket: errno %d\n", errno);
			return 1;
		}
		fd = socket(AF_INET, SOCK_STREAM, 0);
	} else {
		fd = msocket(path, AF_INET, SOCK_STREAM, 0);
	}
	if (fd < 0) {
		printf("msocket: errno %d\n", errno);
		return 1;
	}
	return fetch(fd, atoi(argv[2]));
}
"""

# A program written for VUOS without libmsocket: the virtual syscall itself.
RAW = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NR_MSOCKET (-5)

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char buf[256];
	ssize_t n;
	long fd;

	if (argc != 3)
		return 2;
	sa.sin_port = htons(atoi(argv[2]));
	fd = syscall(NR_MSOCKET, argv[1], AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		printf("msocket: errno %d\n", errno);
		return 1;
	}
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		printf("connect: errno %d\n", errno);
		return 1;
	}
	while ((n = read(fd, buf, sizeof buf)) > 0)
		fwrite(buf, 1, n, stdout);
	return 0;
}
"""


def _stale():
    if not os.path.exists(STATIC_LIB):
        return True
    built = os.path.getmtime(STATIC_LIB)
    return any(os.path.getmtime(os.path.join(CSRC, f)) > built for f in ("msocket.c", "msocket.h"))


def gcc(tmp_path, name, source, *args):
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    src = tmp_path / f"{name}.c"
    src.write_text(textwrap.dedent(source))
    out = str(tmp_path / name)
    r = run(["gcc", "-Wall", "-Wextra", "-Werror", "-o", out, str(src), *args])
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def libmsocket():
    """csrc/libmsocket.a, built by `make lib` if missing or out of date."""
    if _stale():
        r = run(["make", "-C", REPO, "lib"])
        assert r.returncode == 0, r.stdout + r.stderr
    return STATIC_LIB


@pytest.fixture
def client(tmp_path, libmsocket):
    return gcc(tmp_path, "client", CLIENT, "-I", CSRC, libmsocket)


@pytest.fixture
def two_stacks(netns, server):
    """--stack options for /dev/net/a and /dev/net/b, namespaces whose
    servers on PORT answer from-a and from-b."""
    a, b = netns(), netns()
    server(a, PORT, "from-a")
    server(b, PORT, "from-b")
    return ["--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}"]


@pytest.mark.parametrize("path, reply", [("/dev/net/a", "from-a"), ("/dev/net/b", "from-b")])
def test_msocket_path_picks_the_stack(client, two_stacks, path, reply):
    r = vupy(*two_stacks, "--", client, path, str(PORT))
    assert (r.returncode, r.stdout.strip()) == (0, reply), r.stderr


def test_sock_default_sets_the_default_for_socket(client, two_stacks):
    r = vupy(*two_stacks, "--", client, "/dev/net/b", str(PORT), "default")
    assert (r.returncode, r.stdout.strip()) == (0, "from-b"), r.stderr


def test_errors_come_back_in_errno(client, two_stacks):
    r = vupy(*two_stacks, "--", client, "/dev/net/missing", str(PORT))
    assert (r.returncode, r.stdout.strip()) == (1, f"msocket: errno {errno.ENOENT}"), r.stderr


def test_outside_a_session_null_path_is_socket(client, netns, server):
    ns = netns()
    server(ns, PORT, "plain")
    r = run(["ip", "netns", "exec", ns, client, "-", str(PORT)])
    assert (r.returncode, r.stdout.strip()) == (0, "plain"), r.stderr


def test_outside_a_session_a_path_fails_with_enosys(client):
    r = run([client, "/dev/net/a", str(PORT)])
    assert (r.returncode, r.stdout.strip()) == (1, f"msocket: errno {errno.ENOSYS}")


def test_raw_virtual_syscall_as_vuos_programs_make_it(tmp_path, two_stacks):
    raw = gcc(tmp_path, "raw", RAW)
    r = vupy(*two_stacks, "--", raw, "/dev/net/a", str(PORT))
    assert (r.returncode, r.stdout.strip()) == (0, "from-a"), r.stderr
    r = run([raw, "/dev/net/a", str(PORT)])
    assert (r.returncode, r.stdout.strip()) == (1, f"msocket: errno {errno.ENOSYS}")


@pytest.mark.parametrize("link", ["shared", "static"])
def test_installed_library_through_pkg_config(tmp_path, libmsocket, two_stacks, link):
    if shutil.which("pkg-config") is None:
        pytest.skip("no pkg-config")
    prefix = tmp_path / "prefix"
    r = run(["make", "-C", REPO, "install", f"PREFIX={prefix}"])
    assert r.returncode == 0, r.stdout + r.stderr
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    r = run(["pkg-config", "--cflags", "--libs", "msocket"], env=env)
    assert r.returncode == 0, r.stderr
    flags = r.stdout.split()
    assert flags == [f"-I{prefix}/include", f"-L{prefix}/lib", "-lmsocket"]
    if link == "shared":
        flags.append(f"-Wl,-rpath,{prefix}/lib")
    else:
        flags = ["-static"] + flags
    prog = gcc(tmp_path, "client", CLIENT, *flags)
    r = vupy(*two_stacks, "--", prog, "/dev/net/a", str(PORT))
    assert (r.returncode, r.stdout.strip()) == (0, "from-a"), r.stderr


def test_header_compiles_as_cplusplus(tmp_path, libmsocket):
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    src = tmp_path / "t.cc"
    src.write_text('#include <sys/socket.h>\n#include <msocket.h>\n'
                   'int main() { return msocket(nullptr, AF_INET, SOCK_STREAM, 0) < 0; }\n')
    out = str(tmp_path / "t")
    r = run(["g++", "-Wall", "-Wextra", "-Werror", "-I", CSRC, "-o", out, str(src), libmsocket])
    assert r.returncode == 0, r.stderr
    assert run([out]).returncode == 0


def test_c_program_in_a_session_without_root(client, unprivileged):
    """libmsocket in a session run by uid 65534: msocket(PATH) reaches a
    server in that session's private stack (netns:new)."""
    directory = tempfile.mkdtemp(prefix="vupyt-c-")
    try:
        os.chmod(directory, 0o777)
        program = shutil.copy(client, directory)
        os.chmod(program, 0o755)
        stack, ready = os.path.join(directory, "n"), os.path.join(directory, "ready")
        server = (f"import socket; s = socket.socket(); s.bind(('127.0.0.1', {PORT})); s.listen(1); "
                  f"open({ready!r}, 'w').close(); c, _ = s.accept(); c.sendall(b'from-private'); c.close()")
        script = (f"vustack {stack} {SYSTEM_PYTHON} -c \"{server}\" & "
                  f"until [ -e {ready} ]; do sleep 0.05; done; {program} {stack} {PORT}; wait")
        r = run([*NOBODY, unprivileged["vupy"], "run", f"--stack={stack}=netns:new", "--", "sh", "-c", script],
                env=unprivileged["env"])
        assert (r.returncode, r.stdout.strip()) == (0, "from-private"), r.stderr
    finally:
        shutil.rmtree(directory)
