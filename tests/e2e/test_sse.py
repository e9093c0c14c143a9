"""Server-side encryption (issue 13: SSE-S3, SSE-KMS and SSE-C of PUTs, multipart uploads and
copies, bucket default encryption): boto3 round trips with ranges, no plaintext byte of a
marked object anywhere under the data dir, a tampered chunk read as an error and never as other
bytes, the master key kept apart, and encrypted objects replicated as ciphertext and read at
the other hub."""
from __future__ import annotations

import os
import secrets
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import REGION, ACCESS_KEY, SECRET_KEY, ValleyServer, aws_cli_path, make_client, unique_name, valley_bin
from network import Network, marker, wait_for

CHUNK = 64 * 1024
TAG = 16


def error_code(call) -> str:
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return "OK"


def stored_len(n: int) -> int:
    return n + max(1, -(-n // CHUNK)) * TAG


def files_containing(root, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.fixture(scope="module")
def master_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("kms") / "master.key"
    path.write_text(secrets.token_hex(32))
    return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory, master_key):
    server = ValleyServer(tmp_path_factory.mktemp("sse-hub"), extra_args=["--kms-master-key-file", str(master_key)])
    server.start()
    yield server
    server.stop()


def body_of(mark: bytes, n: int) -> bytes:
    return (mark + b"|") * (n // (len(mark) + 1)) + b"x" * (n % (len(mark) + 1))


def test_sse_s3_round_trips_ranges_and_leaves_no_plaintext_on_disk(hub):
    s3 = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    bucket = unique_name("sse")
    s3.create_bucket(Bucket=bucket)
    secret_mark, plain_mark = marker(), marker()
    big = body_of(secret_mark, 3 * CHUNK + 1234)
    small = body_of(secret_mark, 300)
    put = s3.put_object(Bucket=bucket, Key="big", Body=big, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    s3.put_object(Bucket=bucket, Key="small", Body=small, ServerSideEncryption="AES256")
    s3.put_object(Bucket=bucket, Key="plain", Body=plain_mark * 10)

    got = s3.get_object(Bucket=bucket, Key="big")
    assert got["ServerSideEncryption"] == "AES256"
    assert got["Body"].read() == big
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == small
    assert s3.head_object(Bucket=bucket, Key="big")["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="big")["ContentLength"] == len(big)
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="plain")
    for start, end in [(0, 0), (5, 17), (CHUNK - 1, CHUNK), (CHUNK - 3, 2 * CHUNK + 5), (len(big) - 10, len(big) - 1)]:
        part = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={start}-{end}")
        assert part["Body"].read() == big[start:end + 1], (start, end)
    assert s3.get_object(Bucket=bucket, Key="big", Range="bytes=-100")["Body"].read() == big[-100:]
    listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed == {"big": len(big), "small": len(small), "plain": len(plain_mark) * 10}

    # The scan finds the unencrypted object's bytes, and none of the encrypted ones'.
    assert files_containing(hub.data_dir, plain_mark), "the scan sees stored plaintext"
    assert files_containing(hub.data_dir, secret_mark) == []

    # A copy opens its source and seals (or not) as the copy request asks.
    s3.copy_object(Bucket=bucket, Key="copy-plain", CopySource={"Bucket": bucket, "Key": "big"})
    assert s3.get_object(Bucket=bucket, Key="copy-plain")["Body"].read() == big
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="copy-plain")
    s3.copy_object(Bucket=bucket, Key="copy-sealed", CopySource={"Bucket": bucket, "Key": "plain"},
                   ServerSideEncryption="AES256")
    assert s3.get_object(Bucket=bucket, Key="copy-sealed")["Body"].read() == plain_mark * 10
    # Sealed in place: the same key copied onto itself with encryption is legal (S3).
    s3.copy_object(Bucket=bucket, Key="plain", CopySource={"Bucket": bucket, "Key": "plain"},
                   ServerSideEncryption="AES256")
    assert s3.head_object(Bucket=bucket, Key="plain")["ServerSideEncryption"] == "AES256"

    # Survives a restart with the same master key.
    hub.restart()
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == big


def test_sse_requests_that_cannot_be_honoured_are_refused_and_store_nothing(hub):
    s3 = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    bucket = unique_name("sse-no")
    s3.create_bucket(Bucket=bucket)
    assert error_code(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms",
                                            SSEKMSKeyId="never-made")) == "KMS.NotFoundException"
    assert error_code(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", SSECustomerAlgorithm="AES256",
                                            SSECustomerKey="k" * 32,
                                            SSECustomerKeyMD5="AAAAAAAAAAAAAAAAAAAAAA==")) == "InvalidArgument"
    assert error_code(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", SSECustomerAlgorithm="AES128",
                                            SSECustomerKey=os.urandom(32))) == "InvalidArgument"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    # Server-held and customer keys at once: a conflict (S3's InvalidArgument), checked first.
    both = {"x-amz-server-side-encryption": "AES256", "x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": "pO3upElrwuEXSoFwCfnZPdSsmt/xWeFa0N9KgDijwVs=",
            "x-amz-server-side-encryption-customer-key-md5": "DWygnHRtgiJ77HCm+1rvHw=="}
    conflict = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    conflict.meta.events.register("before-call.s3.PutObject",
                                  lambda **kw: kw["params"]["headers"].update(both))
    assert error_code(lambda: conflict.put_object(Bucket=bucket, Key="k", Body=b"x")) == "InvalidArgument"
    # A read does not name server-held encryption: 400, as S3.
    s3.put_object(Bucket=bucket, Key="sealed", Body=b"x", ServerSideEncryption="AES256")
    reader = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    for op in ("GetObject", "HeadObject"):
        reader.meta.events.register(f"before-call.s3.{op}", lambda **kw: kw["params"]["headers"].update(
            {"x-amz-server-side-encryption": "AES256"}))
    for call in (lambda: reader.get_object(Bucket=bucket, Key="sealed"),
                 lambda: reader.head_object(Bucket=bucket, Key="sealed")):
        try:
            call()
            raise AssertionError("a read naming SSE was served")
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_tampered_chunk_is_an_error_never_other_bytes(hub):
    s3 = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    bucket = unique_name("sse-tamper")
    s3.create_bucket(Bucket=bucket)
    # An odd length, so that its stored file is told apart by size.
    body = os.urandom(2 * CHUNK + 4321)
    s3.put_object(Bucket=bucket, Key="k", Body=body, ServerSideEncryption="AES256")
    want = stored_len(len(body))
    blobs = [p for p in hub.data_dir.rglob("*") if p.is_file() and p.stat().st_size == want]
    assert len(blobs) == 1, blobs
    raw = bytearray(blobs[0].read_bytes())
    raw[CHUNK + TAG + 100] ^= 0x01  # inside the second chunk
    blobs[0].write_bytes(bytes(raw))
    got = b""
    with pytest.raises(Exception):
        stream = s3.get_object(Bucket=bucket, Key="k")["Body"]
        for piece in stream.iter_chunks(4096):
            got += piece
    assert body.startswith(got) and len(got) < len(body), "only true bytes, and not all of them"
    # A range inside the untouched first chunk still reads.
    assert s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-999")["Body"].read() == body[:1000]


