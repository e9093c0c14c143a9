#!/usr/bin/env python3
"""The cost of authorization, A/B: two Valley binaries side by side on loopback, the small-object
rows (4 KiB PUT, GET, HEAD at 16 clients) run against each in alternating rounds, so both see
the same machine. The new binary's bucket carries a realistic six-statement bucket policy
(scripts/bench-policy.json); the previous release has none to evaluate.

    python3 scripts/bench_authz_ab.py --old PREV/valley --new target/release/valley \\
        --bench target/release/valley-bench [--rounds 6] [--duration 5]

Prints ops/s per round and the means, and the new binary's mean as a ratio of the old one's.
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


def start(binary: str, work: Path, name: str) -> tuple[subprocess.Popen, str]:
    port, admin = free_port(), free_port()
    env = dict(os.environ, VALLEY_ACCESS_KEY=ACCESS, VALLEY_SECRET_KEY=SECRET, VALLEY_LOG="warn")
    proc = subprocess.Popen([binary, "serve", "--data", str(work / name), "--listen", f"127.0.0.1:{port}",
                             "--admin-listen", f"127.0.0.1:{admin}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(work / f"{name}.log", "wb"))
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint + "/_valley/health", timeout=1)
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{name} did not start; see {work / name}.log")


def run(bench: str, endpoint: str, bucket: str, duration: int, policy: str | None, out: Path) -> dict:
    cmd = [bench, "--endpoint", endpoint, "--access-key", ACCESS, "--secret-key", SECRET, "--bucket", bucket,
           "--json", str(out)]
    if policy:
        cmd += ["--bucket-policy", policy]
    cmd += ["small", "--size", "4096", "-c", "16", "--duration", str(duration)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    return {p["phase"]: p["ops_per_sec"] for p in data["results"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--no-policy", action="store_true", help="the new binary's bucket without a policy too")
    args = ap.parse_args()
    policy = None if args.no_policy else str(ROOT / "scripts" / "bench-policy.json")
    with tempfile.TemporaryDirectory(prefix="valley-authz-ab-") as tmp:
        work = Path(tmp)
        old, old_ep = start(args.old, work, "old")
        new, new_ep = start(args.new, work, "new")
        rows: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
        try:
            for r in range(args.rounds):
                # Alternate which goes first, so neither always runs on a warmer machine.
                order = [("old", old_ep, None), ("new", new_ep, policy)]
                if r % 2:
                    order.reverse()
                for label, ep, pol in order:
                    got = run(args.bench, ep, f"authz-{label}-{r}", args.duration, pol, work / f"{label}-{r}.json")
                    for phase, ops in got.items():
                        rows[label].setdefault(phase, []).append(ops)
                print(f"round {r + 1}: " + "  ".join(
                    f"{phase} old {rows['old'][phase][-1]:,.0f} new {rows['new'][phase][-1]:,.0f}"
                    for phase in rows["old"]), flush=True)
        finally:
            for p in (old, new):
                p.terminate()
                p.wait(timeout=10)
    print("\nphase   old mean   new mean   new/old   old stdev   new stdev")
    for phase in rows["old"]:
        o, n = rows["old"][phase], rows["new"][phase]
        print(f"{phase:<6} {statistics.mean(o):>9,.0f} {statistics.mean(n):>10,.0f} {statistics.mean(n) / statistics.mean(o):>9.3f}"
              f" {statistics.stdev(o) if len(o) > 1 else 0:>10,.0f} {statistics.stdev(n) if len(n) > 1 else 0:>10,.0f}")


if __name__ == "__main__":
    main()
