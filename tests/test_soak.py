"""Soak in CI: one simulated hour of the daemon's loop over a changing synthetic host
(benchmarks/soak.py; `python benchmarks/soak.py --hours 8` is the long run).

After a 10-minute warm-up: no descriptor leaked, RSS within 1 MiB of where it was,
the median tick no slower at the end than at the start, and every kind of action
taken on the way (so the soak exercised deciding and acting, not just sampling).
"""

from __future__ import annotations

import os
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

from soak import soak, summary  # noqa: E402

from zoomd.daemon.engine import RECORDS_KEPT  # noqa: E402


def test_one_simulated_hour_leaks_nothing_and_does_not_slow_down() -> None:
    result = soak(3600.0, groups=200, seed=7)
    s = summary(result)
    assert s["simulated_hours"] >= 1.0
    assert s["wall_s"] < 60, s
    assert s["fds_max"] <= s["fds_after_warmup"] and s["fds_end"] <= s["fds_after_warmup"], s
    assert s["rss_growth_kib"] < 1024, s
    assert s["tick_median_ms_late"] < 1.5 * s["tick_median_ms_early"] + 0.3, s
    assert s["records_kept_max"] <= RECORDS_KEPT
    assert {"kill", "freeze", "thaw", "kill-process"} <= set(s["actions"]), s