def test_the_master_key_is_kept_apart_and_a_wrong_one_refused(tmp_path, master_key):
    server = ValleyServer(tmp_path / "apart")
    inside = server.data_dir / "master.key"
    server.data_dir.mkdir(parents=True)
    inside.write_text(secrets.token_hex(32))
    run = subprocess.run([str(valley_bin()), "serve", "--data", str(server.data_dir), "--listen", "127.0.0.1:0",
                          "--admin-listen", "127.0.0.1:0", "--kms-master-key-file", str(inside)],
                         env=dict(os.environ, VALLEY_ACCESS_KEY=ACCESS_KEY, VALLEY_SECRET_KEY=SECRET_KEY),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "inside the data dir" in run.stderr, run.stderr

    # A keystore made under one master key is not opened with another: the hub says so.
    server = ValleyServer(tmp_path / "wrong", extra_args=["--kms-master-key-file", str(master_key)])
    server.start()
    s3 = make_client(server.endpoint, ACCESS_KEY, SECRET_KEY)
    s3.create_bucket(Bucket="wrong-key")
    s3.put_object(Bucket="wrong-key", Key="k", Body=b"sealed", ServerSideEncryption="AES256")
    server.stop()
    other = tmp_path / "other.key"
    other.write_text(secrets.token_hex(32))
    run = subprocess.run([str(valley_bin()), "serve", "--data", str(server.data_dir), "--listen", "127.0.0.1:0",
                          "--admin-listen", "127.0.0.1:0", "--kms-master-key-file", str(other)],
                         env=dict(os.environ, VALLEY_ACCESS_KEY=ACCESS_KEY, VALLEY_SECRET_KEY=SECRET_KEY),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "does not open keystore" in run.stderr, run.stderr

    # Without a key service, an encrypted object is refused with a clear error, not served as
    # ciphertext, and encrypted writes are refused.
    server.extra_args = []
    server.start()
    try:
        assert error_code(lambda: s3.get_object(Bucket="wrong-key", Key="k")) == "InvalidRequest"
        assert error_code(lambda: s3.put_object(Bucket="wrong-key", Key="k2", Body=b"x",
                                                ServerSideEncryption="AES256")) == "NotImplemented"
    finally:
        server.stop()


def test_encrypted_objects_replicate_as_ciphertext_and_read_at_the_other_hub(tmp_path, master_key):
    hubs = [("zhangjiakou", "CN", "east", "north-china-grid"), ("gui-an", "CN", "west", "southern-grid")]
    keystore = tmp_path / "shared-keystore.json"
    net = Network(tmp_path, hubs=hubs, serve_args=("--kms-master-key-file", str(master_key),
                                                   "--kms-keystore", str(keystore)))
    net.start_all()
    try:
        bucket = unique_name("sse-net")
        a, b = net.s3("zhangjiakou"), net.s3("gui-an")
        a.create_bucket(Bucket=bucket)
        net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "2")
        mark = marker()
        small, big = body_of(mark, 5000), body_of(mark, 3 * 1024 * 1024 + 7)
        a.put_object(Bucket=bucket, Key="small", Body=small, ServerSideEncryption="AES256")
        a.put_object(Bucket=bucket, Key="big", Body=big, ServerSideEncryption="AES256")
        parts = body_of(mark, 2 * 5 * 1024 * 1024 + 3)
        multipart(a, bucket, "parts", parts, 5 * 1024 * 1024, create={"ServerSideEncryption": "AES256"})
        wait_for(lambda: net.holdings("gui-an", bucket).get("gui-an", 0) == 3, timeout=90,
                 what="the three objects copied to gui-an")
        for hub in ("zhangjiakou", "gui-an"):
            assert net.bytes_containing(hub, mark) == 0, f"plaintext at {hub}"
        got = b.get_object(Bucket=bucket, Key="big")
        assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == big
        assert b.get_object(Bucket=bucket, Key="small")["Body"].read() == small
        assert b.get_object(Bucket=bucket, Key="parts")["Body"].read() == parts
        assert b.get_object(Bucket=bucket, Key="big", Range="bytes=1000000-1000099")["Body"].read() \
            == big[1000000:1000100]
    finally:
        net.stop_all()


def kms(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(valley_bin()), "kms", *args], capture_output=True, text=True, timeout=60)


