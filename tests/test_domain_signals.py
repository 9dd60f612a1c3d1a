"""benchmarks/domain_signals.py: the arithmetic the committed thresholds rest on.

The real runs need root, zram and the lab lock; these check only what turns counters
into signals, so a wrong window or ratio cannot silently move a threshold.
"""

from __future__ import annotations

import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

from domain_signals import PAGE, RATIO_FLOOR, derive, fires, main, windows  # noqa: E402

LIMIT = 512 << 20


def _raw(t: float, refault: int, pgpgout: int, swap: int, psi_full_us: int) -> dict:
    return {
        "t": t, "usage": LIMIT, "ops": 0, "oom_kill": 0, "zram": {},
        "psi": {"some": psi_full_us, "full": psi_full_us}, "host_psi": {},
        "stat": {"total_workingset_refault_anon": refault, "total_workingset_refault_file": 0,
                 "total_pgpgin": 0, "total_pgpgout": pgpgout, "total_pgmajfault": refault,
                 "total_pgfault": refault, "total_swap": swap, "total_rss": LIMIT,
                 "total_cache": 0},
        "vmstat": {},
    }


def test_derive_rates_shares_and_ratios_per_second() -> None:
    a = _raw(10.0, 0, 0, 256 << 20, 0)
    b = _raw(12.0, 20000, 40000, 256 << 20, 1_000_000)  # two seconds later
    s = derive(a, b, LIMIT)
    assert s["refault"] == 10000 and s["pgpgout"] == 20000
    assert s["psi_full"] == 50.0
    assert s["refault_per_pgpgout"] == 0.5
    assert s["refault_share"] == round(10000 * PAGE / LIMIT, 5)
    assert s["swap_turnover"] == round(10000 * PAGE / (256 << 20), 5)
    assert s["swap_share"] == 0.5


def test_ratio_below_the_floor_reads_as_zero() -> None:
    a = _raw(0.0, 0, 0, 0, 0)
    b = _raw(1.0, RATIO_FLOOR - 1, RATIO_FLOOR - 1, 0, 0)
    s = derive(a, b, LIMIT)
    assert s["refault_per_pgpgout"] == 0.0
    assert s["swap_turnover"] == 0.0  # nothing in swap: no turnover to speak of


def test_window_turnover_is_a_total_and_ratios_are_sum_over_sum() -> None:
    swap = 100 * PAGE * RATIO_FLOOR
    samples = [{"sig": {"refault": 10 * RATIO_FLOOR, "pgpgout": 20 * RATIO_FLOOR,
                        "swap": swap, "psi_full": float(i)}} for i in range(12)]
    samples[0]["sig"]["pgpgout"] = 200 * RATIO_FLOOR  # one burst of outflow
    turn = windows(samples, "swap_turnover", n=10)
    assert len(turn) == 3
    assert turn[0] == pytest.approx(10 * 10 * RATIO_FLOOR * PAGE / swap)  # 1.0 per 10 s
    ratio = windows(samples, "refault_per_pgpgout", n=10)
    assert ratio[0] == pytest.approx(100 / (200 + 9 * 20))
    assert ratio[1] == pytest.approx(0.5)
    assert windows(samples, "psi_full", n=10)[0] == pytest.approx(4.5)


@pytest.mark.parametrize("argv", [["--limits", "1X"], ["--duration", "600"],
                                  ["--workloads", "nope"]])
def test_bad_command_line_exits_2_with_a_message(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_a_rule_fires_only_once_every_window_is_full_and_holds() -> None:
    quiet = {"psi_full": 0.0, "refault": 0.0, "pgpgout": 0.0, "swap": 0.0}
    stall = {"psi_full": 50.0, "refault": 1000.0, "pgpgout": 1000.0, "swap": 0.0}
    samples = [{"sig": dict(quiet)} for _ in range(5)] + [{"sig": dict(stall)} for _ in range(20)]
    rule = (("psi_full", 20.0, 10), ("refault_per_pgpgout", 0.5, 10))
    got = fires(samples, rule)
    # no rule before its first full window (index 9, holding 5 stalled seconds: 25%)
    assert got == list(range(9, 25))
    assert fires(samples, (("psi_full", 30.0, 10),))[0] == 10  # 6 of 10 stalled: 30%
    assert fires(samples, (("psi_full", 20.0, 30),)) == []  # 30 s window never full


def test_sustain_and_a_turnover_window_that_may_be_short() -> None:
    swap = 1000 * PAGE
    samples = [{"sig": {"psi_full": 50.0, "refault": 400.0, "pgpgout": 400.0, "swap": swap}}
               for _ in range(20)]
    # turnover 0.4 a second: >= 1 over the 3rd second already, no 60 s of history needed
    assert fires(samples, (("swap_turnover", 1.0, 60),))[0] == 2
    assert fires(samples, (("psi_full", 20.0, 10),), sustain=5)[0] == 13
