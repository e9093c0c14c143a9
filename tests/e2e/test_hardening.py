"""Hostile clients, replayed from the hardening review (issue 9): each attack is made against real
hubs the way an attacker on the path would make it, and each test asserts a clear refusal, a
hub that keeps serving, and stored data that is neither lost nor changed.

1. a captured peer or admin call replayed, or re-sent with a forged body;
2. SigV2 requests (header and presigned) that never expired;
3. thousands of idle connections;
4. aws-chunked uploads cut short or longer than declared;
5. a body that declares gigabytes and sends a kilobyte;
6. the audit log flooded by refused calls;
7. a hub speaking as another (tests/e2e/test_network.py: certificate of another hub);
8. the smaller ones: regions, in-flight gauge and temporary files after a disconnect, HTTP/2
   prior knowledge, XML over the size limit, DeleteObjects without a digest, abandoned
   multipart uploads, unknown operations.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.parse
import uuid

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, SECRET_KEY, ValleyServer, free_port, make_client, valley_bin
from network import NETWORK_SECRET, Network, sign_peer_call, wait_for
from test_sigv4_streaming import Signer

CN_PAIR = [("zhangjiakou", "CN", "east", "north-china-grid"), ("gui-an", "CN", "west", "southern-grid"),
           ("hong-kong", "HK", "east", "hong-kong")]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    net = Network(tmp_path_factory.mktemp("hardening-net"), hubs=CN_PAIR)
    net.start_all()
    yield net
    net.stop_all()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A lone hub with tight, test-sized limits."""
    server = ValleyServer(tmp_path_factory.mktemp("hardening-hub"), extra_args=[
        "--idle-timeout", "5", "--max-connections-per-client", "64", "--multipart-expiry-secs", "3"])
    server.start()
    yield server
    server.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---- 1. replayed and re-bodied calls ---------------------------------------------------------

def control_change(bucket: str, jurisdictions: list[str], hlc: int) -> bytes:
    policy = {"jurisdictions": jurisdictions, "copies": 1}
    return json.dumps({"type": "policy", "bucket": bucket,
                       "record": {"policy": policy, "hlc": hlc, "origin": "zhangjiakou"}}).encode()