def test_kms_keys_and_bucket_default_encryption(hub, master_key):
    s3 = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    bucket = unique_name("sse-default")
    s3.create_bucket(Bucket=bucket)
    keystore = ["--kms-master-key-file", str(master_key), "--data", str(hub.data_dir)]
    made = kms("create", *keystore, "testkey-1")
    assert made.returncode == 0, made.stderr
    again = kms("create", *keystore, "testkey-1")
    assert again.returncode != 0 and "already exists" in again.stderr
    no_master = kms("list", "--data", str(hub.data_dir))
    assert no_master.returncode != 0 and "no master key" in no_master.stderr

    # SSE-KMS under the key just made (the running hub sees it without a restart).
    put = s3.put_object(Bucket=bucket, Key="kms", Body=b"under testkey-1", ServerSideEncryption="aws:kms",
                        SSEKMSKeyId="testkey-1")
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", "testkey-1")
    got = s3.get_object(Bucket=bucket, Key="kms")
    assert got["Body"].read() == b"under testkey-1" and got["SSEKMSKeyId"] == "testkey-1"
    assert "default/testkey-1" in kms("list", *keystore).stdout.split()

    assert error_code(lambda: s3.get_bucket_encryption(Bucket=bucket)) == \
        "ServerSideEncryptionConfigurationNotFoundError"
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    mark = marker()
    s3.put_object(Bucket=bucket, Key="by-default", Body=mark * 100)
    assert s3.head_object(Bucket=bucket, Key="by-default")["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="by-default")["Body"].read() == mark * 100
    assert files_containing(hub.data_dir, mark) == []
    # A multipart upload follows the default too (aws-cli splits large files into parts).
    big = body_of(mark, 12 * 1024 * 1024 + 5)
    (hub.workdir / "big.bin").write_bytes(big)
    from boto3.s3.transfer import TransferConfig
    s3.upload_file(str(hub.workdir / "big.bin"), bucket, "multi",
                   Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
    head = s3.head_object(Bucket=bucket, Key="multi")
    assert head["ServerSideEncryption"] == "AES256" and head["ContentLength"] == len(big)
    assert head["ETag"].strip('"').endswith("-3")
    assert s3.get_object(Bucket=bucket, Key="multi")["Body"].read() == big
    assert files_containing(hub.data_dir, mark) == []

    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "testkey-1"}}]})
    s3.put_object(Bucket=bucket, Key="by-kms-default", Body=b"k")
    head = s3.head_object(Bucket=bucket, Key="by-kms-default")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", "testkey-1")

    s3.delete_bucket_encryption(Bucket=bucket)
    assert error_code(lambda: s3.get_bucket_encryption(Bucket=bucket)) == \
        "ServerSideEncryptionConfigurationNotFoundError"
    s3.put_object(Bucket=bucket, Key="plain-again", Body=b"p")
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="plain-again")
    assert error_code(lambda: s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES128"}}]})) == "InvalidArgument"


def test_sse_c_opens_only_with_the_customers_key(hub):
    s3 = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    bucket = unique_name("sse-c")
    s3.create_bucket(Bucket=bucket)
    key_a, key_b = os.urandom(32), os.urandom(32)
    mark = marker()
    body = body_of(mark, CHUNK + 999)
    put = s3.put_object(Bucket=bucket, Key="c", Body=body, SSECustomerAlgorithm="AES256", SSECustomerKey=key_a)
    assert put["SSECustomerAlgorithm"] == "AES256" and "ServerSideEncryption" not in put
    with_a = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key_a}
    got = s3.get_object(Bucket=bucket, Key="c", **with_a)
    assert got["Body"].read() == body and got["SSECustomerKeyMD5"] == put["SSECustomerKeyMD5"]
    assert s3.get_object(Bucket=bucket, Key="c", Range="bytes=65530-65545", **with_a)["Body"].read() == body[65530:65546]
    assert s3.head_object(Bucket=bucket, Key="c", **with_a)["ContentLength"] == len(body)
    for call in (lambda: s3.get_object(Bucket=bucket, Key="c"),
                 lambda: s3.head_object(Bucket=bucket, Key="c"),
                 lambda: s3.get_object(Bucket=bucket, Key="c", SSECustomerAlgorithm="AES256", SSECustomerKey=key_b)):
        try:
            call()
            raise AssertionError("read without the right key")
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert files_containing(hub.data_dir, mark) == []
    # Copied out under the customer's key into SSE-S3, and back under another customer key.
    s3.copy_object(Bucket=bucket, Key="s3", CopySource={"Bucket": bucket, "Key": "c"},
                   CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key_a,
                   ServerSideEncryption="AES256")
    assert s3.get_object(Bucket=bucket, Key="s3")["Body"].read() == body
    s3.copy_object(Bucket=bucket, Key="b", CopySource={"Bucket": bucket, "Key": "s3"},
                   SSECustomerAlgorithm="AES256", SSECustomerKey=key_b)
    assert s3.get_object(Bucket=bucket, Key="b", SSECustomerAlgorithm="AES256",
                         SSECustomerKey=key_b)["Body"].read() == body
    assert error_code(lambda: s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "c"})) \
        == "InvalidRequest"


