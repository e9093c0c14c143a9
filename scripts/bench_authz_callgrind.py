#!/usr/bin/env python3
"""The cost of authorization in instructions, which do not vary from run to run: each arm runs
a lone hub under callgrind (valgrind), drives `valley-bench small` at it (PUT, GET, HEAD of
4 KiB objects, 4 clients, OPS per phase), and asks callgrind for a dump as each phase ends, so
each phase's instructions are counted apart (every thread of the hub, per operation).

    python3 scripts/bench_authz_callgrind.py --old PREV/valley --new target/release/valley \\
        --bench target/release/valley-bench [--ops 2000]

Arms: the previous release, the new binary on a bucket without a policy, and the new binary
with the realistic six-statement policy (scripts/bench-policy.json), as in bench_authz_ab.py.

Under valgrind, SHA-256 runs its portable code (valgrind does not offer the CPU's SHA
instructions), which adds ~75,000 instructions to every signed request on both sides: the
ratios printed are therefore smaller than on the hardware. The script prints them both as
measured and with that constant taken off (the SHA-256 instructions are counted from the
profile, see `sha_share`). Nothing is gated: the figures go to docs/benchmarks.md. Needs
valgrind (Debian: `apt-get install valgrind`)."""
from __future__ import annotations

import argparse
import glob
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ACCESS, SECRET = "BENCHAUTHZKEY0000001", "benchAuthzSecret000000000000000000000001"
ROOT = Path(__file__).resolve().parents[1]
PHASES = ("put", "get", "head")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def totals(path: str) -> tuple[int, int]:
    """All instructions of a callgrind dump, and those spent in SHA-256's compression."""
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", "--inclusive=no", path],
                         capture_output=True, text=True, check=True).stdout
    total = sha = 0
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            total = n
        elif "sha256" in m.group(2) and "compress" in m.group(2):
            sha += n
    return total, sha


def arm(binary: str, bench: str, policy: str | None, ops: int, work: Path) -> dict[str, tuple[float, float]]:
    port, admin = free_port(), free_port()
    env = dict(os.environ, VALLEY_ACCESS_KEY=ACCESS, VALLEY_SECRET_KEY=SECRET, VALLEY_LOG="warn")
    out = work / "callgrind.out"
    hub = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
                            binary, "serve", "--data", str(work / "data"), "--listen", f"127.0.0.1:{port}",
                            "--admin-listen", f"127.0.0.1:{admin}"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(endpoint + "/_valley/health", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"{binary} did not start under valgrind")
        dump = lambda: subprocess.run(["callgrind_control", "-d", str(hub.pid)], capture_output=True, check=True)
        cmd = [bench, "--endpoint", endpoint, "--access-key", ACCESS, "--secret-key", SECRET, "--bucket", "callgrind"]
        if policy:
            cmd += ["--bucket-policy", policy]
        cmd += ["small", "--size", "4096", "-c", "4", "--duration", "3600", "--max-ops", str(ops)]
        dump()  # start-up, apart
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as b:
            for line in b.stdout or []:
                words = line.split()
                if len(words) > 3 and words[0] == "small" and words[2].startswith("c="):
                    dump()
        if b.returncode:
            raise SystemExit(f"valley-bench failed ({b.returncode})")
    finally:
        hub.terminate()
        hub.wait(timeout=60)
    dumps = sorted(glob.glob(f"{out}.*"), key=lambda f: int(f.rsplit(".", 1)[1]))
    # dump 1: start-up; then one per phase
    return {phase: tuple(n / ops for n in totals(f)) for phase, f in zip(PHASES, dumps[1:4])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--ops", type=int, default=2000)
    args = ap.parse_args()
    policy = str(ROOT / "scripts" / "bench-policy.json")
    results = {}
    for label, binary, pol in (("old", args.old, None), ("new", args.new, None), ("new+policy", args.new, policy)):
        with tempfile.TemporaryDirectory(prefix="valley-authz-cg-") as tmp:
            results[label] = arm(binary, args.bench, pol, args.ops, Path(tmp))
    print("phase  arm           k instr/op   vs old   SHA-256 k/op   without SHA-256: k instr/op   vs old")
    for phase in PHASES:
        base, base_sha = results["old"][phase]
        for label, figures in results.items():
            total, sha = figures[phase]
            print(f"{phase:<6} {label:<12} {total / 1000:>11.1f} {total / base:>8.3f} {sha / 1000:>14.1f}"
                  f" {(total - sha) / 1000:>29.1f} {(total - sha) / (base - base_sha):>8.3f}")


if __name__ == "__main__":
    main()
