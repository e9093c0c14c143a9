"""Replication over an emulated bad WAN link: a real fault proxy (`valley-faultproxy`) sits in
front of one hub's peer port, adding latency, a bandwidth cap, loss (emulated as TCP sees it:
stalls and throughput collapse, not dropped packets), connection cuts, byte corruption and a
full partition. After each fault every acknowledged object must be readable at the far hub with
the right bytes."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

import pytest
import requests

from network import Network

HUBS = [
    ("zhangjiakou", "CN", "east", "north-china-grid"),
    ("gui-an", "CN", "west", "southern-grid"),
]


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    network = Network(tmp_path_factory.mktemp("wan"), hubs=HUBS, proxied=("gui-an",))
    network.start_all()
    yield network
    network.stop_all()


def replicated_bucket(net) -> str:
    bucket = "wan-" + uuid.uuid4().hex[:8]
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "2",
            "--distinct-failure-domains")
    deadline = time.time() + 30
    while "copies = 2" not in net.cli("gui-an", "bucket", "policy", "show", bucket, check=False).stdout:
        assert time.time() < deadline, "policy did not reach gui-an"
        time.sleep(0.2)
    return bucket


def write_objects(net, bucket, sizes) -> dict[str, str]:
    s3 = net.s3("zhangjiakou")
    digests = {}
    for i, size in enumerate(sizes):
        body = os.urandom(size)
        key = f"obj-{i:03d}"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        digests[key] = hashlib.sha256(body).hexdigest()
    return digests


def assert_replicated(net, bucket, digests, timeout=180):
    deadline = time.time() + timeout
    # A GET at gui-an could be read through from zhangjiakou: first wait for gui-an to hold
    # every copy itself, then read them there.
    while net.holdings("gui-an", bucket).get("gui-an", 0) < len(digests):
        assert time.time() < deadline, f"gui-an holds {net.holdings('gui-an', bucket)} of {len(digests)} objects"
        time.sleep(0.3)
    s3 = net.s3("gui-an")
    missing = dict(digests)
    while missing and time.time() < deadline:
        for key, digest in list(missing.items()):
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception:
                continue
            assert hashlib.sha256(body).hexdigest() == digest, f"{key} arrived with different bytes"
            del missing[key]
        time.sleep(0.3)
    assert not missing, f"{len(missing)} objects never arrived: {sorted(missing)[:5]}"


def test_latency_bandwidth_cap_and_stalls(wan):
    proxy = wan.proxies["gui-an"]
    proxy.command({"cmd": "set", "latency_ms": 100, "jitter_ms": 20, "bandwidth_bytes_per_sec": 4_000_000,
                   "stall_probability": 0.02, "stall_ms_min": 100, "stall_ms_max": 400})
    try:
        bucket = replicated_bucket(wan)
        digests = write_objects(wan, bucket, [1_000, 20_000, 300_000, 1_500_000, 64, 5_000_000])
        assert_replicated(wan, bucket, digests)
        assert proxy.command({"cmd": "stats"})["stats"]["stalls"] > 0
    finally:
        proxy.command({"cmd": "set", "latency_ms": 0, "jitter_ms": 0, "bandwidth_bytes_per_sec": 0,
                       "stall_probability": 0.0})


def test_corrupted_bytes_are_caught_end_to_end_and_retransmitted(wan):
    proxy = wan.proxies["gui-an"]
    bucket = replicated_bucket(wan)
    proxy.command({"cmd": "set", "corrupt_probability": 0.01})
    try:
        digests = write_objects(wan, bucket, [200_000, 400_000, 800_000, 100_000])
        time.sleep(3)
        assert proxy.command({"cmd": "stats"})["stats"]["corruptions"] > 0
    finally:
        proxy.command({"cmd": "set", "corrupt_probability": 0.0})
    assert_replicated(wan, bucket, digests)
    audit = wan.cli("gui-an", "audit", "verify")
    assert audit.stdout.startswith("OK")


def recovery_lines(net, hub) -> int:
    return (net.workdir / f"{hub}.log").read_text(errors="replace").count("link works again")


def test_cut_connections_are_retried(wan):
    proxy = wan.proxies["gui-an"]
    bucket = replicated_bucket(wan)
    lines_before, started = recovery_lines(wan, "zhangjiakou"), time.time()
    proxy.command({"cmd": "set", "cut_probability": 0.5, "cut_after_bytes_max": 262_144})
    try:
        digests = write_objects(wan, bucket, [1_000_000, 2_000_000, 10_000, 700_000] + [4096] * 100)
        time.sleep(3)
    finally:
        proxy.command({"cmd": "set", "cut_probability": 0.0})
    assert_replicated(wan, bucket, digests)
    # Recoveries under cuts come many a second; the line saying so at most once per 10 s.
    lines = recovery_lines(wan, "zhangjiakou") - lines_before
    assert lines <= 2 + (time.time() - started) / 10, lines


def test_long_partition_then_heal_converges(wan):
    proxy = wan.proxies["gui-an"]
    bucket = replicated_bucket(wan)
    proxy.command({"cmd": "partition"})
    try:
        digests = write_objects(wan, bucket, [5_000] * 40 + [400_000] * 3)
        time.sleep(2)
        status = wan.status("zhangjiakou")
        link = next(l for l in status["links"] if l["from"] == "zhangjiakou" and l["to"] == "gui-an")
        assert link["backlog_entries"] >= 43
        assert link["lag_seconds"] > 0
        row = next(b for b in status["buckets"] if b["bucket"] == bucket)
        assert row["backlog_entries"] >= 43 and row["lag_seconds"] > 0
        metrics = wan.get(f"{wan.admin_endpoint('zhangjiakou')}/metrics", timeout=5).text
        gauge = next(line for line in metrics.splitlines()
                     if line.startswith('valley_replication_link_backlog_entries{peer="gui-an"}'))
        assert int(gauge.split()[-1]) >= 43
        assert f'valley_replication_bucket_lag_seconds{{bucket="{bucket}",peer="gui-an"}}' in metrics
    finally:
        proxy.command({"cmd": "heal"})
    assert_replicated(wan, bucket, digests, timeout=240)
    status = wan.wait_idle("zhangjiakou", timeout=60)
    link = next(l for l in status["links"] if l["from"] == "zhangjiakou" and l["to"] == "gui-an")
    assert link["backlog_entries"] == 0


def transfer_records(net, hub, bucket, detail_prefix) -> dict[str, int]:
    """How many audit records of `hub` for `bucket` start with `detail_prefix`, per key."""
    import json
    records = json.loads(net.cli(hub, "audit", "show", "--bucket", bucket, "--json").stdout)
    counts: dict[str, int] = {}
    for r in records:
        detail = r.get("detail") or r.get("event", {}).get("detail", "")
        key = r.get("key") or r.get("event", {}).get("key")
        if detail.startswith(detail_prefix) and key:
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_every_transfer_is_audited_exactly_once_on_each_side_under_cuts(wan):
    proxy = wan.proxies["gui-an"]
    bucket = replicated_bucket(wan)
    # Cuts land mid-body, mid-commit and on the answers: retries find copies already there.
    proxy.command({"cmd": "set", "latency_ms": 40, "cut_probability": 0.5, "cut_after_bytes_max": 2_000_000})
    try:
        digests = write_objects(wan, bucket, [4096] * 150 + [8_000_000] * 2)
        assert_replicated(wan, bucket, digests)
        assert proxy.command({"cmd": "stats"})["stats"]["cuts"] > 0
    finally:
        proxy.command({"cmd": "set", "latency_ms": 0, "cut_probability": 0.0})
    # Each copy gui-an holds was moved once: one record at the sender, one at the receiver.
    deadline = time.time() + 30
    while True:
        sent = transfer_records(wan, "zhangjiakou", bucket, "replicated to gui-an")
        received = transfer_records(wan, "gui-an", bucket, "replication received from zhangjiakou")
        if (sent.keys() >= digests.keys() and received.keys() >= digests.keys()) or time.time() > deadline:
            break
        time.sleep(0.5)
    for key in digests:
        assert sent.get(key) == 1, f"{key}: {sent.get(key, 0)} sender records"
        assert received.get(key) == 1, f"{key}: {received.get(key, 0)} receiver records"
    assert wan.cli("gui-an", "audit", "verify").stdout.startswith("OK")
    # The residency report ties both records to each copy at gui-an, and verifies.
    import json
    report = json.loads(wan.cli("zhangjiakou", "residency", "report", bucket, "--json").stdout)
    for version in report["versions"]:
        copy = next((c for c in version["copies"] if c["hub"] == "gui-an"), None)
        assert copy is not None, f"no copy at gui-an in the report: {version} (summary: {report.get('summary')})"
        assert sorted(r["hub"] for r in copy["records"]) == ["gui-an", "zhangjiakou"], version
    path = wan.workdir / f"report-{bucket}.json"
    path.write_text(json.dumps(report))
    wan.cli("gui-an", "residency", "verify", str(path))
