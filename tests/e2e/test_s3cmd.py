"""s3cmd (path style, SigV4, plain HTTP) against the real hub."""

from __future__ import annotations

import hashlib
import os

import pytest

from conftest import REGION, require_tool, run_cmd, unique_name

MIB = 1024 * 1024


@pytest.fixture
def s3cmd(valley, tmp_path):
    exe = require_tool("s3cmd")
    conf = tmp_path / "s3cfg"
    hostport = f"127.0.0.1:{valley.port}"
    conf.write_text(
        "[default]\n"
        f"access_key = {valley.access_key}\n"
        f"secret_key = {valley.secret_key}\n"
        f"host_base = {hostport}\n"
        f"host_bucket = {hostport}\n"
        f"bucket_location = {REGION}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        "check_ssl_certificate = False\n"
        "multipart_chunk_size_mb = 5\n"
        "progress_meter = False\n"
    )

    def run(*args, check=True):
        return run_cmd([exe, "-c", conf, *args], check=check, timeout=300)

    return run


def test_s3cmd_mb_put_ls_get_del_rb(s3cmd, s3, tmp_path):
    name = unique_name("s3cmd")
    s3cmd("mb", f"s3://{name}")
    assert f"s3://{name}" in s3cmd("ls").stdout

    small = tmp_path / "hello.txt"
    small.write_text("hello from s3cmd\n")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MIB + 17))  # multipart with 5 MiB chunks
    s3cmd("put", small, f"s3://{name}/docs/hello.txt")
    s3cmd("put", big, f"s3://{name}/big.bin")
    assert s3.head_object(Bucket=name, Key="big.bin")["ETag"].endswith('-3"')

    out = s3cmd("ls", f"s3://{name}/").stdout
    assert "DIR" in out and f"s3://{name}/docs/" in out and f"s3://{name}/big.bin" in out, out
    out = s3cmd("ls", "--recursive", f"s3://{name}").stdout
    assert f"s3://{name}/docs/hello.txt" in out and str(12 * MIB + 17) in out, out

    got_small = tmp_path / "got.txt"
    got_big = tmp_path / "got.bin"
    s3cmd("get", f"s3://{name}/docs/hello.txt", got_small)
    s3cmd("get", f"s3://{name}/big.bin", got_big)
    assert got_small.read_text() == "hello from s3cmd\n"
    assert hashlib.sha256(got_big.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()

    info = s3cmd("info", f"s3://{name}/docs/hello.txt").stdout
    assert hashlib.md5(b"hello from s3cmd\n").hexdigest() in info, info

    # rb of a non-empty bucket fails.
    cp = s3cmd("rb", f"s3://{name}", check=False)
    assert cp.returncode != 0
    s3cmd("del", f"s3://{name}/docs/hello.txt")
    s3cmd("del", f"s3://{name}/big.bin")
    assert s3cmd("ls", "--recursive", f"s3://{name}").stdout.strip() == ""
    s3cmd("rb", f"s3://{name}")
    assert f"s3://{name}" not in s3cmd("ls").stdout


def test_s3cmd_sync(s3cmd, bucket, tmp_path):
    src = tmp_path / "tree"
    for i in range(10):
        (src / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 3}" / f"f{i}.txt").write_text(f"file {i}\n")
    s3cmd("sync", f"{src}/", f"s3://{bucket}/tree/")
    out = s3cmd("ls", "--recursive", f"s3://{bucket}/tree/").stdout
    assert len([ln for ln in out.splitlines() if ln.strip()]) == 10, out
    # Second sync: nothing to do.
    out = s3cmd("sync", f"{src}/", f"s3://{bucket}/tree/").stdout
    assert "upload:" not in out, out
    dst = tmp_path / "back"
    s3cmd("sync", f"s3://{bucket}/tree/", f"{dst}/")
    for i in range(10):
        assert (dst / f"d{i % 3}" / f"f{i}.txt").read_text() == f"file {i}\n"
