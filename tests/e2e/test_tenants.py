"""Tenants: their own users and keys, buckets no other tenant (nor the operator) can touch.

Every cross-tenant attempt is made with real clients (boto3, aws-cli, plain HTTP) against
real hubs: a lone hub (the embedded default) and a network whose tenant records replicate.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, SECRET_KEY, ValleyServer, aws_cli_path, make_client, unique_name, valley_bin
from network import Network, marker, wait_for

PAIR = [("zhangjiakou", "CN", "east", "north-china-grid"), ("gui-an", "CN", "west", "southern-grid")]


def cli(admin: str, *args: str, access: str = ACCESS_KEY, secret: str = SECRET_KEY, ca=None):
    env = dict(os.environ, VALLEY_ACCESS_KEY=access, VALLEY_SECRET_KEY=secret)
    if ca:
        env["VALLEY_CA"] = str(ca)
    return subprocess.run([str(valley_bin()), "--admin", admin, *args], env=env, capture_output=True, text=True,
                          timeout=60)


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def code(call) -> str:
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return "OK"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = ValleyServer(tmp_path_factory.mktemp("tenants-hub"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tenants(hub):
    """Two tenants, each with an admin user; answers their credentials."""
    admin = hub.admin_endpoint
    creds = {}
    for tenant, user in (("acme", "alice"), ("globex", "bob")):
        ok(cli(admin, "tenant", "add", tenant))
        answer = json.loads(ok(cli(admin, "user", "add", tenant, user, "--admin-of-tenant", "--json")))
        assert set(answer) == {"tenant", "user", "arn", "access_key", "secret_key"}, answer
        assert answer["arn"] == f"arn:aws:iam::{tenant}:user/{user}"
        creds[tenant] = answer
    return creds


def client_of(hub, creds):
    return make_client(hub.endpoint, creds["access_key"], creds["secret_key"])


def quota_tenant(hub, tenant: str, user: str, *quota: str):
    """A new tenant with `quota` (`--bytes N`, …) and an admin user; answers the user's client."""
    ok(cli(hub.admin_endpoint, "tenant", "add", tenant, *quota))
    creds = json.loads(ok(cli(hub.admin_endpoint, "user", "add", tenant, user, "--admin-of-tenant", "--json")))
    return client_of(hub, creds)


def test_the_root_credentials_still_work_as_the_default_tenant(hub):
    s3 = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    bucket = unique_name("root")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_two_tenants_cannot_touch_each_others_buckets(hub, tenants):
    alice, bob = client_of(hub, tenants["acme"]), client_of(hub, tenants["globex"])
    root = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    mine = unique_name("acme")
    alice.create_bucket(Bucket=mine)
    alice.put_object(Bucket=mine, Key="secret.txt", Body=b"acme only")
    theirs = unique_name("globex")
    bob.create_bucket(Bucket=theirs)

    assert mine in [b["Name"] for b in alice.list_buckets()["Buckets"]]
    for other in (bob, root):
        names = [b["Name"] for b in other.list_buckets()["Buckets"]]
        assert mine not in names
        assert code(lambda: other.get_object(Bucket=mine, Key="secret.txt")) == "AccessDenied"
        assert code(lambda: other.head_object(Bucket=mine, Key="secret.txt")) in ("AccessDenied", "403")
        assert code(lambda: other.list_objects_v2(Bucket=mine)) == "AccessDenied"
        assert code(lambda: other.put_object(Bucket=mine, Key="x", Body=b"y")) == "AccessDenied"
        assert code(lambda: other.delete_object(Bucket=mine, Key="secret.txt")) == "AccessDenied"
        assert code(lambda: other.delete_objects(
            Bucket=mine, Delete={"Objects": [{"Key": "secret.txt"}]})) == "AccessDenied"
        assert code(lambda: other.delete_bucket(Bucket=mine)) == "AccessDenied"
        assert code(lambda: other.put_bucket_versioning(
            Bucket=mine, VersioningConfiguration={"Status": "Enabled"})) == "AccessDenied"
        assert code(lambda: other.create_multipart_upload(Bucket=mine, Key="m")) == "AccessDenied"
        assert code(lambda: other.create_bucket(Bucket=mine)) == "BucketAlreadyExists"
    # A server-side copy out of another tenant's bucket into one's own is refused too.
    assert code(lambda: bob.copy_object(Bucket=theirs, Key="stolen",
                                        CopySource={"Bucket": mine, "Key": "secret.txt"})) == "AccessDenied"
    mpu = bob.create_multipart_upload(Bucket=theirs, Key="m")["UploadId"]
    assert code(lambda: bob.upload_part_copy(Bucket=theirs, Key="m", UploadId=mpu, PartNumber=1,
                                             CopySource={"Bucket": mine, "Key": "secret.txt"})) == "AccessDenied"
    # Nothing changed.
    assert alice.get_object(Bucket=mine, Key="secret.txt")["Body"].read() == b"acme only"
    assert [o["Key"] for o in alice.list_objects_v2(Bucket=mine)["Contents"]] == ["secret.txt"]
    assert code(lambda: alice.get_object(Bucket=theirs, Key="stolen")) == "AccessDenied"


def test_aws_cli_sees_only_its_tenants_buckets(hub, tenants, tmp_path):
    alice = client_of(hub, tenants["acme"])
    mine = unique_name("acme-cli")
    alice.create_bucket(Bucket=mine)
    alice.put_object(Bucket=mine, Key="a.txt", Body=b"alice")

    def aws(creds, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=creds["access_key"], AWS_SECRET_ACCESS_KEY=creds["secret_key"],
                   AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
                   AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true",
                   AWS_MAX_ATTEMPTS="1")
        return subprocess.run([aws_cli_path(), "--endpoint-url", hub.endpoint, *args], env=env,
                              capture_output=True, text=True, timeout=120)

    listed = aws(tenants["acme"], "s3", "ls")
    assert listed.returncode == 0 and mine in listed.stdout, listed.stderr
    listed = aws(tenants["globex"], "s3", "ls")
    assert listed.returncode == 0 and mine not in listed.stdout
    stolen = aws(tenants["globex"], "s3", "cp", f"s3://{mine}/a.txt", str(tmp_path / "stolen"))
    assert stolen.returncode != 0 and "403" in stolen.stderr, stolen.stderr
    assert not (tmp_path / "stolen").exists()
    removed = aws(tenants["globex"], "s3", "rm", f"s3://{mine}/a.txt")
    assert removed.returncode != 0
    assert alice.get_object(Bucket=mine, Key="a.txt")["Body"].read() == b"alice"


