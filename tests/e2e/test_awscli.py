"""aws-cli (v1) against the real hub: high-level `aws s3` commands and some `aws s3api` calls."""

from __future__ import annotations

import hashlib
import json
import os
import time

from conftest import require_tool, run_cmd, unique_name

MIB = 1024 * 1024


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def test_mb_cp_large_ls_rm(aws, s3, tmp_path):
    name = unique_name("cli")
    aws("s3", "mb", f"s3://{name}")
    assert name in aws("s3", "ls").stdout

    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(MIB))
    out = aws("s3", "cp", big, f"s3://{name}/dir/big.bin").stdout
    assert "upload:" in out
    head = s3.head_object(Bucket=name, Key="dir/big.bin")
    assert head["ContentLength"] == 100 * MIB
    # aws-cli's default 8 MiB chunks: 13 parts.
    assert head["ETag"].endswith('-13"'), head["ETag"]

    back = tmp_path / "back.bin"
    aws("s3", "cp", f"s3://{name}/dir/big.bin", back)
    assert back.stat().st_size == 100 * MIB
    assert sha256_file(back) == sha256_file(big)

    small = tmp_path / "small.txt"
    small.write_text("hello from aws-cli\n")
    aws("s3", "cp", small, f"s3://{name}/small.txt")
    aws("s3", "cp", small, f"s3://{name}/dir/sub/small.txt")

    top = aws("s3", "ls", f"s3://{name}/").stdout
    assert "PRE dir/" in top and "small.txt" in top
    lines = aws("s3", "ls", "--recursive", f"s3://{name}/").stdout.splitlines()
    listed = sorted(line.split()[-1] for line in lines if line.strip())
    assert listed == ["dir/big.bin", "dir/sub/small.txt", "small.txt"]
    assert any(line.split()[2] == str(100 * MIB) for line in lines if line.endswith("dir/big.bin"))

    # Server-side copy by the CLI.
    aws("s3", "cp", f"s3://{name}/small.txt", f"s3://{name}/copied.txt")
    dl = tmp_path / "copied.txt"
    aws("s3", "cp", f"s3://{name}/copied.txt", dl)
    assert dl.read_text() == "hello from aws-cli\n"

    # rb refuses a non-empty bucket.
    cp = aws("s3", "rb", f"s3://{name}", check=False)
    assert cp.returncode != 0 and "BucketNotEmpty" in cp.stderr, cp.stderr

    out = aws("s3", "rm", "--recursive", f"s3://{name}/").stdout
    assert out.count("delete:") == 4, out
    assert aws("s3", "ls", "--recursive", f"s3://{name}/", check=False).stdout.strip() == ""
    aws("s3", "rb", f"s3://{name}")
    assert name not in aws("s3", "ls").stdout


def test_sync_then_resync_uploads_nothing(aws, s3, bucket, tmp_path):
    src = tmp_path / "src"
    for i in range(200):
        d = src / f"group{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file-{i:03d}.txt").write_bytes(os.urandom(100 + i * 13))
    out = aws("s3", "sync", src, f"s3://{bucket}/tree").stdout
    assert out.count("upload:") == 200, out[-2000:]
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="tree/")
            for o in p.get("Contents", [])]
    assert len(keys) == 200

    out = aws("s3", "sync", src, f"s3://{bucket}/tree").stdout
    assert "upload:" not in out, out

    # A changed file is uploaded again, and only that one.
    changed = src / "group3" / "file-003.txt"
    changed.write_bytes(b"changed contents, different size")
    out = aws("s3", "sync", src, f"s3://{bucket}/tree").stdout
    assert out.count("upload:") == 1 and "group3/file-003.txt" in out, out

    # Down again: identical trees.
    dst = tmp_path / "dst"
    out = aws("s3", "sync", f"s3://{bucket}/tree", dst).stdout
    assert out.count("download:") == 200
    for f in src.rglob("*"):
        if f.is_file():
            assert (dst / f.relative_to(src)).read_bytes() == f.read_bytes()

    # --delete removes what is gone locally.
    changed.unlink()
    out = aws("s3", "sync", "--delete", src, f"s3://{bucket}/tree").stdout
    assert out.count("delete:") == 1, out
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="tree/")
            for o in p.get("Contents", [])]
    assert len(keys) == 199


