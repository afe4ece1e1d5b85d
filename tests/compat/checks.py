# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The compatibility checks: real programs under vupy, each proving that
its sockets were those of the namespace vupy was given.

Every check runs in a Lab of its own (lab.py) and raises Failed if the
program did not do what it must: fetch, resolve or read what a peer in
the namespace serves (on ADDRESS, which only the namespace has, or on the
namespace's loopback, on a port the host leaves unused), show the
namespace's interfaces or sockets, or serve a peer that connects from
inside the namespace.  perform() runs one check and gives its Result.
"""
import re
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from typing import Callable

from .lab import ADDRESS, ENV, LWIP_ADDRESS, PREFIX_LEN, STACK, SYSTEM_PYTHON, Failed, Lab, expect, free_port

NAME, NAME_ADDRESS = "test.example", "10.213.0.7"     # what the namespace's DNS server answers

# Under vupy: listens on argv[1]:argv[2], then runs ss there, on the stack.
LISTEN_THEN_SS = textwrap.dedent("""
    import socket, subprocess, sys
    s = socket.socket()
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.listen()
    sys.stdout.write(subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout)
""")

# Peer: answers every TCP connection with argv[3] and a newline, then closes it.
LINE_SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.listen(8)
    while True:
        c, _ = s.accept()
        c.sendall(sys.argv[3].encode() + b'\\n')
        c.close()
""")

# Peer: prints everything a TCP server sends until it closes.
READER = textwrap.dedent("""
    import socket, sys
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    while chunk := s.recv(4096):
        sys.stdout.write(chunk.decode())
""")

ASYNCIO_CLIENT = textwrap.dedent("""
    import asyncio, sys
    async def main():
        reader, writer = await asyncio.open_connection(sys.argv[1], int(sys.argv[2]))
        print((await reader.read()).decode(), end='')
        writer.close()
        await writer.wait_closed()
    asyncio.run(main())
""")

ASYNCIO_SERVER = textwrap.dedent("""
    import asyncio, sys
    async def answer(reader, writer):
        writer.write(sys.argv[3].encode() + b'\\n')
        await writer.drain()
        writer.close()
    async def main():
        server = await asyncio.start_server(answer, sys.argv[1], int(sys.argv[2]))
        async with server:
            await server.serve_forever()
    asyncio.run(main())
""")

NODE_SERVER = ("require('http').createServer((request, response) => response.end(process.argv[3]))"
               ".listen(Number(process.argv[2]), process.argv[1])")

SSHD_CONFIG = textwrap.dedent("""\
    Port {port}
    ListenAddress {host}
    HostKey {dir}/host_key
    AuthorizedKeysFile {dir}/authorized_keys
    PidFile none
    PermitRootLogin prohibit-password
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    UsePAM no
    StrictModes no
""")
# sshd insists on its privilege separation directory; the mount stays in the
# mount namespace of `ip netns exec`, and the host's /run is left alone.
SSHD = ('mount -t tmpfs -o mode=0755 vupyt-sshd /run && mkdir -m 0755 /run/sshd'
        ' && exec /usr/sbin/sshd -D -e -f "$0"')


@dataclass(eq=False)           # each check is itself (run.py keys its results by check)
class Check:
    name: str
    version_argv: list
    version_pattern: str        # its group 1 in the output of version_argv is the version
    note: str                   # what a pass shows
    needs: tuple                # programs that must be installed
    run: Callable[[Lab], None]

    @property
    def id(self):
        return re.sub(r"\W+", "-", self.name.lower()).strip("-")

    def version(self):
        if not shutil.which(self.version_argv[0]):
            return "not installed"
        r = subprocess.run(self.version_argv, capture_output=True, text=True, env=ENV, timeout=60)
        found = re.search(self.version_pattern, r.stdout + r.stderr)
        return found.group(1) if found else "unknown"


@dataclass
class Result:
    name: str
    version: str
    passed: bool
    note: str


CHECKS = []


def check(name, version_argv, version_pattern, note, needs=()):
    """Register the decorated function as a check of version_argv[0]."""
    def register(run):
        CHECKS.append(Check(name, version_argv, version_pattern, note,
                            (version_argv[0], *needs), run))
        return run
    return register


