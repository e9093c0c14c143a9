"""Cross-border rules as data (issue 14): the shipped rule packs judge every grant and every
transfer. A grant whose basis the law does not accept for the data it covers is refused when
recorded, naming the rule and its source, and no byte moves under it. Individuals are counted:
objects declare them (`x-amz-meta-valley-individuals`, or the bucket's default), one hub per
jurisdiction counts each tenant's exports a calendar year, and a basis the law limits by volume
stops carrying data at its threshold, before a byte of the object that would cross it moves.
`valley rules show` explains what the packs require, `valley rules check` judges the recorded
grants, `valley rules volumes` shows the counts."""

from __future__ import annotations

import datetime
import json
import time

import pytest
from botocore.exceptions import ClientError

from network import Network, marker, wait_for

# gui-an is the first CN hub by id: it counts what tenants send out of China, for writes at
# zhangjiakou too (asked over the peer API).
HUBS = [
    ("zhangjiakou", "CN", "east", "north-china-grid"),
    ("gui-an", "CN", "west", "south-west-grid"),
    ("frankfurt", "EU", "east", "central-europe"),
]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    # Anti-entropy every second: data held back at a threshold moves soon after a basis that
    # suffices is recorded.
    network = Network(tmp_path_factory.mktemp("rules"), hubs=HUBS, serve_args=("--repair-interval", "1"))
    network.start_all()
    yield network
    network.stop_all()


def test_rules_show_explains_what_the_law_requires(net):
    shown = net.cli("zhangjiakou", "rules", "show", "--from", "CN", "--to", "EU",
                    "--classification", "important-data").stdout
    assert "cn-2024" in shown and "only under security-assessment" in shown, shown
    assert "Data Security Law (2021) Art. 31" in shown, shown
    assert "valid at most 1096 days" in shown, shown
    assert "standard-contract" not in shown, shown


def test_important_data_needs_an_assessment_and_moves_only_under_one(net):
    bucket = "important-" + marker().decode()[:8].lower()
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--hubs", "zhangjiakou,frankfurt", "--copies", "2",
            "--classification", "important-data")
    # A standard contract is refused at `grant add`, naming the rule and its source.
    refused = net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification",
                      "important-data", "--companion", "piia=PIIA-1", "--basis", "standard-contract", "--reference", "SCC-1",
                      "--expires", "2099-12-31", "--id", "sc-" + bucket, check=False)
    assert refused.returncode != 0, refused.stdout
    assert "security-assessment" in refused.stderr and "Data Security Law" in refused.stderr, refused.stderr
    grants = json.loads(net.cli("zhangjiakou", "grant", "list", "--json").stdout)
    assert all(g["id"] != "sc-" + bucket for g in grants), "a refused grant was recorded"

    tag = marker()
    net.s3("zhangjiakou").put_object(Bucket=bucket, Key="secret-map", Body=tag * 100)
    net.wait_idle("zhangjiakou")
    time.sleep(1)
    assert net.holdings("zhangjiakou", bucket).get("frankfurt", 0) == 0
    assert net.bytes_containing("frankfurt", tag) == 0, "important data reached frankfurt without an assessment"

    # An assessment valid past three years is refused too; one within them carries the data.
    too_long = net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification",
                       "important-data", "--companion", "piia=PIIA-1", "--basis", "security-assessment", "--reference", "CAC-SA-2026-1",
                       "--expires", "2099-12-31", check=False)
    assert too_long.returncode != 0 and "valid at most" in too_long.stderr, too_long.stderr
    expires = (datetime.date.today() + datetime.timedelta(days=700)).isoformat()
    net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification", "important-data",
            "--companion", "piia=PIIA-1", "--basis", "security-assessment", "--reference", "CAC-SA-2026-1", "--expires", expires,
            "--id", "sa-" + bucket)
    net.s3("zhangjiakou").put_object(Bucket=bucket, Key="assessed", Body=b"assessed " + tag)
    wait_for(lambda: net.holdings("zhangjiakou", bucket).get("frankfurt", 0) >= 1, timeout=60,
             what="the assessed object copied to frankfurt")
    checked = net.cli("zhangjiakou", "rules", "check").stdout
    assert f"ACCEPTED sa-{bucket}" in checked and "security-assessment" in checked, checked


def test_no_adequacy_decision_carries_eu_data_to_china(net):
    refused = net.cli("frankfurt", "grant", "add", "--from", "EU", "--to", "CN", "--classification",
                      "personal-info", "--basis", "adequacy", "--reference", "none", "--expires", "2099-12-31",
                      check=False)
    assert refused.returncode != 0 and "GDPR Art. 45" in refused.stderr, refused.stderr
    # Standard contractual clauses are a basis GDPR accepts towards any third country.
    net.cli("frankfurt", "grant", "add", "--from", "EU", "--to", "CN", "--classification", "personal-info",
            "--basis", "sccs", "--reference", "SCC-EU-CN-1", "--expires", "2099-12-31")


