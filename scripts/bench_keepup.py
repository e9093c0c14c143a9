#!/usr/bin/env python3
"""Can replication keep up? A two-hub WAN benchmark (measured, never a gate).

    .venv/bin/python scripts/bench_keepup.py [--bin-dir DIR] [--quick] [--runs clean,cuts]
                                             [--json FILE] [--backlog N]

Starts two real hubs on loopback, zhangjiakou (CN, north-china-grid) and gui-an (CN,
southern-grid), each a `valley serve` process, with a real fault proxy (`valley-faultproxy`)
in front of gui-an's peer port. The link is emulated by the proxy: 100 ms of fixed latency each
way (200 ms RTT), a 100 Mbit/s cap (12,500,000 bytes/s per direction), no loss, no jitter; the
topology declares the same link (`rtt_ms = 200`, `bandwidth_mbit = 100`, `loss = 0`), as an
operator would. Bucket policy: `--jurisdictions CN --copies 2 --distinct-failure-domains`; all
load goes to zhangjiakou, so everything crosses the link zhangjiakou -> gui-an.

Scenario (each run on a fresh pair of hubs):
  1. small: `valley-bench small` 4 KiB PUTs at 16 clients for 15 s. valley-bench cannot run its
     PUT phase alone (it always follows with GET and HEAD phases), so this script reads its
     output, takes the PUT phase line, and stops valley-bench as soon as that line appears;
  2. large: 8 x 16 MiB PUTs with boto3, one after the other.
  Runs: `clean` (no cuts) and `cuts` (a thread sends the proxy `{"cmd":"cut_all"}` every ~5 s
  from the first PUT until the large objects have drained).

Figures per run: client PUT ops/s and errors; small-object replication rate (objects written /
time from the first small PUT until the zhangjiakou -> gui-an backlog is 0, polled with
`valley status --json` every 0.5 s) in objects/s and payload Mbit/s (and wire Mbit/s from the
proxy's byte counter); drain time after the burst, peak backlog entries and peak lag_seconds;
large-object replication throughput (first large PUT until drained) in Mbit/s and % of the
link; peak RSS (VmHWM) of both hubs and RSS (VmRSS) after drain; the time of `/metrics`
(admin port) and of `valley status --json` (the CLI process, end to end) while the small
backlog drains; and at the end an integrity check at gui-an: listings of both hubs compared
(every key, ETag, size), then, with zhangjiakou stopped (so gui-an cannot read through to it),
a sample of small objects and all large ones read back at gui-an and their MD5 compared with
zhangjiakou's ETags.

`--backlog N` (a separate mode): partition the link, write N 64-byte objects (valley-bench,
`--max-ops N`, 32 clients), print the write rate and the hubs' RSS, heal, and while it drains
time `valley status --json` and `/metrics` every 2 s; print drain time (2 s resolution) and
peak RSS of both hubs.

Figures never fail the script (they are measurements; a machine with builds running gives noisy
ones). It exits non-zero with one line on stderr when a hub cannot start, the binaries are
missing, or objects do not arrive intact at gui-an within the timeout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LINK_BYTES_PER_SEC = 12_500_000  # 100 Mbit/s
LINK_MBIT = LINK_BYTES_PER_SEC * 8 / 1e6
ONE_WAY_MS = 100  # 200 ms RTT
SMALL_SIZE = 4096
LARGE_SIZE = 16 * 2**20
HUBS = [
    ("zhangjiakou", "CN", "east", "north-china-grid"),
    ("gui-an", "CN", "west", "southern-grid"),
]
SRC, DST = "zhangjiakou", "gui-an"
BUCKET = "keepup"


class Fatal(Exception):
    """Ends the script with one line on stderr and a non-zero status."""


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- helpers


def proc_status(pid: int) -> dict:
    """VmRSS / VmHWM of a process in MiB (None when it is gone)."""
    out = {"rss_mib": None, "hwm_mib": None}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_mib"] = round(int(line.split()[1]) / 1024, 1)
            elif line.startswith("VmHWM:"):
                out["hwm_mib"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def hub_memory(net) -> dict:
    return {hub: proc_status(p.pid) for hub, p in net.procs.items()}


def stats_ms(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "median_ms": None, "max_ms": None}
    return {"n": len(values), "median_ms": round(statistics.median(values), 1), "max_ms": round(max(values), 1)}


def fmt(v, unit: str = "", nd: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def say(label: str, value: str) -> None:
    print(f"  {label:<44} {value}", flush=True)


def link_row(status: dict) -> dict:
    return next(l for l in status["links"] if l["from"] == SRC and l["to"] == DST)


class Monitor(threading.Thread):
    """Polls `valley status --json` at zhangjiakou every `interval` s (timed), samples the hubs'
    RSS, and scrapes `/metrics` (timed) on every `metrics_every`-th poll while `scrape` is set."""

    def __init__(self, net, interval: float = 0.5, metrics_every: int = 1):
        super().__init__(daemon=True)
        self.net, self.interval, self.metrics_every = net, interval, metrics_every
        self.samples: list[dict] = []  # t, entries, bytes, lag, status_ms, tag
        self.scrapes: list[dict] = []  # t, ms, entries
        self.rss_peak: dict[str, float] = {}
        self.errors: list[str] = []
        self.scrape = threading.Event()
        self.tag = ""
        self.stop_event = threading.Event()
        self.cond = threading.Condition()
        self.pids = {hub: p.pid for hub, p in net.procs.items()}

    def run(self) -> None:
        tick = 0
        while not self.stop_event.is_set():
            began = time.time()
            try:
                status = self.net.status(SRC)
                done = time.time()
                row = link_row(status)
                sample = {"t": (began + done) / 2, "entries": row["backlog_entries"], "bytes": row["backlog_bytes"],
                          "lag": row["lag_seconds"], "status_ms": (done - began) * 1000, "tag": self.tag}
                with self.cond:
                    self.samples.append(sample)
                    self.cond.notify_all()
            except Exception as e:  # noqa: BLE001 - a failed poll is a figure, not a failure
                self.errors.append(one_line(e, 200))
                sample = None
            for hub, pid in self.pids.items():
                rss = proc_status(pid)["rss_mib"]
                if rss is not None:
                    self.rss_peak[hub] = max(self.rss_peak.get(hub, 0.0), rss)
            if self.scrape.is_set() and tick % self.metrics_every == 0:
                t0 = time.time()
                try:
                    r = self.net.get(self.net.admin_endpoint(SRC) + "/metrics", timeout=30)
                    ms = (time.time() - t0) * 1000
                    if r.status_code == 200:
                        self.scrapes.append({"t": t0, "ms": ms, "entries": sample["entries"] if sample else None,
                                             "tag": self.tag, "bytes_len": len(r.content)})
                    else:
                        self.errors.append(f"/metrics answered {r.status_code}")
                except Exception as e:  # noqa: BLE001
                    self.errors.append(one_line(e, 200))
            tick += 1
            self.stop_event.wait(max(0.0, self.interval - (time.time() - began)))

    def wait_drained(self, after: float, timeout: float, what: str) -> float:
        """The time of the first poll started after `after` that saw an empty backlog."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for s in self.samples:
                    if s["t"] - s["status_ms"] / 2000 >= after and s["entries"] == 0:
                        return s["t"]
                left = deadline - time.time()
                if left <= 0:
                    last = self.samples[-1] if self.samples else {}
                    raise Fatal(f"{what}: zhangjiakou->gui-an backlog not drained within {timeout:.0f}s "
                                f"(last seen {last.get('entries')} entries, lag {last.get('lag')}s; "
                                f"poll errors: {self.errors[-1:] or 'none'})")
                if not self.is_alive():
                    raise Fatal(f"{what}: status monitor died: {self.errors[-1:]}")
                self.cond.wait(min(left, 1.0))

    def window(self, t0: float, t1: float) -> list[dict]:
        return [s for s in self.samples if t0 <= s["t"] <= t1]

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=60)


