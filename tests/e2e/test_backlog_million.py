"""A million-entry backlog: two real hubs, the link cut by the real fault proxy, 1,000,000 small
objects written at one hub (valley-bench), the link healed, the backlog drained over an emulated
200 ms / 100 Mbit/s link. Runs `scripts/bench_keepup.py --backlog` (the benchmark of record)
and checks what it measured: every write acknowledged and every object at the far hub with its
bytes (the script checks listings and a sample of contents, and fails otherwise), both hubs
within a bounded resident peak (target 256 MiB; see RSS_MAX_MIB) (the outbox is read in pages and anti-entropy works in
pages, so memory does not grow with the backlog), and `valley status` and `/metrics` answering
again and again while it drained (their times are printed, not gated)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = 1_000_000
# Anti-entropy's item answers come a page at a time (repair.rs, ITEMS_PAGE): before they did,
# the receiver's own anti-entropy asked the draining sender for up to 262,144 items at once, and
# both hubs peaked 40-70 MiB higher, more the larger the backlog.
RSS_MAX_MIB = 256


# The run's own limits sit inside the test's, so a slow or stuck run fails with what it printed
# (which phase, how far it got) instead of being cut off by pytest-timeout with nothing to show.
# On this machine the run takes about 5 minutes: writing ~2, draining ~1, verifying ~1.
DRAIN_TIMEOUT_S = 600
RUN_TIMEOUT_S = 1500


@pytest.mark.timeout(RUN_TIMEOUT_S + 120)
def test_million_entry_backlog_drains_in_bounded_memory(tmp_path):
    out = tmp_path / "backlog.json"
    log = tmp_path / "backlog.log"
    bin_dir = Path(os.environ["VALLEY_BIN"]).resolve().parent
    with log.open("w") as sink:
        try:
            result = subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "bench_keepup.py"), "--backlog", str(OBJECTS),
                 "--bin-dir", str(bin_dir), "--json", str(out), "--timeout", str(DRAIN_TIMEOUT_S)],
                stdout=sink, stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"bench_keepup --backlog still running after {RUN_TIMEOUT_S} s; it printed:\n"
                        f"{log.read_text()[-4000:]}")
    printed = log.read_text()
    print(printed)
    assert result.returncode == 0, f"bench_keepup --backlog failed:\n{printed[-4000:]}"
    figures = json.loads(out.read_text())["backlog"]
    write, drain, verify = figures["write"], figures["drain"], figures["verify"]
    assert write["ops"] == OBJECTS and write["errors"] == 0, write
    assert write["backlog_entries_at_heal"] >= OBJECTS, "the link was down while writing"
    assert verify["listed_at_gui_an"] == OBJECTS and verify["listing_mismatches"] == 0, verify
    assert verify["content_checked"] >= 200 and verify["content_mismatches"] == 0, verify
    for hub in ("zhangjiakou", "gui-an"):
        peak = max(drain["peak_rss_mib"][hub], write["hwm_after_writing_mib"][hub])
        assert peak <= RSS_MAX_MIB, f"{hub} peaked at {peak} MiB resident (limit {RSS_MAX_MIB} MiB)"
    assert drain["status"]["n"] >= 3, f"valley status answered {drain['status']['n']} times while draining"
    assert drain["metrics"]["n"] >= 3, f"/metrics answered {drain['metrics']['n']} times while draining"
