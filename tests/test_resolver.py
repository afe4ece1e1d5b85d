# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Each stack's own name resolution (vupy/_resolver.py), with real
resolvers: dnsmasq in two namespaces, answering the same name differently,
and a resolver on the host's side that counts what it is asked.  The
session runs in a mount namespace of its own where /etc/resolv.conf names
that counting resolver, so that a query the host would get is seen."""
import os
import shutil
import subprocess
import textwrap

import pytest

from helpers import PYTHON, VUPY, run

NS_ADDRESS = "10.53.0.1"        # each namespace's dnsmasq
HOST_RESOLVER = "127.0.0.77"    # the host's, as the session's /etc/resolv.conf says
ANSWERS = {"A": "10.1.0.1", "B": "10.2.0.1"}

COUNTING = textwrap.dedent("""
    import socket, sys, threading
    count = 0
    def answer(q):
        global count
        count += 1
        with open(sys.argv[2], "w") as f:
            f.write(str(count))
        return q[:2] + b"\\x81\\x83" + q[4:]          # NXDOMAIN
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((sys.argv[1], 53))
    t = socket.socket()
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((sys.argv[1], 53))
    t.listen(8)
    def tcp():
        while True:
            c, _ = t.accept()
            n = int.from_bytes(c.recv(2), "big")
            q = c.recv(n)
            r = answer(q)
            c.sendall(len(r).to_bytes(2, "big") + r)
            c.close()
    threading.Thread(target=tcp, daemon=True).start()
    print("ready", flush=True)
    while True:
        q, peer = u.recvfrom(4096)
        u.sendto(answer(q), peer)
