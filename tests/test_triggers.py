"""Trigger conditions over windows of synthetic samples (pure)."""

from __future__ import annotations

from zoomd.config.runtime import Conditions
from zoomd.daemon.sample import GroupSample, History
from zoomd.daemon.triggers import conditions_hold, window_figures

MiB = 1 << 20


def sample(t: float, full_us: int, some_us: int | None = None, refaults: int = 0,
           scanned: int = 0, stolen: int = 0, pgscan: int = 0, effective: int = 400 * MiB,
           basis: int = 512 * MiB, ram: bool = True, avg10: float = 0.0) -> GroupSample:
    return GroupSample(t, some_us if some_us is not None else full_us, full_us, avg10,
                       refaults, pgscan, scanned, stolen, basis, basis, effective, ram)


def history(*samples: GroupSample) -> History:
    h = History(horizon=30.0)
    for s in samples:
        h.add(s)
    return h


def test_pressure_from_total_deltas_over_the_window() -> None:
    # 0.6 s of full stall per second over 4 s -> 60%.
    h = history(*(sample(t, int(t * 600_000)) for t in range(0, 6)))
    fig = window_figures(h, 4.0, 4096, 256)
    assert fig is not None
    assert abs(fig.pressure_full_pct - 60.0) < 1e-9
    assert fig.seconds == 4.0


def test_no_figures_until_history_covers_the_window() -> None:
    h = history(sample(0, 0), sample(1, 500_000))
    assert window_figures(h, 4.0, 4096, 256) is None


def test_refault_rate_relative_to_the_basis() -> None:
    # 32768 pages * 4 KiB = 128 MiB per 2 s = 64 MiB/s of a 512 MiB limit = 12.5 %/s.
    h = history(sample(0, 0), sample(2, 0, refaults=32768))
    fig = window_figures(h, 2.0, 4096, 256)
    assert abs(fig.refault_rate_pct - 12.5) < 1e-9


def test_anon_efficiency_needs_enough_scans() -> None:
    h = history(sample(0, 0), sample(2, 0, scanned=100, stolen=5))
    assert window_figures(h, 2.0, 4096, 256).anon_efficiency_pct is None
    h = history(sample(0, 0), sample(2, 0, scanned=1000, stolen=210))
    assert abs(window_figures(h, 2.0, 4096, 256).anon_efficiency_pct - 21.0) < 1e-9


def test_all_and_any_combination() -> None:
    h = history(sample(0, 0), sample(4, 2_400_000, refaults=100_000))
    fig = window_figures(h, 4.0, 4096, 256)
    all_of = Conditions(memory_pressure_full_above=30.0)
    holds, a, b = conditions_hold(all_of, Conditions(refault_rate_above=5.0,
                                                     anon_efficiency_below=30.0), fig)
    assert holds and a == {"memory_pressure_full_above": True}
    assert b == {"refault_rate_above": True, "anon_efficiency_below": False}
    # No `any` condition holds -> the policy does not fire.
    holds, _, _ = conditions_hold(all_of, Conditions(anon_efficiency_below=30.0), fig)
    assert not holds
    # Pressure too low -> no.
    holds, _, _ = conditions_hold(Conditions(memory_pressure_full_above=70.0),
                                  Conditions(), fig)
    assert not holds


def test_missing_evidence_never_holds() -> None:
    h = history(sample(0, 0), sample(4, 0))
    fig = window_figures(h, 4.0, 4096, 256)
    holds, _, b = conditions_hold(Conditions(), Conditions(anon_efficiency_below=90.0), fig)
    assert not holds and b == {"anon_efficiency_below": False}


def test_effective_available_percentage_of_basis() -> None:
    h = history(sample(0, 0), sample(2, 0, effective=10 * MiB, basis=512 * MiB))
    fig = window_figures(h, 2.0, 4096, 256)
    from zoomd.config.units import parse_size

    holds, _, _ = conditions_hold(Conditions(effective_available_below=parse_size("3%")),
                                  Conditions(), fig)
    assert holds  # 10 MiB < 15.36 MiB
    holds, _, _ = conditions_hold(Conditions(effective_available_below=parse_size("1%")),
                                  Conditions(), fig)
    assert not holds


def test_ram_backed_and_reclaim_activity() -> None:
    h = history(sample(0, 0, pgscan=10), sample(2, 0, pgscan=10, ram=False))
    fig = window_figures(h, 2.0, 4096, 256)
    holds, a, _ = conditions_hold(Conditions(all_swap_ram_backed=True, reclaim_activity=True),
                                  Conditions(), fig)
    assert not holds and a == {"all_swap_ram_backed": False, "reclaim_activity": False}


def test_counter_reset_gives_no_evidence() -> None:
    h = history(sample(0, 5_000_000), sample(2, 100))
    fig = window_figures(h, 2.0, 4096, 256)
    assert fig.pressure_full_pct is None


def test_history_is_bounded() -> None:
    h = History(horizon=5.0)
    for t in range(1000):
        h.add(sample(float(t), 0))
    assert len(h) <= 8


def test_long_window_uses_the_history_there_is_after_two_seconds() -> None:
    h = history(sample(0, 0), sample(1, 600_000))
    assert window_figures(h, 30.0, 4096, 256) is None  # 1 s of history: too little
    h.add(sample(3, 1_800_000))
    fig = window_figures(h, 30.0, 4096, 256)
    assert fig is not None and fig.seconds == 3.0
    assert abs(fig.pressure_full_pct - 60.0) < 1e-9