def multipart(s3, bucket, key, body, part, create=None, each=None):
    """Uploads `body` in parts of `part` bytes; `create` and `each` are extra arguments for the
    create call and for every part."""
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **(create or {}))
    parts = []
    for number, at in enumerate(range(0, len(body), part), start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=number,
                           Body=body[at:at + part], **(each or {}))
        parts.append({"PartNumber": number, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts}, **(each or {}))
    return up


def test_multipart_uploads_are_sealed_part_by_part(hub, master_key):
    s3 = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    bucket = unique_name("sse-mp")
    s3.create_bucket(Bucket=bucket)
    mark = marker()
    part = 5 * 1024 * 1024
    body = body_of(mark, 2 * part + 70_001)
    up = multipart(s3, bucket, "s3", body, part, create={"ServerSideEncryption": "AES256"})
    assert up["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="s3")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == body
    # Ranges inside a part, across a part boundary, and a whole part by number.
    for start, end in [(10, 20), (part - 100, part + 100), (2 * part - 1, 2 * part + 70_000)]:
        assert s3.get_object(Bucket=bucket, Key="s3", Range=f"bytes={start}-{end}")["Body"].read() \
            == body[start:end + 1], (start, end)
    assert s3.get_object(Bucket=bucket, Key="s3", PartNumber=2)["Body"].read() == body[part:2 * part]

    key = os.urandom(32)
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    multipart(s3, bucket, "c", body, part, create=sse_c, each=sse_c)
    assert s3.get_object(Bucket=bucket, Key="c", **sse_c)["Body"].read() == body
    assert error_code(lambda: s3.get_object(Bucket=bucket, Key="c")) == "InvalidRequest"
    # A part, or the completion, without the upload's key or with another, is refused.
    up = s3.create_multipart_upload(Bucket=bucket, Key="c2", **sse_c)
    assert error_code(lambda: s3.upload_part(Bucket=bucket, Key="c2", UploadId=up["UploadId"], PartNumber=1,
                                             Body=b"x")) == "InvalidRequest"
    assert error_code(lambda: s3.upload_part(Bucket=bucket, Key="c2", UploadId=up["UploadId"], PartNumber=1,
                                             Body=b"x", SSECustomerAlgorithm="AES256",
                                             SSECustomerKey=os.urandom(32))) == "InvalidRequest"
    r = s3.upload_part(Bucket=bucket, Key="c2", UploadId=up["UploadId"], PartNumber=1, Body=b"x", **sse_c)
    done = {"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]}
    assert error_code(lambda: s3.complete_multipart_upload(Bucket=bucket, Key="c2", UploadId=up["UploadId"],
                                                           MultipartUpload=done)) == "InvalidRequest"
    s3.complete_multipart_upload(Bucket=bucket, Key="c2", UploadId=up["UploadId"], MultipartUpload=done, **sse_c)
    # A part copied from a sealed object into a sealed upload.
    up = s3.create_multipart_upload(Bucket=bucket, Key="copied", ServerSideEncryption="AES256")
    r = s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=up["UploadId"], PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "c"}, CopySourceRange=f"bytes=0-{part - 1}",
                            CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key)
    r2 = s3.upload_part(Bucket=bucket, Key="copied", UploadId=up["UploadId"], PartNumber=2, Body=b"tail")
    s3.complete_multipart_upload(Bucket=bucket, Key="copied", UploadId=up["UploadId"], MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": r2["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="copied")["Body"].read() == body[:part] + b"tail"
    assert files_containing(hub.data_dir, mark) == []