def test_presign_with_curl(aws, s3, bucket, tmp_path):
    require_tool("curl")
    s3.put_object(Bucket=bucket, Key="shared/report.txt", Body=b"presigned content\n")
    url = aws("s3", "presign", f"s3://{bucket}/shared/report.txt", "--expires-in", "300").stdout.strip()
    assert "X-Amz-Signature=" in url, url
    out = tmp_path / "got"
    cp = run_cmd(["curl", "-sS", "-o", out, "-w", "%{http_code}", url])
    assert cp.stdout == "200", (cp.stdout, out.read_bytes()[:500])
    assert out.read_bytes() == b"presigned content\n"

    # A presigned URL is for GET only: another method with the same URL is refused.
    cp = run_cmd(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", url])
    assert cp.stdout == "403", cp.stdout
    assert s3.head_object(Bucket=bucket, Key="shared/report.txt")["ContentLength"] == 18

    expiring = aws("s3", "presign", f"s3://{bucket}/shared/report.txt", "--expires-in", "1").stdout.strip()
    time.sleep(2.5)
    cp = run_cmd(["curl", "-sS", "-o", out, "-w", "%{http_code}", expiring])
    assert cp.stdout == "403", (cp.stdout, out.read_bytes()[:500])
    assert b"AccessDenied" in out.read_bytes() or b"Expired" in out.read_bytes(), out.read_bytes()[:500]


def test_s3api_versioning(aws, bucket, tmp_path):
    aws("s3api", "put-bucket-versioning", "--bucket", bucket,
        "--versioning-configuration", "Status=Enabled")
    got = json.loads(aws("s3api", "get-bucket-versioning", "--bucket", bucket).stdout)
    assert got["Status"] == "Enabled"

    f = tmp_path / "v.txt"
    ids = []
    for content in ("first", "second"):
        f.write_text(content)
        r = json.loads(aws("s3api", "put-object", "--bucket", bucket, "--key", "v.txt", "--body", f).stdout)
        ids.append(r["VersionId"])
    assert ids[0] != ids[1]

    lv = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket, "--prefix", "v.txt").stdout)
    assert [v["VersionId"] for v in lv["Versions"]] == [ids[1], ids[0]]
    assert [v["IsLatest"] for v in lv["Versions"]] == [True, False]

    out = tmp_path / "old.txt"
    aws("s3api", "get-object", "--bucket", bucket, "--key", "v.txt", "--version-id", ids[0], out)
    assert out.read_text() == "first"

    r = json.loads(aws("s3api", "delete-object", "--bucket", bucket, "--key", "v.txt").stdout)
    assert r["DeleteMarker"] is True
    cp = aws("s3api", "head-object", "--bucket", bucket, "--key", "v.txt", check=False)
    assert cp.returncode != 0 and "404" in cp.stderr
    lv = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket).stdout)
    assert len(lv["Versions"]) == 2 and len(lv["DeleteMarkers"]) == 1


def test_s3api_tagging(aws, bucket, tmp_path):
    aws("s3api", "put-bucket-tagging", "--bucket", bucket,
        "--tagging", json.dumps({"TagSet": [{"Key": "project", "Value": "valley"}]}))
    got = json.loads(aws("s3api", "get-bucket-tagging", "--bucket", bucket).stdout)
    assert got["TagSet"] == [{"Key": "project", "Value": "valley"}]

    f = tmp_path / "t.txt"
    f.write_text("tagged")
    aws("s3api", "put-object", "--bucket", bucket, "--key", "t.txt", "--body", f, "--tagging", "k1=v1&k2=v2")
    got = json.loads(aws("s3api", "get-object-tagging", "--bucket", bucket, "--key", "t.txt").stdout)
    assert sorted((t["Key"], t["Value"]) for t in got["TagSet"]) == [("k1", "v1"), ("k2", "v2")]
    aws("s3api", "put-object-tagging", "--bucket", bucket, "--key", "t.txt",
        "--tagging", json.dumps({"TagSet": [{"Key": "k3", "Value": "v 3"}]}))
    got = json.loads(aws("s3api", "get-object-tagging", "--bucket", bucket, "--key", "t.txt").stdout)
    assert got["TagSet"] == [{"Key": "k3", "Value": "v 3"}]
    aws("s3api", "delete-object-tagging", "--bucket", bucket, "--key", "t.txt")
    got = json.loads(aws("s3api", "get-object-tagging", "--bucket", bucket, "--key", "t.txt").stdout)
    assert got["TagSet"] == []


def test_s3api_head_bucket_missing(aws):
    cp = aws("s3api", "head-bucket", "--bucket", unique_name("missing"), check=False)
    assert cp.returncode != 0 and "404" in cp.stderr, cp.stderr