def put_declaring(net, hub, bucket, key, body, individuals):
    metadata = {} if individuals is None else {"valley-individuals": str(individuals)}
    net.s3(hub).put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)


def refusals_in_audit(net, hub, bucket) -> str:
    return net.cli(hub, "audit", "show", "--bucket", bucket, "--json").stdout


def exported(net, hub, classification) -> int:
    counts = json.loads(net.cli(hub, "rules", "volumes", "--json").stdout)
    return sum(c["individuals"] for c in counts if c["classification"] == classification and c["from"] == "CN")


def cross_border_bucket(net, prefix, classification):
    bucket = prefix + marker().decode()[:8].lower()
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--hubs", "zhangjiakou,gui-an,frankfurt",
            "--copies", "3", "--classification", classification)
    wait_for(lambda: all(classification in net.cli(h, "bucket", "policy", "show", bucket, check=False).stdout
                         for h in ("gui-an", "frankfurt")), what="the policy at every hub")
    return bucket


def test_personal_information_flows_exempt_until_the_threshold_then_needs_a_contract(net):
    bucket = cross_border_bucket(net, "pi-", "personal-info")
    net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification", "personal-info",
            "--basis", "exempt-volume", "--expires", "2099-12-31", "--reference", "", "--id", "ex-" + bucket)
    wait_for(lambda: "ex-" + bucket in net.cli("gui-an", "grant", "list").stdout, what="the grant at gui-an")
    # A count that is not a number is refused, nothing stored.
    with pytest.raises(ClientError) as bad:
        put_declaring(net, "zhangjiakou", bucket, "bad-count", b"x", "many")
    assert bad.value.response["Error"]["Code"] == "InvalidArgument"

    # 40,000 + 40,000 individuals from two CN hubs stay below the 100,000 exempt threshold.
    first, second, third, undeclared = marker(), marker(), marker(), marker()
    put_declaring(net, "zhangjiakou", bucket, "batch-1", first * 50, 40_000)
    put_declaring(net, "gui-an", bucket, "batch-2", second * 50, 40_000)
    wait_for(lambda: net.holdings("zhangjiakou", bucket).get("frankfurt", 0) == 2, timeout=60,
             what="both batches in frankfurt")
    assert exported(net, "gui-an", "personal-info") >= 80_000

    # 40,000 more would make 120,000: the exemption no longer suffices, nothing of it moves.
    put_declaring(net, "zhangjiakou", bucket, "batch-3", third * 50, 40_000)
    # An object that says nothing is not counted as nobody: it does not flow under a basis
    # the law limits by volume.
    put_declaring(net, "zhangjiakou", bucket, "undeclared", undeclared * 50, None)
    wait_for(lambda: "another basis is needed" in refusals_in_audit(net, "zhangjiakou", bucket), timeout=30,
             what="the threshold refusal in the audit log")
    wait_for(lambda: "declares none" in refusals_in_audit(net, "zhangjiakou", bucket), timeout=30,
             what="the undeclared refusal in the audit log")
    net.wait_idle("zhangjiakou")
    time.sleep(2)
    assert net.bytes_containing("frankfurt", third) == 0, "data past the exempt threshold reached frankfurt"
    assert net.bytes_containing("frankfurt", undeclared) == 0, "an undeclared object reached frankfurt"
    assert exported(net, "gui-an", "personal-info") < 100_000

    # A standard contract rests on a personal-information impact assessment: without its
    # reference it is refused, naming the record it lacks.
    lacking = net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification",
                      "personal-info", "--basis", "standard-contract", "--reference", "CAC-SC-2026-76",
                      "--expires", "2099-12-31", check=False)
    assert lacking.returncode != 0 and "piia record" in lacking.stderr, lacking.stderr
    # Once a standard contract is recorded, the held-back batch moves under it.
    net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification", "personal-info",
            "--companion", "piia=PIIA-1", "--basis", "standard-contract", "--reference", "CAC-SC-2026-77", "--expires", "2099-12-31",
            "--id", "sc-" + bucket)
    wait_for(lambda: net.bytes_containing("frankfurt", third) > 0, timeout=90,
             what="the third batch in frankfurt under the standard contract")
    assert net.bytes_containing("frankfurt", undeclared) == 0
    assert exported(net, "gui-an", "personal-info") >= 120_000
    shown = net.cli("gui-an", "rules", "volumes").stdout
    assert "personal-info" in shown and "default from CN" in shown, shown


