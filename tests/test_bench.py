# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The benchmark scripts still run: each with its smallest parameters (the
QUICK arguments it declares), exiting 0 with a well-formed JSON document
whose runs all took the path they claim.  Nothing about the numbers."""
import json
import math
import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH)

import all as bench_all  # noqa: E402  (bench/all.py, which imports every script)

SCRIPTS = {m.NAME: m for m in bench_all.MODULES}
DOC_KEYS = {"name", "title", "notes", "results", "checked", "parameters", "machine", "command"}
ROW_KEYS = {"workload", "variant", "unit", "better", "base", "vupy", "ratio", "difference", "goal"}
SIDE_KEYS = {"label", "samples", "median", "min", "max", "q1", "q3", "runs", "bad_runs", "problems"}
MACHINE_KEYS = {"kernel", "nproc", "affinity", "cpu_model", "python", "vupy", "date_utc"}


def run(argv):
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(BENCH))


def check_side(side, rounds):
    assert SIDE_KEYS <= set(side)
    assert side["runs"] == len(side["samples"]) == rounds
    assert all(isinstance(x, float) and math.isfinite(x) and x > 0 for x in side["samples"])
    assert side["min"] <= side["q1"] <= side["median"] <= side["q3"] <= side["max"]
    assert side["bad_runs"] == 0, side["problems"]


def check_doc(doc, name):
    assert DOC_KEYS <= set(doc)
    assert doc["name"] == name
    assert MACHINE_KEYS <= set(doc["machine"])
    assert doc["results"]
    rounds = doc["parameters"]["rounds"]
    for row in doc["results"]:
        assert ROW_KEYS <= set(row)
        assert row["better"] in ("lower", "higher")
        check_side(row["vupy"], rounds)
        if row["base"] is not None:
            check_side(row["base"], rounds)
            assert row["ratio"] == pytest.approx(row["vupy"]["median"] / row["base"]["median"])
        if row["goal"] is not None:
            assert row["goal"]["met"] in (True, False)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script(name, tmp_path):
    module = SCRIPTS[name]
    out = tmp_path / "out.json"
    r = run([os.path.join(BENCH, f"{name}.py"), *module.QUICK, "--json", str(out), "--markdown"])
    assert r.returncode == 0, r.stderr
    assert "| workload |" in r.stdout
    check_doc(json.loads(out.read_text()), name)


def test_all_merges(tmp_path):
    out = tmp_path / "results.json"
    r = run([os.path.join(BENCH, "all.py"), "--quick", "--only", "plain_calls,kernel_calls",
             "--json", str(out)])
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert MACHINE_KEYS <= set(doc["machine"])
    assert doc["failed"] == []
    assert [b["name"] for b in doc["benchmarks"]] == ["plain_calls", "kernel_calls"]
    for b in doc["benchmarks"]:
        check_doc(b, b["name"])


def test_userspace_stack_c_client(tmp_path):
    """--client c (bench/cpeer.c) runs on the proxy where peer.py does; a
    goal against kernel-veth is left unchecked when kernel-veth was not
    measured, and a goal of a value or against the floor is checked."""
    module = SCRIPTS["userspace_stack"]
    out = tmp_path / "out.json"
    r = run([os.path.join(BENCH, "userspace_stack.py"), *module.QUICK, "--client", "c",
             "--workloads", "rtt,connect", "--paths", "lwip-tap,floor-tap", "--json", str(out)])
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    goals = {(row["workload"], row["variant"]): row["goal"]["met"]
             for row in doc["results"] if row["goal"]}
    for row in doc["results"]:
        check_side(row["vupy"], 1)
    assert goals[("TCP connection set-up", "lwip-tap")] is None
    assert goals[("TCP 64 B round trip", "lwip-tap")] in (True, False)
    assert goals[("TCP 64 B round trip", "lwip-tap / floor-tap")] in (True, False)
    assert "bench/cpeer.c" in " ".join(doc["notes"])
