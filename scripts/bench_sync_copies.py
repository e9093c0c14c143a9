#!/usr/bin/env python3
"""PUT latency and throughput with synchronous copies (ack_copies = 2) versus asynchronous
replication (ack_copies = 1), over an emulated 200 ms RTT link (measured, never a gate).

    VALLEY_BIN=/path/to/release/valley .venv/bin/python scripts/bench_sync_copies.py [--clients 16] [--seconds 20]

Starts two real hubs (zhangjiakou, gui-an) on loopback in distinct failure domains, with a real
fault proxy in front of gui-an's peer port adding 100 ms each way. Both buckets place 2 copies
in distinct failure domains; one acknowledges after the local commit (ack_copies 1), the other
only once gui-an holds its copy too (ack_copies 2). Many clients write 4 KiB objects at once.
The target for ack_copies 2 is one link RTT plus the local commit per write: its median should
be about 200 ms above the ack_copies 1 median. Prints figures; never fails on them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from network import Network  # noqa: E402

HUBS = [
    ("zhangjiakou", "CN", "east", "north-china-grid"),
    ("gui-an", "CN", "west", "southern-grid"),
]


def bucket(net: Network, name: str, ack: int) -> None:
    net.s3("zhangjiakou").create_bucket(Bucket=name)
    net.cli("zhangjiakou", "bucket", "policy", "set", name, "--jurisdictions", "CN", "--copies", "2",
            "--distinct-failure-domains", "--ack-copies", str(ack), "--ack-timeout-seconds", "30")
    deadline = time.time() + 30
    while "copies = 2" not in net.cli("gui-an", "bucket", "policy", "show", name, check=False).stdout:
        if time.time() > deadline:
            raise SystemExit("policy did not reach gui-an")
        time.sleep(0.1)


def run(net: Network, name: str, clients: int, seconds: float, size: int) -> dict:
    body = os.urandom(size)
    latencies: list[float] = []
    headers: dict[str, int] = {}
    errors = [0]
    lock = threading.Lock()
    stop = time.time() + seconds

    def worker(n: int) -> None:
        s3 = net.s3("zhangjiakou")
        i = 0
        while time.time() < stop:
            started = time.perf_counter()
            try:
                r = s3.put_object(Bucket=name, Key=f"c{n}/o{i}", Body=body)
            except Exception:  # noqa: BLE001 - counted, not raised: a benchmark
                with lock:
                    errors[0] += 1
                continue
            took = time.perf_counter() - started
            h = r["ResponseMetadata"]["HTTPHeaders"].get("x-valley-replication", "none")
            with lock:
                latencies.append(took)
                headers[h] = headers.get(h, 0) + 1
            i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    began = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - began
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "bucket": name,
        "writes": len(latencies),
        "errors": errors[0],
        "writes_per_sec": round(len(latencies) / wall, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
        "p50_ms": round(pct(0.50), 1),
        "p90_ms": round(pct(0.90), 1),
        "p99_ms": round(pct(0.99), 1),
        "headers": headers,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--one-way-ms", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        net = Network(Path(tmp), hubs=HUBS, proxied=("gui-an",))
        net.start_all()
        try:
            bucket(net, "ack-one", 1)
            bucket(net, "ack-two", 2)
            proxy = net.proxies["gui-an"]
            proxy.command({"cmd": "set", "latency_ms": args.one_way_ms})
            rtt = 2 * args.one_way_ms
            # Warm up: connections to the peer (each TLS handshake costs round trips).
            run(net, "ack-two", args.clients, 3, args.size)
            results = [run(net, name, args.clients, args.seconds, args.size) for name in ("ack-one", "ack-two")]
            one, two = results
            added = two["p50_ms"] - one["p50_ms"]
            summary = {
                "link_rtt_ms": rtt,
                "clients": args.clients,
                "object_bytes": args.size,
                "ack_copies_1": one,
                "ack_copies_2": two,
                "p50_added_by_sync_copy_ms": round(added, 1),
                "p50_added_in_rtts": round(added / rtt, 2),
                "target": "ack_copies 2 median <= 1 RTT + the ack_copies 1 median (local commit)",
                "met": bool(two["p50_ms"] <= rtt + one["p50_ms"] * 1.1 + 5),
            }
            print(json.dumps(summary, indent=2))
        finally:
            net.stop_all()


if __name__ == "__main__":
    main()