def test_sensitive_personal_information_past_ten_thousand_needs_an_assessment(net):
    bucket = cross_border_bucket(net, "spi-", "sensitive-personal-info")
    # No exemption by volume exists for sensitive data.
    refused = net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification",
                      "sensitive-personal-info", "--basis", "exempt-volume", "--reference", "",
                      "--expires", "2099-12-31", check=False)
    assert refused.returncode != 0 and "exempt-volume is not accepted" in refused.stderr, refused.stderr
    net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification",
            "sensitive-personal-info", "--companion", "piia=PIIA-1", "--basis", "standard-contract", "--reference", "CAC-SC-2026-78",
            "--expires", "2099-12-31", "--id", "sc-" + bucket)
    wait_for(lambda: "sc-" + bucket in net.cli("gui-an", "grant", "list").stdout, what="the grant at gui-an")
    health, more = marker(), marker()
    put_declaring(net, "zhangjiakou", bucket, "records-1", health * 50, 6_000)
    wait_for(lambda: net.bytes_containing("frankfurt", health) > 0, timeout=60, what="6,000 records in frankfurt")
    # 5,000 more make 11,000: past the contract's 10,000.
    put_declaring(net, "zhangjiakou", bucket, "records-2", more * 50, 5_000)
    wait_for(lambda: "only below 10000 individuals" in refusals_in_audit(net, "zhangjiakou", bucket),
             timeout=30, what="the threshold refusal in the audit log")
    net.wait_idle("zhangjiakou")
    time.sleep(2)
    assert net.bytes_containing("frankfurt", more) == 0, "sensitive data past 10,000 individuals reached frankfurt"
    expires = (datetime.date.today() + datetime.timedelta(days=700)).isoformat()
    net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification",
            "sensitive-personal-info", "--companion", "piia=PIIA-1", "--basis", "security-assessment", "--reference", "CAC-SA-2026-9",
            "--expires", expires, "--id", "sa-" + bucket)
    wait_for(lambda: net.bytes_containing("frankfurt", more) > 0, timeout=90,
             what="the second batch in frankfurt under the assessment")


def test_a_forged_or_replayed_export_count_is_refused_and_counts_nothing(net):
    """`export-use` is what spends a tenant's yearly exports at the jurisdiction's accountant
    (gui-an for CN). A captured call replayed or re-bodied, a call from a hub outside the
    jurisdiction (frankfurt holds the network's secret and a hub certificate, and could
    otherwise exhaust a CN tenant's exemption), a grant named for another tenant, and a call to
    a hub that does not count CN's exports are all refused, and count nothing."""
    import requests

    from network import NETWORK_SECRET, sign_peer_call

    grant = "fx-" + marker().decode()[:8].lower()
    # A standard contract (below 1,000,000 individuals): the other tests' counts leave room.
    net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification", "personal-info",
            "--basis", "standard-contract", "--reference", "CAC-SC-FX", "--companion", "piia=PIIA-FX",
            "--expires", "2099-12-31", "--id", grant)
    wait_for(lambda: grant in net.cli("gui-an", "grant", "list").stdout, what="the grant at gui-an")
    path = "/_valley/peer/v1/export-use"

    def use(individuals: int, export: str, **fields) -> bytes:
        body = {"format": 1, "tenant": "default", "from": "CN", "grant": grant,
                "classifications": ["personal-info"], "export": f"{grant}/{export}",
                "individuals": individuals, "bytes": 10}
        return json.dumps(dict(body, **fields)).encode()

    def send(to: str, sender: str, body: bytes, headers: dict | None = None):
        topology = net.status(to)["topology"]
        headers = headers or sign_peer_call(NETWORK_SECRET, "POST", path, sender, body, {}, topology)
        return requests.post(net.admin_endpoint(to) + path, data=body, headers=headers,
                             verify=str(net.ca), cert=net.hub_cert(sender), timeout=10)

    before = exported(net, "gui-an", "personal-info")
    # The call as zhangjiakou makes it counts (so the refusals below are the checks, not a
    # call that never worked).
    body = use(7, "genuine")
    topology = net.status("gui-an")["topology"]
    captured = sign_peer_call(NETWORK_SECRET, "POST", path, "zhangjiakou", body, {}, topology)
    counted = send("gui-an", "zhangjiakou", body, captured)
    assert counted.status_code == 200, counted.text
    assert exported(net, "gui-an", "personal-info") == before + 7
    # Replayed as captured, or the captured signature over a body that spends 90,000.
    again = send("gui-an", "zhangjiakou", body, captured)
    assert again.status_code == 401 and "already received" in again.text, again.text
    rebodied = send("gui-an", "zhangjiakou", use(90_000, "rebodied"), captured)
    assert rebodied.status_code in (400, 401), rebodied.text
    # A hub outside China, correctly signed: refused.
    foreign = send("gui-an", "frankfurt", use(90_000, "foreign"))
    assert foreign.status_code == 403 and "not in CN" in foreign.text, foreign.text
    # The grant named for another tenant.
    other = send("gui-an", "zhangjiakou", use(5, "other-tenant", tenant="acme"))
    assert other.status_code == 403 and "tenant default's" in other.text, other.text
    # A hub that does not count CN's exports.
    elsewhere = send("zhangjiakou", "gui-an", use(5, "elsewhere"))
    assert elsewhere.status_code == 403 and "does not count exports" in elsewhere.text, elsewhere.text
    assert exported(net, "gui-an", "personal-info") == before + 7, "only the genuine call counted"
