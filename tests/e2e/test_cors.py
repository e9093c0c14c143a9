"""CORS: a bucket's configuration set and read with boto3, preflights and page requests
answered as S3 answers them (plain `requests`, as a browser would send them, unsigned)."""
from __future__ import annotations

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, SECRET_KEY, ValleyServer, make_client, unique_name


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = ValleyServer(tmp_path_factory.mktemp("cors-hub"))
    server.start()
    yield server
    server.stop()


def error_code(call) -> str:
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return "OK"


def test_preflights_and_page_requests_get_what_the_bucket_allows(hub):
    s3 = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    bucket = unique_name("cors")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="page.js", Body=b"ok", ACL="public-read")
    url = f"{hub.endpoint}/{bucket}/page.js"
    assert error_code(lambda: s3.get_bucket_cors(Bucket=bucket)) == "NoSuchCORSConfiguration"
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    assert requests.options(url, headers=preflight, timeout=10).status_code == 403

    rules = [{"AllowedOrigins": ["https://*.example"], "AllowedMethods": ["GET", "HEAD"],
              "AllowedHeaders": ["x-amz-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
             {"AllowedOrigins": ["*"], "AllowedMethods": ["PUT"]}]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert [r["AllowedOrigins"] for r in got] == [["https://*.example"], ["*"]]
    assert got[0]["MaxAgeSeconds"] == 600 and got[0]["ExposeHeaders"] == ["ETag"]

    r = requests.options(url, headers={**preflight, "Access-Control-Request-Headers": "X-Amz-Date"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-allow-methods"] == "GET, HEAD"
    assert r.headers["access-control-allow-headers"] == "X-Amz-Date"
    assert r.headers["access-control-max-age"] == "600"
    # Not a preflight; an origin, a method or a header no rule allows.
    assert requests.options(url, timeout=10).status_code == 400
    assert requests.options(url, headers={"Origin": "https://app.example"}, timeout=10).status_code == 400
    for refused in ({"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"},
                    {"Origin": "https://app.example", "Access-Control-Request-Method": "DELETE"},
                    {**preflight, "Access-Control-Request-Headers": "authorization"}):
        r = requests.options(url, headers=refused, timeout=10)
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers, refused
    r = requests.options(url, headers={"Origin": "https://anything.test", "Access-Control-Request-Method": "PUT"},
                         timeout=10)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"

    # A page's requests carry the headers, errors included; other origins get none.
    r = requests.get(url, headers={"Origin": "https://app.example"}, timeout=10)
    assert r.status_code == 200 and r.content == b"ok"
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-expose-headers"] == "ETag"
    r = requests.get(f"{hub.endpoint}/{bucket}/missing", headers={"Origin": "https://app.example"}, timeout=10)
    assert r.status_code in (403, 404) and r.headers["access-control-allow-origin"] == "https://app.example"
    r = requests.get(url, headers={"Origin": "https://evil.test"}, timeout=10)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    # CORS allows nothing by itself: an anonymous PUT is still refused.
    r = requests.put(f"{hub.endpoint}/{bucket}/x", data=b"x", headers={"Origin": "https://a.test"}, timeout=10)
    assert r.status_code == 403 and r.headers["access-control-allow-origin"] == "*"
    assert error_code(lambda: s3.head_object(Bucket=bucket, Key="x")) == "404"

    # Bad configurations are refused and leave the configuration as it was.
    assert error_code(lambda: s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]})) == "MalformedXML"
    assert len(s3.get_bucket_cors(Bucket=bucket)["CORSRules"]) == 2

    s3.delete_bucket_cors(Bucket=bucket)
    assert error_code(lambda: s3.get_bucket_cors(Bucket=bucket)) == "NoSuchCORSConfiguration"
    assert requests.options(url, headers=preflight, timeout=10).status_code == 403


def test_only_the_buckets_owner_sets_its_cors(hub):
    s3 = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    bucket = unique_name("cors-owned")
    s3.create_bucket(Bucket=bucket)
    anonymous = requests.put(f"{hub.endpoint}/{bucket}?cors", timeout=10, data=(
        b'<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>'
        b'<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>'))
    assert anonymous.status_code == 403
    assert error_code(lambda: s3.get_bucket_cors(Bucket=bucket)) == "NoSuchCORSConfiguration"