class Cutter(threading.Thread):
    """Sends the proxy {"cmd":"cut_all"} every `every` seconds until stopped."""

    def __init__(self, proxy, every: float = 5.0):
        super().__init__(daemon=True)
        self.proxy, self.every = proxy, every
        self.sent = 0
        self.errors = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.every):
            try:
                self.proxy.command({"cmd": "cut_all"})
                self.sent += 1
            except Exception:  # noqa: BLE001
                self.errors += 1

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)


PUT_LINE = re.compile(r"^small\s+put\s+c=(\d+)\s+ops=(\d+)\s+err=(\d+)\s+secs=\s*([\d.]+)\s+ops/s=\s*([\d.]+)"
                      r".*?p50=\s*([\d.]+)ms\s+p99=\s*([\d.]+)ms")


def bench_put_phase(bench: Path, net, bucket: str, size: int, clients: int, duration: float,
                    max_ops: int, workdir: Path) -> dict:
    """Runs `valley-bench small` and stops it once its PUT phase line is printed: valley-bench has
    no PUT-only mode. Returns the parsed PUT figures and the wall-clock start/end of the phase."""
    from conftest import ACCESS_KEY, SECRET_KEY

    cmd = [str(bench), "--endpoint", net.s3_endpoint(SRC), "--ca", str(net.ca), "--access-key", ACCESS_KEY,
           "--secret-key", SECRET_KEY, "--bucket", bucket, "small", "--size", str(size),
           "-c", str(clients), "--duration", str(duration), "--max-ops", str(max_ops)]
    err_path = workdir / f"valley-bench-{int(time.time() * 1000)}.stderr"
    launched = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(err_path, "wb"), text=True, bufsize=1)
    lines: queue.Queue = queue.Queue()

    def reader():
        for line in proc.stdout:
            lines.put((time.time(), line.rstrip("\n")))
        lines.put((time.time(), None))

    threading.Thread(target=reader, daemon=True).start()
    out = {"started": None, "ended": None, "ops": 0, "errors": None, "ops_per_sec": None, "secs": None,
           "p50_ms": None, "p99_ms": None, "first_error": None, "raw": []}
    deadline = time.time() + duration + 600
    try:
        while True:
            try:
                t, line = lines.get(timeout=max(0.1, deadline - time.time()))
            except queue.Empty:
                out["first_error"] = "valley-bench did not finish its PUT phase in time"
                break
            if line is None:
                break
            out["raw"].append(line)
            if line.startswith("# small:"):
                out["started"] = t  # printed right before the PUT phase starts
            m = PUT_LINE.match(line)
            if m:
                out["ended"] = t
                out["ops"], out["errors"] = int(m.group(2)), int(m.group(3))
                out["secs"], out["ops_per_sec"] = float(m.group(4)), float(m.group(5))
                out["p50_ms"], out["p99_ms"] = float(m.group(6)), float(m.group(7))
                # the next line may be "first error: ..."
                try:
                    _, nxt = lines.get(timeout=0.2)
                    if nxt and "first error" in nxt:
                        out["first_error"] = nxt.strip()
                except queue.Empty:
                    pass
                break
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if out["started"] is None:
        out["started"] = launched
    if out["ended"] is None:
        out["ended"] = time.time()
        err = err_path.read_text(errors="replace").strip()
        out["first_error"] = out["first_error"] or one_line(err or "valley-bench printed no PUT line")
    if out["first_error"] is None and out["errors"]:
        out["first_error"] = one_line(err_path.read_text(errors="replace"))
    del out["raw"]
    return out


