"""rclone (S3 backend, provider Other) against the real hub: copy, sync, check with hashes."""

from __future__ import annotations

import os
import random

import pytest

from conftest import REGION, require_tool, run_cmd

MIB = 1024 * 1024


@pytest.fixture
def rclone(valley, tmp_path):
    exe = require_tool("rclone")
    conf = tmp_path / "rclone.conf"
    conf.write_text(
        "[valley]\n"
        "type = s3\n"
        "provider = Other\n"
        "env_auth = false\n"
        f"access_key_id = {valley.access_key}\n"
        f"secret_access_key = {valley.secret_key}\n"
        f"endpoint = {valley.endpoint}\n"
        f"region = {REGION}\n"
        "force_path_style = true\n"
        # Small cutoff and chunks so the big file goes up as a multipart upload.
        "upload_cutoff = 16Mi\n"
        "chunk_size = 16Mi\n"
    )

    def run(*args, check=True, timeout=600):
        return run_cmd([exe, "--config", conf, "--retries", "1", "--low-level-retries", "1", *args],
                       check=check, timeout=timeout)

    return run


def make_tree(root, rng: random.Random):
    sizes = [0, 1, 100, 4096, 65536, 1 * MIB, 5 * MIB + 3, 17 * MIB]
    files = {}
    for i in range(48):
        size = sizes[i % len(sizes)] if i < 16 else rng.randint(1, 300_000)
        rel = f"d{i % 4}/sub{i % 3}/file {i:02d}.bin" if i % 5 else f"top-{i:02d}.bin"
        files[rel] = size
    files["big/huge.bin"] = 70 * MIB
    files["unicode/ünï cødé.txt"] = 1234
    for rel, size in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            left = size
            while left:
                n = min(left, 4 * MIB)
                f.write(os.urandom(n))
                left -= n
    return files


def test_rclone_copy_sync_check(rclone, s3, bucket, tmp_path):
    rng = random.Random(1234)
    src = tmp_path / "src"
    files = make_tree(src, rng)
    remote = f"valley:{bucket}/data"

    rclone("copy", src, remote)
    listed = {o["Key"][len("data/"):]: o for p in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="data/") for o in p.get("Contents", [])}
    assert set(listed) == set(files)
    assert all(listed[k]["Size"] == files[k] for k in files)
    # The 70 MiB file went up as a multipart upload.
    assert listed["big/huge.bin"]["ETag"].endswith('-5"'), listed["big/huge.bin"]["ETag"]

    # check compares sizes and MD5 hashes (no --size-only): for multipart objects rclone uses
    # the MD5 it stored in the object's metadata, for the others the ETag.
    cp = rclone("check", src, remote)
    assert cp.returncode == 0
    assert "0 differences found" in cp.stderr, cp.stderr
    assert "hashes could not be checked" not in cp.stderr or "0 hashes could not be checked" in cp.stderr, cp.stderr

    # Modify a file without changing its size: only the hash can tell.
    victim = src / "d1" / "sub1" / "file 01.bin"
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    cp = rclone("check", src, remote, check=False)
    assert cp.returncode != 0, cp.stderr
    assert "1 differences found" in cp.stderr, cp.stderr
    assert "file 01.bin" in cp.stderr

    # Add and remove files locally; sync makes the remote match again.
    (src / "new-file.txt").write_text("new\n")
    (src / "top-00.bin").unlink()
    rclone("sync", src, remote)
    cp = rclone("check", src, remote)
    assert "0 differences found" in cp.stderr, cp.stderr
    keys = {o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="data/")
            for o in p.get("Contents", [])}
    assert "data/new-file.txt" in keys and "data/top-00.bin" not in keys

    # And back down: byte-identical tree.
    dst = tmp_path / "dst"
    rclone("copy", remote, dst)
    cp = rclone("check", src, dst)
    assert "0 differences found" in cp.stderr, cp.stderr
    # A second sync transfers nothing.
    cp = rclone("sync", "-v", src, remote)
    assert "Copied" not in cp.stderr, cp.stderr


def test_rclone_lsjson_and_delete(rclone, bucket, tmp_path):
    src = tmp_path / "s"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}.txt").write_text(f"content {i}\n")
    rclone("copy", src, f"valley:{bucket}/x")
    import json
    entries = json.loads(rclone("lsjson", "-R", "--hash", f"valley:{bucket}").stdout)
    files = {e["Path"]: e for e in entries if not e["IsDir"]}
    assert set(files) == {f"x/f{i}.txt" for i in range(5)}
    import hashlib
    for i in range(5):
        assert files[f"x/f{i}.txt"]["Hashes"]["md5"] == hashlib.md5(f"content {i}\n".encode()).hexdigest()
    rclone("delete", f"valley:{bucket}/x", "--include", "f[0-2].txt")
    entries = json.loads(rclone("lsjson", "-R", f"valley:{bucket}").stdout)
    assert sorted(e["Path"] for e in entries if not e["IsDir"]) == ["x/f3.txt", "x/f4.txt"]
