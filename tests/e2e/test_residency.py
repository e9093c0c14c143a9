"""Residency you can prove: `valley residency report` lists every copy of a bucket network-wide
with the rule, the grant and the audit records behind it; `valley residency verify` re-checks a
report against the hubs and their audit chains and names the first claim it cannot confirm; and
`valley bucket policy set --dry-run` says what a change would do, which the change then does."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid

import pytest

from network import Network, wait_for

GRANT = "scc-cn-eu-1"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    # Signed audit heads every second (60 s by default), so the tests need not wait.
    network = Network(tmp_path_factory.mktemp("residency"), serve_args=("--audit-head-interval", "1"))
    network.start_all()
    network.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification", "personal-info",
                "--companion", "piia=PIIA-1", "--basis", "standard-contract", "--reference", "CAC-SC-2026-0042", "--expires", "2099-12-31",
                "--id", GRANT)
    yield network
    network.stop_all()


@pytest.fixture(scope="module")
def cross_border(net):
    """A bucket whose personal information lives at zhangjiakou and, under the grant, Frankfurt."""
    bucket = "cn-eu-" + uuid.uuid4().hex[:8]
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--hubs", "zhangjiakou,frankfurt", "--copies", "2",
            "--classification", "personal-info", "--individuals-per-object", "1")
    wait_for(lambda: all("personal-info" in net.cli(h, "bucket", "policy", "show", bucket, check=False).stdout
                         for h in net.hubs), what="policy everywhere")
    bodies = {f"data/o{i}": os.urandom(1000 + 40_000 * i) for i in range(3)}
    for key, body in bodies.items():
        net.s3("zhangjiakou").put_object(Bucket=bucket, Key=key, Body=body)
    wait_for(lambda: net.holdings("zhangjiakou", bucket).get("frankfurt") == 3, what="copies in frankfurt")
    net.wait_idle("zhangjiakou")
    return bucket, bodies


def report_of(net, hub, bucket, *extra) -> dict:
    return json.loads(net.cli(hub, "residency", "report", bucket, "--json", *extra).stdout)


def audit_hashes(net, hub) -> dict[int, str]:
    records = json.loads(net.cli(hub, "audit", "show", "--json").stdout)
    return {r["seq"]: r["hash"] for r in records}


def test_the_report_lists_every_copy_with_its_rule_grant_and_audit_records(net, cross_border):
    bucket, bodies = cross_border
    # Asked at frankfurt, the report is network-wide (it lists zhangjiakou's copies too).
    report = report_of(net, "frankfurt", bucket)
    assert report["format"] == "valley-residency-report/1"
    summary = report["summary"]
    assert summary["objects"] == 3 and summary["versions"] == 3, summary
    assert summary["bytes"] == sum(len(b) for b in bodies.values())
    assert summary["copies"] == 6 and summary["copies_per_jurisdiction"] == {"CN": 3, "EU": 3}, summary
    assert summary["versions_short_of_policy"] == 0 and summary["copies_not_allowed"] == 0
    hashes = {hub: audit_hashes(net, hub) for hub in ("zhangjiakou", "frankfurt")}
    for version in report["versions"]:
        copies = {c["hub"]: c for c in version["copies"]}
        assert set(copies) == {"zhangjiakou", "frankfurt"}, version
        home, abroad = copies["zhangjiakou"], copies["frankfurt"]
        assert home["allowed"] and home["rule"] == "policy-allows" and home["records"] == []
        assert abroad["allowed"] and abroad["rule"] == "grant-covers" and abroad["jurisdiction"] == "EU"
        assert abroad["grant"]["id"] == GRANT and abroad["grant"]["reference"] == "CAC-SC-2026-0042"
        assert abroad["grant"]["basis"] == "standard-contract" and abroad["grant"]["expires"] == "2099-12-31"
        # The sender's and the receiver's record of this very version, each in its hub's chain.
        assert {r["hub"] for r in abroad["records"]} == {"zhangjiakou", "frankfurt"}, abroad["records"]
        for record in abroad["records"]:
            assert hashes[record["hub"]][record["seq"]] == record["hash"]
    text = net.cli("zhangjiakou", "residency", "report", bucket).stdout
    assert f"by grant {GRANT} (standard-contract" in text and "copies per jurisdiction: CN 3, EU 3" in text


def test_a_report_verifies_and_any_edit_is_named(net, cross_border, tmp_path):
    bucket, _ = cross_border
    report = report_of(net, "frankfurt", bucket)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    # Verified at another hub than the one that made it.
    ok = net.cli("zhangjiakou", "residency", "verify", str(path))
    assert "verified: 3 versions, 6 copies, 6 audit records" in ok.stdout, ok.stdout

    def edited(change, expected: str):
        doc = json.loads(json.dumps(report))
        change(doc)
        bad = tmp_path / f"edited-{uuid.uuid4().hex[:6]}.json"
        bad.write_text(json.dumps(doc))
        result = net.cli("zhangjiakou", "residency", "verify", str(bad), check=False)
        assert result.returncode != 0, f"an edited report verified: {expected}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr

    def hide_frankfurt(doc):
        # The copy abroad left out, and the summary made to agree: the hubs still hold it.
        for v in doc["versions"]:
            v["copies"] = [c for c in v["copies"] if c["hub"] != "frankfurt"]
        doc["summary"].update(copies=3, copies_per_jurisdiction={"CN": 3}, versions_short_of_policy=3)

    def forge_hash(doc):
        copy = next(c for c in doc["versions"][0]["copies"] if c["hub"] == "frankfurt")
        copy["records"][0]["hash"] = "0" * 64

    def move_copy(doc):
        copy = next(c for c in doc["versions"][1]["copies"] if c["hub"] == "frankfurt")
        copy.update(hub="hong-kong", jurisdiction="HK", failure_domain="hong-kong")
        doc["summary"].update(copies_per_jurisdiction={"CN": 3, "EU": 2, "HK": 1}, versions_short_of_policy=1)

    def shrink_bytes(doc):
        doc["summary"]["bytes"] -= 1

    def claim_other_grant(doc):
        copy = next(c for c in doc["versions"][2]["copies"] if c["hub"] == "frankfurt")
        copy["grant"]["reference"] = "NEVER-SIGNED"

    def relax_policy(doc):
        doc["policy"]["hubs"] = []

    edited(hide_frankfurt, "which the report does not list")
    edited(forge_hash, "the report says " + "0" * 64)
    edited(move_copy, "the copy of version")
    edited(shrink_bytes, "the summary claims bytes")
    edited(claim_other_grant, f"grant {GRANT} as the report describes it")
    edited(relax_policy, "the bucket's policy is now")

    # Not a report at all: one line, non-zero, the file named.
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"format": "valley-residency-report/1", "bucket": 7}')
    result = net.cli("zhangjiakou", "residency", "verify", str(garbage), check=False)
    assert result.returncode != 0 and "not a residency report" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    missing = net.cli("zhangjiakou", "residency", "report", "no-such-bucket-" + uuid.uuid4().hex[:6], check=False)
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr


def test_a_report_of_a_past_time_shows_what_had_arrived_by_then(net):
    bucket = "past-" + uuid.uuid4().hex[:8]
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--hubs", "zhangjiakou,gui-an", "--copies", "2")
    time.sleep(0.5)
    net.s3("zhangjiakou").put_object(Bucket=bucket, Key="early", Body=b"early bytes")
    wait_for(lambda: net.holdings("zhangjiakou", bucket).get("gui-an") == 1, what="early copy")
    time.sleep(1.5)
    between = int(time.time())
    time.sleep(1.5)
    net.s3("zhangjiakou").put_object(Bucket=bucket, Key="late", Body=b"late bytes")
    wait_for(lambda: net.holdings("zhangjiakou", bucket).get("gui-an") == 2, what="late copy")
    then = report_of(net, "gui-an", bucket, "--at", str(between))
    assert [v["key"] for v in then["versions"]] == ["early"], then["versions"]
    assert then["summary"]["copies"] == 2
    now = report_of(net, "gui-an", bucket)
    assert sorted(v["key"] for v in now["versions"]) == ["early", "late"]
    before = report_of(net, "gui-an", bucket, "--at", "2020-01-01T00:00:00Z")
    assert before["versions"] == [] and before["summary"]["copies"] == 0
    bad = net.cli("gui-an", "residency", "report", bucket, "--at", "yesterday", check=False)
    assert bad.returncode != 0 and "RFC 3339" in bad.stderr


def test_verify_catches_a_hub_that_rewrote_its_audit_chain(net, tmp_path):
    bucket = "rewrite-" + uuid.uuid4().hex[:8]
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--hubs", "zhangjiakou,wuhu", "--copies", "2")
    time.sleep(0.5)
    net.s3("zhangjiakou").put_object(Bucket=bucket, Key="k", Body=os.urandom(5000))
    wait_for(lambda: net.holdings("zhangjiakou", bucket).get("wuhu") == 1, what="copy at wuhu")
    report = report_of(net, "zhangjiakou", bucket)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    net.cli("wuhu", "residency", "verify", str(path))
    # wuhu drops the newest records of its chain (the record of the copy's arrival among them):
    # still a valid chain on its own, but no longer the one the report anchored.
    net.kill("wuhu")
    try:
        log = net.data_dir("wuhu") / "audit.log"
        lines = log.read_bytes().splitlines(keepends=True)
        received = [i for i, line in enumerate(lines) if bucket.encode() in line and b"received from" in line]
        assert received, "wuhu recorded no arrival"
        log.write_bytes(b"".join(lines[:received[0]]))
    finally:
        net.start("wuhu")
    result = net.cli("zhangjiakou", "residency", "verify", str(path), check=False)
    assert result.returncode != 0, result.stdout
    assert "wuhu's audit chain does not hold the head the report names" in result.stderr, result.stderr


def test_a_dry_run_says_what_the_change_then_does(net, tmp_path):
    bucket = "plan-" + uuid.uuid4().hex[:8]
    s3 = net.s3("zhangjiakou")
    s3.create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--hubs", "zhangjiakou,gui-an", "--copies", "2")
    time.sleep(0.5)
    sizes = [2000 + 7000 * i for i in range(4)]
    for i, size in enumerate(sizes):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=os.urandom(size))
    wait_for(lambda: net.holdings("zhangjiakou", bucket).get("gui-an") == 4, what="both copies")
    net.wait_idle("zhangjiakou")
    policy_before = net.cli("zhangjiakou", "bucket", "policy", "show", bucket).stdout

    # Moving the bucket from zhangjiakou to wuhu: four copies to wuhu, four dropped at zhangjiakou.
    change = ("--hubs", "gui-an,wuhu", "--copies", "2")
    plan = json.loads(net.cli("gui-an", "bucket", "policy", "set", bucket, *change, "--dry-run", "--json").stdout)
    assert plan["copies"] == [{"hub": "wuhu", "versions": 4, "bytes": sum(sizes)}], plan
    assert plan["removals"] == [{"hub": "zhangjiakou", "versions": 4, "bytes": sum(sizes)}], plan
    assert plan["stranded"] == [] and not plan["strands"] and plan["refused"] == [] and plan["grants"] == []
    text = net.cli("gui-an", "bucket", "policy", "set", bucket, *change, "--dry-run").stdout
    assert "dry run: nothing changed" in text and "strands data: no" in text
    # Nothing changed.
    time.sleep(2)
    assert net.cli("zhangjiakou", "bucket", "policy", "show", bucket).stdout == policy_before
    assert net.holdings("zhangjiakou", bucket) == {"zhangjiakou": 4, "gui-an": 4}

    # The real change does exactly that.
    net.cli("gui-an", "bucket", "policy", "set", bucket, *change)
    wait_for(lambda: net.holdings("zhangjiakou", bucket) == {"gui-an": 4, "wuhu": 4}, timeout=90,
             what="the planned copies and removals")
    status = net.status("wuhu")
    row = next(b for b in status["buckets"] if b["bucket"] == bucket)
    assert {h["hub"]: h["bytes"] for h in row["holders"]} == {"gui-an": sum(sizes), "wuhu": sum(sizes)}

    # Sent to Frankfurt with a classification no grant covers: every copy refused, the data
    # stranded where it is (nothing would be removed).
    refused = json.loads(net.cli("gui-an", "bucket", "policy", "set", bucket, "--hubs", "frankfurt", "--copies", "1",
                                 "--classification", "health-records", "--dry-run", "--json").stdout)
    assert refused["copies"] == [] and refused["removals"] == [], refused
    assert [r["hub"] for r in refused["refused"]] == ["frankfurt"] and refused["refused"][0]["versions"] == 4
    assert {s["hub"] for s in refused["stranded"]} == {"gui-an", "wuhu"} and refused["strands"]
    # Under the grant, the same move to Frankfurt for personal information draws on it.
    # Undeclared, the personal information does not move under a standard contract, which the
    # law limits by individuals.
    undeclared = json.loads(net.cli("gui-an", "bucket", "policy", "set", bucket, "--hubs", "frankfurt", "--copies",
                                    "1", "--classification", "personal-info", "--dry-run", "--json").stdout)
    assert undeclared["copies"] == [] and "declares none" in undeclared["refused"][0]["reason"], undeclared
    granted = json.loads(net.cli("gui-an", "bucket", "policy", "set", bucket, "--hubs", "frankfurt", "--copies", "1",
                                 "--classification", "personal-info", "--individuals-per-object", "3",
                                 "--dry-run", "--json").stdout)
    assert granted["copies"] == [{"hub": "frankfurt", "versions": 4, "bytes": sum(sizes)}], granted
    assert [(g["from"], g["to"], g["grant"], g["bytes"]) for g in granted["grants"]] == \
        [("CN", "EU", GRANT, sum(sizes))], granted["grants"]
    # The dry run names the pack rule that accepts the grant.
    assert "accepted by rule pack cn-2024" in granted["grants"][0]["rule"], granted["grants"]
    assert net.holdings("zhangjiakou", bucket) == {"gui-an": 4, "wuhu": 4}

    # Bad input: one line, non-zero, nothing changed.
    unknown = net.cli("gui-an", "bucket", "policy", "set", "no-such-" + uuid.uuid4().hex[:6], "--hubs", "wuhu",
                      "--dry-run", check=False)
    assert unknown.returncode != 0 and len(unknown.stderr.strip().splitlines()) == 1
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text("copies = 'two'\n")
    malformed = net.cli("gui-an", "bucket", "policy", "set", bucket, "--file", str(bad_file), "--dry-run",
                        check=False)
    assert malformed.returncode != 0 and "bad.toml" in malformed.stderr
    invalid = net.cli("gui-an", "bucket", "policy", "set", bucket, "--hubs", "atlantis", "--dry-run", check=False)
    assert invalid.returncode != 0 and "atlantis" in invalid.stderr
    assert net.holdings("zhangjiakou", bucket) == {"gui-an": 4, "wuhu": 4}


# ---- signed audit chain heads ----------------------------------------------------------------

HEADER = ["v", "seq", "time_unix_ms", "hub", "kind"]
SUBJECT = ["bucket", "key", "peer", "grant", "allowed", "rule", "bytes", "detail"]


def dumps(fields) -> str:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_heads(net, at_hub: str, of_hub: str) -> list[dict]:
    records = json.loads(net.cli(at_hub, "audit", "show", "--json").stdout)
    return [json.loads(r["detail"]) for r in records if r["kind"] == "peer-head" and r["peer"] == of_hub]


def peer_line(output: str, hub: str) -> str:
    return next((line for line in output.splitlines() if line.strip().startswith(f"peer {hub} ")), "")


def rewrite_from(log, seq: int):
    """Edits record `seq` of a chain and recomputes every hash after it, as a hub that can write
    its own file could (the canonical forms as valley-audit's documentation gives them): the
    chain verifies on its own."""
    lines = log.read_text(encoding="utf-8").splitlines()
    prev = "0" * 64
    out = []
    for line in lines:
        r = json.loads(line)
        if r["seq"] == seq:
            r["detail"] = "nothing happened here"
        if r["seq"] >= seq:
            r["prev"] = prev
            if r["v"] == 1:
                canonical = dumps({k: r[k] for k in HEADER + SUBJECT + ["prev"]})
            else:
                subject = sha(dumps({k: r[k] for k in SUBJECT}))
                canonical = dumps({**{k: r[k] for k in HEADER}, "subject": subject, "prev": prev})
            r["hash"] = sha(canonical)
            line = dumps({k: r[k] for k in HEADER + SUBJECT + ["prev", "hash"]})
        prev = r["hash"]
        out.append(line)
    log.write_text("\n".join(out) + "\n", encoding="utf-8")


def test_each_hub_records_its_peers_signed_heads(net):
    wait_for(lambda: recorded_heads(net, "zhangjiakou", "hong-kong"), what="a signed head of hong-kong recorded")
    head = recorded_heads(net, "zhangjiakou", "hong-kong")[-1]
    assert head["scheme"] == 0x0807 and len(base64.b64decode(head["signature"])) == 64  # Ed25519
    result = net.cli("zhangjiakou", "audit", "verify", check=False)
    line = peer_line(result.stdout, "hong-kong")
    assert " ok " in line and "holds all" in line, result.stdout


def test_a_forged_signed_head_is_refused(net):
    path = "/_valley/peer/v1/head"
    head = {"v": 1, "hub": "frankfurt", "seq": 1, "hash": "ab" * 32, "time_unix_ms": int(time.time() * 1000),
            "scheme": 0x0807, "signature": base64.b64encode(b"x" * 64).decode(),
            "cert": base64.b64encode(b"not a certificate").decode()}
    r = net.peer_call("POST", "zhangjiakou", path, as_hub="frankfurt", body=json.dumps(head).encode())
    assert r.status_code == 403 and "signed audit head from frankfurt refused" in r.text, r.text
    # A head of another hub, even with that hub's real certificate, is not frankfurt's to send.
    real = recorded_heads(net, "zhangjiakou", "hong-kong")
    cert = next(h["cert"] for h in real if h.get("cert"))
    head.update(hub="hong-kong", cert=cert)
    r = net.peer_call("POST", "zhangjiakou", path, as_hub="frankfurt", body=json.dumps(head).encode())
    assert r.status_code == 400, r.text
    assert not [h for h in recorded_heads(net, "zhangjiakou", "frankfurt") if h["hash"] == "ab" * 32]


def test_peers_catch_a_hub_that_rewrites_or_shortens_its_chain(net):
    # hong-kong recomputes its chain from a record before the newest head it signed.
    wait_for(lambda: recorded_heads(net, "gui-an", "hong-kong"), what="a head of hong-kong at gui-an")
    signed = max(h["seq"] for h in recorded_heads(net, "gui-an", "hong-kong"))
    net.kill("hong-kong")
    try:
        log = net.data_dir("hong-kong") / "audit.log"
        rewrite_from(log, max(1, signed - 2))
        # On its own the rewritten chain verifies: only the heads it signed give it away.
        assert net.cli("hong-kong", "audit", "verify", "--file", str(log)).returncode == 0
    finally:
        net.start("hong-kong")
    result = net.cli("gui-an", "audit", "verify", check=False)
    assert result.returncode != 0, result.stdout
    assert "REWRITTEN" in peer_line(result.stdout, "hong-kong"), result.stdout
    assert "hong-kong" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr

    # frankfurt drops all but its first two records: a valid chain, far shorter than signed.
    # Its chain names objects of the cross-border bucket, which wuhu may not hold: wuhu checks
    # it all the same, shown those records redacted.
    wait_for(lambda: recorded_heads(net, "wuhu", "frankfurt"), what="a head of frankfurt at wuhu")
    before = net.cli("wuhu", "audit", "verify", check=False).stdout
    assert " ok " in peer_line(before, "frankfurt"), before
    # Heads go out on a timer: wait for one signed after frankfurt's tenth record.
    wait_for(lambda: max(h["seq"] for h in recorded_heads(net, "wuhu", "frankfurt")) > 10, timeout=60,
             what="a head of frankfurt past its tenth record at wuhu")
    net.kill("frankfurt")
    try:
        log = net.data_dir("frankfurt") / "audit.log"
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[:2]))
    finally:
        net.start("frankfurt")
    result = net.cli("wuhu", "audit", "verify", check=False)
    assert result.returncode != 0 and "REWRITTEN" in peer_line(result.stdout, "frankfurt"), result.stdout
    # The restarted hub's next head contradicts the one recorded: that is recorded too, signed,
    # and fails the check from then on whatever the chain says.
    wait_for(lambda: any(h.get("contradicts") for h in recorded_heads(net, "wuhu", "frankfurt")),
             what="the contradiction recorded")
    result = net.cli("wuhu", "audit", "verify", check=False)
    assert result.returncode != 0 and "its chain was shortened" in result.stderr, result.stdout + result.stderr


def test_residency_evidence_stays_where_the_bucket_may_be(net, cross_border):
    bucket, _ = cross_border
    # Key names and sizes are the bucket's data too: a hub its policy does not allow neither
    # gathers them nor is sent them.
    refused = net.cli("hong-kong", "residency", "report", bucket, check=False)
    assert refused.returncode != 0 and "ask one that is" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    dry = net.cli("wuhu", "bucket", "policy", "set", bucket, "--hubs", "zhangjiakou", "--dry-run", check=False)
    assert dry.returncode != 0 and "ask one that is" in dry.stderr, dry.stderr
    asked = net.peer_call("GET", "zhangjiakou", f"/_valley/peer/v1/residency?bucket={bucket}&audit=1",
                          as_hub="hong-kong", body=b"")
    assert asked.status_code == 403 and "data/o0" not in asked.text, asked.text
    # zhangjiakou's chain names the objects it sent: hong-kong, checking it, is shown those
    # records redacted (their subject hashed), and the chain still verifies.
    chain = net.peer_call("GET", "zhangjiakou", "/_valley/peer/v1/audit-chain", as_hub="hong-kong", body=b"")
    assert chain.status_code == 200, chain.text
    assert "data/o" not in chain.text and '"subject":"' in chain.text
    shown = net.workdir / "redacted-chain.log"
    shown.write_bytes(chain.content)
    assert net.cli("hong-kong", "audit", "verify", "--file", str(shown)).stdout.startswith("OK")
    # frankfurt, which the bucket may be at, is shown its records in full.
    full = net.peer_call("GET", "zhangjiakou", "/_valley/peer/v1/audit-chain", as_hub="frankfurt", body=b"")
    assert full.status_code == 200 and '"key":"data/o0"' in full.text
