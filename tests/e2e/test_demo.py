"""`valley demo` starts the whole example network on loopback, writes sample data under
contrasting policies, shows a refused write, and reports where every copy went. It exits
non-zero if any copy sits where its policy forbids it."""

import subprocess

from conftest import valley_bin


def test_demo_runs_the_example_network_and_places_every_copy_lawfully(tmp_path):
    result = subprocess.run([str(valley_bin()), "demo", "--dir", str(tmp_path / "demo")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "All hubs are up; they talk over mutual TLS" in out
    # The network runs on mutual TLS: the CA pinned in the topology, every endpoint https, and
    # each hub served TLS on both ports.
    topology = (tmp_path / "demo" / "network.toml").read_text()
    assert "[tls]" in topology and "ca_sha256" in topology and '"http://' not in topology
    for log in (tmp_path / "demo").glob("*.log"):
        assert 'scheme="https"' in log.read_text(), log
    assert "HTTP 403" in out and "only in jurisdictions [CN]" in out
    assert "Every copy is where its policy allows" in out
    # cn-personal: two CN hubs in different failure domains; nothing in HK or EU.
    section = out.split("cn-personal —", 1)[1].split("\n  ", 1)[0]
    holders = [line.split()[0] for line in out.split("cn-personal —", 1)[1].splitlines()[1:3]]
    assert len(holders) == 2 and "frankfurt" not in holders and "hong-kong" not in holders, section
    # Read-through: a CN hub without a copy serves it; Frankfurt refuses to.
    assert 'HTTP 200: {"bucket":"cn-personal","n":0}' in out
    assert "HTTP 403: read-through refused" in out
    # The residency report of the bucket that crosses a border, made at one hub, verified at
    # another against every hub's audit chain.
    assert "Residency report of cn-eu-contracts" in out and "under grant cn-eu-scc-1" in out, out[-3000:]
    assert "Verified at yrd-demo-zone: report of bucket \"cn-eu-contracts\" verified" in out, out[-3000:]
