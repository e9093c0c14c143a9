#!/usr/bin/env python3
"""Replication benchmarks between two hubs over an emulated WAN link (measured, never a gate).

    .venv/bin/python scripts/bench_replication.py [--quick]

Starts two real hubs (zhangjiakou, gui-an) on loopback with a real fault proxy in front of
gui-an's peer port, and measures:

1. replication throughput over a 200 ms RTT link with a bandwidth cap and "2 % loss" (emulated,
   as TCP sees loss, by stalls of 200–1000 ms on 2 % of 1448-byte segments: this is a model of
   retransmission stalls, not packet drops), as a fraction of the emulated link's bandwidth;
2. the convergence time of N small objects written during a partition, after it heals;
3. the cost of the policy check on a PUT: small-object PUT latency on a hub of a network versus a
   lone hub (same binary, same machine), with valley-bench.

Needs target/release/{valley,valley-faultproxy,valley-bench} and the test venv (boto3).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from conftest import ACCESS_KEY, SECRET_KEY, ValleyServer  # noqa: E402
from network import Network  # noqa: E402

HUBS = [
    ("zhangjiakou", "CN", "east", "north-china-grid"),
    ("gui-an", "CN", "west", "southern-grid"),
]


def replicated_bucket(net: Network, name: str) -> None:
    net.s3("zhangjiakou").create_bucket(Bucket=name)
    net.cli("zhangjiakou", "bucket", "policy", "set", name, "--jurisdictions", "CN", "--copies", "2",
            "--distinct-failure-domains")
    deadline = time.time() + 30
    while "copies = 2" not in net.cli("gui-an", "bucket", "policy", "show", name, check=False).stdout:
        if time.time() > deadline:
            raise SystemExit("policy did not reach gui-an")
        time.sleep(0.1)


def wait_drained(net: Network, timeout: float) -> float:
    start = time.time()
    while time.time() - start < timeout:
        status = net.status("zhangjiakou")
        link = next(l for l in status["links"] if l["from"] == "zhangjiakou" and l["to"] == "gui-an")
        if link["backlog_entries"] == 0:
            return time.time() - start
        time.sleep(0.2)
    raise SystemExit(f"backlog did not drain within {timeout}s")


def throughput(net: Network, objects: int, size: int, cap: int) -> dict:
    proxy = net.proxies["gui-an"]
    proxy.command({"cmd": "set", "latency_ms": 100, "jitter_ms": 0, "bandwidth_bytes_per_sec": cap,
                   "stall_probability": 0.02, "stall_ms_min": 200, "stall_ms_max": 1000})
    bucket = "bench-thru"
    replicated_bucket(net, bucket)
    s3 = net.s3("zhangjiakou")
    body = os.urandom(size)
    # Timed from the first write (local writes take well under a second) to the drained
    # backlog; no partition first, so no retry backoff is in the figure.
    before = proxy.command({"cmd": "stats"})["stats"]
    started = time.time()
    for i in range(objects):
        s3.put_object(Bucket=bucket, Key=f"o{i:04d}", Body=body)
    wait_drained(net, timeout=3600)
    seconds = time.time() - started
    after = proxy.command({"cmd": "stats"})["stats"]
    proxy.command({"cmd": "set", "latency_ms": 0, "bandwidth_bytes_per_sec": 0, "stall_probability": 0.0})
    moved = objects * size
    rate = moved / seconds
    return {"objects": objects, "object_bytes": size, "seconds": round(seconds, 2),
            "payload_mib_s": round(rate / 2**20, 2), "link_cap_mib_s": round(cap / 2**20, 2),
            "fraction_of_link": round(rate / cap, 3), "stalls": after["stalls"] - before["stalls"],
            "wire_bytes": after["bytes_upstream"] - before["bytes_upstream"]}


def convergence(net: Network, objects: int, cap: int | None = None) -> dict:
    """With `cap`, over the emulated WAN link (200 ms RTT, 2 % loss as stalls, `cap` bytes/s);
    without, over a clean loopback link."""
    proxy = net.proxies["gui-an"]
    if cap:
        proxy.command({"cmd": "set", "latency_ms": 100, "jitter_ms": 0, "bandwidth_bytes_per_sec": cap,
                       "stall_probability": 0.02, "stall_ms_min": 200, "stall_ms_max": 1000})
    bucket = "bench-heal-wan" if cap else "bench-heal"
    replicated_bucket(net, bucket)
    s3 = net.s3("zhangjiakou")
    proxy.command({"cmd": "partition"})
    started = time.time()
    for i in range(objects):
        s3.put_object(Bucket=bucket, Key=f"k{i:05d}", Body=b"x" * 1024)
    written = time.time() - started
    proxy.command({"cmd": "heal"})
    seconds = wait_drained(net, timeout=3600)
    proxy.command({"cmd": "set", "latency_ms": 0, "bandwidth_bytes_per_sec": 0, "stall_probability": 0.0})
    return {"objects": objects, "object_bytes": 1024, "link": "200 ms RTT, 2 % loss" if cap else "loopback",
            "write_seconds": round(written, 1), "converge_seconds_after_heal": round(seconds, 2)}


def put_latency(endpoint: str, label: str, seconds: int) -> dict:
    out = Path(tempfile.mkdtemp()) / f"{label}.json"
    subprocess.run([str(ROOT / "target/release/valley-bench"), "--endpoint", endpoint, "--access-key", ACCESS_KEY,
                    "--secret-key", SECRET_KEY, "--bucket", f"lat-{label}", "--json", str(out), "small",
                    "--duration", str(seconds)], check=True, capture_output=True)
    data = json.loads(out.read_text())
    phases = data.get("phases") or data.get("results") or data
    put = next(p for p in phases if p.get("op") == "put" or p.get("phase") == "put")
    return put


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["throughput", "convergence", "latency"],
                        help="run one measurement instead of all three")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="valley-bench-repl-"))
    cap = 4 * 2**20 if args.quick else 8 * 2**20
    # The topology declares the link the proxy emulates, as an operator would: the hubs size
    # their transfer parallelism from its RTT, capacity and loss.
    link = f'a = "zhangjiakou"\nb = "gui-an"\nrtt_ms = 200\nbandwidth_mbit = {cap * 8 / 1e6}\nloss = 0.02'
    net = Network(work, hubs=HUBS, proxied=("gui-an",), links=(link,))
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": os.getloadavg()}
    try:
        net.start_all()
        if args.only in (None, "throughput"):
            results["throughput"] = throughput(net, objects=8 if args.quick else 24, size=16 * 2**20, cap=cap)
            print("throughput", results["throughput"], flush=True)
        if args.only in (None, "convergence"):
            objects = 1000 if args.quick else 10_000
            results["convergence"] = convergence(net, objects=objects)
            print("convergence", results["convergence"], flush=True)
            results["convergence_wan"] = convergence(net, objects=objects, cap=cap)
            print("convergence", results["convergence_wan"], flush=True)
        if args.only not in (None, "latency"):
            return
        seconds = 5 if args.quick else 15
        # The policy check alone: a bucket only this hub may hold (nothing to replicate or
        # announce). Runs alternate between the hubs so neither gains from going second.
        for label in ("network", "network2"):
            net.s3("zhangjiakou").create_bucket(Bucket=f"lat-{label}")
            net.cli("zhangjiakou", "bucket", "policy", "set", f"lat-{label}", "--hubs", "zhangjiakou")
        lone = ValleyServer(work / "lone")
        lone.start()
        try:
            runs = []
            for label in ("lone", "network", "lone2", "network2"):
                endpoint = lone.endpoint if label.startswith("lone") else net.s3_endpoint("zhangjiakou")
                runs.append((label, put_latency(endpoint, label, seconds)))
        finally:
            lone.stop()
        for label, put in runs:
            print(f"put {label:<9} p50 {put['p50_ms']:.3f} ms  p99 {put['p99_ms']:.3f} ms  "
                  f"{put['ops_per_sec']:.0f} ops/s", flush=True)
        lone_p50 = min(p["p50_ms"] for l, p in runs if l.startswith("lone"))
        network_p50 = min(p["p50_ms"] for l, p in runs if l.startswith("network"))
        results["put_latency"] = {"runs": dict(runs), "lone_p50_ms": lone_p50, "network_p50_ms": network_p50,
                                  "overhead": round(network_p50 / lone_p50 - 1, 4)}
        print(f"network hub vs lone hub, best p50s: {100 * (network_p50 / lone_p50 - 1):+.1f} % "
              "(end to end; run-to-run noise is several %)", flush=True)
        # The decision itself, timed in isolation (the end-to-end difference is within noise).
        cost = subprocess.run(["cargo", "run", "-q", "--release", "-p", "valley-replicate", "--example",
                               "policy_check_cost"], cwd=ROOT, check=True, capture_output=True, text=True)
        per_write_us = json.loads(cost.stdout)["per_write_us"]
        results["policy_check"] = {"per_write_us": per_write_us,
                                   "fraction_of_put_p50": round(per_write_us / (lone_p50 * 1000), 5)}
        print(f"policy decision per write: {per_write_us:.2f} us = "
              f"{100 * per_write_us / (lone_p50 * 1000):.2f} % of a {lone_p50:.3f} ms PUT", flush=True)
    finally:
        net.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
