#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
# A real multi-stack session: two network namespaces, each with its own web
# server on its own 127.0.0.1:8000, one program that reaches both through
# msocket, and `vustack ... ip addr` for each stack.  Run by `make demo`
# (as root); everything it makes is removed on exit, even on failure.
set -euo pipefail
red=vupy-demo-red-$$
blue=vupy-demo-blue-$$
work=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$red" 2>/dev/null || true
	ip netns del "$blue" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

net=0
for color in red blue; do
	ns=${!color}
	net=$((net + 1))
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip -n "$ns" link add "${color}0" type veth peer name "${color}1"
	ip -n "$ns" addr add "10.$net.0.1/24" dev "${color}0"  # inside the namespace only
	ip -n "$ns" link set "${color}0" up
	mkdir -p "$work/$color"
	echo "hello from the $color stack" > "$work/$color/index.html"
	ip netns exec "$ns" python3 -m http.server --bind 127.0.0.1 8000 \
		--directory "$work/$color" >/dev/null 2>&1 &
	pids+=($!)
done
for color in red blue; do  # wait until each server answers in its namespace
	for _ in $(seq 50); do
		ip netns exec "${!color}" curl -sf -o /dev/null http://127.0.0.1:8000/ && break
		sleep 0.2
	done
done

cat > "$work/client.py" <<'PY'
# One process, two stacks: the same address, 127.0.0.1:8000, on each.
import socket
import vupy

for stack in ("/dev/net/red", "/dev/net/blue"):
    s = vupy.msocket(stack, socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", 8000))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
    body = reply.split(b"\r\n\r\n", 1)[1].decode().strip()
    print(f"{stack}: {body}")
PY

say "vupy run --stack /dev/net/red=netns:$red --stack /dev/net/blue=netns:$blue -- sh"
vupy run --stack "/dev/net/red=netns:$red" --stack "/dev/net/blue=netns:$blue" -- sh -c "
	set -e
	echo '\$ vumount   # the stacks: names, not files'; vumount
	echo; echo '\$ python3 client.py   # vupy.msocket on each stack'
	python3 '$work/client.py'
	echo; echo '\$ vustack /dev/net/red ip -br addr'; vustack /dev/net/red ip -br addr
	echo; echo '\$ vustack /dev/net/blue ip -br addr'; vustack /dev/net/blue ip -br addr
	echo; echo '\$ vustack /dev/net/blue curl -s http://127.0.0.1:8000/'
	vustack /dev/net/blue curl -s http://127.0.0.1:8000/
	echo; echo '\$ curl http://127.0.0.1:8000/   # the host stack has no such server'
	curl -s http://127.0.0.1:8000/ || echo \"curl: exit \$? (nothing listens there on the host)\"
"
say "outside the session, and inside it, /dev/net holds no stack file:"
ls -l /dev/net