""")


@pytest.fixture
def host_resolver(tmp_path):
    """(resolv.conf naming the counting resolver, how many queries it had)."""
    counted = tmp_path / "count"
    p = subprocess.Popen([PYTHON, "-c", COUNTING, HOST_RESOLVER, str(counted)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        conf = tmp_path / "resolv.conf"
        conf.write_text(f"nameserver {HOST_RESOLVER}\noptions timeout:2 attempts:1\n")
        yield conf, lambda: int(counted.read_text()) if counted.exists() else 0
    finally:
        p.kill()
        p.wait()


def dnsmasq(ns, answer, tmp_path, extra=()):
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{NS_ADDRESS}/32", "dev", "lo"], check=True)
    log = tmp_path / f"dnsmasq-{ns}.log"
    p = subprocess.Popen(["ip", "netns", "exec", ns, "dnsmasq", "-k", "-u", "root", "--port", "53",
                          f"--listen-address={NS_ADDRESS}", "--bind-interfaces", "--no-resolv",
                          "--no-hosts", f"--address=/test.example/{answer}", "--log-queries",
                          f"--log-facility={log}", f"--pid-file={tmp_path / ns}.pid", *extra])
    return p


@pytest.fixture
def two_resolvers(netns, server, tmp_path):
    """Namespaces A and B, each with a dnsmasq saying test.example is
    ANSWERS[tag] and a line server there saying its tag."""
    made, procs = {}, []
    for tag in ("A", "B"):
        ns = made[tag] = netns()
        procs.append(dnsmasq(ns, ANSWERS[tag], tmp_path))
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{ANSWERS[tag]}/32", "dev", "lo"], check=True)
        server(ns, 8080, tag, ANSWERS[tag])
    yield made
    for p in procs:
        p.kill()
        p.wait()


def in_session(conf, *args, **kw):
    """vupy run ARGS with `conf` as /etc/resolv.conf (a mount namespace)."""
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    return run(["unshare", "-m", "sh", "-c", script, str(conf), VUPY, "run", *args], **kw)


LOOKUPS = ("getent hosts test.example | cut -d' ' -f1; "
           "dig +short +tries=1 +time=3 test.example; "
           "dig +tcp +short +tries=1 +time=3 test.example; "
           "python3 -c 'import socket; print(socket.gethostbyname(\"test.example\"))'; "
           "curl -s -m 10 telnet://test.example:8080 </dev/null")


def test_each_stack_resolves_with_its_own_nameservers_and_the_host_is_never_asked(two_resolvers,
                                                                                  host_resolver,
                                                                                  tmp_path):
    conf, asked = host_resolver
    a, b = two_resolvers["A"], two_resolvers["B"]
    lookups = tmp_path / "lookups.sh"
    lookups.write_text(LOOKUPS + "\n")
    r = in_session(conf, "--stack", f"/dev/net/a=netns:{a},dns={NS_ADDRESS}",
                   "--stack", f"/dev/net/b=netns:{b},dns={NS_ADDRESS}", "--default", "/dev/net/a",
                   "--", "sh", "-c", f"sh {lookups}; vustack /dev/net/b sh {lookups}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [ANSWERS["A"]] * 4 + ["A"] + [ANSWERS["B"]] * 4 + ["B"], r.stderr
    assert asked() == 0


def test_lookups_on_a_stack_without_a_resolver_of_its_own_go_where_they_would(two_resolvers,
                                                                              host_resolver):
    """The counting resolver does count: the session default (host) has no
    resolver of its own, so its lookups reach the host's resolver, while
    another stack has one."""
    conf, asked = host_resolver
    r = in_session(conf, "--stack", f"/dev/net/a=netns:{two_resolvers['A']},dns={NS_ADDRESS}",
                   "--", "getent", "hosts", "test.example")
    assert r.returncode == 2                # NXDOMAIN, from the counting resolver
    assert asked() >= 1


@pytest.fixture
def etc_netns(two_resolvers):
    """/etc/netns/NAME/resolv.conf for A (with a search domain) and a hosts
    file for B, removed at the end."""
    made = []
    for tag, files in (("A", {"resolv.conf": f"nameserver {NS_ADDRESS}\nsearch example\n"}),
                       ("B", {"resolv.conf": f"nameserver {NS_ADDRESS}\n",
                              "hosts": "10.9.9.9 only-b.example\n"})):
        directory = os.path.join("/etc/netns", two_resolvers[tag])
        os.makedirs(directory)
        made.append(directory)
        for name, text in files.items():
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
    yield two_resolvers
    for directory in made:
        shutil.rmtree(directory)
    if os.path.isdir("/etc/netns") and not os.listdir("/etc/netns"):
        os.rmdir("/etc/netns")


def test_a_named_namespace_takes_its_etc_netns_files_as_ip_netns_exec_does(etc_netns, host_resolver):
    conf, asked = host_resolver
    a, b = etc_netns["A"], etc_netns["B"]
    script = ("getent hosts test.example only-b.example test | cut -d' ' -f1; "
              "vustack /dev/net/b getent hosts test.example only-b.example | cut -d' ' -f1")
    r = in_session(conf, "--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}",
                   "--default", "/dev/net/a", "--", "sh", "-c", script)
    assert r.stdout.split() == [ANSWERS["A"]] * 2 + [ANSWERS["B"], "10.9.9.9"], (r.stdout, r.stderr)
    assert asked() == 0


STATIC_LOOKUP = r"""
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
	char text[INET_ADDRSTRLEN];
	int rc = getaddrinfo(argv[1], NULL, &hints, &ai);
	if (rc)
		return fprintf(stderr, "%s\n", gai_strerror(rc)), 1;
	puts(inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, text, sizeof text));
	return 0;
}
"""


def test_a_static_binary_resolves_on_its_stack(two_resolvers, host_resolver, tmp_path):
    conf, asked = host_resolver
    source, exe = tmp_path / "lookup.c", tmp_path / "lookup"
    source.write_text(STATIC_LOOKUP)
    subprocess.run(["gcc", "-static", "-o", str(exe), str(source)], check=True, capture_output=True)
    r = in_session(conf, "--stack", f"/dev/net/b=netns:{two_resolvers['B']},dns={NS_ADDRESS}",
                   "--default", "/dev/net/b", "--", str(exe), "test.example")
    assert (r.returncode, r.stdout.strip()) == (0, ANSWERS["B"]), r.stderr
    assert asked() == 0


def test_unprivileged_a_resolver_inside_the_session(unprivileged):
    """As uid 65534: a dnsmasq run in the session on its own stack (a
    netns:new), named by dns=; the program's lookups reach it and it
    alone (the answer is one only it gives)."""
    script = ("vustack /dev/net/a dnsmasq -k --port 53 --listen-address=127.0.0.1 "
              "--bind-interfaces --no-resolv --no-hosts --address=/test.example/10.7.7.7 "
              "--pid-file=/dev/null & sleep 1; getent hosts test.example | cut -d' ' -f1; kill $!")
    r = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", unprivileged["vupy"],
             "run", "--stack", "/dev/net/a=netns:new,dns=127.0.0.1", "--default", "/dev/net/a",
             "--", "sh", "-c", script], env=unprivileged["env"], cwd="/tmp")
    assert r.stdout.split() == ["10.7.7.7"], (r.stdout, r.stderr)


@pytest.mark.parametrize("option, why", [("dns=10.0.0.300", "is not an IP address"),
                                         ("hosts=/nonexistent/hosts", "not a file")])
def test_bad_resolver_options_are_refused(option, why):
    r = run([VUPY, "run", "--stack", f"/dev/net/a=null,{option}", "--", "true"])
    assert r.returncode == 2 and why in r.stderr, r.stderr


def test_a_name_route_looks_names_up_through_its_stack_and_routes_their_addresses(two_resolvers,
                                                                               host_resolver):
    """name:test.example=/dev/net/b: the name is resolved by B's nameserver
    (10.2.0.1, where A's says 10.1.0.1), and the connection to the address
    it gave goes through B, though the default is A; the same address
    without the lookup goes through A, where nothing answers."""
    conf, asked = host_resolver
    a, b = two_resolvers["A"], two_resolvers["B"]
    script = (f"curl -s -m 5 telnet://{ANSWERS['B']}:8080 </dev/null || echo unreachable; "
              "curl -s -m 10 telnet://test.example:8080 </dev/null; "
              "vustack; getent hosts test.example | cut -d' ' -f1")
    r = in_session(conf, "--stack", f"/dev/net/a=netns:{a},dns={NS_ADDRESS}",
                   "--stack", f"/dev/net/b=netns:{b},dns={NS_ADDRESS}", "--default", "/dev/net/a",
                   "--route", "name:*.example=/dev/net/b", "--", "sh", "-c", script)
    lines = r.stdout.splitlines()
    assert lines[:2] == ["unreachable", "B"], (r.stdout, r.stderr)
    assert "route    name:*.example -> /dev/net/b (session route)" in lines
    assert lines[-1] == ANSWERS["B"]
    assert asked() == 0


UNCONNECTED_QUERY = textwrap.dedent("""
    import socket, struct, sys
    # A query for test.example, type A, sent without connecting, as musl's
    # resolver sends its queries
    query = (struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
             + b"".join(bytes([len(p)]) + p for p in b"test.example".split(b".")) + b"\\0"
             + struct.pack("!HH", 1, 1))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    s.sendto(query, (sys.argv[1], 53))
    reply, peer = s.recvfrom(4096)
    print(socket.inet_ntoa(reply[-4:]), peer[0], peer[1])
""")


def test_a_query_sent_without_connecting_goes_to_its_stacks_resolver(two_resolvers, host_resolver):
    """sendto to the host's nameserver from a stack with its own: the
    stack's resolver answers, from the address the program asked."""
    conf, asked = host_resolver
    r = in_session(conf, "--stack", f"/dev/net/b=netns:{two_resolvers['B']},dns={NS_ADDRESS}",
                   "--default", "/dev/net/b", "--", PYTHON, "-c", UNCONNECTED_QUERY, HOST_RESOLVER)
    assert (r.returncode, r.stdout.split()) == (0, [ANSWERS["B"], HOST_RESOLVER, "53"]), r.stderr
    assert asked() == 0


def test_search_domains_of_a_stack_complete_bare_names(two_resolvers, host_resolver, tmp_path):
    """search=: `test` is looked up as test.example on B (an alias of it),
    as a bare name and as one below the host's search domain; a stack
    without search domains leaves bare names alone; /etc/netns/NAME's
    resolv.conf gives them too."""
    conf, asked = host_resolver
    conf.write_text(f"nameserver {HOST_RESOLVER}\nsearch host.invalid\noptions timeout:2 attempts:1\n")
    b = two_resolvers["B"]
    script = ("getent hosts test | cut -d' ' -f1; "
              "python3 -c 'import socket; print(socket.gethostbyname_ex(\"test\")[0])'; "
              "vustack /dev/net/a getent hosts test || echo none")
    r = in_session(conf, "--stack", f"/dev/net/b=netns:{b},dns={NS_ADDRESS},search=nowhere.invalid+example",
                   "--stack", f"/dev/net/a=netns:{two_resolvers['A']},dns={NS_ADDRESS}",
                   "--default", "/dev/net/b", "--", "sh", "-c", script)
    assert r.stdout.split() == [ANSWERS["B"], "test.example", "none"], (r.stdout, r.stderr)
    assert asked() == 0
