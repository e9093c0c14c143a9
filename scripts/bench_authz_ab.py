#!/usr/bin/env python3
"""The cost of authorization, A/B: two Valley binaries side by side on loopback, the small-object
rows (4 KiB PUT, GET, HEAD at 16 clients) run against each in alternating rounds, so both see
the same machine. Three arms, each on a hub of its own: the previous release, the new binary on
a bucket without a policy, and the new binary on a bucket with a realistic six-statement bucket
policy
(scripts/bench-policy.json), so the cost of the new release and that of evaluating a policy
are told apart.

    python3 scripts/bench_authz_ab.py --old PREV/valley --new target/release/valley \\
        --bench target/release/valley-bench [--rounds 6] [--duration 5]

Prints ops/s per round and the means, and each new arm's mean as a ratio of the old one's. On a
small shared machine throughput swings by 10-20 % from round to round, so each phase's server
CPU time per operation (from /proc/PID/stat) is printed too: what the server spends on a
request, which the client and other processes on the machine do not disturb.
Nothing is gated: the figures go to docs/benchmarks.md."""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ACCESS, SECRET = "BENCHAUTHZKEY0000001", "benchAuthzSecret000000000000000000000001"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary: str, work: Path, name: str, extra: tuple[str, ...] | list[str] = ()) -> tuple[subprocess.Popen, str]:
    port, admin = free_port(), free_port()
    env = dict(os.environ, VALLEY_ACCESS_KEY=ACCESS, VALLEY_SECRET_KEY=SECRET, VALLEY_LOG="warn")
    proc = subprocess.Popen([binary, "serve", "--data", str(work / name), "--listen", f"127.0.0.1:{port}",
                             "--admin-listen", f"127.0.0.1:{admin}", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(work / f"{name}.log", "wb"))
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint + "/_valley/health", timeout=1)
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{name} did not start; see {work / name}.log")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run(bench: str, endpoint: str, server: int, bucket: str, duration: int, policy: str | None,
        out: Path, encryption: str | None = None, extra: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """ops/s per phase, and the server's CPU microseconds per operation per phase (the bench
    prints a line as each phase ends: the CPU between two lines is that phase's)."""
    cmd = [bench, "--endpoint", endpoint, "--access-key", ACCESS, "--secret-key", SECRET, "--bucket", bucket,
           "--json", str(out)]
    if policy:
        cmd += ["--bucket-policy", policy]
    if encryption:
        cmd += ["--bucket-encryption", encryption]
    cmd += [*extra, "small", "--size", "4096", "-c", "16", "--duration", str(duration)]
    cpu_us: dict[str, float] = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        mark = cpu_seconds(server)
        for line in proc.stdout:
            words = line.split()
            if len(words) > 3 and words[0] == "small" and words[2].startswith("c="):
                now = cpu_seconds(server)
                ops = int(next(w for w in words if w.startswith("ops=")).split("=")[1])
                cpu_us[words[1]] = (now - mark) * 1e6 / max(ops, 1)
                mark = now
    if proc.returncode:
        raise SystemExit(f"valley-bench failed ({proc.returncode})")
    data = json.loads(out.read_text())
    return {p["phase"]: p["ops_per_sec"] for p in data["results"]}, cpu_us


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=5)
    args = ap.parse_args()
    policy = str(ROOT / "scripts" / "bench-policy.json")
    with tempfile.TemporaryDirectory(prefix="valley-authz-ab-") as tmp:
        work = Path(tmp)
        # One hub per arm: each PUT phase stores its objects, so arms sharing a hub would read
        # from a catalogue growing twice as fast (more of it outside redb's cache).
        old, old_ep = start(args.old, work, "old")
        new, new_ep = start(args.new, work, "new")
        new_policy, new_policy_ep = start(args.new, work, "new-policy")
        arms = [("old", old_ep, None), ("new", new_ep, None), ("new+policy", new_policy_ep, policy)]
        pids = {"old": old.pid, "new": new.pid, "new+policy": new_policy.pid}
        rows: dict[str, dict[str, list[float]]] = {label: {} for label, _, _ in arms}
        cpu: dict[str, dict[str, list[float]]] = {label: {} for label, _, _ in arms}
        try:
            for r in range(args.rounds):
                # Rotate which goes first, so none always runs on a warmer machine.
                order = arms[r % 3:] + arms[:r % 3]
                for label, ep, pol in order:
                    name = label.replace("+", "-")
                    got, us = run(args.bench, ep, pids[label], f"authz-{name}-{r}", args.duration, pol,
                                  work / f"{name}-{r}.json")
                    for phase, ops in got.items():
                        rows[label].setdefault(phase, []).append(ops)
                    for phase, v in us.items():
                        cpu[label].setdefault(phase, []).append(v)
                print(f"round {r + 1}: " + "  ".join(
                    f"{phase} " + " ".join(f"{label} {rows[label][phase][-1]:,.0f}" for label, _, _ in arms)
                    for phase in rows["old"]), flush=True)
        finally:
            for p in (old, new, new_policy):
                p.terminate()
                p.wait(timeout=10)
    print("\nphase  arm          mean ops/s   stdev   vs old   server CPU us/op (median)   vs old")
    for phase in rows["old"]:
        base = statistics.mean(rows["old"][phase])
        cpu_base = statistics.median(cpu["old"][phase])
        for label in rows:
            v = rows[label][phase]
            sd = statistics.stdev(v) if len(v) > 1 else 0
            c = statistics.median(cpu[label][phase])
            print(f"{phase:<6} {label:<12} {statistics.mean(v):>10,.0f} {sd:>7,.0f} {statistics.mean(v) / base:>8.3f}"
                  f" {c:>26.1f} {c / cpu_base:>8.3f}")

if __name__ == "__main__":
    main()
