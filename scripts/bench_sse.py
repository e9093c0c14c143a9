#!/usr/bin/env python3
"""The cost of encryption at rest, in one run: one Valley hub with a key service and three
arms — plain; SSE-S3 (a bucket whose default encryption seals every write, every read opened);
SSE-C (every object written and read with the client's own key) — and the standard rows run
against each in rotating order: `small` (4 KiB PUT, GET, HEAD at 16 clients) and `large` (PUT
then GET of 64 MiB objects at 8 clients).

    python3 scripts/bench_sse.py --valley target/release/valley --bench target/release/valley-bench \\
        [--rounds 4] [--duration 5] [--large-count 8]

Prints each row per round and the means, and the encrypted bucket's mean as a ratio of the
plain one's, with the hub's CPU time per operation (small rows) as bench_authz_ab.py does.
Nothing is gated: the figures go to docs/benchmarks.md."""
from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_authz_ab import ACCESS, SECRET, cpu_seconds, run, start


def arm_args(arm: str) -> tuple[str | None, tuple[str, ...]]:
    """The bucket default encryption and extra valley-bench flags of an arm."""
    return {"plain": (None, ()), "sse-s3": ("AES256", ()), "sse-c": (None, ("--sse-c",))}[arm]


def run_large(bench: str, endpoint: str, bucket: str, count: int, arm: str, out: Path) -> dict:
    cmd = [bench, "--endpoint", endpoint, "--access-key", ACCESS, "--secret-key", SECRET, "--bucket", bucket,
           "--json", str(out)]
    encryption, extra = arm_args(arm)
    if encryption:
        cmd += ["--bucket-encryption", encryption]
    cmd += [*extra, "large", "--count", str(count), "-c", "8"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    return {f"large {p['phase']}": p["mib_per_sec"] for p in data["results"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--valley", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--large-count", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="valley-sse-ab-") as tmp:
        work = Path(tmp)
        master = work / "master.key"
        master.write_text(secrets.token_hex(32))
        hub, endpoint = start(args.valley, work, "hub", ["--kms-master-key-file", str(master)])
        arms = [("plain", None), ("sse-s3", None), ("sse-c", None)]
        rows: dict[str, dict[str, list[float]]] = {label: {} for label, _ in arms}
        cpu: dict[str, dict[str, list[float]]] = {label: {} for label, _ in arms}
        try:
            for r in range(args.rounds):
                order = arms[r % len(arms):] + arms[:r % len(arms)]
                for label, _ in order:
                    enc, extra = arm_args(label)
                    got, us = run(args.bench, endpoint, hub.pid, f"sse-{label}-{r}", args.duration, None,
                                  work / f"{label}-{r}.json", encryption=enc, extra=extra)
                    got.update(run_large(args.bench, endpoint, f"sse-large-{label}-{r}", args.large_count, label,
                                         work / f"{label}-large-{r}.json"))
                    for row, v in got.items():
                        rows[label].setdefault(row, []).append(v)
                    for row, v in us.items():
                        cpu[label].setdefault(row, []).append(v)
                print(f"round {r + 1}: " + "  ".join(
                    f"{row} " + " ".join(f"{label} {rows[label][row][-1]:,.0f}" for label, _ in arms)
                    for row in rows["plain"]), flush=True)
        finally:
            hub.terminate()
            hub.wait(timeout=10)
    print("\nrow         arm       mean (ops/s or MiB/s)   stdev   vs plain   hub CPU us/op   vs plain")
    for row in rows["plain"]:
        base = statistics.mean(rows["plain"][row])
        cpu_base = statistics.median(cpu["plain"][row]) if row in cpu["plain"] else None
        for label, _ in arms:
            v = rows[label][row]
            sd = statistics.stdev(v) if len(v) > 1 else 0
            line = f"{row:<11} {label:<8} {statistics.mean(v):>22,.1f} {sd:>7,.1f} {statistics.mean(v) / base:>9.3f}"
            if cpu_base:
                c = statistics.median(cpu[label][row])
                line += f" {c:>15.1f} {c / cpu_base:>9.3f}"
            print(line)


if __name__ == "__main__":
    main()
