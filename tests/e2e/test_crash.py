"""Durability under SIGKILL.

A dedicated hub (its own data directory) takes concurrent writes from several boto3 threads:
small objects, 1-3 MiB objects, a few multipart uploads, some overwrites and deletes. At a
random moment the hub is killed with SIGKILL, restarted on the same data, and checked:

  * every acknowledged write is there with exactly the acknowledged content (sha256),
    every acknowledged delete is gone;
  * a write that was in flight at the kill is either wholly there or wholly absent
    (no partial objects, no mixture);
  * every listed object is readable in full, with the listed size, and nothing is listed that
    was never written.

The run is driven by a seeded RNG: the seed is printed, and VALLEY_CRASH_SEED=N replays the same
choices (thread timing still varies). VALLEY_CRASH_ROUNDS sets the number of kill/restart
rounds (default 10).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading
import time
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from conftest import ValleyServer

MIB = 1024 * 1024
WRITERS = 8
ROUNDS = int(os.environ.get("VALLEY_CRASH_ROUNDS", "10"))
ABSENT = None  # the "object does not exist" state


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@dataclass
class KeyState:
    # Content (sha256) or ABSENT that the key must have if nothing is in doubt.
    committed: str | None = ABSENT
    # Writes/deletes whose outcome is unknown (failed or in flight at the kill): any of them
    # may have taken effect. Kept in issue order; the last one that took effect wins, so any
    # member (or `committed`) is an acceptable final state.
    doubtful: list = field(default_factory=list)
    size: dict = field(default_factory=dict)  # sha -> size, for listing checks

    def allowed(self) -> set:
        return {self.committed, *self.doubtful}


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.keys: dict[str, KeyState] = {}
        self.touched: set[str] = set()
        self.acks = 0
        self.doubts = 0

    def _state(self, key) -> KeyState:
        st = self.keys.get(key)
        if st is None:
            st = self.keys[key] = KeyState()
        return st

    def ack(self, key, digest, size):
        with self.lock:
            st = self._state(key)
            st.committed = digest
            # A later acknowledged write supersedes the doubtful ones issued before it (the
            # same thread issues all writes to one key, in order).
            st.doubtful.clear()
            if digest is not ABSENT:
                st.size[digest] = size
            self.touched.add(key)
            self.acks += 1

    def doubt(self, key, digest, size):
        with self.lock:
            st = self._state(key)
            st.doubtful.append(digest)
            if digest is not ABSENT:
                st.size[digest] = size
            self.touched.add(key)
            self.doubts += 1

    def resolve(self, key, observed):
        """After verification the observed state is the truth for the next round."""
        st = self.keys[key]
        st.committed = observed
        st.doubtful.clear()


def writer(tid: int, rnd: int, seed: int, client, bucket: str, ledger: Ledger,
           owned: list, stop: threading.Event, errors: list):
    rng = random.Random(seed * 1_000_003 + rnd * 101 + tid)
    seq = 0
    while not stop.is_set():
        seq += 1
        r = rng.random()
        if owned and r < 0.06:
            op, key = "delete", rng.choice(owned)
        elif owned and r < 0.16:
            op, key = "put", rng.choice(owned)
        else:
            op, key = "put", f"w{tid}/r{rnd:02d}/{seq:05d}-{rng.randrange(1 << 30):08x}"
        kind = rng.random()
        if op == "delete":
            data = None
        elif kind < 0.5:
            data = rng.randbytes(rng.randint(0, 2048))  # small, inline-sized
        elif kind < 0.95:
            data = rng.randbytes(rng.randint(1 * MIB, 3 * MIB))
        else:
            data = rng.randbytes(5 * MIB + rng.randint(1, MIB))
            op = "multipart"
        digest = ABSENT if data is None else sha(data)
        size = 0 if data is None else len(data)
        try:
            if op == "delete":
                client.delete_object(Bucket=bucket, Key=key)
            elif op == "put":
                resp = client.put_object(Bucket=bucket, Key=key, Body=data)
                if resp["ETag"] != f'"{hashlib.md5(data).hexdigest()}"':
                    errors.append(f"PUT {key}: acknowledged ETag {resp['ETag']} is not the content's MD5")
            else:
                up = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
                p1 = client.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=data[:5 * MIB])
                p2 = client.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=2, Body=data[5 * MIB:])
                client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": [
                    {"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
        except Exception as e:  # noqa: BLE001 - any failure leaves the outcome unknown
            ledger.doubt(key, digest, size)
            if not stop.is_set():
                # The hub was up: a failure here is a real error, not the crash.
                errors.append(f"{op} {key} failed while the hub was up: {e!r}")
            time.sleep(0.02)
            continue
        ledger.ack(key, digest, size)
        if op in ("put", "multipart") and key not in owned:
            owned.append(key)
        elif op == "delete" and key in owned:
            owned.remove(key)


def read_object(client, bucket, key):
    """(sha or ABSENT, length, content-length header)."""
    try:
        resp = client.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response["Error"]["Code"] == "NoSuchKey":
            return ABSENT, 0, 0
        raise
    data = resp["Body"].read()
    return sha(data), len(data), resp["ContentLength"]


def list_all(client, bucket) -> dict:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            assert o["Key"] not in out, f"key {o['Key']!r} listed twice"
            out[o["Key"]] = o["Size"]
    return out


def verify(server, bucket, ledger: Ledger, seed: int, rnd: int, full: bool) -> int:
    client = server.client(read_timeout=60)
    ctx = f"(seed {seed}, round {rnd})"
    listed = list_all(client, bucket)
    phantom = sorted(set(listed) - set(ledger.keys))
    assert not phantom, f"{ctx} listed objects that were never written: {phantom[:10]}"
    to_read = set(ledger.keys) if full else set(ledger.touched)
    checked = 0
    for key in sorted(to_read):
        st = ledger.keys[key]
        observed, length, header_len = read_object(client, bucket, key)
        allowed = st.allowed()
        assert observed in allowed, (
            f"{ctx} {key!r}: content {observed} (len {length}) is none of the acceptable states "
            f"{allowed} (committed {st.committed})")
        if observed is ABSENT:
            assert key not in listed, f"{ctx} {key!r} is listed but GET says NoSuchKey"
        else:
            assert length == header_len == st.size[observed], f"{ctx} {key!r}: length {length}/{header_len}"
            assert key in listed, f"{ctx} {key!r} is readable but not listed"
            assert listed[key] == length, f"{ctx} {key!r}: listed size {listed[key]} != {length}"
        ledger.resolve(key, observed)
        checked += 1
    # Keys not re-read this round: the listing must still agree with what was verified before.
    for key, st in ledger.keys.items():
        if key in to_read:
            continue
        if st.committed is ABSENT:
            assert key not in listed, f"{ctx} deleted key {key!r} came back"
        else:
            assert listed.get(key) == st.size[st.committed], f"{ctx} {key!r} changed or vanished"
    ledger.touched.clear()
    # Incomplete multipart uploads may survive a crash, but listing them must work.
    client.list_multipart_uploads(Bucket=bucket)
    return checked


def test_kill9_durability(tmp_path):
    seed = int(os.environ.get("VALLEY_CRASH_SEED") or random.SystemRandom().randrange(1 << 31))
    print(f"\ncrash test seed: {seed} (replay with VALLEY_CRASH_SEED={seed})")
    rng = random.Random(seed)
    passed = False
    server = ValleyServer(tmp_path / "crash")
    server.start()
    try:
        bucket = "crash-test"
        server.client().create_bucket(Bucket=bucket)
        ledger = Ledger()
        owned = [[] for _ in range(WRITERS)]
        started = time.monotonic()
        for rnd in range(ROUNDS):
            stop = threading.Event()
            errors: list = []
            acks_before = ledger.acks
            # Fresh clients each round (connections to the killed process are dead), made before
            # the clock starts.
            clients = [server.client(connect_timeout=2, read_timeout=30) for _ in range(WRITERS)]
            threads = [threading.Thread(target=writer, daemon=True,
                                        args=(t, rnd, seed, clients[t], bucket, ledger, owned[t], stop, errors))
                       for t in range(WRITERS)]
            for t in threads:
                t.start()
            delay = rng.uniform(0.4, 2.5)
            time.sleep(delay)
            # Writers treat failures after `stop` as caused by the crash; requests already in
            # flight carry on until the kill, microseconds later.
            stop.set()
            server.kill9()
            for t in threads:
                t.join(timeout=60)
                assert not t.is_alive(), f"(seed {seed}) writer thread hung after the kill"
            assert not errors, f"(seed {seed}, round {rnd}) " + "\n".join(errors[:5])
            t0 = time.monotonic()
            server.start()
            restart_s = time.monotonic() - t0
            checked = verify(server, bucket, ledger, seed, rnd, full=(rnd == ROUNDS - 1))
            print(f"round {rnd}: killed after {delay:.2f}s, {ledger.acks - acks_before} acknowledged, "
                  f"restart {restart_s:.2f}s, {checked} keys verified, "
                  f"{time.monotonic() - started:.1f}s")
        total_objects = sum(1 for st in ledger.keys.values() if st.committed is not ABSENT)
        print(f"acknowledged operations: {ledger.acks}, in doubt: {ledger.doubts}, objects: {total_objects}")
        # Not vacuous: the writers got real work acknowledged.
        assert ledger.acks >= ROUNDS * 5, f"(seed {seed}) only {ledger.acks} acknowledged operations"
        # Incomplete uploads may legitimately hold parts; drop them before measuring space.
        client = server.client()
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for u in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
        # A graceful stop after all that still works, and a clean restart sees the same data.
        assert server.stop() == 0, server.log_tail()
        server.start()
        verify(server, bucket, ledger, seed, ROUNDS, full=True)
        # No space leaks: writes cut short by the kills, overwritten and deleted objects leave
        # no blobs behind once the hub has restarted (it collects orphans at start-up).
        live = sum(st.size[st.committed] for st in ledger.keys.values() if st.committed is not ABSENT)
        stored = sum(f.stat().st_size for f in server.data_dir.rglob("*")
                     if f.is_file() and f.name != "meta.redb")
        print(f"live object bytes {live}, bytes on disk outside the metadata store {stored}")
        assert stored <= live * 1.02 + 4 * MIB, (
            f"(seed {seed}) {stored} bytes stored for {live} bytes of live objects: leaked blobs")
        passed = True
    finally:
        server.stop()
    if passed:
        # Gigabytes of random objects: keep the data directory only when the test failed.
        shutil.rmtree(server.data_dir, ignore_errors=True)