def perform(check, wrong_stack=False, kind="netns"):
    """Run check in a Lab of its own, of `kind`; with wrong_stack, vupy
    gets another stack than the peers'."""
    version = check.version()
    missing = [program for program in check.needs if not shutil.which(program)]
    try:
        expect(not missing, "not installed: " + " ".join(missing))
        with Lab(wrong_stack, kind) as lab:
            check.run(lab)
    except Failed as failure:
        return Result(check.name, version, False, f"{check.note}. Failed: {failure}")
    return Result(check.name, version, True, check.note)


# Helpers -----------------------------------------------------------------

def expect_token(lab, text):
    expect(lab.token in text, f"got {text.strip()[-80:]!r}, not the peer's answer")


def python(script, *args):
    return [SYSTEM_PYTHON, "-c", script, *map(str, args)]


def line_server(lab, host):
    """A LINE_SERVER in the namespace, listening: its port."""
    port = free_port()
    lab.wait_listening(lab.start(lab.ns_argv(python(LINE_SERVER, host, port, lab.token))), port)
    return port


def http_server(lab, host):
    """A Python http.server in the namespace serving the file `token`: its URL."""
    port = free_port()
    lab.write("token", lab.token + "\n")
    server = lab.start(lab.ns_argv([SYSTEM_PYTHON, "-m", "http.server", "--bind", host,
                                    "--directory", lab.tmp, str(port)]))
    lab.wait_listening(server, port)
    return f"http://{host}:{port}/token"


def served_under_vupy(lab, argv, port, fetch):
    """Start argv (a server on lab.served_host:port) under vupy, wait until
    it listens on its stack, and check that `fetch` run in the namespace
    gets the token from it."""
    lab.serve(argv, port)
    expect_token(lab, lab.output(lab.ns_argv(fetch)))


def ping_as(lab, nobody, group):
    """ping ADDRESS under vupy with ping_group_range allowing only `group`:
    it must use an ICMP datagram socket of the stack."""
    lab.sysctl("net.ipv4.ping_group_range", f"{group} {group}")
    trace = lab.path("trace")
    out = lab.output(lab.vupy_argv(["ping", "-c", "1", "-W", "10", ADDRESS], nobody=nobody, trace=trace))
    expect(" 1 received" in out, "no answer")
    with open(trace) as f:
        expect(f"socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) -> {STACK}: fd" in f.read(),
               "no ICMP datagram socket was made in the stack")


def dnsmasq(host, port):
    """argv of a dnsmasq on host:port answering NAME, and nothing else."""
    return ["/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file",
            "--log-facility=-", "--no-resolv", "--no-hosts", "--bind-interfaces",
            f"--listen-address={host}", f"--port={port}", f"--address=/{NAME}/{NAME_ADDRESS}"]


def dns_server(lab):
    """dnsmasq on lab.peer_host in the namespace, answering NAME: its port."""
    port = free_port()
    lab.wait_listening(lab.start(lab.ns_argv(dnsmasq(lab.peer_host, port))), port, udp=True)
    return port


def iperf3_client(port, host):
    return ["iperf3", "--client", host, "--port", str(port), "--bytes", "1M"]


def iperf3_server(port, host):
    return ["iperf3", "--server", "--one-off", "--bind", host, "--port", str(port)]


# The checks --------------------------------------------------------------

@check("curl", ["curl", "--version"], r"curl (\S+)",
       f"HTTP GET from a server on {ADDRESS}, an address only the namespace has",
       needs=(SYSTEM_PYTHON,))
def curl(lab):
    expect_token(lab, lab.output(lab.vupy_argv(["curl", "-sS", http_server(lab, ADDRESS)])))


@check("wget", ["wget", "--version"], r"Wget (\S+)",
       "HTTP GET from a server on the namespace's 127.0.0.1", needs=(SYSTEM_PYTHON,))
def wget(lab):
    url = http_server(lab, lab.peer_host)
    expect_token(lab, lab.output(lab.vupy_argv(["wget", "--no-verbose", "--tries=1", "-O", "-", url])))


@check("socat", ["socat", "-V"], r"socat version (\S+)",
       f"TCP client: reads a line from a server on {ADDRESS}", needs=(SYSTEM_PYTHON,))
def socat(lab):
    port = line_server(lab, ADDRESS)
    expect_token(lab, lab.output(lab.vupy_argv(["socat", "-u", f"TCP:{ADDRESS}:{port}", "STDOUT"])))


@check("nc (client)", ["nc", "-h"], r"patchlevel ([^)]+)",
       "`nc -v -d`: reads a line from a server on the namespace's 127.0.0.1", needs=(SYSTEM_PYTHON,))
