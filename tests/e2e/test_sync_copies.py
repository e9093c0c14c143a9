"""Synchronous copies (`ack_copies = 2`): two real hubs in distinct failure domains, a real fault
proxy in front of gui-an's peer port. An acknowledged write survives the origin's `kill -9`
(read back at the other hub); with the peer unreachable a write fails with 503 (fallback fail)
and leaves nothing anywhere, its copies retracted, or is acknowledged degraded (fallback
degrade), audited, and replicated when the peer is back."""

from __future__ import annotations

import hashlib
import json
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
ORIGIN, PEER = "zhangjiakou", "gui-an"
HEADER = "x-valley-replication"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    network = Network(tmp_path_factory.mktemp("sync"), hubs=HUBS, proxied=(PEER,),
                      serve_args=("--repair-interval", "2"))
    network.start_all()
    yield network
    network.stop_all()


def ensure_running(net):
    for hub in HUBS:
        if hub[0] not in net.procs:
            net.start(hub[0])


def bucket_with(net, *ack: str) -> str:
    bucket = "sync-" + uuid.uuid4().hex[:8]
    net.s3(ORIGIN).create_bucket(Bucket=bucket)
    net.cli(ORIGIN, "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "2",
            "--distinct-failure-domains", *ack)
    wait_for(lambda: "copies = 2" in net.cli(PEER, "bucket", "policy", "show", bucket, check=False).stdout,
             timeout=30, what="the policy at gui-an")
    return bucket


def header(response) -> str | None:
    return response["ResponseMetadata"]["HTTPHeaders"].get(HEADER)


def listed(net, hub, bucket) -> list[str]:
    return [o["Key"] for o in net.s3(hub).list_objects_v2(Bucket=bucket).get("Contents", [])]


def held(net, hub, bucket) -> int:
    return net.holdings(hub, bucket).get(hub, 0)


def audit_records(net, hub, bucket) -> list[dict]:
    records = json.loads(net.cli(hub, "audit", "show", "--bucket", bucket, "--json").stdout)
    return [r.get("event", r) | r for r in records]


def received(net, bucket, key) -> int:
    return sum(1 for r in audit_records(net, PEER, bucket)
               if r.get("key") == key and str(r.get("detail", "")).startswith("replication received from"))


def test_ack_copies_1_is_unaffected(pair):
    ensure_running(pair)
    bucket = bucket_with(pair)
    put = pair.s3(ORIGIN).put_object(Bucket=bucket, Key="plain", Body=b"asynchronous")
    assert header(put) is None


def test_acknowledged_write_survives_kill_9_of_the_origin(pair):
    ensure_running(pair)
    bucket = bucket_with(pair, "--ack-copies", "2", "--ack-timeout-seconds", "10")
    s3 = pair.s3(ORIGIN)
    body = os.urandom(300_000)
    put = s3.put_object(Bucket=bucket, Key="precious", Body=body)
    assert header(put) == "synchronous; copies=2"
    # A multipart upload (two parts) and a server-side copy are synchronous too.
    part = os.urandom(5 * 1024 * 1024)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    tags = [s3.upload_part(Bucket=bucket, Key="multi", UploadId=upload, PartNumber=n, Body=part)["ETag"]
            for n in (1, 2)]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="multi", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": t} for n, t in zip((1, 2), tags)]})
    assert header(done) == "synchronous; copies=2"
    copied = s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "precious"})
    assert header(copied) == "synchronous; copies=2"
    # Acknowledged: the origin dies at once, before its outbox could ship anything.
    pair.kill(ORIGIN)
    far = pair.s3(PEER)
    got = far.get_object(Bucket=bucket, Key="precious")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    got = far.get_object(Bucket=bucket, Key="multi")
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(part + part).digest()
    assert got["ETag"] == done["ETag"]
    assert far.get_object(Bucket=bucket, Key="copied")["Body"].read() == body
    pair.start(ORIGIN)
    # After the restart the outbox delivers its entries again: duplicates, nothing changes.
    pair.wait_idle(ORIGIN, timeout=60)
    assert far.get_object(Bucket=bucket, Key="precious")["ETag"] == put["ETag"]