def test_anonymous_requests_are_denied(hub, tenants):
    alice = client_of(hub, tenants["acme"])
    mine = unique_name("acme-anon")
    alice.create_bucket(Bucket=mine)
    alice.put_object(Bucket=mine, Key="k", Body=b"v")
    for method, path in (("GET", f"/{mine}/k"), ("GET", f"/{mine}"), ("PUT", f"/{mine}/new"), ("GET", "/")):
        r = requests.request(method, hub.endpoint + path, data=b"x" if method == "PUT" else None, timeout=10)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert "<Code>AccessDenied</Code>" in r.text
    assert code(lambda: alice.head_object(Bucket=mine, Key="new")) in ("404", "NoSuchKey")


def test_a_user_who_is_not_a_tenant_admin_is_granted_nothing_without_a_policy(hub, tenants):
    carol = json.loads(ok(cli(hub.admin_endpoint, "user", "add", "acme", "carol", "--json")))
    s3 = client_of(hub, carol)
    assert code(lambda: s3.create_bucket(Bucket=unique_name("carol"))) == "AccessDenied"
    alice = client_of(hub, tenants["acme"])
    mine = unique_name("acme-c")
    alice.create_bucket(Bucket=mine)
    assert code(lambda: s3.put_object(Bucket=mine, Key="k", Body=b"v")) == "AccessDenied"


def test_a_revoked_key_stops_working_and_stays_revoked(hub, tenants):
    admin = hub.admin_endpoint
    extra = json.loads(ok(cli(admin, "key", "add", "acme", "alice", "--json")))
    s3 = client_of(hub, extra)
    s3.list_buckets()
    listed = ok(cli(admin, "key", "list", "--tenant", "acme"))
    assert extra["access_key"] in listed and extra["secret_key"] not in listed
    ok(cli(admin, "key", "revoke", extra["access_key"]))
    assert code(lambda: s3.list_buckets()) == "InvalidAccessKeyId"
    # The tenant's other key still works.
    client_of(hub, tenants["acme"]).list_buckets()


def test_tenant_admins_manage_their_own_tenant_only(hub, tenants):
    admin, alice = hub.admin_endpoint, tenants["acme"]
    as_alice = dict(access=alice["access_key"], secret=alice["secret_key"])
    dave = json.loads(ok(cli(admin, "user", "add", "acme", "dave", "--admin-of-tenant", "--json", **as_alice)))
    client_of(hub, dave).list_buckets()
    refused = cli(admin, "user", "add", "globex", "mallory", "--json", **as_alice)
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    refused = cli(admin, "tenant", "add", "evil", **as_alice)
    assert refused.returncode != 0 and "operator" in refused.stderr
    refused = cli(admin, "key", "revoke", tenants["globex"]["access_key"], **as_alice)
    assert refused.returncode != 0
    client_of(hub, tenants["globex"]).list_buckets()
    refused = cli(admin, "status", **as_alice)
    assert refused.returncode != 0 and "operator" in refused.stderr


def test_bucket_quota_and_tenant_removal_are_refused_cleanly(hub):
    admin = hub.admin_endpoint
    s3 = quota_tenant(hub, "initech", "peter", "--buckets", "1")
    first = unique_name("initech")
    s3.create_bucket(Bucket=first)
    assert code(lambda: s3.create_bucket(Bucket=unique_name("initech"))) == "TooManyBuckets"
    refused = cli(admin, "tenant", "remove", "initech")
    assert refused.returncode != 0 and first in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    ok(cli(admin, "tenant", "quota", "set", "initech", "--buckets", "2"))
    second = unique_name("initech")
    s3.create_bucket(Bucket=second)
    s3.delete_bucket(Bucket=first)
    s3.delete_bucket(Bucket=second)
    ok(cli(admin, "tenant", "remove", "initech"))
    assert code(lambda: s3.list_buckets()) == "InvalidAccessKeyId"
    assert "initech" not in ok(cli(admin, "tenant", "list"))


def test_bad_input_gets_a_one_line_error(hub):
    admin = hub.admin_endpoint
    for args in (("tenant", "add", "Bad/Name"), ("user", "add", "nosuch", "u"), ("user", "add", "default", "root"),
                 ("key", "revoke", "VKNOSUCHKEY"), ("tenant", "remove", "default"), ("tenant", "show", "nosuch")):
        result = cli(admin, *args)
        assert result.returncode != 0, args
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_keys_survive_a_restart_and_no_secret_is_stored_in_plaintext(hub, tenants):
    hub.restart(hard=True)
    for creds in tenants.values():
        client_of(hub, creds).list_buckets()
    raw = (hub.data_dir / "meta.redb").read_bytes()
    for creds in tenants.values():
        assert creds["access_key"].encode() in raw, "the key's record is there"
        assert creds["secret_key"].encode() not in raw, "but its secret only sealed"


# ---- a network: tenant records replicate ----------------------------------------------------------

@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    net = Network(tmp_path_factory.mktemp("tenants-net"), hubs=PAIR)
    net.start_all()
    yield net
    net.stop_all()


def test_a_tenant_made_at_one_hub_works_at_every_hub_and_a_revocation_reaches_them(pair):
    a, b = "zhangjiakou", "gui-an"
    pair.cli(a, "tenant", "add", "hospital")
    pair.cli(a, "tenant", "add", "province")
    doctor = json.loads(pair.cli(a, "user", "add", "hospital", "doctor", "--admin-of-tenant", "--json").stdout)
    clerk = json.loads(pair.cli(a, "user", "add", "province", "clerk", "--admin-of-tenant", "--json").stdout)

    def s3(hub, creds):
        return make_client(pair.s3_endpoint(hub), creds["access_key"], creds["secret_key"], verify=str(pair.ca))

    # The keys made at A work at B once their records arrived.
    for creds in (doctor, clerk):
        wait_for(lambda c=creds: code(lambda: s3(b, c).list_buckets()) == "OK", timeout=30, what="key replicated")
    records = s3(b, doctor)
    bucket = unique_name("records")
    records.create_bucket(Bucket=bucket)
    records.put_object(Bucket=bucket, Key="patient-1", Body=b"confidential")
    # The owner record travelled with the bucket: the other tenant is refused at both hubs.
    for hub in (a, b):
        wait_for(lambda h=hub: code(lambda: s3(h, doctor).head_bucket(Bucket=bucket)) == "OK", timeout=30,
                 what=f"bucket known at {hub}")
        other = s3(hub, clerk)
        assert code(lambda: other.get_object(Bucket=bucket, Key="patient-1")) in ("AccessDenied", "NoSuchKey")
        assert code(lambda: other.get_object(Bucket=bucket, Key="patient-1")) == "AccessDenied"
        assert code(lambda: other.put_object(Bucket=bucket, Key="x", Body=b"y")) == "AccessDenied"
        assert code(lambda: other.create_bucket(Bucket=bucket)) == "BucketAlreadyExists"
        assert bucket not in [x["Name"] for x in other.list_buckets()["Buckets"]]
    # The refusals are in the audit log with what decided them.
    audit = pair.cli(a, "audit", "show", "--json").stdout
    assert "S3 request refused: arn:aws:iam::province:user/clerk may not s3:GetObject" in audit, audit[-2000:]
    assert "no bucket policy statement or acl grant allows" in audit
    # Revoked at B, refused at A within the replication lag.
    pair.cli(b, "key", "revoke", doctor["access_key"])
    started = time.monotonic()
    wait_for(lambda: code(lambda: s3(a, doctor).list_buckets()) == "InvalidAccessKeyId", timeout=30,
             what="revocation replicated")
    print(f"revocation reached the other hub in {time.monotonic() - started:.2f} s")
    assert code(lambda: s3(b, doctor).list_buckets()) == "InvalidAccessKeyId"
    # The other tenant's key is untouched.
    s3(a, clerk).list_buckets()