def nc_client(lab):
    port = line_server(lab, lab.peer_host)
    expect_token(lab, lab.output(lab.vupy_argv(["nc", "-v", "-d", lab.peer_host, str(port)])))


@check("nc (server)", ["nc", "-h"], r"patchlevel ([^)]+)",
       "`nc -N -l` on 127.0.0.1 under vupy, read by a client in the namespace",
       needs=(SYSTEM_PYTHON,))
def nc_server(lab):
    port = free_port()
    server = lab.serve(["nc", "-N", "-l", lab.served_host, str(port)], port,
                       stdin=lab.write("token", lab.token + "\n"))
    expect_token(lab, lab.output(lab.ns_argv(python(READER, lab.served_host, port))))
    status, _, err = lab.finish(server)
    expect(status == 0, f"nc -l: exit status {status}: {err.strip()}")


@check("ip", ["ip", "-V"], r"iproute2-([\d.]+)",
       f"`ip -br addr` (netlink) lists the namespace's vupyt0 with {ADDRESS}/{PREFIX_LEN}")
def ip(lab):
    link, address = ("vupyt0@\\S+", ADDRESS) if lab.kind == "netns" else ("vde0", LWIP_ADDRESS)
    out = lab.output(lab.vupy_argv(["ip", "-br", "addr"]))
    expect(re.search(rf"^{link}\s.*\b{re.escape(address)}/{PREFIX_LEN}\b", out, re.M),
           f"{address} is not listed: " + " ".join(line.split()[0] for line in out.splitlines()))


@check("ss", ["ss", "-V"], r"iproute2-([\d.]+)",
       "`ss -ltn` (sock_diag netlink) lists a listener that exists only on the stack: in the "
       "namespace, or (lwip) made on the stack by the Python program that runs ss",
       needs=(SYSTEM_PYTHON,))
def ss(lab):
    if lab.kind == "netns":
        address, port = ADDRESS, line_server(lab, ADDRESS)
        out = lab.output(lab.vupy_argv(["ss", "-Hltn"]))
    else:
        address, port = LWIP_ADDRESS, free_port()
        out = lab.output(lab.vupy_argv(python(LISTEN_THEN_SS, address, port)))
    expect(f"{address}:{port} " in out, f"{address}:{port} is not listed")


@check("ping (root)", ["ping", "-V"], r"iputils (\S+)",
       f"ICMP datagram socket to {ADDRESS}, allowed by the namespace's ping_group_range `0 0` "
       "(an lwip stack allows everyone)")
def ping_root(lab):
    ping_as(lab, nobody=False, group=0)


@check("ping (uid 65534)", ["ping", "-V"], r"iputils (\S+)",
       "as uid 65534 (`setpriv`), ICMP datagram socket allowed by the namespace's ping_group_range "
       "`65534 65534` only: made with the caller's credentials", needs=("setpriv",))
def ping_nobody(lab):
    ping_as(lab, nobody=True, group=65534)


@check("dig", ["dig", "-v"], r"DiG (\S+)",
       f"UDP query to dnsmasq on the namespace's 127.0.0.1 resolves {NAME}",
       needs=("/usr/sbin/dnsmasq",))
def dig(lab):
    port = dns_server(lab)
    out = lab.output(lab.vupy_argv(["dig", "+short", "+tries=1", "+time=10", "-p", str(port),
                                    f"@{lab.peer_host}", NAME, "A"]))
    expect(out.split() == [NAME_ADDRESS], f"answer {out.strip()!r}")


@check("host", ["host", "-V"], r"host (\S+)",
       f"TCP query (`host -T`) to dnsmasq on the namespace's 127.0.0.1 resolves {NAME}",
       needs=("/usr/sbin/dnsmasq",))
def host(lab):
    port = dns_server(lab)
    out = lab.output(lab.vupy_argv(["host", "-T", "-t", "A", "-W", "10", "-p", str(port), NAME, lab.peer_host]))
    expect(f"{NAME} has address {NAME_ADDRESS}" in out, f"answer {out.strip()!r}")


@check("dnsmasq (server)", ["/usr/sbin/dnsmasq", "--version"], r"Dnsmasq version (\S+)",
       f"`dnsmasq --bind-interfaces` under vupy on 127.0.0.1 answers {NAME} to `dig` in the namespace",
       needs=("dig",))
