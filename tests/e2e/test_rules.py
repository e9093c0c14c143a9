"""Cross-border rules as data (issue 14, first step): the shipped rule packs judge every grant.
A grant whose basis the law does not accept for the data it covers is refused when recorded,
naming the rule and its source, and no byte moves under it; `valley rules show` explains what
the packs require and `valley rules check` judges the recorded grants."""

from __future__ import annotations

import datetime
import json
import time

import pytest

from network import Network, marker, wait_for

HUBS = [
    ("zhangjiakou", "CN", "east", "north-china-grid"),
    ("frankfurt", "EU", "east", "central-europe"),
]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    network = Network(tmp_path_factory.mktemp("rules"), hubs=HUBS)
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
                      "important-data", "--basis", "standard-contract", "--reference", "SCC-1",
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
                       "important-data", "--basis", "security-assessment", "--reference", "CAC-SA-2026-1",
                       "--expires", "2099-12-31", check=False)
    assert too_long.returncode != 0 and "valid at most" in too_long.stderr, too_long.stderr
    expires = (datetime.date.today() + datetime.timedelta(days=700)).isoformat()
    net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification", "important-data",
            "--basis", "security-assessment", "--reference", "CAC-SA-2026-1", "--expires", expires,
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