def test_a_captured_peer_call_cannot_be_replayed_or_given_another_body(pair):
    bucket = unique("replay")
    s3 = pair.s3("gui-an")
    s3.create_bucket(Bucket=bucket)
    pair.cli("gui-an", "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "2")
    bodies = {f"k{i}": f"value {i}".encode() for i in range(5)}
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    wait_for(lambda: pair.holdings("gui-an", bucket).get("zhangjiakou") == 5, what="both copies")
    topology = pair.status("gui-an")["topology"]
    path = "/_valley/peer/v1/control"
    # A harmless, correctly signed call as zhangjiakou would send it (an old record: superseded).
    harmless = control_change(bucket, ["CN"], 1)
    headers = sign_peer_call(NETWORK_SECRET, "POST", path, "zhangjiakou", harmless, {}, topology)
    send = lambda body, h: requests.post(pair.admin_endpoint("gui-an") + path, data=body, headers=h,
                                         verify=str(pair.ca), cert=pair.hub_cert("zhangjiakou"), timeout=5)
    first = send(harmless, headers)
    assert first.status_code == 200, first.text
    # Replayed as captured: refused.
    again = send(harmless, headers)
    assert again.status_code == 401 and "already received" in again.text, again.text
    # The captured signature with a forged body (the attack that wiped a bucket): refused. A
    # fresh nonce would need the secret; the same nonce is a replay.
    forged = control_change(bucket, ["EU"], time.time_ns() + 10**18)
    changed = send(forged, headers)
    assert changed.status_code == 401, changed.text
    fresh = dict(headers, **{"x-valley-nonce": "00" * 16})
    assert send(forged, fresh).status_code == 401
    # A new signature over a different body than sent (a proxy rewriting bodies): the hash fails.
    signed_for_harmless = sign_peer_call(NETWORK_SECRET, "POST", path, "zhangjiakou", harmless, {}, topology)
    rewritten = send(forged, signed_for_harmless)
    assert rewritten.status_code == 400 and "signed hash" in rewritten.text, rewritten.text
    # Even a holder of the secret and a hub certificate cannot send a record from the far
    # future (it would win last-writer-wins for ever): refused and audited.
    future = sign_peer_call(NETWORK_SECRET, "POST", path, "zhangjiakou", forged, {}, topology)
    refused = send(forged, future)
    assert refused.status_code == 400 and "ahead of this hub's clock" in refused.text, refused.text
    assert "ahead of this hub's clock" in pair.cli("gui-an", "audit", "show", "--json").stdout
    # Nothing changed: the policy is still CN, every object is still at both hubs.
    assert 'jurisdictions = ["CN"]' in pair.cli("gui-an", "bucket", "policy", "show", bucket).stdout
    time.sleep(1)
    for hub in ("gui-an", "zhangjiakou"):
        for key, body in bodies.items():
            assert pair.s3(hub).get_object(Bucket=bucket, Key=key)["Body"].read() == body


def test_a_captured_admin_call_cannot_be_replayed_or_given_another_body(pair):
    bucket = unique("admin-replay")
    pair.s3("gui-an").create_bucket(Bucket=bucket)
    path = f"/_valley/admin/v1/policy?bucket={bucket}"
    policy = b'jurisdictions = ["CN"]\ncopies = 2\n'
    headers = sign_peer_call(SECRET_KEY, "PUT", path, ACCESS_KEY, policy)
    put = lambda body, h: requests.put(pair.admin_endpoint("gui-an") + path, data=body, headers=h,
                                       verify=str(pair.ca), timeout=5)
    assert put(policy, headers).status_code == 200
    # Replayed, as captured or with a forged policy: refused, the policy unchanged.
    assert put(policy, headers).status_code == 401
    forged = b'jurisdictions = ["CN"]\ncopies = 1\n'
    assert put(forged, headers).status_code == 401
    rewritten = put(forged, sign_peer_call(SECRET_KEY, "PUT", path, ACCESS_KEY, policy))
    assert rewritten.status_code == 400, rewritten.text
    assert "copies = 2" in pair.cli("gui-an", "bucket", "policy", "show", bucket).stdout
    # The same for a grant: a captured grant call cannot record another grant.
    grant = json.dumps({"id": unique("g"), "from": "CN", "to": "HK", "classifications": ["personal-info"],
                        "basis": "standard-contract", "reference": "R-1", "companions": {"piia": "PIIA-1"},
                        "expires": "2030-01-01",
                        "volume_cap_bytes": None, "volume_cap_individuals": None}).encode()
    gpath = "/_valley/admin/v1/grants"
    gheaders = sign_peer_call(SECRET_KEY, "POST", gpath, ACCESS_KEY, grant)
    post = lambda body: requests.post(pair.admin_endpoint("gui-an") + gpath, data=body, headers=gheaders,
                                      verify=str(pair.ca), timeout=5)
    assert post(grant).status_code == 200
    other = grant.replace(b'"reference": "R-1"', b'"reference": "R-2"')
    assert post(other).status_code == 401
    assert post(grant).status_code == 401


# ---- 2. SigV2 ----------------------------------------------------------------------------------

def test_signature_v2_is_refused_in_headers_and_presigned_urls(valley, s3, bucket):
    s3.put_object(Bucket=bucket, Key="kept", Body=b"original")
    v2 = make_client(valley.endpoint, valley.access_key, valley.secret_key, signature_version="s3")
    with pytest.raises(ClientError) as refused:
        v2.put_object(Bucket=bucket, Key="kept", Body=b"overwritten by a SigV2 replay")
    assert refused.value.response["Error"]["Code"] == "InvalidRequest"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as refused:
        v2.delete_object(Bucket=bucket, Key="kept")
    assert refused.value.response["Error"]["Code"] == "InvalidRequest"
    # A SigV2 presigned URL valid for ten years.
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "kept"},
                                    ExpiresIn=10 * 365 * 86400)
    assert "Signature=" in url and "X-Amz-Signature" not in url
    r = requests.get(url, timeout=5)
    assert r.status_code == 400 and b"AWS4-HMAC-SHA256" in r.content
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"original"


