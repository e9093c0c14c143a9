"""Replication that keeps up: back-pressure at a bucket's `max_lag_seconds`, the recovery point
per bucket and link in `valley status` and /metrics, and small objects travelling in batches
(checked end to end, also across a connection cut in the middle of a batch).

Two real hubs in distinct failure domains; a real fault proxy in front of gui-an's peer port."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from network import Network, wait_for

HUBS = [
    ("zhangjiakou", "CN", "east", "north-china-grid"),
    ("gui-an", "CN", "west", "southern-grid"),
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    network = Network(tmp_path_factory.mktemp("keepup"), hubs=HUBS, proxied=("gui-an",))
    network.start_all()
    yield network
    network.stop_all()


def replicated_bucket(net, *extra: str) -> str:
    bucket = "keep-" + uuid.uuid4().hex[:8]
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "2",
            "--distinct-failure-domains", *extra)
    wait_for(lambda: "copies = 2" in net.cli("gui-an", "bucket", "policy", "show", bucket, check=False).stdout,
             timeout=30, what="the policy at gui-an")
    return bucket


def bucket_link(status: dict, bucket: str) -> dict | None:
    row = next((b for b in status["buckets"] if b["bucket"] == bucket), None)
    if row is None:
        return None
    return next((l for l in row["links"] if l["from"] == "zhangjiakou" and l["peer"] == "gui-an"), None)


def metric(net, hub: str, name: str, labels: str) -> float | None:
    text = net.get(f"{net.admin_endpoint(hub)}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.split()[-1])
    return None


def read_at_gui_an(net, bucket: str, digests: dict[str, str], timeout: float = 120) -> None:
    """Every object is held at gui-an itself (not read through) with the bytes written."""
    wait_for(lambda: net.holdings("gui-an", bucket).get("gui-an", 0) >= len(digests), timeout=timeout,
             what=f"{len(digests)} objects held at gui-an")
    s3 = net.s3("gui-an")
    for key, digest in digests.items():
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == digest, f"{key} arrived with different bytes"


def test_backpressure_engages_at_max_lag_and_releases_when_the_link_heals(pair):
    proxy = pair.proxies["gui-an"]
    bucket = replicated_bucket(pair, "--max-lag-seconds", "2")
    unbounded = replicated_bucket(pair)
    s3 = pair.s3("zhangjiakou")
    digests = {}
    proxy.command({"cmd": "partition"})
    try:
        for i in range(5):
            body = os.urandom(3000)
            s3.put_object(Bucket=bucket, Key=f"early-{i}", Body=body)
            digests[f"early-{i}"] = hashlib.sha256(body).hexdigest()
        # The recovery point is visible per bucket and link, from counters.
        wait_for(lambda: (bucket_link(pair.status("zhangjiakou"), bucket) or {}).get("lag_seconds", 0) > 2.0,
                 timeout=20, what="the bucket's recovery point passing 2 s")
        link = bucket_link(pair.status("zhangjiakou"), bucket)
        assert link["entries"] == 5 and link["bytes"] == 15_000, link
        lag = metric(pair, "zhangjiakou", "valley_replication_bucket_lag_seconds", f'bucket="{bucket}",peer="gui-an"')
        assert lag is not None and lag > 2.0, lag
        entries = metric(pair, "zhangjiakou", "valley_replication_bucket_backlog_entries",
                         f'bucket="{bucket}",peer="gui-an"')
        assert entries == 5
        # Past max_lag_seconds, writes to the bucket are refused with SlowDown and add nothing.
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=bucket, Key="refused", Body=b"x" * 100)
        assert refused.value.response["Error"]["Code"] == "SlowDown"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "max_lag_seconds" in refused.value.response["Error"]["Message"]
        assert bucket_link(pair.status("zhangjiakou"), bucket)["entries"] == 5
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key="refused")
        # Reads go on, and a bucket without the limit takes writes as before.
        assert s3.get_object(Bucket=bucket, Key="early-0")["Body"].read()
        s3.put_object(Bucket=unbounded, Key="fine", Body=b"y" * 100)
    finally:
        proxy.command({"cmd": "heal"})

    # Once the link has carried the old writes, the bucket takes writes again.
    def accepted() -> bool:
        try:
            s3.put_object(Bucket=bucket, Key="after", Body=b"after the heal")
            return True
        except ClientError as e:
            assert e.response["Error"]["Code"] == "SlowDown", e
            return False

    wait_for(accepted, timeout=90, interval=0.5, what="writes accepted after the heal")
    digests["after"] = hashlib.sha256(b"after the heal").hexdigest()
    read_at_gui_an(pair, bucket, digests)
    wait_for(lambda: bucket_link(pair.status("zhangjiakou"), bucket) is None
             or bucket_link(pair.status("zhangjiakou"), bucket)["entries"] == 0,
             timeout=60, what="the bucket's backlog drained")


def test_small_objects_travel_in_batches_intact_across_cuts(pair):
    """Small objects of sizes on both sides of the batch limit, with the link cut while they
    travel: all arrive with their bytes, and every transfer is on record at the sender."""
    proxy = pair.proxies["gui-an"]
    bucket = replicated_bucket(pair)
    s3 = pair.s3("zhangjiakou")
    digests = {}
    proxy.command({"cmd": "set", "latency_ms": 50})
    try:
        for i in range(600):
            size = (1, 4096, 16 * 1024, 16 * 1024 + 1, 70_000)[i % 5]
            body = os.urandom(size)
            key = f"small/{i:04d}"
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            digests[key] = hashlib.sha256(body).hexdigest()
            if i % 100 == 50:
                proxy.command({"cmd": "cut_all"})
        read_at_gui_an(pair, bucket, digests, timeout=180)
    finally:
        proxy.command({"cmd": "set", "latency_ms": 0})
    audit = pair.cli("zhangjiakou", "audit", "show", "--bucket", bucket, "--json").stdout
    # Every object's transfer is on record at the sender, batched or not.
    for key in list(digests)[:50]:
        assert f'"{key}"' in audit, f"no transfer record of {key}"
