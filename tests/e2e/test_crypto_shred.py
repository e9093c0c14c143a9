"""Crypto-shredding (`valley key destroy`): destroying a bucket's key or a tenant's key at one
hub makes every object sealed under it unreadable at every hub, whatever copies of its bytes
exist, audited at every hub; nothing else is touched. Three hubs: two share one keystore file,
the third has its own copy of it behind a fault proxy with 100 ms latency each way (the
farthest hub), which must destroy its copy when it learns of the destruction."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from conftest import make_client, unique_name, valley_bin
from network import Network, marker, wait_for

HUBS = [
    ("zhangjiakou", "CN", "east", "north-china-grid"),
    ("wuhu", "CN", "east", "east-china-grid"),
    ("gui-an", "CN", "west", "southern-grid"),
]


def code_of(call) -> str:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def shredded(s3, bucket: str, key: str) -> bool:
    """Whether a GET is refused as a read under a destroyed key (a success is False)."""
    try:
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return False
    except ClientError as e:
        return e.response["Error"]["Code"] == "KMS.KMSInvalidStateException"


def kms(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(valley_bin()), "kms", *args], capture_output=True, text=True, timeout=60)


def audit_events(net: Network, hub: str, kind: str) -> list[dict]:
    """The audit events of `kind` in `hub`'s chain."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("kind") == kind:
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(net.cli(hub, "audit", "show", "--json").stdout))
    return found


