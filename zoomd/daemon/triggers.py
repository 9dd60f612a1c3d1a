"""Trigger conditions evaluated over a window of a group's history (pure functions).

Rates come from cumulative counters (PSI `total`, refaults, scans) so that any
window works and nothing lags like avg10. A condition whose input is unavailable
does not hold: without evidence zoomd does nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from zoomd.config.runtime import Conditions
from zoomd.daemon.sample import GroupSample, History
from zoomd.kernel.keyvalue import counter_delta
from zoomd.kernel.psi import stall_percent
from zoomd.model.reclaim import efficiency_pct


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """What a window shows; None where the kernel or the window gives no evidence."""

    seconds: float
    pressure_full_pct: float | None
    pressure_some_pct: float | None
    pressure_full_avg10: float | None
    refault_rate_pct: float | None  # % of memory_basis refaulted per second
    anon_efficiency_pct: float | None
    pgscan_delta: int | None
    effective_available: int | None
    memory_basis: int | None
    all_swap_ram_backed: bool
    protected_stall_pct: float | None = None  # from taskstats, when a policy asks for it
    # Refaults as a % of the pages pushed out over the window: every page that leaves
    # comes back (~100) in thrash, none in a fill; a ratio, whatever the domain's size.
    refault_share_pct: float | None = None
    # Pages refaulted over the last TURNOVER_WINDOW_S as a multiple of the most the
    # group held in swap meanwhile: repetition (> 1) rather than a one-time reread.
    swap_turnover: float | None = None

    def to_json(self) -> dict[str, object]:
        def rnd(v: float | None) -> float | None:
            return None if v is None else round(v, 2)

        return {
            "window_seconds": round(self.seconds, 3),
            "memory_pressure_full_pct": rnd(self.pressure_full_pct),
            "memory_pressure_some_pct": rnd(self.pressure_some_pct),
            "memory_pressure_full_avg10": self.pressure_full_avg10,
            "refault_rate_pct": rnd(self.refault_rate_pct),
            "anon_efficiency_pct": rnd(self.anon_efficiency_pct),
            "pgscan_delta": self.pgscan_delta,
            "effective_available_bytes": self.effective_available,
            "memory_basis_bytes": self.memory_basis,
            "all_swap_ram_backed": self.all_swap_ram_backed,
            "protected_stall_pct": rnd(self.protected_stall_pct),
            "refault_share_pct": rnd(self.refault_share_pct),
            "swap_turnover": rnd(self.swap_turnover),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WindowFigures:
        """The inverse of to_json (its rounding is kept: to_json gives `data` again)."""
        return cls(data["window_seconds"], data["memory_pressure_full_pct"],
                   data["memory_pressure_some_pct"], data["memory_pressure_full_avg10"],
                   data["refault_rate_pct"], data["anon_efficiency_pct"],
                   data["pgscan_delta"], data["effective_available_bytes"],
                   data["memory_basis_bytes"], data["all_swap_ram_backed"],
                   data.get("protected_stall_pct"), data.get("refault_share_pct"),
                   data.get("swap_turnover"))


VerdictState = Literal["no-evidence", "clear", "holds"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A policy's conditions judged over its window, once per tick (by the engine):
    what fired a decision, and what metrics, replay and the VM probe show."""

    figures: WindowFigures | None  # None: no evidence yet (too young a history)
    all: Mapping[str, bool]
    any: Mapping[str, bool]

    @property
    def holds(self) -> bool:
        """Every `all` condition and (if any are set) one `any`; never without figures."""
        return self.figures is not None and all(self.all.values()) and (
            not self.any or any(self.any.values()))

    @property
    def state(self) -> VerdictState:
        if self.figures is None:
            return "no-evidence"
        return "holds" if self.holds else "clear"

    def held(self) -> list[str]:
        """The conditions that held, `all` first, in configuration order."""
        return [k for k, v in {**self.all, **self.any}.items() if v]


NO_EVIDENCE = Verdict(None, {}, {})


MIN_PARTIAL_WINDOW_S = 2.0
TURNOVER_WINDOW_S = 60.0
# Below this many pages pushed out a second, a share of them is noise, not evidence
# (benchmarks/domain_signals.py reads such a denominator as 0 too).
MIN_EVICTED_PAGES_PER_S = 256
# Swap turnover needs this much in swap to mean anything (1 MiB).
MIN_TURNOVER_SWAP_BYTES = 1 << 20


def window_figures(history: History, window: float, page_size: int,
                   min_scanned_pages: int, with_turnover: bool = False,
                   ) -> WindowFigures | None:
    """Figures over the last `window` seconds.

    While the history is younger than a long window (just after start or a reload),
    the figures cover what there is, once that is at least 2 s (or the window, if
    shorter): a 30 s window must not keep a policy blind for its first 30 s, which
    systemd-oomd, counting from its own start, is not either.
    """
    last = history.latest()
    if last is None:
        return None
    first = history.at_or_before(last.t - window)
    if first is None:
        oldest = history.oldest()
        if oldest is None or last.t - oldest.t < min(window, MIN_PARTIAL_WINDOW_S):
            return None
        first = oldest
    if first is last:
        return None
    fig = figures_between(first, last, page_size, min_scanned_pages)
    turnover = swap_turnover(history, page_size) if with_turnover else None
    return fig if turnover is None else dataclasses.replace(fig, swap_turnover=turnover)


