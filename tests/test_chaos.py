"""A short fault-injection campaign (the long one is `make chaos`): 3 nodes in network
namespaces, producers running throughout, 8 faults (one of each kind, tests/chaos/nemesis.py),
then everything read back. No acknowledged message may be lost, duplicated, reordered or moved,
and every replica must hold what clients read."""

from __future__ import annotations

import os
import time

import pytest

from chaos import campaign, checker
from netns import available

FAULTS = int(os.environ.get("CHAOS_TEST_FAULTS", "8"))


@pytest.mark.timeout(400)
def test_a_short_chaos_campaign_finds_no_violations(tmp_path):
    why = available()
    if why:
        pytest.skip(why)
    seed = int(os.environ.get("CHAOS_SEED", time.time()))
    print(f"seed={seed}")
    r = campaign.run(tmp_path, FAULTS, seed, hold_s=(2.0, 5.0), rate=50.0, pad=400)
    acked = sum(1 for a in r.attempts if a.outcome == "acked")
    print(f"{len(r.faults)} faults in {r.seconds:.0f}s, {len(r.attempts)} sent, {acked} acked, "
          f"violations {checker.summarize(r.violations)}")
    for f, w in zip(r.faults, r.windows):
        print(f"  {f.kind} {f.target}: partition gap {w.partition_gap:.1f}s, heal to ack {w.heal_to_ack}, "
              f"notes {f.notes}")
    assert acked > 0
    assert r.violations == [], r.violations[:20]