def test_destroying_a_key_at_one_hub_refuses_reads_under_it_at_every_hub(tmp_path):
    master = tmp_path / "master.key"
    master.write_text("5a" * 32)
    shared, far_copy = tmp_path / "keystore-shared.json", tmp_path / "keystore-gui-an.json"
    net = Network(tmp_path, hubs=HUBS, proxied=("gui-an",))
    kms_args = {"zhangjiakou": shared, "wuhu": shared, "gui-an": far_copy}
    net.serve_args = ("--kms-master-key-file", str(master))
    start = net.start

    def start_hub(hub, **kw):
        net.serve_args = ("--kms-master-key-file", str(master), "--kms-keystore", str(kms_args[hub]))
        start(hub, **kw)

    net.start = start_hub
    made = kms("create", "--kms-master-key-file", str(master), "--kms-keystore", str(shared), "testkey-1")
    assert made.returncode == 0, made.stderr
    for hub in ("zhangjiakou", "wuhu"):
        net.start(hub)
    try:
        a = net.s3("zhangjiakou")
        doomed, kept, plain = unique_name("shred"), unique_name("kept"), unique_name("plain")
        for bucket in (doomed, kept, plain):
            a.create_bucket(Bucket=bucket)
            net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "3")
        mark = marker()
        body = mark + b"x" * 300_000
        a.put_object(Bucket=doomed, Key="s3", Body=body, ServerSideEncryption="AES256")
        a.put_object(Bucket=doomed, Key="kms", Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId="testkey-1")
        a.put_object(Bucket=kept, Key="s3", Body=body, ServerSideEncryption="AES256")
        a.put_object(Bucket=kept, Key="kms", Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId="testkey-1")
        plain_body = b"plain " * 1000
        a.put_object(Bucket=plain, Key="p", Body=plain_body)
        # The far hub's keystore: a copy of the shared one, as a site with its own key
        # service would hold (every key the objects need is in it by now).
        shutil.copy(shared, far_copy)
        net.start("gui-an")
        proxy = net.proxies["gui-an"]
        proxy.command({"cmd": "set", "latency_ms": 100})
        hubs = ("zhangjiakou", "wuhu", "gui-an")
        for hub in hubs:
            wait_for(lambda hub=hub: all(net.holdings(hub, b).get(hub, 0) == n
                                         for b, n in ((doomed, 2), (kept, 2), (plain, 1))),
                     timeout=120, what=f"every object copied to {hub}")
        far = net.s3("gui-an")
        assert far.get_object(Bucket=doomed, Key="s3")["Body"].read() == body
        for hub in hubs:
            assert net.bytes_containing(hub, mark) == 0, f"plaintext at {hub}"

        # Only the tenant's own admin may shred: the operator may not shred acme's keys.
        net.cli("zhangjiakou", "tenant", "add", "acme")
        refused = net.cli("zhangjiakou", "key", "destroy", "--tenant", "acme", "default", check=False)
        assert refused.returncode != 0 and "only that tenant's admin" in refused.stderr, refused.stderr
        # acme's admin shreds its own bucket's key, naming no tenant (its own is meant).
        alice = json.loads(net.cli("zhangjiakou", "user", "add", "acme", "alice", "--admin-of-tenant", "--json").stdout)
        as_alice = make_client(net.s3_endpoint("zhangjiakou"), alice["access_key"], alice["secret_key"],
                               verify=str(net.ca))
        acme_bucket = unique_name("acme-shred")
        as_alice.create_bucket(Bucket=acme_bucket)
        as_alice.put_object(Bucket=acme_bucket, Key="k", Body=b"acme secret", ServerSideEncryption="AES256")
        assert as_alice.get_object(Bucket=acme_bucket, Key="k")["Body"].read() == b"acme secret"
        not_yours = net.cli("zhangjiakou", "key", "destroy", "--tenant", "acme", "--bucket", acme_bucket, check=False)
        assert not_yours.returncode != 0 and "only that tenant's admin" in not_yours.stderr, not_yours.stderr
        alice_env = dict(os.environ, VALLEY_ACCESS_KEY=alice["access_key"], VALLEY_SECRET_KEY=alice["secret_key"],
                         VALLEY_CA=str(net.ca))
        own = subprocess.run([str(valley_bin()), "--admin", net.admin_endpoint("zhangjiakou"), "key", "destroy",
                              "--bucket", acme_bucket], env=alice_env, capture_output=True, text=True, timeout=60)
        assert own.returncode == 0, own.stderr
        assert shredded(as_alice, acme_bucket, "k")
        # ...and may not shred the default tenant's bucket.
        theirs = subprocess.run([str(valley_bin()), "--admin", net.admin_endpoint("zhangjiakou"), "key", "destroy",
                                 "--tenant", "default", "--bucket", doomed], env=alice_env, capture_output=True,
                                text=True, timeout=60)
        assert theirs.returncode != 0 and "only that tenant's admin" in theirs.stderr, theirs.stderr
        missing = net.cli("zhangjiakou", "key", "destroy", "no-such-key", check=False)
        assert missing.returncode != 0 and "no key default/no-such-key" in missing.stderr, missing.stderr

        # Shred one bucket's key at zhangjiakou; time the first refused read at gui-an.
        began = time.monotonic()
        net.cli("zhangjiakou", "key", "destroy", "--bucket", doomed)
        for key in ("s3", "kms"):
            assert code_of(lambda key=key: a.get_object(Bucket=doomed, Key=key)) == "KMS.KMSInvalidStateException"

        wait_for(lambda: shredded(far, doomed, "s3"), timeout=60, interval=0.01, what="the shredded bucket refused at gui-an")
        elapsed = time.monotonic() - began
        print(f"\nshred propagation: {elapsed * 1000:.0f} ms from `valley key destroy` to the first "
              f"refused read at gui-an (100 ms one-way link latency)")
        for hub in hubs:
            s3 = net.s3(hub)
            assert code_of(lambda: s3.get_object(Bucket=doomed, Key="kms")) == "KMS.KMSInvalidStateException"
            assert code_of(lambda: s3.get_object(Bucket=doomed, Key="s3", Range="bytes=0-9")) \
                == "KMS.KMSInvalidStateException"
            # The rest is untouched: another bucket under the same keys, and plaintext.
            assert s3.get_object(Bucket=kept, Key="s3")["Body"].read() == body
            assert s3.get_object(Bucket=kept, Key="kms")["Body"].read() == body
            assert s3.get_object(Bucket=plain, Key="p")["Body"].read() == plain_body
            # Metadata needs no key; the bucket seals nothing new.
            assert s3.head_object(Bucket=doomed, Key="s3")["ContentLength"] == len(body)
            assert code_of(lambda: s3.put_object(Bucket=doomed, Key="new", Body=b"x",
                                                 ServerSideEncryption="AES256")) == "KMS.KMSInvalidStateException"
            wait_for(lambda hub=hub: audit_events(net, hub, "key-destroyed"), timeout=30,
                     what=f"the destruction audited at {hub}")

        # A tenant key: every object under testkey-1, in any bucket, at every hub.
        net.cli("wuhu", "key", "destroy", "testkey-1")
        for hub in hubs:
            s3 = net.s3(hub)
            wait_for(lambda s3=s3: shredded(s3, kept, "kms"), timeout=30, what=f"testkey-1 refused at {hub}")
            assert s3.get_object(Bucket=kept, Key="s3")["Body"].read() == body
            assert code_of(lambda s3=s3: s3.put_object(Bucket=plain, Key="k", Body=b"x", ServerSideEncryption="aws:kms",
                                                       SSEKMSKeyId="testkey-1")) == "KMS.KMSInvalidStateException"
            wait_for(lambda hub=hub: len(audit_events(net, hub, "key-destroyed")) >= 2, timeout=30,
                     what=f"both destructions audited at {hub}")

        # The far hub destroyed its own copy of both keys: its keystore no longer holds them.
        def far_keys() -> list[str]:
            listed = kms("list", "--kms-master-key-file", str(master), "--kms-keystore", str(far_copy))
            assert listed.returncode == 0, listed.stderr
            return listed.stdout.split()

        wait_for(lambda: "default/testkey-1" not in far_keys()
                 and not any(k.startswith(f"default/bucket/{doomed}/") for k in far_keys()),
                 timeout=30, what="gui-an's keystore copy shredded")
        assert "default/default" in far_keys()
        shared_keys = kms("list", "--kms-master-key-file", str(master), "--kms-keystore", str(shared)).stdout.split()
        assert "default/testkey-1" not in shared_keys
        assert not any(k.startswith(f"default/bucket/{doomed}/") for k in shared_keys)

        # A restart keeps refusing (the destruction is a control record, not a cache entry).
        net.kill("gui-an")
        net.start("gui-an")
        far = net.s3("gui-an")
        assert code_of(lambda: far.get_object(Bucket=doomed, Key="s3")) == "KMS.KMSInvalidStateException"
        assert far.get_object(Bucket=kept, Key="s3")["Body"].read() == body
    finally:
        net.stop_all()