def test_usage_per_tenant_per_hub_and_traffic_between_hubs_are_reported(pair):
    a, b = "zhangjiakou", "gui-an"
    pair.cli(a, "tenant", "add", "shipper")
    owner = json.loads(pair.cli(a, "user", "add", "shipper", "owner", "--admin-of-tenant", "--json").stdout)
    s3 = make_client(pair.s3_endpoint(a), owner["access_key"], owner["secret_key"], verify=str(pair.ca))
    bucket = unique_name("shipped")
    s3.create_bucket(Bucket=bucket)
    ok(cli(pair.admin_endpoint(a), "bucket", "policy", "set", bucket, "--jurisdictions", "CN", "--copies", "2",
           access=owner["access_key"], secret=owner["secret_key"], ca=pair.ca))
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=bytes([i]) * 2500)

    def usage():
        rows = [t for t in pair.status(a)["tenants"] if t["tenant"] == "shipper"]
        return {h["hub"]: (h["jurisdiction"], h["objects"], h["bytes"]) for h in rows[0]["holdings"]} if rows else {}

    wait_for(lambda: usage() == {a: ("CN", 4, 10000), b: ("CN", 4, 10000)}, timeout=60, what="both copies counted")
    text = pair.cli(a, "status").stdout
    assert "TENANTS" in text and "shipper" in text, text
    metrics = pair.get(f"{pair.admin_endpoint(a)}/metrics", timeout=10).text
    sent = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
            if line.startswith("valley_tenant_replication_sent_") and 'tenant="shipper"' in line}
    assert sent == {
        f'valley_tenant_replication_sent_versions_total{{tenant="shipper",peer="{b}"}}': 4,
        f'valley_tenant_replication_sent_bytes_total{{tenant="shipper",peer="{b}"}}': 10000,
    }, sent


def test_byte_and_object_quotas_refuse_a_write_before_any_byte_is_stored(hub):
    admin = hub.admin_endpoint
    s3 = quota_tenant(hub, "umbrella", "ada", "--bytes", "10000", "--objects", "3")
    bucket = unique_name("umbrella")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a", Body=b"x" * 6000)
    time.sleep(1.2)  # usage is read at most once a second
    assert code(lambda: s3.put_object(Bucket=bucket, Key="too-big", Body=b"x" * 5000)) == "QuotaExceeded"
    assert code(lambda: s3.head_object(Bucket=bucket, Key="too-big")) in ("404", "NoSuchKey"), "nothing half-written"
    s3.put_object(Bucket=bucket, Key="b", Body=b"x" * 100)
    s3.put_object(Bucket=bucket, Key="c", Body=b"x" * 100)
    time.sleep(1.2)
    assert code(lambda: s3.put_object(Bucket=bucket, Key="d", Body=b"x")) == "QuotaExceeded"
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == ["a", "b", "c"]
    # Raised: writes go through again.
    ok(cli(admin, "tenant", "quota", "set", "umbrella", "--objects", "10"))
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")


# ---- bucket and identity policies -----------------------------------------------------------------

def read_policy(bucket: str, principal, actions=("s3:GetObject",), effect="Allow", condition=None) -> str:
    statement = {"Sid": "Shared", "Effect": effect, "Principal": principal, "Action": list(actions),
                 "Resource": [f"arn:aws:s3:::{bucket}/*"]}
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def test_a_bucket_policy_grants_one_user_of_another_tenant_exactly_what_it_says(hub, tenants):
    alice, bob = client_of(hub, tenants["acme"]), client_of(hub, tenants["globex"])
    shared = unique_name("acme-shared")
    alice.create_bucket(Bucket=shared)
    alice.put_object(Bucket=shared, Key="report.csv", Body=b"a,b\n")
    assert code(lambda: bob.get_object(Bucket=shared, Key="report.csv")) == "AccessDenied"
    alice.put_bucket_policy(Bucket=shared, Policy=read_policy(shared, {"AWS": tenants["globex"]["arn"]}))
    assert json.loads(alice.get_bucket_policy(Bucket=shared)["Policy"])["Statement"][0]["Sid"] == "Shared"
    assert bob.get_object(Bucket=shared, Key="report.csv")["Body"].read() == b"a,b\n"
    # Only what it says: no writes, no deletes, no listing, no policy reads.
    assert code(lambda: bob.put_object(Bucket=shared, Key="x", Body=b"y")) == "AccessDenied"
    assert code(lambda: bob.delete_object(Bucket=shared, Key="report.csv")) == "AccessDenied"
    assert code(lambda: bob.list_objects_v2(Bucket=shared)) == "AccessDenied"
    assert code(lambda: bob.get_bucket_policy(Bucket=shared)) == "AccessDenied"
    assert code(lambda: bob.put_bucket_policy(Bucket=shared, Policy=read_policy(shared, "*"))) == "AccessDenied"
    # A presigned URL carries exactly its signer's rights.
    url = bob.generate_presigned_url("get_object", Params={"Bucket": shared, "Key": "report.csv"}, ExpiresIn=60)
    assert requests.get(url, timeout=10).content == b"a,b\n"
    url = bob.generate_presigned_url("put_object", Params={"Bucket": shared, "Key": "evil"}, ExpiresIn=60)
    assert requests.put(url, data=b"evil", timeout=10).status_code == 403
    # Root of the default tenant is still a stranger here.
    root = make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY)
    assert code(lambda: root.get_object(Bucket=shared, Key="report.csv")) == "AccessDenied"
    alice.delete_bucket_policy(Bucket=shared)
    assert code(lambda: bob.get_object(Bucket=shared, Key="report.csv")) == "AccessDenied"
    assert code(lambda: alice.get_bucket_policy(Bucket=shared)) == "NoSuchBucketPolicy"


