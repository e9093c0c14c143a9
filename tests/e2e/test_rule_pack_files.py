"""Rule packs loaded from files (issue 14): `valley serve --rule-pack FILE` judges by the packs
given instead of the shipped ones; hubs that judge by different packs refuse each other's calls
(peers compare the packs' hash, as they compare topologies); and a pack change that invalidates
recorded grants reports them at start (logged and audited), keeps them, and stops their flows."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from network import Network, marker, valley_bin, wait_for

HUBS = [
    ("zhangjiakou", "CN", "east", "north-china-grid"),
    ("frankfurt", "EU", "east", "central-europe"),
]

# The law tightened: personal information leaves the mainland only after an assessment.
STRICT = """
format = 1
name = "cn-strict"
version = "2027-01-01"
description = "A stricter mainland regime, for the test"

[[rule]]
from = ["CN"]
to = ["*"]
classification = "personal-info"
bases = ["security-assessment"]
require_reference = ["security-assessment"]
source = "Hypothetical Provisions (2027) Art. 1"
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    network = Network(tmp_path_factory.mktemp("rule-pack-files"), hubs=HUBS, serve_args=("--repair-interval", "1"))
    network.start_all()
    yield network
    network.stop_all()


@pytest.fixture(scope="module")
def strict(net):
    path = net.workdir / "cn-strict.toml"
    path.write_text(STRICT)
    return path


def restart(net, hub, *extra):
    net.kill(hub, signal.SIGTERM)
    net.start(hub, extra=extra)


def test_a_malformed_pack_stops_the_hub_naming_the_file(net, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('format = 1\nname = "x"\nversion = "1"\n[[rule]]\nfrom = ["CN"]\n')
    result = subprocess.run(
        [str(valley_bin()), "serve", "--hub", "zhangjiakou", "--topology", str(net.topology),
         "--data", str(tmp_path / "data"), "--rule-pack", str(bad)],
        env=dict(os.environ, VALLEY_NETWORK_SECRET="s" * 32), capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "bad.toml" in result.stderr, result.stderr


def test_a_pack_change_reports_the_grants_it_invalidates_and_stops_their_flows(net, strict):
    bucket = "pi-" + marker().decode()[:8].lower()
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--hubs", "zhangjiakou,frankfurt", "--copies", "2",
            "--classification", "personal-info", "--individuals-per-object", "1")
    grant = "sc-" + bucket
    net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification", "personal-info",
            "--companion", "piia=PIIA-1", "--basis", "standard-contract", "--reference", "CAC-SC-1", "--expires", "2099-12-31", "--id", grant)
    before = marker()
    net.s3("zhangjiakou").put_object(Bucket=bucket, Key="before", Body=before * 20)
    wait_for(lambda: net.bytes_containing("frankfurt", before) > 0, timeout=60, what="the first object in frankfurt")

    # Both hubs now judge by the stricter pack.
    for hub in ("zhangjiakou", "frankfurt"):
        restart(net, hub, "--rule-pack", str(strict))
    shown = net.cli("zhangjiakou", "rules", "show", "--classification", "personal-info").stdout
    assert "cn-strict@2027-01-01" in shown and "Hypothetical Provisions" in shown, shown
    assert "standard-contract" not in shown, shown
    audit = net.cli("zhangjiakou", "audit", "show", "--grant", grant, "--json").stdout
    assert "no longer accepted" in audit and "kept, not deleted" in audit, audit
    assert grant in net.cli("zhangjiakou", "grant", "list").stdout, "an invalidated grant was deleted"
    assert f"REFUSED  {grant}" in net.cli("zhangjiakou", "rules", "check").stdout

    after = marker()
    net.s3("zhangjiakou").put_object(Bucket=bucket, Key="after", Body=after * 20)
    net.wait_idle("zhangjiakou")
    time.sleep(2)
    assert net.bytes_containing("frankfurt", after) == 0, "data moved under a grant the new pack refuses"
    # The stricter pack's own basis carries it.
    refused = net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification",
                      "personal-info", "--companion", "piia=PIIA-1", "--basis", "standard-contract", "--reference", "CAC-SC-2",
                      "--expires", "2099-12-31", check=False)
    assert refused.returncode != 0 and "cn-strict" in refused.stderr, refused.stderr
    net.cli("zhangjiakou", "grant", "add", "--from", "CN", "--to", "EU", "--classification", "personal-info",
            "--companion", "piia=PIIA-1", "--basis", "security-assessment", "--reference", "CAC-SA-7", "--expires", "2027-12-31",
            "--id", "sa-" + bucket)
    wait_for(lambda: net.bytes_containing("frankfurt", after) > 0, timeout=90,
             what="the held-back object in frankfurt under the assessment")
    moved = net.cli("zhangjiakou", "audit", "show", "--grant", "sa-" + bucket, "--json").stdout
    assert "accepted by rule pack cn-strict" in moved, moved


def test_hubs_judging_by_different_packs_refuse_each_other(net, strict):
    # frankfurt goes back to the shipped packs while zhangjiakou keeps the strict one.
    restart(net, "frankfurt")
    bucket = "open-" + marker().decode()[:8].lower()
    net.s3("zhangjiakou").create_bucket(Bucket=bucket)
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--hubs", "zhangjiakou,frankfurt", "--copies", "2")
    tag = marker()
    net.s3("zhangjiakou").put_object(Bucket=bucket, Key="k", Body=tag * 20)
    wait_for(lambda: "rule packs mismatch" in net.cli("frankfurt", "audit", "show", "--json").stdout, timeout=30,
             what="frankfurt refusing zhangjiakou's calls, audited")
    assert net.bytes_containing("frankfurt", tag) == 0
    # Once both judge by the same packs again, the network heals.
    restart(net, "frankfurt", "--rule-pack", str(strict))
    net.cli("zhangjiakou", "bucket", "policy", "set", bucket, "--hubs", "zhangjiakou,frankfurt", "--copies", "2")
    wait_for(lambda: net.bytes_containing("frankfurt", tag) > 0, timeout=90, what="the object in frankfurt")
