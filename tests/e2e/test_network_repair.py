"""Repair, read-through, tiering and transport limits between real hubs on loopback.

Each test starts its own small network with a one-second anti-entropy interval, so the sweep
that repairs, refills and tiers runs many times within a test. A GET at a hub that does not
hold a copy may be read through from one that does, so "hub X holds the object" is asserted
from X's own inventory (and, where it matters, by reading it while every other holder is down).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import time
import uuid

import pytest
import requests
from botocore.exceptions import ClientError

import network
from network import Network, marker

# Repairs run on one-second rounds; allow them more time than a single delivery.
wait_for = functools.partial(network.wait_for, timeout=90, interval=0.3)

CN3 = [
    ("zhangjiakou", "CN", "east", "north-china-grid"),
    ("gui-an", "CN", "west", "southern-grid"),
    ("wuhu", "CN", "east", "east-china-grid"),
]
FAST_REPAIR = ("--repair-interval", "1")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def own_holdings(net, hub, bucket) -> int:
    """Versions of `bucket` that `hub` itself stores, from its own inventory."""
    return net.holdings(hub, bucket).get(hub, 0)


def policy_everywhere(net, bucket, needle, hubs=None):
    wait_for(lambda: all(needle in net.cli(h, "bucket", "policy", "show", bucket, check=False).stdout
                         for h in hubs or net.procs), what=f"policy of {bucket} everywhere")


def write(net, hub, bucket, count, size) -> dict[str, bytes]:
    s3 = net.s3(hub)
    bodies = {}
    for i in range(count):
        body = marker() + os.urandom(size)
        key = f"obj-{i:03d}"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        bodies[key] = body
    return bodies


@pytest.fixture
def cn3(tmp_path):
    network = Network(tmp_path, hubs=CN3, serve_args=FAST_REPAIR)
    network.start_all()
    yield network
    network.stop_all()


def test_read_through_serves_allowed_hubs_and_refuses_forbidden_ones(tmp_path):
    hubs = CN3[:2] + [("frankfurt", "EU", "east", "central-europe")]
    net = Network(tmp_path, hubs=hubs, serve_args=FAST_REPAIR)
    net.start_all()
    try:
        bucket = "rt-" + uuid.uuid4().hex[:8]
        net.s3("zhangjiakou").create_bucket(Bucket=bucket)
        net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "1",
                "--classification", "personal-info")
        policy_everywhere(net, bucket, "personal-info")
        tag = marker()
        body = tag + os.urandom(3 * 1024 * 1024)
        put = net.s3("zhangjiakou").put_object(Bucket=bucket, Key="dir/report.bin", Body=body,
                                               Metadata={"owner": "li"}, ContentType="application/x-test")
        time.sleep(2)
        # One copy, at the hub that took the write: gui-an holds nothing, yet serves reads.
        assert own_holdings(net, "gui-an", bucket) == 0
        gui = net.s3("gui-an")
        got = gui.get_object(Bucket=bucket, Key="dir/report.bin")
        assert sha(got["Body"].read()) == sha(body)
        assert got["ETag"] == put["ETag"] and got["Metadata"] == {"owner": "li"}
        assert got["ContentType"] == "application/x-test"
        ranged = gui.get_object(Bucket=bucket, Key="dir/report.bin", Range="bytes=1000-1999")["Body"].read()
        assert ranged == body[1000:2000]
        assert gui.head_object(Bucket=bucket, Key="dir/report.bin")["ContentLength"] == len(body)
        with pytest.raises(ClientError) as missing:
            gui.get_object(Bucket=bucket, Key="no-such-key")
        assert missing.value.response["Error"]["Code"] == "NoSuchKey"
        assert own_holdings(net, "gui-an", bucket) == 0, "a read-through keeps no copy"
        # Frankfurt may not receive CN personal information: a clear refusal naming the rule.
        with pytest.raises(ClientError) as refused:
            net.s3("frankfurt").get_object(Bucket=bucket, Key="dir/report.bin")
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
        assert "jurisdictions [CN]" in refused.value.response["Error"]["Message"]
        assert net.bytes_containing("frankfurt", tag) == 0
        audit = net.cli("frankfurt", "audit", "show", "--bucket", bucket, "--json").stdout
        assert "read-through refused" in audit
        # An overwrite at another hub lands there (one copy, at the writer), yet the older copy
        # at zhangjiakou is dropped and zhangjiakou serves the new bytes by reading through.
        net.s3("gui-an").put_object(Bucket=bucket, Key="dir/report.bin", Body=b"newer")
        wait_for(lambda: net.s3("zhangjiakou").get_object(Bucket=bucket, Key="dir/report.bin")["Body"].read()
                 == b"newer", timeout=30, what="the newer version everywhere")
        assert own_holdings(net, "zhangjiakou", bucket) == 0
    finally:
        net.stop_all()


def test_a_hub_lost_for_good_has_its_copies_recreated(cn3):
    net = cn3
    bucket = "lost-" + uuid.uuid4().hex[:8]
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "2",
            "--distinct-failure-domains")
    policy_everywhere(net, bucket, "copies = 2")
    bodies = write(net, "zhangjiakou", bucket, 25, 40_000)
    bodies.update({"big": marker() + os.urandom(9 * 1024 * 1024)})
    net.s3("zhangjiakou").put_object(Bucket=bucket, Key="big", Body=bodies["big"])
    wait_for(lambda: own_holdings(net, "gui-an", bucket) == len(bodies), what="second copies at gui-an")
    assert own_holdings(net, "wuhu", bucket) == 0
    # gui-an's site is destroyed: process and disks gone.
    net.kill("gui-an")
    shutil.rmtree(net.data_dir("gui-an"))
    net.cli("zhangjiakou", "hub", "lost", "gui-an", "--reason", "site destroyed")
    wait_for(lambda: own_holdings(net, "wuhu", bucket) == len(bodies), what="copies re-created at wuhu")
    status = net.status("zhangjiakou")
    assert any(h["id"] == "gui-an" and h["lost"] for h in status["hubs"])
    metrics = net.get(f"{net.admin_endpoint('zhangjiakou')}/metrics", timeout=5).text
    assert 'valley_replication_peer_lost{peer="gui-an"} 1' in metrics
    repaired = [line for line in metrics.splitlines()
                if line.startswith('valley_replication_link_repaired_versions{peer="wuhu"}')]
    assert repaired and int(repaired[0].split()[-1]) >= 1, repaired
    # Prove wuhu's copies are real and whole: read them with every other holder down.
    net.kill("zhangjiakou")
    s3 = net.s3("wuhu")
    for key, body in bodies.items():
        assert sha(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == sha(body), key
    audit = net.cli("wuhu", "audit", "show", "--json").stdout
    assert "declared lost" in audit


def test_a_silent_hub_is_declared_lost_automatically(tmp_path):
    net = Network(tmp_path, hubs=CN3, serve_args=FAST_REPAIR + ("--declare-lost-after", "3"))
    net.start_all()
    try:
        bucket = "auto-" + uuid.uuid4().hex[:8]
        net.s3("zhangjiakou").create_bucket(Bucket=bucket)
        net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "2")
        policy_everywhere(net, bucket, "copies = 2")
        bodies = write(net, "zhangjiakou", bucket, 10, 5_000)
        wait_for(lambda: own_holdings(net, "gui-an", bucket) == 10, what="second copies")
        net.kill("gui-an")
        wait_for(lambda: own_holdings(net, "wuhu", bucket) == 10, what="copies re-created after silence")
        assert any(h["id"] == "gui-an" and h["lost"] for h in net.status("wuhu")["hubs"])
        # It comes back: declared back in service, and new writes place copies there again.
        net.start("gui-an")
        wait_for(lambda: not any(h["lost"] for h in net.status("zhangjiakou")["hubs"]), what="declared back")
        net.s3("zhangjiakou").put_object(Bucket=bucket, Key="after-return", Body=b"x" * 100)
        wait_for(lambda: own_holdings(net, "gui-an", bucket) == len(bodies) + 1, what="copies at the returned hub")
    finally:
        net.stop_all()


def test_a_wiped_hub_is_refilled_by_anti_entropy(cn3):
    net = cn3
    bucket = "wipe-" + uuid.uuid4().hex[:8]
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--hubs", "zhangjiakou,gui-an", "--copies", "2")
    policy_everywhere(net, bucket, "copies = 2")
    bodies = write(net, "zhangjiakou", bucket, 30, 2_000)
    wait_for(lambda: own_holdings(net, "gui-an", bucket) == 30, what="copies at gui-an")
    # gui-an comes back from an empty disk (a restore that lost everything): no outbox entry
    # anywhere still names its copies, and it does not even know the bucket's policy.
    net.kill("gui-an")
    shutil.rmtree(net.data_dir("gui-an"))
    net.start("gui-an")
    wait_for(lambda: own_holdings(net, "gui-an", bucket) == 30, what="anti-entropy refill")
    assert "copies = 2" in net.cli("gui-an", "bucket", "policy", "show", bucket).stdout
    net.kill("zhangjiakou")
    for key, body in bodies.items():
        assert net.s3("gui-an").get_object(Bucket=bucket, Key=key)["Body"].read() == body


def test_raising_copies_places_existing_objects(cn3):
    net = cn3
    bucket = "more-" + uuid.uuid4().hex[:8]
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    write(net, "zhangjiakou", bucket, 12, 3_000)
    time.sleep(1.5)
    assert own_holdings(net, "gui-an", bucket) == 0 and own_holdings(net, "wuhu", bucket) == 0
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "3")
    wait_for(lambda: own_holdings(net, "gui-an", bucket) == 12 and own_holdings(net, "wuhu", bucket) == 12,
             what="existing objects copied to the new hubs")


def test_tiering_moves_cold_copies_west_and_reads_still_work(cn3):
    net = cn3
    bucket = "tier-" + uuid.uuid4().hex[:8]
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    # after 0 days: every object is already "cold", so the sweep moves it at once.
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "1",
            "--tier-after-days", "0", "--tier-role", "west")
    policy_everywhere(net, bucket, "after_days = 0")
    bodies = write(net, "zhangjiakou", bucket, 8, 30_000)
    wait_for(lambda: own_holdings(net, "gui-an", bucket) == 8 and own_holdings(net, "zhangjiakou", bucket) == 0,
             what="cold copies moved to the western hub")
    assert own_holdings(net, "wuhu", bucket) == 0
    for key, body in bodies.items():
        assert net.s3("zhangjiakou").get_object(Bucket=bucket, Key=key)["Body"].read() == body
    audit = net.cli("zhangjiakou", "audit", "show", "--bucket", bucket, "--json").stdout
    assert "tiered to gui-an" in audit and "dropped here" in audit


def test_large_objects_resume_across_cut_connections(tmp_path):
    net = Network(tmp_path, hubs=CN3[:2], proxied=("gui-an",), serve_args=FAST_REPAIR)
    net.start_all()
    try:
        bucket = "cut-" + uuid.uuid4().hex[:8]
        net.s3("zhangjiakou").create_bucket(Bucket=bucket)
        net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "2")
        policy_everywhere(net, bucket, "copies = 2")
        proxy = net.proxies["gui-an"]
        # No connection to gui-an lives past 3 MiB: a 40 MiB object only gets through if a
        # transfer resumes where the last connection died instead of starting over.
        proxy.command({"cmd": "set", "cut_probability": 1.0, "cut_after_bytes_max": 3 * 1024 * 1024})
        body = os.urandom(40 * 1024 * 1024)
        net.s3("zhangjiakou").put_object(Bucket=bucket, Key="big", Body=body)
        wait_for(lambda: own_holdings(net, "gui-an", bucket) == 1, timeout=180, what="resumed transfer")
        assert proxy.command({"cmd": "stats"})["stats"]["cuts"] > 0
        proxy.command({"cmd": "set", "cut_probability": 0.0})
        net.kill("zhangjiakou")
        assert sha(net.s3("gui-an").get_object(Bucket=bucket, Key="big")["Body"].read()) == sha(body)
    finally:
        net.stop_all()


def test_the_per_link_bandwidth_limit_holds(tmp_path):
    limit_mbit = 16  # 2,000,000 bytes/s
    link = 'a = "zhangjiakou"\nb = "gui-an"\nrtt_ms = 30\nbandwidth_mbit = 1000\n' \
           f"replication_limit_mbit = {limit_mbit}"
    net = Network(tmp_path, hubs=CN3[:2], links=(link,), serve_args=FAST_REPAIR)
    net.start_all()
    try:
        bucket = "bw-" + uuid.uuid4().hex[:8]
        net.s3("zhangjiakou").create_bucket(Bucket=bucket)
        net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "2")
        policy_everywhere(net, bucket, "copies = 2")
        size = 12 * 1024 * 1024
        started = time.time()
        for i in range(2):
            net.s3("zhangjiakou").put_object(Bucket=bucket, Key=f"k{i}", Body=os.urandom(size // 2))
        wait_for(lambda: own_holdings(net, "gui-an", bucket) == 2, timeout=120, what="replication under the limit")
        elapsed = time.time() - started
        floor = size / (limit_mbit * 1_000_000 / 8)
        # A lower bound only: it cannot be faster than the limit (minus the allowed burst).
        assert elapsed >= 0.85 * floor, f"{size} bytes crossed a {limit_mbit} Mbit/s limit in {elapsed:.2f}s"
    finally:
        net.stop_all()


def test_versioned_writes_at_different_hubs_read_as_one_history(cn3):
    """Copies = 1, so each version lives only where it was written; every hub still reads the
    newest version (or the delete marker) as the latest, and every version by its id."""
    net = cn3
    bucket = "vers-" + uuid.uuid4().hex[:8]
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.s3("zhangjiakou").put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "1")
    policy_everywhere(net, bucket, "copies = 1")
    first = net.s3("zhangjiakou").put_object(Bucket=bucket, Key="doc", Body=b"v1 written at zhangjiakou")
    second = net.s3("gui-an").put_object(Bucket=bucket, Key="doc", Body=b"v2 written at gui-an")
    assert first["VersionId"] != second["VersionId"]

    def latest(hub):
        try:
            return net.s3(hub).get_object(Bucket=bucket, Key="doc")["Body"].read()
        except ClientError as e:
            return e.response["Error"]["Code"]

    wait_for(lambda: all(latest(h) == b"v2 written at gui-an" for h in net.procs), timeout=30,
             what="the newest version read as the latest everywhere")
    older = net.s3("wuhu").get_object(Bucket=bucket, Key="doc", VersionId=first["VersionId"])["Body"].read()
    assert older == b"v1 written at zhangjiakou"
    assert own_holdings(net, "zhangjiakou", bucket) == 1  # zhangjiakou kept its own version
    net.s3("wuhu").delete_object(Bucket=bucket, Key="doc")  # a delete marker, placed at wuhu
    wait_for(lambda: all(latest(h) == "NoSuchKey" for h in net.procs), timeout=30,
             what="the delete marker read as the latest everywhere")