def test_public_read_serves_curl_without_credentials_and_conditions_apply(hub, tenants):
    alice = client_of(hub, tenants["acme"])
    public = unique_name("acme-public")
    alice.create_bucket(Bucket=public)
    alice.put_object(Bucket=public, Key="index.html", Body=b"<h1>hi</h1>")
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{hub.endpoint}/{public}/index.html"]
    assert subprocess.run(curl, capture_output=True, text=True, timeout=30).stdout == "403"
    # Public only from an address range the client is not in: still refused.
    alice.put_bucket_policy(Bucket=public, Policy=read_policy(
        public, "*", condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert subprocess.run(curl, capture_output=True, text=True, timeout=30).stdout == "403"
    assert alice.get_bucket_policy_status(Bucket=public)["PolicyStatus"]["IsPublic"] is False
    alice.put_bucket_policy(Bucket=public, Policy=read_policy(public, "*"))
    assert alice.get_bucket_policy_status(Bucket=public)["PolicyStatus"]["IsPublic"] is True
    got = subprocess.run(["curl", "-s", f"{hub.endpoint}/{public}/index.html"], capture_output=True, timeout=30)
    assert got.stdout == b"<h1>hi</h1>"
    # Reading is all it grants anonymously.
    assert requests.put(f"{hub.endpoint}/{public}/defaced.html", data=b"x", timeout=10).status_code == 403
    assert requests.get(f"{hub.endpoint}/{public}", timeout=10).status_code == 403


def test_an_explicit_deny_wins_even_over_the_owner_who_can_still_remove_it(hub, tenants):
    alice = client_of(hub, tenants["acme"])
    locked = unique_name("acme-locked")
    alice.create_bucket(Bucket=locked)
    alice.put_object(Bucket=locked, Key="keep", Body=b"k")
    alice.put_bucket_policy(Bucket=locked, Policy=read_policy(locked, "*", actions=("s3:DeleteObject",), effect="Deny"))
    assert code(lambda: alice.delete_object(Bucket=locked, Key="keep")) == "AccessDenied"
    assert alice.get_object(Bucket=locked, Key="keep")["Body"].read() == b"k"
    alice.delete_bucket_policy(Bucket=locked)
    alice.delete_object(Bucket=locked, Key="keep")


def test_malformed_policies_are_refused_naming_the_problem(hub, tenants):
    alice = client_of(hub, tenants["acme"])
    bucket = unique_name("acme-malformed")
    alice.create_bucket(Bucket=bucket)
    bad = {
        "not json": "{",
        "unknown operator": read_policy(bucket, "*", condition={"StringEqual": {"s3:prefix": "a"}}),
        "another bucket": read_policy("someone-elses", "*"),
        "no such action": json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObjekt", "Resource": f"arn:aws:s3:::{bucket}/*"}]}),
    }
    for what, policy in bad.items():
        try:
            alice.put_bucket_policy(Bucket=bucket, Policy=policy)
            raise AssertionError(f"{what}: accepted")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "MalformedPolicy", (what, e.response)
            assert e.response["Error"]["Message"], what
    assert code(lambda: alice.get_bucket_policy(Bucket=bucket)) == "NoSuchBucketPolicy"


def test_an_identity_policy_gives_a_plain_user_what_it_names(hub, tenants, tmp_path):
    admin = hub.admin_endpoint
    erin = json.loads(ok(cli(admin, "user", "add", "acme", "erin", "--json")))
    alice, s3 = client_of(hub, tenants["acme"]), client_of(hub, erin)
    bucket = unique_name("acme-erin")
    alice.create_bucket(Bucket=bucket)
    alice.put_object(Bucket=bucket, Key="docs/a", Body=b"a")
    assert code(lambda: s3.get_object(Bucket=bucket, Key="docs/a")) == "AccessDenied"
    policy = tmp_path / "erin.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{bucket}/docs/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": "docs/*"}}}]}))
    ok(cli(admin, "user", "policy", "set", "acme", "erin", "--file", str(policy)))
    assert json.loads(ok(cli(admin, "user", "policy", "show", "acme", "erin")))["Version"] == "2012-10-17"
    assert s3.get_object(Bucket=bucket, Key="docs/a")["Body"].read() == b"a"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="docs/")["Contents"]] == ["docs/a"]
    assert code(lambda: s3.list_objects_v2(Bucket=bucket, Prefix="private/")) == "AccessDenied"
    assert code(lambda: s3.put_object(Bucket=bucket, Key="docs/b", Body=b"b")) == "AccessDenied"
    policy.write_text('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:Nope", "Resource": "*"}]}')
    refused = cli(admin, "user", "policy", "set", "acme", "erin", "--file", str(policy))
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    ok(cli(admin, "user", "policy", "delete", "acme", "erin"))
    assert code(lambda: s3.get_object(Bucket=bucket, Key="docs/a")) == "AccessDenied"


def test_a_bucket_policy_set_at_one_hub_applies_at_every_hub(pair):
    a, b = "zhangjiakou", "gui-an"
    pair.cli(a, "tenant", "add", "lab")
    pair.cli(a, "tenant", "add", "clinic")
    owner = json.loads(pair.cli(a, "user", "add", "lab", "owner", "--admin-of-tenant", "--json").stdout)
    reader = json.loads(pair.cli(a, "user", "add", "clinic", "reader", "--admin-of-tenant", "--json").stdout)

    def s3(hub, creds):
        return make_client(pair.s3_endpoint(hub), creds["access_key"], creds["secret_key"], verify=str(pair.ca))

    for creds in (owner, reader):
        wait_for(lambda c=creds: code(lambda: s3(b, c).list_buckets()) == "OK", timeout=30, what="key replicated")
    bucket = unique_name("results")
    s3(a, owner).create_bucket(Bucket=bucket)
    s3(a, owner).put_object(Bucket=bucket, Key="r1", Body=b"negative")
    s3(a, owner).put_bucket_policy(Bucket=bucket, Policy=read_policy(bucket, {"AWS": reader["arn"]}))
    for hub in (a, b):
        wait_for(lambda h=hub: code(lambda: s3(h, reader).get_object(Bucket=bucket, Key="r1")) == "OK", timeout=30,
                 what=f"policy applied at {hub}")
        assert code(lambda h=hub: s3(h, reader).put_object(Bucket=bucket, Key="x", Body=b"y")) == "AccessDenied"


# ---- ACLs, ownership controls, Public Access Block ------------------------------------------------

def test_canned_and_granted_acls_share_exactly_what_they_name(hub, tenants):
    alice, bob = client_of(hub, tenants["acme"]), client_of(hub, tenants["globex"])
    bucket = unique_name("acme-acl")
    alice.create_bucket(Bucket=bucket)
    alice.put_object(Bucket=bucket, Key="public.txt", Body=b"for all", ACL="public-read")
    alice.put_object(Bucket=bucket, Key="private.txt", Body=b"mine")
    assert requests.get(f"{hub.endpoint}/{bucket}/public.txt", timeout=10).content == b"for all"
    assert requests.get(f"{hub.endpoint}/{bucket}/private.txt", timeout=10).status_code == 403
    assert requests.get(f"{hub.endpoint}/{bucket}", timeout=10).status_code == 403, "the bucket is not listable"
    grants = alice.get_object_acl(Bucket=bucket, Key="public.txt")["Grants"]
    assert {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"} in [g["Grantee"] for g in grants]
    # A grant to another tenant by its canonical id (the tenant id).
    assert code(lambda: bob.get_object(Bucket=bucket, Key="private.txt")) == "AccessDenied"
    alice.put_object_acl(Bucket=bucket, Key="private.txt", GrantRead='id="globex"')
    assert bob.get_object(Bucket=bucket, Key="private.txt")["Body"].read() == b"mine"
    assert code(lambda: bob.put_object_acl(Bucket=bucket, Key="private.txt", ACL="public-read")) == "AccessDenied"
    assert code(lambda: bob.delete_object(Bucket=bucket, Key="private.txt")) == "AccessDenied"
    # A bucket ACL makes the bucket listable to everyone, and nothing more.
    alice.put_bucket_acl(Bucket=bucket, ACL="public-read")
    listing = requests.get(f"{hub.endpoint}/{bucket}", timeout=10)
    assert listing.status_code == 200 and "public.txt" in listing.text
    assert requests.put(f"{hub.endpoint}/{bucket}/new", data=b"x", timeout=10).status_code == 403
    owner = alice.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]
    assert owner == "acme"
    # Both a canned ACL and grants at once is refused.
    assert code(lambda: alice.put_object(Bucket=bucket, Key="both", Body=b"", ACL="public-read",
                                         GrantRead='id="globex"')) == "InvalidRequest"


def test_bucket_owner_enforced_turns_acls_off(hub, tenants):
    alice = client_of(hub, tenants["acme"])
    bucket = unique_name("acme-enforced")
    alice.create_bucket(Bucket=bucket, ObjectOwnership="BucketOwnerEnforced")
    rules = alice.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert code(lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"v", ACL="public-read")) \
        == "AccessControlListNotSupported"
    alice.put_object(Bucket=bucket, Key="k", Body=b"v")
    alice.put_object(Bucket=bucket, Key="k2", Body=b"v", ACL="bucket-owner-full-control")
    # No ACL is set at all while ACLs are off, not even `private` (as S3).
    for refused in (lambda: alice.put_object(Bucket=bucket, Key="k3", Body=b"v", ACL="private"),
                    lambda: alice.copy_object(Bucket=bucket, Key="k4", CopySource={"Bucket": bucket, "Key": "k"},
                                              ACL="private"),
                    lambda: alice.put_bucket_acl(Bucket=bucket, ACL="public-read"),
                    lambda: alice.put_bucket_acl(Bucket=bucket, ACL="private"),
                    lambda: alice.put_object_acl(Bucket=bucket, Key="k", ACL="private")):
        assert code(refused) == "AccessControlListNotSupported"
    assert code(lambda: alice.head_object(Bucket=bucket, Key="k3")) in ("404", "NoSuchKey")
    alice.delete_bucket_ownership_controls(Bucket=bucket)
    assert code(lambda: alice.get_bucket_ownership_controls(Bucket=bucket)) == "OwnershipControlsNotFoundError"
    alice.put_object_acl(Bucket=bucket, Key="k", ACL="public-read")
    assert requests.get(f"{hub.endpoint}/{bucket}/k", timeout=10).content == b"v"


def test_public_access_block_refuses_and_ignores_public_grants(hub, tenants):
    alice = client_of(hub, tenants["acme"])
    bucket = unique_name("acme-pab")
    alice.create_bucket(Bucket=bucket)
    alice.put_object(Bucket=bucket, Key="was-public", Body=b"p", ACL="public-read")
    alice.put_bucket_policy(Bucket=bucket, Policy=read_policy(bucket, "*"))
    assert requests.get(f"{hub.endpoint}/{bucket}/was-public", timeout=10).status_code == 200
    alice.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    config = alice.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(config.values()), config
    assert requests.get(f"{hub.endpoint}/{bucket}/was-public", timeout=10).status_code == 403, "public grants ignored"
    assert code(lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"v", ACL="public-read")) == "AccessDenied"
    assert code(lambda: alice.put_bucket_policy(Bucket=bucket, Policy=read_policy(bucket, "*"))) == "AccessDenied"
    assert alice.get_object(Bucket=bucket, Key="was-public")["Body"].read() == b"p"
    alice.delete_public_access_block(Bucket=bucket)
    assert code(lambda: alice.get_public_access_block(Bucket=bucket)) == "NoSuchPublicAccessBlockConfiguration"
    assert requests.get(f"{hub.endpoint}/{bucket}/was-public", timeout=10).status_code == 200


def test_a_recreated_bucket_name_starts_with_no_policy_or_acl(hub, tenants):
    alice, bob = client_of(hub, tenants["acme"]), client_of(hub, tenants["globex"])
    bucket = unique_name("reused")
    alice.create_bucket(Bucket=bucket)
    alice.put_bucket_policy(Bucket=bucket, Policy=read_policy(bucket, "*"))
    alice.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    alice.delete_bucket(Bucket=bucket)
    bob.create_bucket(Bucket=bucket)
    bob.put_object(Bucket=bucket, Key="bob", Body=b"b")
    assert code(lambda: bob.get_bucket_policy(Bucket=bucket)) == "NoSuchBucketPolicy"
    assert requests.get(f"{hub.endpoint}/{bucket}/bob", timeout=10).status_code == 403
    assert requests.put(f"{hub.endpoint}/{bucket}/x", data=b"x", timeout=10).status_code == 403
    assert code(lambda: alice.get_object(Bucket=bucket, Key="bob")) == "AccessDenied"


def test_usage_per_tenant_is_in_metrics_and_tenant_show(hub):
    admin = hub.admin_endpoint
    ok(cli(admin, "tenant", "add", "billing"))
    payer = json.loads(ok(cli(admin, "user", "add", "billing", "payer", "--admin-of-tenant", "--json")))
    s3 = client_of(hub, payer)
    bucket = unique_name("billing")
    s3.create_bucket(Bucket=bucket)
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x" * 1000)
    # Requests refused to strangers are billed to nobody (they cannot run up a tenant's bill),
    # its own users' refused ones are; nor is a request on a bucket that does not exist.
    assert requests.get(f"{hub.endpoint}/{bucket}/k0", timeout=10).status_code == 403
    assert code(lambda: make_client(hub.endpoint, ACCESS_KEY, SECRET_KEY).get_object(
        Bucket=bucket, Key="k0")) == "AccessDenied"
    assert requests.get(f"{hub.endpoint}/{unique_name('nobody')}/k", timeout=10).status_code in (403, 404)
    reader = json.loads(ok(cli(admin, "user", "add", "billing", "reader", "--json")))
    assert code(lambda: client_of(hub, reader).get_object(Bucket=bucket, Key="k0")) == "AccessDenied"
    metrics = requests.get(admin + "/metrics", timeout=10).text
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
             if line.startswith("valley_tenant_") and 'tenant="billing"' in line}
    assert lines['valley_tenant_objects{tenant="billing"}'] == 3, lines
    assert lines['valley_tenant_bytes{tenant="billing"}'] == 3000, lines
    assert lines['valley_tenant_buckets{tenant="billing"}'] == 1, lines
    # create + 3 puts + its own user's refused get
    assert lines['valley_tenant_requests_total{tenant="billing"}'] == 5, lines
    shown = json.loads(ok(cli(admin, "tenant", "show", "billing", "--json")))
    assert (shown["objects_here"], shown["bytes_here"], shown["buckets"]) == (3, 3000, [bucket])
    assert "3 object versions, 3000 bytes" in ok(cli(admin, "tenant", "show", "billing"))


def test_a_tenant_public_access_block_covers_every_bucket_it_owns(hub):
    admin = hub.admin_endpoint
    ok(cli(admin, "tenant", "add", "bank"))
    teller = json.loads(ok(cli(admin, "user", "add", "bank", "teller", "--admin-of-tenant", "--json")))
    s3 = client_of(hub, teller)
    bucket = unique_name("bank")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="rates", Body=b"3%", ACL="public-read")
    assert requests.get(f"{hub.endpoint}/{bucket}/rates", timeout=10).status_code == 200
    # The tenant admin sets it for all its buckets, with its own key.
    as_teller = dict(access=teller["access_key"], secret=teller["secret_key"])
    ok(cli(admin, "tenant", "public-access-block", "set", "bank", "--ignore-public-acls", "--block-public-acls",
           "--block-public-policy", **as_teller))
    assert requests.get(f"{hub.endpoint}/{bucket}/rates", timeout=10).status_code == 403
    assert code(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"v", ACL="public-read")) == "AccessDenied"
    assert code(lambda: s3.put_bucket_policy(Bucket=bucket, Policy=read_policy(bucket, "*"))) == "AccessDenied"
    shown = json.loads(ok(cli(admin, "tenant", "show", "bank", "--json")))
    assert shown["public_access_block"]["ignore_public_acls"] is True
    refused = cli(admin, "tenant", "public-access-block", "set", "acme", "--ignore-public-acls", **as_teller)
    assert refused.returncode != 0
    ok(cli(admin, "tenant", "public-access-block", "set", "bank"))
    assert requests.get(f"{hub.endpoint}/{bucket}/rates", timeout=10).status_code == 200


def test_under_object_writer_the_writer_owns_what_it_writes(hub, tenants):
    alice, bob = client_of(hub, tenants["acme"]), client_of(hub, tenants["globex"])
    bucket = unique_name("acme-inbox")
    alice.create_bucket(Bucket=bucket, ObjectOwnership="ObjectWriter")
    alice.put_bucket_policy(Bucket=bucket, Policy=read_policy(bucket, {"AWS": tenants["globex"]["arn"]},
                                                              actions=("s3:PutObject",)))
    bob.put_object(Bucket=bucket, Key="from-bob", Body=b"b")
    assert bob.get_object_acl(Bucket=bucket, Key="from-bob")["Owner"]["ID"] == "globex"
    assert bob.get_object(Bucket=bucket, Key="from-bob")["Body"].read() == b"b", "its writer reads it back"
    # The bucket's owner does not read what it does not own, nor its ACL: only what the
    # object's ACL grants it (S3's ObjectWriter). It may still delete it.
    assert code(lambda: alice.get_object(Bucket=bucket, Key="from-bob")) == "AccessDenied"
    assert code(lambda: alice.get_object_acl(Bucket=bucket, Key="from-bob")) == "AccessDenied"
    assert code(lambda: alice.head_object(Bucket=bucket, Key="from-bob")) in ("403", "AccessDenied")
    bob.put_object(Bucket=bucket, Key="handed-over", Body=b"h", ACL="bucket-owner-full-control")
    ids = sorted(g["Grantee"]["ID"] for g in alice.get_object_acl(Bucket=bucket, Key="handed-over")["Grants"])
    assert ids == ["acme", "globex"], ids
    assert alice.get_object(Bucket=bucket, Key="handed-over")["Body"].read() == b"h"
    alice.delete_object(Bucket=bucket, Key="from-bob")
    assert code(lambda: alice.get_object(Bucket=bucket, Key="from-bob")) == "NoSuchKey"


CN_EU = [("zhangjiakou", "CN", "east", "north-china-grid"), ("frankfurt", "EU", "east", "central-europe")]


@pytest.fixture(scope="module")
def cn_eu(tmp_path_factory):
    net = Network(tmp_path_factory.mktemp("tenants-cn-eu"), hubs=CN_EU)
    net.start_all()
    yield net
    net.stop_all()


def test_a_tenants_grant_carries_its_own_data_across_a_border_and_nobody_elses(cn_eu):
    net, cn, eu = cn_eu, "zhangjiakou", "frankfurt"
    admin = net.admin_endpoint(cn)
    creds = {}
    for tenant in ("acme", "globex"):
        net.cli(cn, "tenant", "add", tenant)
        creds[tenant] = json.loads(net.cli(cn, "user", "add", tenant, "admin", "--admin-of-tenant", "--json").stdout)

    def as_tenant(tenant, *args):
        return cli(admin, *args, access=creds[tenant]["access_key"], secret=creds[tenant]["secret_key"], ca=net.ca)

    def s3(tenant):
        return make_client(net.s3_endpoint(cn), creds[tenant]["access_key"], creds[tenant]["secret_key"],
                           verify=str(net.ca))

    # acme records its standard contract; it is acme's, listed to acme and the operator only.
    grant = "scc-" + unique_name("acme")
    ok(as_tenant("acme", "grant", "add", "--id", grant, "--from", "CN", "--to", "EU", "--classification",
                 "personal-info", "--companion", "piia=PIIA-1", "--basis", "standard-contract", "--reference", "SCC-ACME-1", "--expires",
                 "2099-12-31"))
    assert grant in ok(as_tenant("acme", "grant", "list"))
    assert grant not in ok(as_tenant("globex", "grant", "list"))
    listed = json.loads(net.cli(cn, "grant", "list", "--json").stdout)
    assert [g["tenant"] for g in listed if g["id"] == grant] == ["acme"]
    # globex can neither revoke it nor replace it under the same id.
    assert as_tenant("globex", "grant", "revoke", grant).returncode != 0
    taken = as_tenant("globex", "grant", "add", "--id", grant, "--from", "CN", "--to", "EU", "--classification",
                      "personal-info", "--companion", "piia=PIIA-1", "--basis", "standard-contract", "--reference", "X", "--expires", "2099-12-31")
    assert taken.returncode != 0 and "taken by another tenant" in taken.stderr, taken.stderr

    # Each tenant sets its own bucket's placement: personal data, one copy in Frankfurt.
    buckets = {}
    for tenant in ("acme", "globex"):
        bucket = unique_name(tenant + "-pi")
        s3(tenant).create_bucket(Bucket=bucket)
        ok(as_tenant(tenant, "bucket", "policy", "set", bucket, "--hubs", f"{cn},{eu}", "--copies", "2",
                     "--classification", "personal-info", "--individuals-per-object", "1"))
        buckets[tenant] = bucket
    # Nobody sets or reads the placement of another tenant's bucket, the operator included.
    for who, bucket in (("globex", buckets["acme"]), ("acme", buckets["globex"])):
        refused = as_tenant(who, "bucket", "policy", "set", bucket, "--jurisdictions", "CN")
        assert refused.returncode != 0 and "is tenant" in refused.stderr, refused.stderr
    refused = net.cli(cn, "bucket", "policy", "set", buckets["acme"], "--jurisdictions", "CN", check=False)
    assert refused.returncode != 0 and "tenant \"acme\"" in refused.stderr, refused.stderr
    refused = net.cli(cn, "residency", "report", buckets["acme"], check=False)
    assert refused.returncode != 0, refused.stdout

    time.sleep(0.5)
    acme_data, globex_data = marker() + os.urandom(500), marker() + os.urandom(500)
    s3("acme").put_object(Bucket=buckets["acme"], Key="customer", Body=acme_data)
    s3("globex").put_object(Bucket=buckets["globex"], Key="customer", Body=globex_data)
    wait_for(lambda: net.holdings(cn, buckets["acme"]).get(eu, 0) == 1, what="acme's copy in frankfurt")
    net.wait_idle(cn)
    # acme's grant did not carry globex's data: refused and audited, no byte of it in the EU.
    assert net.bytes_containing(eu, globex_data[:16]) == 0
    assert net.holdings(cn, buckets["globex"]).get(eu, 0) == 0
    audit = net.cli(cn, "audit", "show", "--bucket", buckets["globex"], "--json").stdout
    assert 'tenant \\"globex\\" has no grant for this direction' in audit, audit[-2000:]
    eu_s3 = make_client(net.s3_endpoint(eu), creds["acme"]["access_key"], creds["acme"]["secret_key"],
                        verify=str(net.ca))
    wait_for(lambda: code(lambda: eu_s3.head_object(Bucket=buckets["acme"], Key="customer")) == "OK",
             what="acme's key works at frankfurt")
    assert eu_s3.get_object(Bucket=buckets["acme"], Key="customer")["Body"].read() == acme_data


def test_a_missing_key_is_not_found_only_for_whoever_may_list_its_name(hub, tenants):
    alice, bob = client_of(hub, tenants["acme"]), client_of(hub, tenants["globex"])
    bucket = unique_name("acme-listable")
    alice.create_bucket(Bucket=bucket)
    alice.put_object(Bucket=bucket, Key="public/present", Body=b"not for bob")
    alice.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:ListBucket",
                       "Resource": f"arn:aws:s3:::{bucket}", "Condition": {"StringLike": {"s3:prefix": "public/*"}}}],
    }))
    # bob may list names under public/: a missing one there is 404, as S3 answers...
    assert code(lambda: bob.head_object(Bucket=bucket, Key="public/missing")) == "404"
    assert code(lambda: bob.get_object(Bucket=bucket, Key="public/missing")) == "NoSuchKey"
    # ...a present one is still his to read only with s3:GetObject, and names he may not list
    # are refused whether they exist or not.
    assert code(lambda: bob.get_object(Bucket=bucket, Key="public/present")) == "AccessDenied"
    assert code(lambda: bob.head_object(Bucket=bucket, Key="private/missing")) == "403"
    assert code(lambda: bob.get_object(Bucket=bucket, Key="private/missing")) == "AccessDenied"


# ---- browser form uploads (POST Object) ---------------------------------------------------------

def form_post(url: str, fields: dict, body: bytes = b"hello", filename: str = "upload.txt"):
    """Posts `fields` and a file as a browser's HTML form does (multipart/form-data, file last)."""
    files = [(name, (None, value)) for name, value in fields.items()] + [("file", (filename, body))]
    return requests.post(url, files=files, timeout=30)


def sigv2_form(endpoint: str, bucket: str, key: str, access: str, secret: str, expires_in: float) -> tuple[str, dict]:
    """A form signed as older browser SDKs sign it: HMAC-SHA1 of the base64 policy document."""
    import base64
    import hashlib
    import hmac
    from datetime import datetime, timedelta, timezone

    expiration = (datetime.now(timezone.utc) + timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
    document = {"expiration": expiration, "conditions": [{"bucket": bucket}, {"key": key}]}
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    signature = base64.b64encode(hmac.new(secret.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    return f"{endpoint}/{bucket}", {"key": key, "AWSAccessKeyId": access, "policy": policy, "signature": signature}


def test_a_form_upload_is_decided_as_a_put_of_the_key_it_names(hub, tenants):
    alice, bob = client_of(hub, tenants["acme"]), client_of(hub, tenants["globex"])
    bucket = unique_name("acme-forms")
    alice.create_bucket(Bucket=bucket)

    def stored(key: str) -> int | None:
        """The size of `key` as the bucket's owner lists it (objects bob writes are his, under
        the default ObjectWriter ownership: alice lists them but may not read them)."""
        listed = alice.list_objects_v2(Bucket=bucket).get("Contents", [])
        return next((o["Size"] for o in listed if o["Key"] == key), None)

    # The owner's presigned POST (SigV4), as boto3 makes it for a web page.
    form = alice.generate_presigned_post(bucket, "in/a.txt", Conditions=[["content-length-range", 0, 1000]],
                                         ExpiresIn=60)
    r = form_post(form["url"], form["fields"], b"from alice")
    assert r.status_code == 204, r.text
    assert alice.get_object(Bucket=bucket, Key="in/a.txt")["Body"].read() == b"from alice"
    # Another tenant's signed form: refused, nothing written.
    form = bob.generate_presigned_post(bucket, "in/b.txt", ExpiresIn=60)
    r = form_post(form["url"], form["fields"], b"from bob")
    assert r.status_code == 403 and "AccessDenied" in r.text, r.text
    assert stored("in/b.txt") is None
    # A bucket policy letting bob write under in/ only: decided on the key the form names.
    alice.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": tenants["globex"]["arn"]}, "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/in/*"}]}))
    form = bob.generate_presigned_post(bucket, "in/b.txt", ExpiresIn=60)
    r = form_post(form["url"], form["fields"], b"from bob")
    assert r.status_code == 204, r.text
    assert stored("in/b.txt") == len(b"from bob")
    form = bob.generate_presigned_post(bucket, "out/c.txt", ExpiresIn=60)
    r = form_post(form["url"], form["fields"], b"outside")
    assert r.status_code == 403 and "AccessDenied" in r.text, r.text
    assert stored("out/c.txt") is None
    # The signed policy binds the form: another key than the one it names is refused.
    form = alice.generate_presigned_post(bucket, "in/d.txt", ExpiresIn=60)
    r = form_post(form["url"], dict(form["fields"], key="in/elsewhere.txt"), b"tampered")
    assert r.status_code in (400, 403), r.text
    assert stored("in/elsewhere.txt") is None and stored("in/d.txt") is None
    # So does the size range it names.
    form = alice.generate_presigned_post(bucket, "in/e.txt", Conditions=[["content-length-range", 0, 10]],
                                         ExpiresIn=60)
    r = form_post(form["url"], form["fields"], b"x" * 11)
    assert r.status_code in (400, 403), r.text
    assert stored("in/e.txt") is None
    # Unsigned forms are anonymous: a private bucket refuses them.
    r = form_post(f"{hub.endpoint}/{bucket}", {"key": "in/anon.txt"}, b"anonymous")
    assert r.status_code == 403 and "AccessDenied" in r.text, r.text
    assert stored("in/anon.txt") is None


def test_a_sigv2_form_is_good_only_until_its_policy_expires(hub, tenants):
    creds = tenants["acme"]
    alice = client_of(hub, creds)
    bucket = unique_name("acme-v2-forms")
    alice.create_bucket(Bucket=bucket)
    url, fields = sigv2_form(hub.endpoint, bucket, "v2.txt", creds["access_key"], creds["secret_key"], 60)
    r = form_post(url, fields, b"signed with v2")
    assert r.status_code == 204, r.text
    assert alice.get_object(Bucket=bucket, Key="v2.txt")["Body"].read() == b"signed with v2"
    url, fields = sigv2_form(hub.endpoint, bucket, "late.txt", creds["access_key"], creds["secret_key"], -1)
    r = form_post(url, fields)
    assert r.status_code == 403 and "expired" in r.text, r.text
    url, fields = sigv2_form(hub.endpoint, bucket, "forged.txt", creds["access_key"], "not-the-secret", 60)
    r = form_post(url, fields)
    assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text, r.text
    # Outside a form, SigV2 (whose signatures never expire) is still refused.
    v2 = make_client(hub.endpoint, creds["access_key"], creds["secret_key"], signature_version="s3")
    assert code(lambda: v2.put_object(Bucket=bucket, Key="header-v2.txt", Body=b"x")) in (
        "InvalidRequest", "AccessDenied")
    assert code(lambda: alice.head_object(Bucket=bucket, Key="late.txt")) in ("404", "NoSuchKey")
    assert code(lambda: alice.head_object(Bucket=bucket, Key="forged.txt")) in ("404", "NoSuchKey")


def test_a_form_upload_counts_against_its_tenants_quota(hub):
    s3 = quota_tenant(hub, "hooli", "gavin", "--bytes", "1000")
    bucket = unique_name("hooli")
    s3.create_bucket(Bucket=bucket)
    form = s3.generate_presigned_post(bucket, "first", ExpiresIn=60)
    assert form_post(form["url"], form["fields"], b"x" * 600).status_code == 204
    time.sleep(1.2)  # usage is read at most once a second
    form = s3.generate_presigned_post(bucket, "second", ExpiresIn=60)
    r = form_post(form["url"], form["fields"], b"x" * 600)
    assert r.status_code == 403 and "QuotaExceeded" in r.text, r.text
    assert code(lambda: s3.head_object(Bucket=bucket, Key="second")) in ("404", "NoSuchKey")


def test_a_request_expecting_another_bucket_owner_is_refused_and_tells_strangers_nothing(hub, tenants):
    alice, bob = client_of(hub, tenants["acme"]), client_of(hub, tenants["globex"])
    bucket = unique_name("acme-expected")
    alice.create_bucket(Bucket=bucket)
    alice.put_object(Bucket=bucket, Key="k", Body=b"v")
    # The owner naming itself goes through; naming another account is refused, nothing written.
    alice.put_object(Bucket=bucket, Key="k", Body=b"v2", ExpectedBucketOwner="acme")
    assert code(lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"v3", ExpectedBucketOwner="globex")) \
        == "AccessDenied"
    assert code(lambda: alice.list_objects_v2(Bucket=bucket, ExpectedBucketOwner="globex")) == "AccessDenied"
    assert alice.get_object(Bucket=bucket, Key="k", ExpectedBucketOwner="acme")["Body"].read() == b"v2"
    # A copy checks its source's owner too.
    assert code(lambda: alice.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"},
                                          ExpectedSourceBucketOwner="globex")) == "AccessDenied"
    alice.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"},
                      ExpectedSourceBucketOwner="acme")
    # A stranger learns nothing from guessing: the same refusal whichever owner it names.
    refusals = set()
    for guess in ("acme", "globex", "someone"):
        try:
            bob.get_object(Bucket=bucket, Key="k", ExpectedBucketOwner=guess)
        except ClientError as e:
            refusals.add((e.response["Error"]["Code"], e.response["Error"]["Message"]))
    assert len(refusals) == 1 and next(iter(refusals))[0] == "AccessDenied", refusals


def test_a_policy_written_for_s3_log_delivery_can_be_set_and_grants_nobody_here(hub, tenants):
    alice, bob = client_of(hub, tenants["acme"]), client_of(hub, tenants["globex"])
    bucket = unique_name("acme-logs")
    alice.create_bucket(Bucket=bucket)
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "S3ServerAccessLogsPolicy", "Effect": "Allow",
         "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/*"}]})
    alice.put_bucket_policy(Bucket=bucket, Policy=policy)
    assert json.loads(alice.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"][0]["Principal"] == {
        "Service": "logging.s3.amazonaws.com"}
    assert code(lambda: bob.put_object(Bucket=bucket, Key="x", Body=b"y")) == "AccessDenied"
    assert requests.put(f"{hub.endpoint}/{bucket}/anon", data=b"y", timeout=10).status_code == 403
    assert alice.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
