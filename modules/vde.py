# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vde: a kernel network namespace whose interface is plugged into a VDE network.

SOURCE is a libvdeplug URL: ``vde://SWITCH``, ``vxvde://GROUP`` (a network
over UDP multicast, spanning machines), ``tap://IF``, ``slirp://``,
``ptp://...``.  The stack is a fresh network namespace holding ``lo`` and
``vde0``, a tap interface; sockets are the namespace's own kernel sockets,
as for ``netns``.  Options (all optional: without them, configure the
namespace from inside the session with ``vustack STACK ip ...``):

  ip=A.B.C.D/LEN[+...]    IPv4 addresses        gw=A.B.C.D     IPv4 default route
  ip6=ADDR/LEN[+...]      IPv6 addresses        gw6=ADDR       IPv6 default route
  mac=XX:XX:XX:XX:XX:XX   the interface's MAC   mtu=N          its MTU
  netns=NAME|PATH         the network namespace from which URL is reached
                          (default: vupy's own)
With an address, vde0 is brought up; without, it is left down.

Frames travel between vde0 and the network through ``vde_plug URL tap://``
(vdeplug4), started and stopped with the stack.  vde_plug runs in vupy's own
namespace (or `netns`), so the URL (a multicast group, a slirp uplink) is
reached from there; its tap is made there under a temporary name and then
moved into the stack's namespace as vde0 (a tap keeps its open descriptor
across the move).
If vde_plug ends while the stack lives, vupy says so and the stack's new
sockets fail with ENETDOWN.  Without root the namespace is a UserNamespaceStack's
and vde0 a veth linked through vde_plug's pcap:// (see _without_root).
"""
import contextlib
import errno
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

from vupy import rtnetlink
from vupy.helpers import (CAP_SYS_ADMIN, UserNamespaceStack, capable, end_helper, network_namespace,
                          open_netns, start_helper)
from vupy.stack import KERNEL_FAMILIES, KernelStack, Stack, StackError, StackModule

from ._options import Options, need_source
from .netns import NETNS_RUN_DIR, new_namespace

OPTIONS = {"ip", "gw", "ip6", "gw6", "mac", "mtu", "netns"}
PLUG_SECONDS = 5            # for vde_plug to make its tap
IP_SECONDS = 10             # for one `ip` command
IFLA_IFNAME, IFLA_NET_NS_FD = 3, 28


def configuration(options):
    """The `ip` commands (argument lists) that configure vde0 for `options`;
    StackError naming a bad one."""
    checked = Options("vde", options, OPTIONS)
    link = ["link", "set", "vde0"]
    if "mac" in checked:
        link += ["address", checked.mac()]
    if "mtu" in checked:
        link += ["mtu", str(checked.mtu(68))]
    commands = [["addr", "add", str(address), "dev", "vde0", *extra]
                for key, version, extra in (("ip", 4, []), ("ip6", 6, ["nodad"]))
                for address in checked.interfaces(key, version)]
    if commands:
        link.append("up")
    for key, version in (("gw", 4), ("gw6", 6)):
        if key in checked:
            commands.append([f"-{version}", "route", "add", "default", "via", str(checked.address(key, version))])
    return ([link] if len(link) > 3 else []) + commands


def move_link(name, nsfd, new_name):
    """Move interface `name` of this thread's namespace into namespace
    `nsfd`, renamed `new_name` (RTM_NEWLINK with IFLA_NET_NS_FD)."""
    index = socket.if_nametoindex(name)
    body = (rtnetlink.IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
            + rtnetlink.attribute(IFLA_NET_NS_FD, struct.pack("=i", nsfd))
            + rtnetlink.attribute(IFLA_IFNAME, new_name.encode() + b"\0"))
    request = rtnetlink.message(rtnetlink.RTM_NEWLINK, rtnetlink.NLM_F_REQUEST | rtnetlink.NLM_F_ACK,
                                1, 0, body)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.send(request)
        reply = s.recv(4096)
    _length, kind, _flags, _seq, _pid = rtnetlink.NLMSG.unpack_from(reply)
    err = -struct.unpack_from("=i", reply, rtnetlink.NLMSG.size)[0] if kind == rtnetlink.NLMSG_ERROR else 0
    if err:
        raise OSError(err, f"moving {name} into the stack's namespace: {os.strerror(err)}")


def run_helper(argv, seconds=None):
    """Run a short-lived command to its end, as a helper (start_helper): its
    subprocess.CompletedProcess, output as text.  StackError if it is still
    running after `seconds`."""
    with start_helper(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            out, err = process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            raise StackError(f"vde: {' '.join(argv)}: still running after {seconds} s") from None
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def run_ip(argv_list, prefix=()):
    """Run each `ip` command (after `prefix`, which may enter namespaces)."""
    for args in argv_list:
        r = run_helper([*prefix, "ip", *args], IP_SECONDS)
        if r.returncode != 0:
            raise StackError(f"vde: ip {' '.join(args)}: {r.stderr.strip()}")


def run_in(nsfd, argv_list):
    """Run each `ip` command in namespace nsfd (forked from this thread
    while it is there, so they start there)."""
    with network_namespace(nsfd):
        run_ip(argv_list)


class VdeModule(StackModule):
    name = "vde"
    description = "a network namespace plugged into a VDE network: URL,ip=,gw=,ip6=,gw6=,mac=,mtu="
    families = KERNEL_FAMILIES

    @classmethod
    def unavailable(cls):
        return None if shutil.which("vde_plug") else "vde_plug not found on PATH (Debian package vdeplug)"

    def create(self, source, options):
        need_source("vde", source, "vxvde://239.1.2.3")
        uplink = options.pop("netns", None)
        commands = configuration(options)
        if not capable(CAP_SYS_ADMIN):
            if uplink is not None:
                raise StackError(f"vde:{source}: netns= needs root (vupy enters that namespace)")
            return self._without_root(source, commands)
        upfd = None
        if uplink is not None:
            upfd = open_netns(uplink if "/" in uplink else os.path.join(NETNS_RUN_DIR, uplink))
        try:
            nsfd = new_namespace(f"vde:{source}")
            try:
                with contextlib.nullcontext() if upfd is None else network_namespace(upfd):
                    tap = "vupy" + secrets.token_hex(5)
                    plug = Plug(source, ["vde_plug", source, f"tap://{tap}"], lambda: _exists(tap))
                    try:
                        move_link(tap, nsfd, "vde0")
                    except BaseException:
                        plug.stop()
                        raise
                try:
                    run_in(nsfd, commands)
                except BaseException:
                    plug.stop()
                    raise
            except BaseException:
                os.close(nsfd)
                raise
        finally:
            if upfd is not None:
                os.close(upfd)
        return VdeStack(KernelStack(nsfd), plug)

    @staticmethod
    def _without_root(source, commands):
        """Without root the namespace is a UserNamespaceStack's, in a user namespace
        of the session's, and vupy may not put a tap there (nor open
        /dev/net/tun at all, where it is root's alone).  So vde0 is one end
        of a veth pair, and vde_plug URL, run here (URL is reached from
        here), carries the frames through its standard input and output to
        a second vde_plug in the held namespaces, which captures and injects
        them on the other end, vde0p (libvdeplug's pcap://)."""
        held = UserNamespaceStack(f"vde:{source}")
        enter = ["nsenter", "-t", str(held.process.pid), "-U", "-n", "--preserve-credentials", "--"]
        try:
            run_ip([["link", "add", "vde0", "type", "veth", "peer", "name", "vde0p"],
                    ["link", "set", "vde0p", "up"]], enter)
            # A veth leaves checksums to the receiver, which pcap is not:
            # frames must leave vde0 whole.
            r = run_helper([*enter, "ethtool", "-K", "vde0", "tx", "off"])
            if r.returncode != 0:
                raise StackError(f"vde: ethtool -K vde0 tx off: {r.stderr.strip() or 'failed'}")
            plug = Plug(source, ["vde_plug", "--", source, "=", *enter, "vde_plug", "pcap://vde0p"],
                        lambda: _capturing(enter))
            try:
                run_ip(commands, enter)
            except BaseException:
                plug.stop()
                raise
        except BaseException:
            held.close()
            raise
        return VdeStack(held, plug)


def _exists(interface):
    """Whether `interface` is in this thread's namespace."""
    try:
        socket.if_nametoindex(interface)
        return True
    except OSError:
        return False


def _capturing(enter):
    """Whether a packet socket is open in the namespace `enter` goes to."""
    return len(run_helper([*enter, "cat", "/proc/net/packet"]).stdout.splitlines()) > 1


class Plug:
    """A vde_plug (`argv`) that links the stack's interface to URL, and a
    thread that reports its end; `ready()` says when the link is made."""

    def __init__(self, url, argv, ready):
        self.url = url
        self.stopping = False
        self.down = threading.Event()
        # vde_plug dies with the thread that starts it, and so with vupy
        # even if vupy is killed: it would otherwise spin on a tap whose
        # namespace is gone.
        self.process = start_helper(["setpriv", "--pdeathsig", "KILL", *argv],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + PLUG_SECONDS
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                why = self.process.stderr.read().decode(errors="replace").strip().splitlines()
                raise StackError(f"vde:{url}: vde_plug could not plug in: "
                                 f"{why[-1] if why else 'not linked after %d s' % PLUG_SECONDS}")
            time.sleep(0.01)
        threading.Thread(target=self._watch, name="vupy-vde-plug", daemon=True).start()

    def _watch(self):
        self.process.wait()
        if not self.stopping:
            self.down.set()
            sys.stderr.write(f"vupy: vde:{self.url}: vde_plug ended: the stack's "
                             "link is down, and its new sockets fail (ENETDOWN)\n")

    def stop(self):
        self.stopping = True
        end_helper(self.process, PLUG_SECONDS, terminate=True)


class VdeStack(Stack):
    """A kernel stack (KernelStack; UserNamespaceStack without root) whose link is a
    vde_plug."""

    families = KERNEL_FAMILIES

    def __init__(self, inner, plug):
        self.inner = inner
        self.plug = plug

    def socket(self, domain, type, protocol, creds):
        if self.plug.down.is_set():
            raise OSError(errno.ENETDOWN, os.strerror(errno.ENETDOWN))
        return self.inner.socket(domain, type, protocol, creds)

    def close(self):
        self.plug.stop()
        self.inner.close()