def raw_request(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """Sends `url` as written: requests would re-spell percent-encoded unreserved characters."""
    import http.client
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, f"{parts.path}?{parts.query}", body=body)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_a_sigv2_presigned_url_is_refused_however_its_query_is_spelled(valley, s3, bucket):
    """The front read SigV2's parameter names as written and s3s reads them decoded: a SigV2
    URL whose `AWSAccessKeyId` was spelled `AWSAccessKey%49d`, or that also carried an
    `X-Amz-Signature`, got through (a GET returned the object)."""
    s3.put_object(Bucket=bucket, Key="kept", Body=b"original")
    v2 = make_client(valley.endpoint, valley.access_key, valley.secret_key, signature_version="s3")
    for method, op in (("GET", "get_object"), ("PUT", "put_object"), ("DELETE", "delete_object")):
        url = v2.generate_presigned_url(op, Params={"Bucket": bucket, "Key": "kept"}, ExpiresIn=3600)
        for spelled in (url.replace("AWSAccessKeyId=", "AWSAccessKey%49d="),
                        url.replace("Signature=", "Sign%61ture="),
                        url + "&X-Amz-Signature=00"):
            status, body = raw_request(method, spelled, b"overwritten" if method == "PUT" else None)
            assert status == 400 and b"AWS4-HMAC-SHA256" in body, (method, spelled, status, body[:200])
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"original"


def test_a_signature_scoped_to_another_region_is_refused(valley, s3, bucket):
    for region in ("eu-west-1", "cn-north-1"):
        other = boto3.session.Session().client(
            "s3", endpoint_url=valley.endpoint, aws_access_key_id=valley.access_key,
            aws_secret_access_key=valley.secret_key, region_name=region,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
        with pytest.raises(ClientError) as refused:
            other.put_object(Bucket=bucket, Key="r", Body=b"x")
        assert refused.value.response["Error"]["Code"] == "AuthorizationHeaderMalformed"
        assert region in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="r")


# ---- 3. idle connections ------------------------------------------------------------------------

