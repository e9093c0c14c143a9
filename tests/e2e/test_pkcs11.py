"""Server-side encryption with the key service in a PKCS#11 token (SoftHSM2): keys made with
`valley kms create` in the token, a hub started with --kms-pkcs11-*, boto3 SSE-KMS and SSE-S3
round trips, no plaintext byte under the data dir and no local keystore, the objects read again
after a restart, and the hub's refusals (a wrong PIN, a master key and a module at once, a PIN
file inside the data dir)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, SECRET_KEY, ValleyServer, make_client, require_tool, run_cmd, unique_name, valley_bin
from network import marker, wait_for

MODULE = os.environ.get("VALLEY_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
LABEL = "valley-e2e"
SO_PIN = "1234"
PIN = "5678"
CHUNK = 64 * 1024


def error_code(call) -> str:
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return "OK"


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.fixture
def token(tmp_path, monkeypatch) -> list[str]:
    """A fresh SoftHSM2 token; SOFTHSM2_CONF (naming it) is in the environment of every hub and
    CLI this test starts. Returns the flags that name it."""
    if not Path(MODULE).is_file():
        pytest.fail(f"the PKCS#11 module {MODULE} is missing: install softhsm2 (scripts/test.sh does)",
                    pytrace=False)
    util = require_tool("softhsm2-util")
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    # Only the token is the key service here.
    for name in ("VALLEY_KMS_MASTER_KEY", "VALLEY_KMS_MASTER_KEY_FILE", "VALLEY_KMS_PKCS11_MODULE",
                 "VALLEY_KMS_PKCS11_PIN"):
        monkeypatch.delenv(name, raising=False)
    run_cmd([util, "--init-token", "--free", "--label", LABEL, "--so-pin", SO_PIN, "--pin", PIN])
    pin_file = tmp_path / "token.pin"
    pin_file.write_text(PIN + "\n")
    return ["--kms-pkcs11-module", MODULE, "--kms-pkcs11-token", LABEL, "--kms-pkcs11-pin-file", str(pin_file)]


def kms(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(valley_bin()), "kms", *args], capture_output=True, text=True, timeout=60)


def serve_once(data: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`valley serve` expected to refuse to start."""
    data.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(valley_bin()), "serve", "--data", str(data), "--listen", "127.0.0.1:0",
                           "--admin-listen", "127.0.0.1:0", *args],
                          env=dict(env or os.environ, VALLEY_ACCESS_KEY=ACCESS_KEY, VALLEY_SECRET_KEY=SECRET_KEY),
                          capture_output=True, text=True, timeout=60)