def test_unreachable_peer_with_fallback_fail_answers_503_and_keeps_nothing(pair):
    ensure_running(pair)
    bucket = bucket_with(pair, "--ack-copies", "2", "--ack-timeout-seconds", "2", "--ack-fallback", "fail")
    proxy = pair.proxies[PEER]
    proxy.command({"cmd": "partition"})
    try:
        started = time.time()
        with pytest.raises(ClientError) as err:
            pair.s3(ORIGIN).put_object(Bucket=bucket, Key="lost", Body=b"never acknowledged")
        took = time.time() - started
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert "1 of 2 copies" in err.value.response["Error"]["Message"]
        assert took < 2 + 3, f"the write took {took:.1f} s to fail"
        assert listed(pair, ORIGIN, bucket) == []
        with pytest.raises(ClientError):
            pair.s3(ORIGIN).get_object(Bucket=bucket, Key="lost")
    finally:
        proxy.command({"cmd": "heal"})
    # The retraction is delivered; the peer never lists or serves the write.
    pair.wait_idle(ORIGIN, timeout=60)
    assert listed(pair, PEER, bucket) == []
    with pytest.raises(ClientError):
        pair.s3(PEER).get_object(Bucket=bucket, Key="lost")
    metrics = pair.get(f"{pair.admin_endpoint(ORIGIN)}/metrics", timeout=5).text
    assert 'valley_replication_sync_writes_total{outcome="failed"}' in metrics


def test_a_copy_applied_too_late_is_retracted_exactly(pair):
    """The peer takes the copy but its answer comes after the timeout: the write fails and the
    copy there is retracted; the key's previous version is kept (and comes back at the peer)."""
    ensure_running(pair)
    bucket = bucket_with(pair, "--ack-copies", "2", "--ack-timeout-seconds", "1", "--ack-fallback", "fail")
    s3 = pair.s3(ORIGIN)
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"first version")
    assert header(first) == "synchronous; copies=2"
    pair.wait_idle(ORIGIN, timeout=30)
    proxy = pair.proxies[PEER]
    # One-way 700 ms: a request over a warm connection arrives after 0.7 s, its answer would
    # come back after 1.4 s, past the 1 s timeout.
    proxy.command({"cmd": "set", "latency_ms": 700})
    try:
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=bucket, Key="k", Body=b"second version, failed")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        time.sleep(2)
    finally:
        proxy.command({"cmd": "set", "latency_ms": 0})
    pair.wait_idle(ORIGIN, timeout=60)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first version"
    far = pair.s3(PEER)
    # The failed version never stays at the peer; the first one is (again) held there.
    def peer_has_first():
        try:
            return far.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first version" \
                and held(pair, PEER, bucket) == 1
        except ClientError:
            return False
    wait_for(peer_has_first, timeout=60, what="gui-an to hold the first version")
    versions = far.list_object_versions(Bucket=bucket).get("Versions", [])
    assert [v["ETag"] for v in versions] == [first["ETag"]]
    arrivals = received(pair, bucket, "k")
    print(f"copies of k received at gui-an: {arrivals}")
    assert arrivals >= 2, "the failed version's copy never reached gui-an: the retraction was not exercised"


def test_unreachable_peer_with_fallback_degrade_acknowledges_and_catches_up(pair):
    ensure_running(pair)
    bucket = bucket_with(pair, "--ack-copies", "2", "--ack-timeout-seconds", "2", "--ack-fallback", "degrade")
    pair.kill(PEER)
    body = os.urandom(50_000)
    try:
        put = pair.s3(ORIGIN).put_object(Bucket=bucket, Key="degraded", Body=body)
        assert header(put) == "degraded; copies=1; wanted=2"
        records = [r for r in audit_records(pair, ORIGIN, bucket) if r.get("kind") == "sync-degraded"]
        assert len(records) == 1 and records[0].get("key") == "degraded", records
        assert "1 of 2 copies" in records[0]["detail"]
        metrics = pair.get(f"{pair.admin_endpoint(ORIGIN)}/metrics", timeout=5).text
        assert 'valley_replication_sync_writes_total{outcome="degraded"} 1' in metrics
        assert "valley_replication_sync_write_duration_seconds" in metrics
    finally:
        pair.start(PEER)
    wait_for(lambda: held(pair, PEER, bucket) == 1, timeout=90, what="the copy at gui-an")
    got = pair.s3(PEER).get_object(Bucket=bucket, Key="degraded")
    assert got["Body"].read() == body and got["ETag"] == put["ETag"]
    assert pair.cli(ORIGIN, "audit", "verify").stdout.startswith("OK")