S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def list_all(s3, bucket: str) -> dict[str, tuple[str, int]]:
    """Every key of `bucket` with its ETag and size, by ListObjectsV2 pages signed with the
    client's credentials but parsed with ElementTree: boto3's parser takes ~0.1 s a 1,000-key
    page, minutes for a million keys, which made the verify the slowest part of the backlog run."""
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from urllib.parse import urlencode
    from xml.etree import ElementTree

    endpoint = s3.meta.endpoint_url.rstrip("/")
    credentials = s3._request_signer._credentials  # noqa: SLF001 (the client's own keys)
    region = s3.meta.region_name
    verify = s3._endpoint.http_session._verify  # noqa: SLF001 (the CA the client trusts)
    keys: dict[str, tuple[str, int]] = {}
    token = None
    with requests.Session() as http:
        while True:
            query = {"list-type": "2", "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            url = f"{endpoint}/{bucket}?{urlencode(sorted(query.items()))}"
            request = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
            SigV4Auth(credentials, "s3", region).add_auth(request)
            r = http.get(url, headers=dict(request.headers), verify=verify, timeout=60)
            if r.status_code != 200:
                raise Fatal(f"listing {bucket}: HTTP {r.status_code}: {one_line(r.text)}")
            root = ElementTree.fromstring(r.content)
            for o in root.iter(f"{S3_NS}Contents"):
                keys[o.findtext(f"{S3_NS}Key")] = (o.findtext(f"{S3_NS}ETag").strip('"'),
                                                   int(o.findtext(f"{S3_NS}Size")))
            if root.findtext(f"{S3_NS}IsTruncated") != "true":
                return keys
            token = root.findtext(f"{S3_NS}NextContinuationToken")


def wait_listed(net, bucket: str, expected: dict, timeout: float) -> dict:
    """Waits until gui-an lists every key zhangjiakou does; returns gui-an's listing."""
    deadline = time.time() + timeout
    while True:
        listed = list_all(net.s3(DST), bucket)
        missing = [k for k in expected if k not in listed]
        if not missing:
            return listed
        if time.time() > deadline:
            raise Fatal(f"{len(missing)} of {len(expected)} objects not listed at gui-an {timeout:.0f}s after the "
                        f"backlog drained (e.g. {missing[0]})")
        time.sleep(2)


def verify(net, bucket: str, sample_small: int, seed: int, timeout: float) -> dict:
    """Listings compared key by key, then with zhangjiakou stopped (no read-through possible)
    a sample of small objects and every large one read at gui-an and hashed."""
    source = list_all(net.s3(SRC), bucket)
    listed = wait_listed(net, bucket, source, timeout=timeout)
    listing_mismatch = [k for k, v in source.items() if listed.get(k) != v]
    extra = [k for k in listed if k not in source]
    small = sorted(k for k, (_, size) in source.items() if size < LARGE_SIZE)
    large = sorted(k for k, (_, size) in source.items() if size >= LARGE_SIZE)
    picked = random.Random(seed).sample(small, min(len(small), sample_small)) + large
    net.kill(SRC, signal.SIGTERM)  # gui-an must answer from its own copies
    s3 = net.s3(DST)
    bad, errors = [], []
    for key in picked:
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if hashlib.md5(body).hexdigest() != source[key][0] or len(body) != source[key][1]:
                bad.append(key)
        except Exception as e:  # noqa: BLE001
            bad.append(key)
            errors.append(one_line(e, 200))
    return {"objects_at_source": len(source), "listed_at_gui_an": len(listed) - len(extra),
            "listing_mismatches": len(listing_mismatch), "extra_at_gui_an": len(extra),
            "content_checked": len(picked), "content_checked_small": len(picked) - len(large),
            "content_checked_large": len(large), "content_mismatches": len(bad),
            "first_error": errors[0] if errors else None}


def new_network(work: Path):
    from network import Network

    link = f'a = "{SRC}"\nb = "{DST}"\nrtt_ms = {2 * ONE_WAY_MS}\nbandwidth_mbit = {LINK_MBIT:g}\nloss = 0'
    try:
        net = Network(work, hubs=HUBS, proxied=(DST,), links=(link,))
    except Exception as e:  # noqa: BLE001
        raise Fatal(f"could not set up the network (certs, proxy): {one_line(e)}") from e
    try:
        net.start_all()
    except Exception as e:  # noqa: BLE001
        net.stop_all()
        raise Fatal(f"a hub did not start: {one_line(str(e).splitlines()[0] if str(e) else e)} (logs in {work})") from e
    net.proxies[DST].command({"cmd": "set", "latency_ms": ONE_WAY_MS, "jitter_ms": 0,
                              "bandwidth_bytes_per_sec": LINK_BYTES_PER_SEC, "stall_probability": 0.0,
                              "cut_probability": 0.0, "corrupt_probability": 0.0})
    return net


def make_bucket(net, name: str) -> None:
    from bench_replication import replicated_bucket

    try:
        replicated_bucket(net, name)
    except SystemExit as e:
        raise Fatal(f"bucket policy: {e}") from e


# --------------------------------------------------------------------------- scenario


def scenario_run(name: str, args, bench: Path, work: Path) -> dict:
    cuts = name == "cuts"
    burst = 3.0 if args.quick else args.burst
    n_large = 2 if args.quick else args.large
    print(f"\n== run {name}: {burst:g} s of 4 KiB PUTs at {args.clients} clients, then {n_large} x 16 MiB; "
          f"link 200 ms RTT, {LINK_MBIT:g} Mbit/s, no loss{', cut_all every 5 s' if cuts else ''}", flush=True)
    run_dir = work / name
    run_dir.mkdir()
    net = new_network(run_dir)
    res: dict = {"run": name}
    monitor = cutter = None
    try:
        make_bucket(net, BUCKET)
        proxy = net.proxies[DST]
        pids = {hub: p.pid for hub, p in net.procs.items()}
        res["pids"] = pids
        monitor = Monitor(net, interval=0.5)
        monitor.tag = "idle"
        monitor.start()
        wire0 = proxy.command({"cmd": "stats"})["stats"]
        if cuts:
            cutter = Cutter(proxy, every=5.0)
            cutter.start()

        # ---- small burst
        monitor.tag = "burst"
        put = bench_put_phase(bench, net, BUCKET, SMALL_SIZE, args.clients, burst, 10**9, run_dir)
        monitor.tag = "drain"
        monitor.scrape.set()
        t_first, t_end = put["started"], put["ended"]
        if put["ops"] == 0:
            raise Fatal(f"small phase wrote nothing: {put['first_error']}")
        t_drained = monitor.wait_drained(t_end, args.timeout, "small phase")
        monitor.scrape.clear()
        wire1 = proxy.command({"cmd": "stats"})["stats"]
        window = monitor.window(t_first, t_drained)
        rep_secs = t_drained - t_first
        drain_status = [s["status_ms"] for s in monitor.samples if t_end <= s["t"] <= t_drained]
        drain_scrapes = [s for s in monitor.scrapes if s["tag"] == "drain"]
        res["small"] = {
            "client_ops": put["ops"], "client_errors": put["errors"], "client_ops_per_sec": put["ops_per_sec"],
            "client_put_secs": put["secs"], "client_p50_ms": put["p50_ms"], "client_p99_ms": put["p99_ms"],
            "client_first_error": put["first_error"],
            "replication_secs": round(rep_secs, 2),
            "replication_objects_per_sec": round(put["ops"] / rep_secs, 1),
            "replication_payload_mbit_s": round(put["ops"] * SMALL_SIZE * 8 / 1e6 / rep_secs, 2),
            "replication_wire_mbit_s": round((wire1["bytes_upstream"] - wire0["bytes_upstream"]) * 8 / 1e6 / rep_secs, 2),
            "drain_secs_after_burst": round(t_drained - t_end, 2),
            "peak_backlog_entries": max((s["entries"] for s in window), default=None),
            "peak_backlog_bytes": max((s["bytes"] for s in window), default=None),
            "peak_lag_seconds": max((s["lag"] for s in window), default=None),
            "status_during_drain": stats_ms(drain_status),
            "metrics_during_drain": stats_ms([s["ms"] for s in drain_scrapes]),
            "metrics_scrape_backlog_entries_max": max((s["entries"] or 0 for s in drain_scrapes), default=None),
        }

        # ---- large objects
        monitor.tag = "large"
        s3 = net.s3(SRC)
        bodies = [os.urandom(LARGE_SIZE) for _ in range(n_large)]
        large_errors, large_first_error, large_ok = 0, None, 0
        t_large = time.time()
        for i, body in enumerate(bodies):
            try:
                s3.put_object(Bucket=BUCKET, Key=f"large-{i:03d}", Body=body)
                large_ok += 1
            except Exception as e:  # noqa: BLE001
                large_errors += 1
                large_first_error = large_first_error or one_line(e, 200)
        t_large_put = time.time()
        t_large_drained = monitor.wait_drained(t_large_put, args.timeout, "large phase")
        if cutter:
            cutter.stop()
        monitor.tag = "after"
        large_secs = t_large_drained - t_large
        large_mbit = large_ok * LARGE_SIZE * 8 / 1e6 / large_secs
        res["large"] = {
            "objects": n_large, "client_errors": large_errors, "client_first_error": large_first_error,
            "client_put_mib_s": round(large_ok * LARGE_SIZE / 2**20 / max(t_large_put - t_large, 1e-9), 1),
            "replication_secs": round(large_secs, 2), "replication_mbit_s": round(large_mbit, 2),
            "fraction_of_link_pct": round(100 * large_mbit / LINK_MBIT, 1),
            "peak_backlog_entries": max((s["entries"] for s in monitor.window(t_large, t_large_drained)), default=None),
        }
        time.sleep(1.0)
        mem = hub_memory(net)
        res["memory"] = {hub: {"peak_rss_mib": m["hwm_mib"], "rss_after_drain_mib": m["rss_mib"]}
                         for hub, m in mem.items()}
        res["cuts_sent"] = cutter.sent if cutter else 0
        res["proxy_cuts"] = proxy.command({"cmd": "stats"})["stats"]["cuts"]
        res["status_poll_errors"] = len(monitor.errors)
        monitor.stop()
        monitor = None
        res["verify"] = verify(net, BUCKET, args.verify_sample, seed=len(name), timeout=args.timeout / 4)
    finally:
        if cutter:
            cutter.stop()
        if monitor:
            monitor.stop()
        net.stop_all()
    print_run(res)
    return res


def print_run(r: dict) -> None:
    s, l, v = r["small"], r["large"], r["verify"]
    print(f"-- {r['run']}", flush=True)
    say("small: client PUT ops/s", f"{fmt(s['client_ops_per_sec'])} ({s['client_ops']} ops, "
        f"p50 {fmt(s['client_p50_ms'], ' ms', 2)}, p99 {fmt(s['client_p99_ms'], ' ms', 2)})")
    say("small: client errors", f"{s['client_errors']}" + (f" ({s['client_first_error']})" if s["client_first_error"] else ""))
    say("small: replication objects/s", f"{fmt(s['replication_objects_per_sec'])} "
        f"({s['client_ops']} objects in {s['replication_secs']} s, first PUT -> backlog 0)")
    say("small: replication Mbit/s (payload)", f"{fmt(s['replication_payload_mbit_s'], '', 2)} "
        f"(wire zhangjiakou->gui-an incl. TLS/protocol: {fmt(s['replication_wire_mbit_s'], '', 2)})")
    say("small: drain time after burst", fmt(s["drain_secs_after_burst"], " s", 2))
    say("small: peak backlog entries", f"{s['peak_backlog_entries']} ({fmt((s['peak_backlog_bytes'] or 0) / 2**20, ' MiB', 1)})")
    say("small: peak lag_seconds", fmt(s["peak_lag_seconds"], " s", 2))
    say("large: client errors", f"{l['client_errors']}" + (f" ({l['client_first_error']})" if l["client_first_error"] else ""))
    say("large: replication Mbit/s", f"{fmt(l['replication_mbit_s'], '', 2)} ({l['objects']} x 16 MiB in "
        f"{l['replication_secs']} s)")
    say("large: % of the 100 Mbit/s link", fmt(l["fraction_of_link_pct"], " %"))
    for hub, m in r["memory"].items():
        say(f"{hub}: peak RSS (VmHWM)", fmt(m["peak_rss_mib"], " MiB"))
        say(f"{hub}: RSS after drain (VmRSS)", fmt(m["rss_after_drain_mib"], " MiB"))
    ms, st = s["metrics_during_drain"], s["status_during_drain"]
    say("/metrics during drain (median / max)", f"{fmt(ms['median_ms'], ' ms')} / {fmt(ms['max_ms'], ' ms')} "
        f"(n={ms['n']}, backlog up to {s['metrics_scrape_backlog_entries_max']})")
    say("status --json during drain (median / max)", f"{fmt(st['median_ms'], ' ms')} / {fmt(st['max_ms'], ' ms')} (n={st['n']})")
    if r["run"] == "cuts":
        say("cut_all sent / proxy cuts counted", f"{r['cuts_sent']} / {r['proxy_cuts']}")
    say("verify: listed at gui-an / at source", f"{v['listed_at_gui_an']} / {v['objects_at_source']} "
        f"(listing ETag/size mismatches {v['listing_mismatches']})")
    say("verify: content checked / mismatches", f"{v['content_checked']} ({v['content_checked_small']} small + "
        f"{v['content_checked_large']} large) / {v['content_mismatches']}")


def print_table(runs: list[dict]) -> None:
    rows = [
        ("small client PUT ops/s", lambda r: fmt(r["small"]["client_ops_per_sec"])),
        ("small client errors", lambda r: str(r["small"]["client_errors"])),
        ("small repl objects/s", lambda r: fmt(r["small"]["replication_objects_per_sec"])),
        ("small repl Mbit/s (payload)", lambda r: fmt(r["small"]["replication_payload_mbit_s"], "", 2)),
        ("small drain after burst s", lambda r: fmt(r["small"]["drain_secs_after_burst"], "", 2)),
        ("peak backlog entries", lambda r: str(r["small"]["peak_backlog_entries"])),
        ("peak lag_seconds", lambda r: fmt(r["small"]["peak_lag_seconds"], "", 2)),
        ("large client errors", lambda r: str(r["large"]["client_errors"])),
        ("large repl Mbit/s", lambda r: fmt(r["large"]["replication_mbit_s"], "", 2)),
        ("large % of link", lambda r: fmt(r["large"]["fraction_of_link_pct"])),
        *[(f"{hub} peak RSS MiB", (lambda h: lambda r: fmt(r["memory"][h]["peak_rss_mib"]))(hub)) for hub in (SRC, DST)],
        *[(f"{hub} RSS after drain MiB", (lambda h: lambda r: fmt(r["memory"][h]["rss_after_drain_mib"]))(hub))
          for hub in (SRC, DST)],
        ("/metrics ms median/max", lambda r: f"{fmt(r['small']['metrics_during_drain']['median_ms'])}/"
                                             f"{fmt(r['small']['metrics_during_drain']['max_ms'])}"),
        ("status --json ms median/max", lambda r: f"{fmt(r['small']['status_during_drain']['median_ms'])}/"
                                                  f"{fmt(r['small']['status_during_drain']['max_ms'])}"),
        ("verified objects / mismatches", lambda r: f"{r['verify']['content_checked']}/"
                                                    f"{r['verify']['content_mismatches'] + r['verify']['listing_mismatches']}"),
    ]
    print("\n== summary", flush=True)
    print(f"{'figure':<32}" + "".join(f"{r['run']:>16}" for r in runs))
    for label, get in rows:
        cells = []
        for r in runs:
            try:
                cells.append(get(r))
            except Exception:  # noqa: BLE001
                cells.append("n/a")
        print(f"{label:<32}" + "".join(f"{c:>16}" for c in cells), flush=True)


# --------------------------------------------------------------------------- backlog mode


def backlog_run(n: int, args, bench: Path, work: Path) -> dict:
    print(f"\n== backlog: partition, {n} x 64 B PUTs at 32 clients, heal, drain over 200 ms RTT / "
          f"{LINK_MBIT:g} Mbit/s", flush=True)
    run_dir = work / "backlog"
    run_dir.mkdir()
    net = new_network(run_dir)
    res: dict = {"objects": n}
    monitor = None
    try:
        bucket = "keepup-backlog"
        make_bucket(net, bucket)
        proxy = net.proxies[DST]
        monitor = Monitor(net, interval=0.5)
        monitor.tag = "write"
        monitor.start()
        proxy.command({"cmd": "partition"})
        put = bench_put_phase(bench, net, bucket, 64, 32, 3600.0, n, run_dir)
        if put["ops"] == 0:
            raise Fatal(f"backlog mode wrote nothing: {put['first_error']}")
        mem_write = hub_memory(net)
        peaks_write = dict(monitor.rss_peak)
        monitor.stop()
        last = net.status(SRC)
        res["write"] = {"ops": put["ops"], "errors": put["errors"], "ops_per_sec": put["ops_per_sec"],
                        "first_error": put["first_error"],
                        "backlog_entries_at_heal": link_row(last)["backlog_entries"],
                        "rss_peak_while_writing_mib": peaks_write,
                        "hwm_after_writing_mib": {h: m["hwm_mib"] for h, m in mem_write.items()}}
        print(f"  {'write rate (partitioned)':<44} {fmt(put['ops_per_sec'])} ops/s ({put['ops']} ops, "
              f"{put['errors']} errors{', ' + put['first_error'] if put['first_error'] else ''})", flush=True)
        for hub in (SRC, DST):
            say(f"{hub}: peak RSS while writing", f"{fmt(peaks_write.get(hub), ' MiB')} "
                f"(VmHWM {fmt(mem_write[hub]['hwm_mib'], ' MiB')})")
        say("backlog entries at heal", str(res["write"]["backlog_entries_at_heal"]))
        # heal; status and /metrics timed every 2 s while it drains
        monitor = Monitor(net, interval=2.0, metrics_every=1)
        monitor.tag = "drain"
        monitor.scrape.set()
        t_heal = time.time()
        proxy.command({"cmd": "heal"})
        monitor.start()
        t_drained = monitor.wait_drained(t_heal, args.timeout, "backlog mode")
        monitor.stop()
        drain = [s for s in monitor.samples if s["t"] <= t_drained]
        mem = hub_memory(net)
        res["drain"] = {"drain_secs_after_heal": round(t_drained - t_heal, 1),
                        "status": stats_ms([s["status_ms"] for s in drain]),
                        "metrics": stats_ms([s["ms"] for s in monitor.scrapes if s["t"] <= t_drained]),
                        "peak_lag_seconds": max((s["lag"] for s in drain), default=None),
                        "peak_rss_mib": {h: m["hwm_mib"] for h, m in mem.items()},
                        "rss_after_drain_mib": {h: m["rss_mib"] for h, m in mem.items()}}
        d = res["drain"]
        say("drain time after heal (2 s polls)", f"{fmt(d['drain_secs_after_heal'], ' s')} "
            f"({fmt(put['ops'] / max(d['drain_secs_after_heal'], 1e-9))} objects/s)")
        say("status --json during drain (median / max)", f"{fmt(d['status']['median_ms'], ' ms')} / "
            f"{fmt(d['status']['max_ms'], ' ms')} (n={d['status']['n']})")
        say("/metrics during drain (median / max)", f"{fmt(d['metrics']['median_ms'], ' ms')} / "
            f"{fmt(d['metrics']['max_ms'], ' ms')} (n={d['metrics']['n']})")
        say("peak lag_seconds during drain", fmt(d["peak_lag_seconds"], " s"))
        for hub in (SRC, DST):
            say(f"{hub}: peak RSS (VmHWM) / RSS after drain",
                f"{fmt(d['peak_rss_mib'][hub], ' MiB')} / {fmt(d['rss_after_drain_mib'][hub], ' MiB')}")
        monitor = None
        res["verify"] = verify(net, bucket, args.verify_sample, seed=n, timeout=args.timeout / 4)
        v = res["verify"]
        say("verify: listed at gui-an / at source", f"{v['listed_at_gui_an']} / {v['objects_at_source']} "
            f"(listing mismatches {v['listing_mismatches']})")
        say("verify: content checked / mismatches", f"{v['content_checked']} / {v['content_mismatches']}")
    finally:
        if monitor:
            monitor.stop()
        net.stop_all()
    return res


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin-dir", type=Path, default=ROOT / "target" / "release",
                        help="directory with valley, valley-faultproxy, valley-bench (default: ROOT/target/release)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s burst, 2 large objects, clean only")
    parser.add_argument("--runs", default="clean,cuts", help="comma-separated: clean, cuts (default both)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--backlog", type=int, metavar="N",
                        help="instead of the scenario: N tiny objects written during a partition, then drained")
    parser.add_argument("--burst", type=float, default=15.0, help="seconds of small PUTs (default 15)")
    parser.add_argument("--clients", type=int, default=16, help="small-PUT clients (default 16)")
    parser.add_argument("--large", type=int, default=8, help="16 MiB objects (default 8)")
    parser.add_argument("--verify-sample", type=int, default=300, help="small objects read back at gui-an (>= 200)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds a backlog may take to drain before the script fails (default 1800)")
    parser.add_argument("--keep", action="store_true", help="keep the hubs' data and logs after the run")
    args = parser.parse_args()
    args.verify_sample = max(200, args.verify_sample)

    bin_dir = args.bin_dir.resolve()
    for name in ("valley", "valley-faultproxy", "valley-bench"):
        path = bin_dir / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise Fatal(f"{path} is missing or not executable (pass --bin-dir)")
    # tests/e2e/conftest.py finds the hub binary by $VALLEY_BIN; network.py takes the fault
    # proxy from the same directory.
    os.environ["VALLEY_BIN"] = str(bin_dir / "valley")
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    sys.path.insert(0, str(ROOT / "scripts"))
    bench = bin_dir / "valley-bench"

    runs = ["clean"] if args.quick else [r.strip() for r in args.runs.split(",") if r.strip()]
    for r in runs:
        if r not in ("clean", "cuts"):
            raise Fatal(f"unknown run {r!r} (clean, cuts)")
    work = Path(tempfile.mkdtemp(prefix="valley-bench-keepup-"))
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": os.getloadavg(),
                     "cpus": os.cpu_count(), "bin_dir": str(bin_dir), "workdir": str(work),
                     "link": {"rtt_ms": 2 * ONE_WAY_MS, "bandwidth_bytes_per_sec": LINK_BYTES_PER_SEC, "loss": 0}}
    print(f"bench_keepup: binaries {bin_dir}, work dir {work}, load {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} cpus", flush=True)
    failure = None
    try:
        if args.backlog:
            results["backlog"] = backlog_run(args.backlog, args, bench, work)
        else:
            results["args"] = {"quick": args.quick, "burst_s": 3.0 if args.quick else args.burst,
                               "clients": args.clients, "large": 2 if args.quick else args.large}
            done = []
            for r in runs:
                done.append(scenario_run(r, args, bench, work))
                results.setdefault("runs", {})[r] = done[-1]
            print_table(done)
    finally:
        results["load_after"] = os.getloadavg()
        # The hubs' data (2 GB for a million-entry backlog) goes with the run unless asked for.
        if args.keep:
            print(f"work dir kept: {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
            print(f"figures written to {args.json}", flush=True)
    for name, r in list(results.get("runs", {}).items()) + ([("backlog", results["backlog"])] if "backlog" in results else []):
        v = r.get("verify", {})
        if v.get("content_mismatches") or v.get("listing_mismatches"):
            failure = (f"{name}: objects not intact at gui-an: {v['listing_mismatches']} listing and "
                       f"{v['content_mismatches']} content mismatches ({v.get('first_error')})")
    if failure:
        raise Fatal(failure)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except Fatal as e:
        print(f"bench_keepup: FAIL: {one_line(e)}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench_keepup: FAIL: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