def aws_env_of(hub, tmp_path) -> dict:
    """The aws CLI's environment: the test credentials and no user configuration."""
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    signature_version = s3v4\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=hub.access_key, AWS_SECRET_ACCESS_KEY=hub.secret_key, AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),
               AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="", AWS_MAX_ATTEMPTS="1")
    return env


def aws_cmd_prefix(hub) -> list[str]:
    return [aws_cli_path(), "--endpoint-url", hub.endpoint]


def subprocess_json(text: str) -> dict:
    import json
    return json.loads(text)


def aws_cli(hub, tmp_path):
    """`aws --endpoint-url HUB ARGS`, checked; returns its output."""
    env = aws_env_of(hub, tmp_path)

    def run(*args):
        done = subprocess.run([*aws_cmd_prefix(hub), *map(str, args)], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"aws {' '.join(map(str, args))}: {done.stderr[-2000:]}"
        return done.stdout

    return run


def test_aws_cli_sse_kms_and_sse_c_round_trips_multipart_ranges_and_copies_between_keys(hub, master_key, tmp_path):
    kms("create", "--kms-master-key-file", str(master_key), "--data", str(hub.data_dir), "cli-key")
    aws = aws_cli(hub, tmp_path)
    bucket = unique_name("sse-cli")
    aws("s3", "mb", f"s3://{bucket}")
    mark = marker()
    # 20 MiB: aws-cli uploads it in 8 MiB parts (multipart), and copies it with UploadPartCopy.
    big = tmp_path / "big.bin"
    big.write_bytes(body_of(mark, 20 * 1024 * 1024 + 5))
    key_a, key_b = tmp_path / "key-a", tmp_path / "key-b"
    key_a.write_bytes(secrets.token_bytes(32))
    key_b.write_bytes(secrets.token_bytes(32))

    # SSE-KMS, multipart upload and download.
    aws("s3", "cp", big, f"s3://{bucket}/kms.bin", "--sse", "aws:kms", "--sse-kms-key-id", "cli-key")
    head = subprocess_json(aws("s3api", "head-object", "--bucket", bucket, "--key", "kms.bin"))
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == "cli-key", head
    assert head["ETag"].endswith('-3"'), head["ETag"]
    back = tmp_path / "kms-back.bin"
    aws("s3", "cp", f"s3://{bucket}/kms.bin", back)
    assert back.read_bytes() == big.read_bytes()

    # SSE-C, multipart upload, a ranged GET, and a copy from key A to key B.
    aws("s3", "cp", big, f"s3://{bucket}/c.bin", "--sse-c", "AES256", "--sse-c-key", f"fileb://{key_a}")
    ranged = tmp_path / "ranged.bin"
    aws("s3api", "get-object", "--bucket", bucket, "--key", "c.bin", "--range", "bytes=8388600-8388700",
        "--sse-customer-algorithm", "AES256", "--sse-customer-key", f"fileb://{key_a}", ranged)
    assert ranged.read_bytes() == big.read_bytes()[8388600:8388701]
    aws("s3", "cp", f"s3://{bucket}/c.bin", f"s3://{bucket}/c-copy.bin",
        "--sse-c-copy-source", "AES256", "--sse-c-copy-source-key", f"fileb://{key_a}",
        "--sse-c", "AES256", "--sse-c-key", f"fileb://{key_b}")
    copied = tmp_path / "copied.bin"
    aws("s3", "cp", f"s3://{bucket}/c-copy.bin", copied, "--sse-c", "AES256", "--sse-c-key", f"fileb://{key_b}")
    assert copied.read_bytes() == big.read_bytes()
    # The copy opens with key B only.
    wrong = subprocess.run([*aws_cmd_prefix(hub), "s3api", "head-object", "--bucket", bucket, "--key", "c-copy.bin",
                            "--sse-customer-algorithm", "AES256", "--sse-customer-key", f"fileb://{key_a}"],
                           capture_output=True, text=True, timeout=60, env=aws_env_of(hub, tmp_path))
    assert wrong.returncode != 0, wrong.stdout
    # SSE-KMS to SSE-C and back: a server-side copy between modes.
    aws("s3", "cp", f"s3://{bucket}/kms.bin", f"s3://{bucket}/kms-to-c.bin", "--sse-c", "AES256",
        "--sse-c-key", f"fileb://{key_b}")
    aws("s3", "cp", f"s3://{bucket}/kms-to-c.bin", back, "--sse-c", "AES256", "--sse-c-key", f"fileb://{key_b}")
    assert back.read_bytes() == big.read_bytes()
    assert files_containing(hub.data_dir, mark) == []