def test_sse_kms_and_sse_s3_with_keys_in_a_pkcs11_token(tmp_path, token):
    server = ValleyServer(tmp_path / "hub", extra_args=token)
    keys = [*token, "--data", str(server.data_dir)]
    made = kms("create", "--tenant", "default", *keys, "testkey-1")
    assert made.returncode == 0, made.stderr
    assert "created key testkey-1 of tenant default" in made.stdout
    again = kms("create", "--tenant", "default", *keys, "testkey-1")
    assert again.returncode != 0 and "already exists" in again.stderr, again.stderr
    assert kms("list", *keys).stdout.split() == ["default/testkey-1"]

    server.start()
    try:
        s3 = make_client(server.endpoint, ACCESS_KEY, SECRET_KEY)
        bucket = unique_name("pkcs11")
        s3.create_bucket(Bucket=bucket)
        secret_mark, plain_mark = marker(), marker()
        big = secret_mark * ((3 * CHUNK + 1234) // len(secret_mark))
        small = secret_mark * 7
        put = s3.put_object(Bucket=bucket, Key="kms", Body=big, ServerSideEncryption="aws:kms",
                            SSEKMSKeyId="testkey-1")
        assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", "testkey-1")
        put = s3.put_object(Bucket=bucket, Key="s3", Body=small, ServerSideEncryption="AES256")
        assert put["ServerSideEncryption"] == "AES256"
        s3.put_object(Bucket=bucket, Key="plain", Body=plain_mark * 10)
        assert error_code(lambda: s3.put_object(Bucket=bucket, Key="never", Body=b"x",
                                                ServerSideEncryption="aws:kms",
                                                SSEKMSKeyId="never-made")) == "KMS.NotFoundException"

        got = s3.get_object(Bucket=bucket, Key="kms")
        assert got["Body"].read() == big
        assert (got["ServerSideEncryption"], got["SSEKMSKeyId"]) == ("aws:kms", "testkey-1")
        got = s3.get_object(Bucket=bucket, Key="s3")
        assert got["Body"].read() == small and got["ServerSideEncryption"] == "AES256"
        part = s3.get_object(Bucket=bucket, Key="kms", Range=f"bytes={CHUNK - 5}-{CHUNK + 5}")
        assert part["Body"].read() == big[CHUNK - 5:CHUNK + 6]

        # The scan finds the unencrypted object's bytes, and none of the encrypted ones'; the
        # keys are in the token, so there is no local keystore.
        assert files_containing(server.data_dir, plain_mark), "the scan sees stored plaintext"
        assert files_containing(server.data_dir, secret_mark) == []
        assert not (server.data_dir / "kms" / "keystore.json").exists()

        # SSE-S3's default key was made in the token on first use, and a key made by the CLI
        # while the hub runs is usable at once (another process on the same token).
        made = kms("create", "--tenant", "default", *keys, "testkey-2")
        assert made.returncode == 0, made.stderr
        listed = kms("list", *keys).stdout.split()
        bucket_keys = [k for k in listed if k.startswith(f"default/bucket/{bucket}/")]
        assert len(bucket_keys) == 1, listed
        assert sorted(set(listed) - set(bucket_keys)) == ["default/default", "default/testkey-1", "default/testkey-2"]
        s3.put_object(Bucket=bucket, Key="kms2", Body=small, ServerSideEncryption="aws:kms", SSEKMSKeyId="testkey-2")
        assert s3.get_object(Bucket=bucket, Key="kms2")["Body"].read() == small

        # Survives a restart: the keys are in the token, found again by the hub.
        server.restart()
        s3 = make_client(server.endpoint, ACCESS_KEY, SECRET_KEY)
        assert s3.get_object(Bucket=bucket, Key="kms")["Body"].read() == big
        assert s3.get_object(Bucket=bucket, Key="s3")["Body"].read() == small
        assert s3.get_object(Bucket=bucket, Key="kms2")["Body"].read() == small
        assert files_containing(server.data_dir, secret_mark) == []

        # Crypto-shredding destroys the key object in the token itself.
        env = dict(os.environ, VALLEY_ACCESS_KEY=ACCESS_KEY, VALLEY_SECRET_KEY=SECRET_KEY)
        shred = subprocess.run([str(valley_bin()), "--admin", server.admin_endpoint, "key", "destroy", "testkey-2"],
                               env=env, capture_output=True, text=True, timeout=60)
        assert shred.returncode == 0, shred.stderr
        with pytest.raises(ClientError) as refused:
            s3.get_object(Bucket=bucket, Key="kms2")
        assert refused.value.response["Error"]["Code"] == "KMS.KMSInvalidStateException"
        assert s3.get_object(Bucket=bucket, Key="kms")["Body"].read() == big
        wait_for(lambda: "default/testkey-2" not in kms("list", *keys).stdout.split(), timeout=30,
                 what="testkey-2 gone from the token")
    finally:
        server.stop()


def test_the_hub_refuses_a_wrong_pin_two_key_services_and_a_pin_inside_the_data_dir(tmp_path, token):
    module_and_token = token[:4]
    data = tmp_path / "refused" / "data"

    wrong = serve_once(data, *module_and_token, env=dict(os.environ, VALLEY_KMS_PKCS11_PIN="0000"))
    assert wrong.returncode != 0 and "PIN is wrong" in wrong.stderr and LABEL in wrong.stderr, wrong.stderr

    unknown = serve_once(data, "--kms-pkcs11-module", MODULE, "--kms-pkcs11-token", "no-such-token",
                         env=dict(os.environ, VALLEY_KMS_PKCS11_PIN=PIN))
    assert unknown.returncode != 0 and "no-such-token" in unknown.stderr and LABEL in unknown.stderr, \
        unknown.stderr

    master = tmp_path / "master.key"
    master.write_text("ab" * 32)
    both = serve_once(data, *token, "--kms-master-key-file", str(master))
    assert both.returncode != 0, both.stderr
    assert "--kms-master-key-file" in both.stderr and "--kms-pkcs11-module" in both.stderr, both.stderr

    inside = data / "token.pin"
    inside.write_text(PIN)
    pin_inside = serve_once(data, *module_and_token, "--kms-pkcs11-pin-file", str(inside))
    assert pin_inside.returncode != 0 and "inside the data dir" in pin_inside.stderr, pin_inside.stderr

    # The PIN from the environment works as the file does.
    listed = subprocess.run([str(valley_bin()), "kms", "list", *module_and_token, "--data", str(data)],
                            env=dict(os.environ, VALLEY_KMS_PKCS11_PIN=PIN), capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0 and listed.stdout == "", listed.stderr