def swap_turnover(history: History, page_size: int,
                  window: float = TURNOVER_WINDOW_S) -> float | None:
    """Refaulted bytes over the last `window` seconds (or all the history holds) per
    byte at most held in swap meanwhile; None without the figures."""
    last = history.latest()
    if last is None or last.refaults is None or last.swap is None:
        return None
    first = None
    most_swap = 0
    start = last.t - window
    for sample in history:
        if sample.t < start or sample.refaults is None or sample.swap is None:
            continue
        if first is None:
            first = sample
        most_swap = max(most_swap, sample.swap)
    if first is None or first is last or most_swap < MIN_TURNOVER_SWAP_BYTES:
        return None
    refaulted = counter_delta(first.refaults, last.refaults)
    return None if refaulted is None else refaulted * page_size / most_swap


def figures_between(first: GroupSample, last: GroupSample, page_size: int,
                    min_scanned_pages: int) -> WindowFigures:
    seconds = last.t - first.t
    refaults = counter_delta(first.refaults, last.refaults)
    refault_rate = None
    if refaults is not None and last.refault_basis and seconds > 0:
        refault_rate = 100.0 * refaults * page_size / seconds / last.refault_basis
    evicted = counter_delta(first.evicted, last.evicted)
    refault_share = None
    if refaults is not None and evicted is not None and seconds > 0 and \
            evicted >= MIN_EVICTED_PAGES_PER_S * seconds:
        refault_share = min(100.0, 100.0 * refaults / evicted)
    scanned = counter_delta(first.anon_scanned, last.anon_scanned)
    stolen = counter_delta(first.anon_stolen, last.anon_stolen)
    efficiency = efficiency_pct(scanned, stolen, min_scanned_pages)
    return WindowFigures(
        seconds=seconds,
        pressure_full_pct=stall_percent(first.psi_full_us, last.psi_full_us, seconds),
        pressure_some_pct=stall_percent(first.psi_some_us, last.psi_some_us, seconds),
        pressure_full_avg10=last.psi_full_avg10,
        refault_rate_pct=refault_rate,
        anon_efficiency_pct=efficiency,
        pgscan_delta=counter_delta(first.pgscan, last.pgscan),
        effective_available=last.effective_available,
        memory_basis=last.memory_basis,
        all_swap_ram_backed=last.all_swap_ram_backed,
        refault_share_pct=refault_share,
    )


def uses_turnover(all_of: Conditions, any_of: Conditions) -> bool:
    return all_of.swap_turnover_above is not None or any_of.swap_turnover_above is not None


def condition_results(cond: Conditions, fig: WindowFigures) -> dict[str, bool]:
    """Each condition set in `cond`, and whether it holds over the window."""
    results: dict[str, bool] = {}

    def above(value: float | None, threshold: float) -> bool:
        return value is not None and value > threshold

    def below(value: float | None, threshold: float) -> bool:
        return value is not None and value < threshold

    if cond.memory_pressure_full_above is not None:
        results["memory_pressure_full_above"] = above(fig.pressure_full_pct,
                                                      cond.memory_pressure_full_above)
    if cond.memory_pressure_some_above is not None:
        results["memory_pressure_some_above"] = above(fig.pressure_some_pct,
                                                      cond.memory_pressure_some_above)
    if cond.memory_pressure_full_avg10_above is not None:
        results["memory_pressure_full_avg10_above"] = above(
            fig.pressure_full_avg10, cond.memory_pressure_full_avg10_above)
    if cond.effective_available_below is not None:
        threshold = (cond.effective_available_below.resolve(fig.memory_basis)
                     if fig.memory_basis else None)
        results["effective_available_below"] = (
            threshold is not None and below(fig.effective_available, threshold))
    if cond.anon_efficiency_below is not None:
        results["anon_efficiency_below"] = below(fig.anon_efficiency_pct,
                                                 cond.anon_efficiency_below)
    if cond.refault_rate_above is not None:
        results["refault_rate_above"] = above(fig.refault_rate_pct, cond.refault_rate_above)
    if cond.refault_share_above is not None:
        results["refault_share_above"] = above(fig.refault_share_pct,
                                               cond.refault_share_above)
    if cond.swap_turnover_above is not None:
        results["swap_turnover_above"] = above(fig.swap_turnover, cond.swap_turnover_above)
    if cond.all_swap_ram_backed is not None:
        results["all_swap_ram_backed"] = fig.all_swap_ram_backed == cond.all_swap_ram_backed
    if cond.protected_stall_above is not None:
        results["protected_stall_above"] = above(fig.protected_stall_pct,
                                                 cond.protected_stall_above)
    if cond.reclaim_activity is not None:
        active = fig.pgscan_delta is not None and fig.pgscan_delta > 0
        results["reclaim_activity"] = active == cond.reclaim_activity
    return results


def judge(all_of: Conditions, any_of: Conditions, fig: WindowFigures | None) -> Verdict:
    """The policy's verdict over `fig` (no figures: no evidence, nothing holds)."""
    if fig is None:
        return NO_EVIDENCE
    return Verdict(fig, condition_results(all_of, fig), condition_results(any_of, fig))


def conditions_hold(all_of: Conditions, any_of: Conditions,
                    fig: WindowFigures) -> tuple[bool, dict[str, bool], dict[str, bool]]:
    """The verdict as a tuple: (holds, `all` results, `any` results)."""
    verdict = judge(all_of, any_of, fig)
    return verdict.holds, dict(verdict.all), dict(verdict.any)
