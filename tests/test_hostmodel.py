"""The daemon's host model: the efficiency gate shuts anon only when reclaim of it keeps
failing, not at the swap-onset burst (VM lab, global-compressible)."""

from __future__ import annotations

from builders import GiB, MiB, meminfo, snapshot, zram_swap

from zoomd.daemon.hostmodel import HostModel
from zoomd.model.reclaim import ModelParams


class Counters:
    """Cumulative anon scan/steal counters fed at a given efficiency per step."""

    def __init__(self) -> None:
        self.scanned = self.stolen = 0

    def advance(self, pages: int, efficiency: float) -> dict[str, int]:
        self.scanned += pages
        self.stolen += int(pages * efficiency)
        return {"pgscan_anon": self.scanned, "pgsteal_anon": self.stolen}


def host(vm: dict[str, int], t: float):
    zram = zram_swap(1 * GiB, 256 * MiB, orig=256 * MiB, mem_used=128 * MiB)
    mem = meminfo(1 * GiB, 20 * MiB, anon=700 * MiB, file=10 * MiB, swap_total=1 * GiB,
                  swap_free=768 * MiB)
    return snapshot(mem, (zram,), min_free=16 * MiB, vm=vm, t=t)


def run(model: HostModel, profile: list[tuple[float, int, float]], step: float = 0.25):
    """profile: (seconds, pages scanned per second, efficiency); returns (t, estimate)."""
    c, t, out = Counters(), 0.0, []
    out.append((t, model.update(host(c.advance(0, 1.0), t))))
    for seconds, rate, eff in profile:
        for _ in range(round(seconds / step)):
            t += step
            out.append((t, model.update(host(c.advance(int(rate * step), eff), t))))
    return out


def test_onset_burst_does_not_shut_anon() -> None:
    # 1.5 s of scanning referenced pages at 0% (200 MB/s), then a clean 95% swap-out:
    # the 5 s window reads far below 30% for seconds, the gate stays open.
    model = HostModel(ModelParams(anon="auto", efficiency_sustain=5.0))
    out = run(model, [(1.5, 50_000, 0.0), (10.0, 5_000, 0.95)])
    assert min(e.anon_efficiency_pct for _, e in out if e.anon_efficiency_pct is not None) < 10
    assert all(e.anon_reclaimable > 0 for _, e in out)
    assert model.failing_since is None


def test_sustained_failure_shuts_anon_after_the_sustain_time() -> None:
    model = HostModel(ModelParams(anon="auto", efficiency_sustain=5.0))
    out = run(model, [(2.0, 5_000, 0.95), (10.0, 20_000, 0.2)])
    shut = [t for t, e in out if e.anon_reclaimable == 0]
    assert shut, "a 10 s failure at 20% must shut the gate"
    # Failing began at t=2 (the first step below 30%); 5 s later, within one step.
    assert 7.0 <= shut[0] <= 8.25, shut[0]
    assert all(t >= shut[0] for t in shut)  # and it stays shut while the failure lasts
    assert out[-1][1].effective_available < out[0][1].effective_available


def test_a_good_step_reopens_the_gate_and_restarts_the_clock() -> None:
    model = HostModel(ModelParams(anon="auto", efficiency_sustain=5.0))
    out = run(model, [(4.0, 20_000, 0.2), (1.0, 20_000, 0.9), (4.0, 20_000, 0.2)])
    assert all(e.anon_reclaimable > 0 for _, e in out)


def test_steps_without_scans_are_no_evidence_of_failure() -> None:
    model = HostModel(ModelParams(anon="auto", efficiency_sustain=3.0, min_scanned_pages=256))
    out = run(model, [(2.0, 20_000, 0.1), (2.0, 0, 0.0), (2.0, 20_000, 0.1)])
    assert all(e.anon_reclaimable > 0 for _, e in out)


def test_zero_sustain_is_the_window_alone() -> None:
    model = HostModel(ModelParams(anon="auto", efficiency_sustain=0.0))
    out = run(model, [(3.0, 20_000, 0.1)])
    assert out[-1][1].anon_reclaimable == 0


def test_other_modes_ignore_the_gate() -> None:
    model = HostModel(ModelParams(anon="compression", efficiency_sustain=1.0))
    out = run(model, [(8.0, 20_000, 0.1)])
    assert all(e.anon_reclaimable > 0 for _, e in out)
    assert out[-1][1].anon_by_mode["auto"] == 0
