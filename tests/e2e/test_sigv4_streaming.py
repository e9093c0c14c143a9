"""SigV4 streaming uploads written by hand, byte for byte as the AWS docs specify them.

botocore sends aws-chunked bodies only unsigned (STREAMING-UNSIGNED-PAYLOAD-TRAILER, covered in
test_boto3.py); the signed variants are what the Java, Go (minio-go) and .NET SDKs send over
plain HTTP:

  STREAMING-AWS4-HMAC-SHA256-PAYLOAD           every chunk signed, chained to the seed signature
  STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER   the same plus a signed trailing checksum
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import os
import urllib.parse
import zlib

import pytest
from botocore.exceptions import ClientError

from conftest import REGION

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


class Signer:
    def __init__(self, access_key: str, secret_key: str, when: dt.datetime | None = None):
        self.access_key = access_key
        when = when or dt.datetime.now(dt.timezone.utc)
        self.amz_date = when.strftime("%Y%m%dT%H%M%SZ")
        self.date = when.strftime("%Y%m%d")
        self.scope = f"{self.date}/{REGION}/s3/aws4_request"
        k = _hmac(("AWS4" + secret_key).encode(), self.date)
        k = _hmac(k, REGION)
        k = _hmac(k, "s3")
        self.key = _hmac(k, "aws4_request")

    def sign(self, string_to_sign: str) -> str:
        return hmac.new(self.key, string_to_sign.encode(), hashlib.sha256).hexdigest()

    def seed(self, method: str, path: str, headers: dict[str, str], payload_hash: str) -> tuple[str, str]:
        """(Authorization header, seed signature) for the request."""
        names = sorted(h.lower() for h in headers)
        canonical_headers = "".join(f"{n}:{' '.join(headers_ci(headers)[n].split())}\n" for n in names)
        signed = ";".join(names)
        canonical = "\n".join([method, path, "", canonical_headers, signed, payload_hash])
        sts = "\n".join(["AWS4-HMAC-SHA256", self.amz_date, self.scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
        sig = self.sign(sts)
        auth = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{self.scope}, "
                f"SignedHeaders={signed}, Signature={sig}")
        return auth, sig

    def chunk_sig(self, prev: str, data: bytes) -> str:
        return self.sign("\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.amz_date, self.scope, prev,
                                    EMPTY_SHA256, hashlib.sha256(data).hexdigest()]))

    def trailer_sig(self, prev: str, trailer: bytes) -> str:
        return self.sign("\n".join(["AWS4-HMAC-SHA256-TRAILER", self.amz_date, self.scope, prev,
                                    hashlib.sha256(trailer).hexdigest()]))


def headers_ci(h: dict) -> dict:
    return {k.lower(): v for k, v in h.items()}


def streaming_put(valley, bucket: str, key: str, data: bytes, *, chunk_size: int = 64 * 1024,
                  trailer_crc32: str | None = None, corrupt_chunk: int | None = None,
                  extra_headers: dict | None = None):
    """PUT with a signed aws-chunked body; returns (status, body)."""
    s = Signer(valley.access_key, valley.secret_key)
    path = "/" + urllib.parse.quote(bucket) + "/" + urllib.parse.quote(key, safe="/~")
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer_crc32 is not None else "")
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]

    # Length of the encoded body must be known up front for Content-Length.
    def encoded_len():
        n = 0
        for c in chunks + [b""]:
            n += len(f"{len(c):x};chunk-signature=".encode()) + 64 + 2 + len(c)
            if c or trailer_crc32 is None:
                n += 2
        if trailer_crc32 is not None:
            n += len(f"x-amz-checksum-crc32:{trailer_crc32}\r\n".encode())
            n += len("x-amz-trailer-signature:".encode()) + 64 + 2 + 2
        return n

    headers = {
        "Host": f"127.0.0.1:{valley.port}",
        "x-amz-date": s.amz_date,
        "x-amz-content-sha256": mode,
        "x-amz-decoded-content-length": str(len(data)),
        "Content-Encoding": "aws-chunked",
        "Content-Length": str(encoded_len()),
        **(extra_headers or {}),
    }
    if trailer_crc32 is not None:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    auth, prev = s.seed("PUT", path, headers, mode)

    out = bytearray()
    for i, c in enumerate(chunks + [b""]):
        sig = s.chunk_sig(prev, c)
        prev = sig
        if corrupt_chunk is not None and i == corrupt_chunk:
            c = bytes([c[0] ^ 0xFF]) + c[1:]
        out += f"{len(c):x};chunk-signature={sig}\r\n".encode() + c
        if c or trailer_crc32 is None:
            out += b"\r\n"
    if trailer_crc32 is not None:
        trailer = f"x-amz-checksum-crc32:{trailer_crc32}\n".encode()
        out += f"x-amz-checksum-crc32:{trailer_crc32}\r\n".encode()
        out += f"x-amz-trailer-signature:{s.trailer_sig(prev, trailer)}\r\n\r\n".encode()
    assert len(out) == int(headers["Content-Length"])

    conn = http.client.HTTPConnection("127.0.0.1", valley.port, timeout=60)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Authorization", auth)
        conn.endheaders()
        conn.send(bytes(out))
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def crc32_b64(b: bytes) -> str:
    return base64.b64encode(zlib.crc32(b).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 300_001])
def test_signed_streaming_put(valley, s3, bucket, size):
    data = os.urandom(size)
    status, body, _ = streaming_put(valley, bucket, "signed", data, extra_headers={"Content-Type": "text/x-sig"})
    assert status == 200, body
    head = s3.head_object(Bucket=bucket, Key="signed")
    assert head["ContentLength"] == size
    assert head["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert head["ContentType"] == "text/x-sig"
    assert "aws-chunked" not in (head.get("ContentEncoding") or "")
    assert s3.get_object(Bucket=bucket, Key="signed")["Body"].read() == data


def test_signed_streaming_put_with_trailer(valley, s3, bucket):
    data = os.urandom(200_000)
    status, body, headers = streaming_put(valley, bucket, "trailer", data, trailer_crc32=crc32_b64(data))
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="trailer")["Body"].read() == data
    head = s3.head_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED")
    assert head.get("ChecksumCRC32") == crc32_b64(data), head


def test_signed_streaming_bad_chunk_signature_rejected(valley, s3, bucket):
    data = os.urandom(200_000)
    status, body, _ = streaming_put(valley, bucket, "tampered", data, corrupt_chunk=1)
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="tampered")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # AWS answers a chunk whose signature does not match with 403 SignatureDoesNotMatch.
    assert status == 403, body
    assert b"SignatureDoesNotMatch" in body, body


def test_signed_streaming_bad_trailer_checksum_rejected(valley, s3, bucket):
    data = os.urandom(100_000)
    status, body, _ = streaming_put(valley, bucket, "badsum", data, trailer_crc32=crc32_b64(data + b"!"))
    assert status == 400, body
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="badsum")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