def dnsmasq_under_vupy(lab):
    port = free_port()
    lab.serve(dnsmasq(lab.served_host, port), port, udp=True)
    out = lab.output(lab.ns_argv(["dig", "+short", "+tries=1", "+time=10", "-p", str(port),
                                  f"@{lab.served_host}", NAME, "A"]))
    expect(out.split() == [NAME_ADDRESS], f"answer {out.strip()!r}")


@check("iperf3 (client)", ["iperf3", "--version"], r"iperf (\S+)",
       f"client under vupy sends 1 MB to `iperf3 --server` on {ADDRESS} in the namespace")
def iperf3_to_namespace(lab):
    port = free_port()
    server = lab.start(lab.ns_argv(iperf3_server(port, ADDRESS)))
    lab.wait_listening(server, port)
    out = lab.output(lab.vupy_argv(iperf3_client(port, ADDRESS)))
    expect("iperf Done." in out, "no summary")
    status, _, err = lab.finish(server)
    expect(status == 0, f"server: exit status {status}: {err.strip()}")


@check("iperf3 (server)", ["iperf3", "--version"], r"iperf (\S+)",
       "`iperf3 --server` under vupy on 127.0.0.1 receives 1 MB from a client in the namespace")
def iperf3_from_namespace(lab):
    port = free_port()
    server = lab.serve(iperf3_server(port, lab.served_host), port)
    lab.output(lab.ns_argv(iperf3_client(port, lab.served_host)))
    status, out, err = lab.finish(server)
    expect(status == 0 and "Server listening" in out, f"server: exit status {status}: {err.strip()}")


@check("ssh", ["ssh", "-V"], r"OpenSSH_([^,\s]+)",
       "`ssh -i KEY -p PORT root@127.0.0.1 echo ...` to an sshd of its own in the namespace",
       needs=("ssh-keygen", "/usr/sbin/sshd"))
def ssh(lab):
    port = free_port()
    for key in ("host_key", "user_key"):
        lab.output(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", lab.path(key)])
    shutil.copy(lab.path("user_key.pub"), lab.path("authorized_keys"))
    config = lab.write("sshd_config", SSHD_CONFIG.format(port=port, host=lab.peer_host, dir=lab.tmp))
    lab.wait_listening(lab.start(lab.ns_argv(["sh", "-c", SSHD, config])), port)
    out = lab.output(lab.vupy_argv([
        "ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={lab.path('known_hosts')}", "-i", lab.path("user_key"),
        "-p", str(port), f"root@{lab.peer_host}", "echo", lab.token]))
    expect_token(lab, out)


@check("Python asyncio (client)", [SYSTEM_PYTHON, "--version"], r"Python (\S+)",
       f"`asyncio.open_connection` reads a line from a server on {ADDRESS}")
def asyncio_client(lab):
    port = line_server(lab, ADDRESS)
    expect_token(lab, lab.output(lab.vupy_argv(python(ASYNCIO_CLIENT, ADDRESS, port))))


@check("Python asyncio (server)", [SYSTEM_PYTHON, "--version"], r"Python (\S+)",
       "`asyncio.start_server` under vupy on 127.0.0.1, read by a client in the namespace")
def asyncio_server(lab):
    port = free_port()
    served_under_vupy(lab, python(ASYNCIO_SERVER, lab.served_host, port, lab.token), port,
                      python(READER, lab.served_host, port))


@check("Python http.server", [SYSTEM_PYTHON, "--version"], r"Python (\S+)",
       "`python3 -m http.server` under vupy on 127.0.0.1, fetched by curl in the namespace",
       needs=("curl",))
def http_server_under_vupy(lab):
    port = free_port()
    lab.write("token", lab.token + "\n")
    served_under_vupy(lab, [SYSTEM_PYTHON, "-m", "http.server", "--bind", lab.served_host,
                            "--directory", lab.tmp, str(port)],
                      port, ["curl", "-sS", f"http://{lab.served_host}:{port}/token"])


@check("Node.js http", ["node", "--version"], r"v(\S+)",
       "`http.createServer` under vupy on 127.0.0.1, fetched by curl in the namespace",
       needs=("curl",))
def node_server(lab):
    port = free_port()
    served_under_vupy(lab, ["node", "-e", NODE_SERVER, lab.served_host, str(port), lab.token],
                      port, ["curl", "-sS", f"http://{lab.served_host}:{port}/"])