def test_idle_connections_are_capped_and_closed_and_the_hub_keeps_serving(guarded):
    idle = []
    for _ in range(150):
        s = socket.create_connection(("127.0.0.1", guarded.port), timeout=5)
        idle.append(s)
    # Past the per-client cap (64), connections are closed at once.
    closed_at_once = 0
    for s in idle[64:]:
        s.settimeout(2)
        try:
            if s.recv(1) == b"":
                closed_at_once += 1
        except ConnectionResetError:
            closed_at_once += 1
        except socket.timeout:
            pass
    assert closed_at_once >= 80, closed_at_once
    # Another client address is served meanwhile.
    other = socket.create_connection(("127.0.0.1", guarded.port), timeout=5, source_address=("127.0.0.2", 0))
    other.sendall(b"GET /_valley/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert other.recv(64).startswith(b"HTTP/1.1 200")
    other.close()
    # The ones within the cap sent nothing: closed after the first-request timeout (5 s).
    started = time.time()
    for s in idle[:64]:
        s.settimeout(max(0.5, 15 - (time.time() - started)))
        try:
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
    assert time.time() - started < 15
    for s in idle:
        s.close()
    # And the same address is served again once they are gone.
    assert requests.get(guarded.endpoint + "/_valley/health", timeout=5).status_code == 200
    metrics = requests.get(guarded.admin_endpoint + "/metrics", timeout=5).text
    assert metric(metrics, "valley_connections_refused_total", listener="s3", reason="client-full") >= 80
    assert guarded.log_path.stat().st_size < 1_000_000


# ---- 4. aws-chunked framing ---------------------------------------------------------------------

def raw_chunked_put(server, bucket, key, chunks: list[bytes], declared: int, final_chunk: bool):
    s = Signer(server.access_key, server.secret_key)
    path = f"/{bucket}/{key}"
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    headers = {"Host": f"127.0.0.1:{server.port}", "x-amz-date": s.amz_date, "x-amz-content-sha256": mode,
               "x-amz-decoded-content-length": str(declared), "Content-Encoding": "aws-chunked"}
    body = bytearray()
    auth, prev = s.seed("PUT", path, headers, mode)
    for c in chunks + ([b""] if final_chunk else []):
        prev = s.chunk_sig(prev, c)
        body += f"{len(c):x};chunk-signature={prev}\r\n".encode() + c + b"\r\n"
    head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Authorization: {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + bytes(body))
        return read_response(sock)


def read_response(sock) -> bytes:
    """One HTTP/1.1 response, head and (Content-Length) body."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(65536)
        if not data:
            return answer
        answer += data
    head, _, rest = answer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            break
        rest += data
    return head + b"\r\n\r\n" + rest


def test_an_aws_chunked_upload_cut_short_or_too_long_is_not_stored(valley, s3, bucket):
    s3.put_object(Bucket=bucket, Key="short", Body=b"before")
    cut = raw_chunked_put(valley, bucket, "short", [b"a" * 65_536], declared=200_000, final_chunk=False)
    assert cut.startswith(b"HTTP/1.1 400") and b"IncompleteBody" in cut, cut[:300]
    assert s3.get_object(Bucket=bucket, Key="short")["Body"].read() == b"before"
    long = raw_chunked_put(valley, bucket, "long", [b"b" * 65_536, b"b" * 4_464], declared=100, final_chunk=True)
    assert long.startswith(b"HTTP/1.1 400") and b"IncompleteBody" in long, long[:300]
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="long")
    # Whole and as declared: stored.
    ok = raw_chunked_put(valley, bucket, "whole", [b"c" * 65_536, b"c" * 10], declared=65_546, final_chunk=True)
    assert ok.startswith(b"HTTP/1.1 200"), ok[:300]
    assert s3.get_object(Bucket=bucket, Key="whole")["Body"].read() == b"c" * 65_546


# ---- 5. bodies that never arrive; 8. the in-flight gauge and temporary files ------------------

def signed_put_head(server, path: str, content_length: int) -> bytes:
    s = Signer(server.access_key, server.secret_key)
    headers = {"Host": f"127.0.0.1:{server.port}", "x-amz-date": s.amz_date,
               "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    auth, _ = s.seed("PUT", path, headers, "UNSIGNED-PAYLOAD")
    head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + f"Authorization: {auth}\r\nContent-Length: {content_length}\r\n\r\n").encode()


def tmp_files(server) -> list:
    return list((server.data_dir / "tmp").iterdir())


def test_a_body_that_stops_arriving_is_cut_off_and_leaves_nothing(valley, bucket):
    with socket.create_connection(("127.0.0.1", valley.port), timeout=60) as sock:
        sock.sendall(signed_put_head(valley, f"/{bucket}/slow", 4 << 30) + b"x" * 1000)
        started = time.time()
        answer = read_response(sock)
        waited = time.time() - started
    assert answer.startswith(b"HTTP/1.1 400") and b"RequestTimeout" in answer, answer[:300]
    assert 25 < waited < 50, waited
    wait_for(lambda: not tmp_files(valley), timeout=10, what="temporary file removed")
    r = requests.get(valley.endpoint + "/_valley/health", timeout=5)
    assert r.status_code == 200


def test_a_client_gone_mid_body_leaks_neither_the_gauge_nor_a_file(valley, s3, bucket):
    # Half of them hang up mid-body, half right after the last byte (while the hub hashes,
    # writes and syncs): the request is dropped at whatever point it had reached.
    for i in range(10):
        sock = socket.create_connection(("127.0.0.1", valley.port), timeout=10)
        sent = (10 << 20) if i % 2 else (2 << 20)
        sock.sendall(signed_put_head(valley, f"/{bucket}/gone{i}", 10 << 20) + b"y" * sent)
        # Hang up hard (RST), as a client that crashes or a middlebox does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    time.sleep(0.5)

    def settled():
        metrics = requests.get(valley.admin_endpoint + "/metrics", timeout=5).text
        return metric(metrics, "valley_s3_requests_in_flight") == 0 and not tmp_files(valley)

    wait_for(settled, timeout=10, what="in-flight gauge back to 0 and no temporary file")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="gone0")
    # Whatever the whole bodies became, nothing is half-stored: an object is whole or absent.
    for i in range(1, 10, 2):
        try:
            assert s3.get_object(Bucket=bucket, Key=f"gone{i}")["Body"].read() == b"y" * (10 << 20)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "NoSuchKey"


# ---- 8. HTTP/2, XML size, DeleteObjects digests, multipart expiry, unknown operations ----------

def test_http2_prior_knowledge_is_not_served(valley):
    with socket.create_connection(("127.0.0.1", valley.port), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        answer = sock.recv(256)
    # Not an HTTP/2 SETTINGS frame: an HTTP/1 refusal, or a closed connection.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer


def signed_request(server, method: str, path: str, query: str, body: bytes, extra: dict) -> requests.Response:
    s = Signer(server.access_key, server.secret_key)
    payload = sha(body)
    headers = {"Host": f"127.0.0.1:{server.port}", "x-amz-date": s.amz_date, "x-amz-content-sha256": payload,
               **extra}
    names = sorted(h.lower() for h in headers)
    lower = {k.lower(): v for k, v in headers.items()}
    canonical_query = "&".join(sorted(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}"
                                      for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)))
    canonical = "\n".join([method, path, canonical_query,
                           "".join(f"{n}:{lower[n].strip()}\n" for n in names), ";".join(names), payload])
    sts = "\n".join(["AWS4-HMAC-SHA256", s.amz_date, s.scope, sha(canonical.encode())])
    auth = f"AWS4-HMAC-SHA256 Credential={server.access_key}/{s.scope}, SignedHeaders={';'.join(names)}, " \
           f"Signature={s.sign(sts)}"
    return requests.request(method, f"{server.endpoint}{path}?{query}", data=body,
                            headers={**headers, "Authorization": auth}, timeout=30)


def delete_xml(keys: list[str]) -> bytes:
    return ("<Delete>" + "".join(f"<Object><Key>{k}</Key></Object>" for k in keys) + "</Delete>").encode()


def test_delete_objects_needs_a_digest_that_matches(valley, s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    s3.put_object(Bucket=bucket, Key="b", Body=b"2")
    body = delete_xml(["a"])
    r = signed_request(valley, "POST", f"/{bucket}", "delete=", body, {})
    assert r.status_code == 400 and b"InvalidRequest" in r.content, r.content
    md5_of_other = base64.b64encode(hashlib.md5(delete_xml(["b"])).digest()).decode()
    r = signed_request(valley, "POST", f"/{bucket}", "delete=", body, {"Content-MD5": md5_of_other})
    assert r.status_code == 400 and b"BadDigest" in r.content, r.content
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]} == {"a", "b"}
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    r = signed_request(valley, "POST", f"/{bucket}", "delete=", body, {"Content-MD5": md5})
    assert r.status_code == 200, r.content
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]} == {"b"}
    # boto3 itself (a flexible checksum header) still works.
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b"}]})
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_an_xml_body_over_the_limit_is_a_client_error(valley, s3, bucket):
    s3.put_object(Bucket=bucket, Key="stays", Body=b"1")
    body = delete_xml(["k" * 1000] * 5000)
    assert len(body) > 4 << 20
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    r = signed_request(valley, "POST", f"/{bucket}", "delete=", body, {"Content-MD5": md5})
    assert r.status_code == 400, (r.status_code, r.content[:300])
    tagging = b"<Tagging><TagSet>" + b"<Tag><Key>k</Key><Value>" + b"v" * (5 << 20) + b"</Value></Tag></TagSet></Tagging>"
    r = signed_request(valley, "PUT", f"/{bucket}/stays", "tagging=", tagging, {})
    assert r.status_code == 400, (r.status_code, r.content[:300])
    assert s3.get_object(Bucket=bucket, Key="stays")["Body"].read() == b"1"


def test_abandoned_multipart_uploads_expire(guarded):
    s3 = guarded.client()
    bucket = unique("mpu-expiry")
    s3.create_bucket(Bucket=bucket)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="abandoned")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="abandoned", UploadId=upload, PartNumber=1, Body=b"p" * (6 << 20))
    blobs_with_part = sum(1 for p in (guarded.data_dir / "blobs").rglob("*") if p.is_file())
    assert blobs_with_part >= 1
    wait_for(lambda: not s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), timeout=20,
             what="the abandoned upload expired")
    with pytest.raises(ClientError) as gone:
        s3.upload_part(Bucket=bucket, Key="abandoned", UploadId=upload, PartNumber=2, Body=b"q")
    assert gone.value.response["Error"]["Code"] == "NoSuchUpload"
    assert sum(1 for p in (guarded.data_dir / "blobs").rglob("*") if p.is_file()) < blobs_with_part


def hwm_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def streamed_form(boundary: str, key: str, file_mib: int):
    """A form upload sent without a length (chunked), its file `file_mib` MiB."""
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n{key}\r\n"
           f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    chunk = b"x" * (1 << 20)
    for _ in range(file_mib):
        yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def test_form_uploads_are_bounded_in_size_and_in_the_memory_they_hold(tmp_path):
    """s3s reads a browser form's file into memory before anyone decides on it, anonymous or
    not: a form declaring more than 32 MiB is refused unread, one sent without a length is cut
    off there, and at most four are read at once (128 MiB however many strangers post)."""
    server = ValleyServer(tmp_path / "forms")
    server.start()
    try:
        s3 = server.client()
        bucket = unique("forms")
        s3.create_bucket(Bucket=bucket)
        url = f"{server.endpoint}/{bucket}"
        started = time.monotonic()
        r = requests.post(url, files={"key": (None, "declared"), "file": ("f", b"x" * (40 << 20))}, timeout=60)
        assert r.status_code == 400 and b"EntityTooLarge" in r.content, r.content[:300]
        before = hwm_mib(server.proc.pid)

        def post_streamed(i: int) -> str:
            boundary = f"valley{i}"
            try:
                r = requests.post(url, data=streamed_form(boundary, f"streamed-{i}", 96),
                                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                                  timeout=120)
            except requests.RequestException as e:  # the hub may stop reading and close
                return type(e).__name__
            found = re.search(rb"<Code>([^<]+)</Code>", r.content)
            return f"{r.status_code} {found.group(1).decode() if found else ''}"

        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post_streamed, range(8)))
        grown = hwm_mib(server.proc.pid) - before
        assert all(a in ("400 EntityTooLarge", "503 SlowDown") or not a[0].isdigit() for a in answers), answers
        assert grown < 200, f"eight 96 MiB forms grew the hub by {grown:.0f} MiB ({answers})"
        listed = s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
        assert listed == 0, "nothing of a refused form is stored"
        # A form within the limits still goes through.
        s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
        r = requests.post(url, files={"key": (None, "small"), "file": ("f", b"small form")}, timeout=30)
        assert r.status_code == 204, r.content[:300]
        assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"small form"
        print(f"form refusals {answers}, peak grew {grown:.0f} MiB, {time.monotonic() - started:.1f} s")
    finally:
        server.stop()


def test_an_unknown_operation_is_method_not_allowed(valley, bucket):
    for method in ("PROPFIND", "TRACE"):
        r = requests.request(method, f"{valley.endpoint}/{bucket}/k", timeout=5)
        assert r.status_code in (400, 403, 405), (method, r.status_code, r.content[:200])
        assert r.status_code != 501


# ---- 6. the audit log under a flood of refused calls -------------------------------------------

def test_refused_peer_calls_are_counted_but_cannot_flood_the_audit_log(pair):
    audit = pair.data_dir("zhangjiakou") / "audit.log"
    before = audit.stat().st_size
    session = requests.Session()
    url = pair.admin_endpoint("zhangjiakou") + "/_valley/peer/v1/control"
    for i in range(2000):
        # (verify per request: a session's own is overridden by REQUESTS_CA_BUNDLE.)
        r = session.post(url, data=b"{}", headers={"x-valley-identity": "gui-an", "x-valley-time": "0"},
                         verify=str(pair.ca), timeout=5)
        assert r.status_code == 401, (i, r.status_code, r.text)
    grown = audit.stat().st_size - before
    assert grown < 10_000, grown
    assert "refused" in pair.cli("zhangjiakou", "audit", "show", "--json").stdout
    assert pair.cli("zhangjiakou", "audit", "verify").returncode == 0
    metrics = pair.get(pair.admin_endpoint("zhangjiakou") + "/metrics", timeout=5).text
    assert metric(metrics, "valley_peer_calls_refused") >= 2000
    # The hub still serves its clients.
    s3 = pair.s3("zhangjiakou")
    bucket = unique("after-flood")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_a_refused_peer_call_closes_its_connection_before_the_next_request(pair):
    """A refusal answered before its body was read says so: without `Connection: close` the
    hub dropped the connection under a client that reused it (seen as RemoteDisconnected)."""
    import http.client
    import ssl
    port = int(pair.admin_endpoint("zhangjiakou").rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(pair.ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    body = b"{}" * 500  # small enough to be sent whole before the refusal comes back
    conn.request("POST", "/_valley/peer/v1/control", body=body,
                 headers={"x-valley-identity": "gui-an", "x-valley-time": "0"})
    r = conn.getresponse()
    r.read()
    assert r.status == 401
    assert (r.getheader("Connection") or "").lower() == "close", r.getheaders()
    conn.close()


# ---- TLS on the ports ---------------------------------------------------------------------------

def one_hub_certs(tmp_path, name: str):
    topology = tmp_path / f"{name}.toml"
    topology.write_text('[[hub]]\nid = "solo"\njurisdiction = "CN"\nrole = "east"\nlat = 30.0\nlon = 110.0\n'
                        'failure_domain = "solo"\n')
    out = tmp_path / name
    made = subprocess.run([str(valley_bin()), "cert", "init", "--topology", str(topology), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return out


def test_plain_http_off_loopback_needs_insecure_http(tmp_path):
    run = subprocess.run([str(valley_bin()), "serve", "--data", str(tmp_path / "d"), "--listen", "0.0.0.0:0",
                          "--admin-listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30,
                         env={"VALLEY_ACCESS_KEY": ACCESS_KEY, "VALLEY_SECRET_KEY": SECRET_KEY, "PATH": "/usr/bin"})
    assert run.returncode != 0
    assert "--insecure-http" in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_the_certificate_is_reloaded_when_its_files_change(tmp_path):
    first, second = one_hub_certs(tmp_path, "first"), one_hub_certs(tmp_path, "second")
    live = tmp_path / "live"
    live.mkdir()
    for f in ("cert.pem", "key.pem"):
        shutil.copy(first / "solo" / f, live / f)
    # Started by hand: the harness's health check speaks plain HTTP.
    port = free_port()
    env = dict(os.environ, VALLEY_ACCESS_KEY=ACCESS_KEY, VALLEY_SECRET_KEY=SECRET_KEY)
    proc = subprocess.Popen([str(valley_bin()), "serve", "--data", str(tmp_path / "hub-data"),
                             "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{free_port()}",
                             "--tls-cert", str(live / "cert.pem"), "--tls-key", str(live / "key.pem")],
                            env=env, stdout=open(tmp_path / "hub.log", "wb"), stderr=subprocess.STDOUT)
    try:
        url = f"https://127.0.0.1:{port}/_valley/health"
        wait_for(lambda: _ok(url, first / "ca.pem"), timeout=20, what="TLS hub up")
        # Plain HTTP on a TLS port is not served.
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{port}/_valley/health", timeout=2)
        # Rotate: a certificate from another CA replaces the files; new connections get it.
        for f in ("cert.pem", "key.pem"):
            shutil.copy(second / "solo" / f, live / f)
        wait_for(lambda: _ok(url, second / "ca.pem"), timeout=10, what="the new certificate served")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, verify=str(first / "ca.pem"), timeout=2)
        # A broken file keeps the last good pair serving.
        (live / "cert.pem").write_text("not a certificate")
        time.sleep(1.5)
        assert _ok(url, second / "ca.pem")
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _ok(url: str, ca) -> bool:
    try:
        return requests.get(url, verify=str(ca), timeout=2).status_code == 200
    except requests.RequestException:
        return False
