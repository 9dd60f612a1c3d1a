"""Stall rates: seconds of delay per second of wall time, from two taskstats samples.

A rate of 0.8 for `freepages` means the task spent 80% of the window in direct
reclaim. Summed over a group's tasks it can exceed 1 (several tasks stall at once).

Memory stall = freepages + compact + max(swapin, thrashing), not the plain sum:
the kernel counts a swap-in of a working-set page both as swapin and as thrashing
(mm/page_io.c swap_read_folio wraps the read in both), so adding the two would
count that time twice. The larger of the two stands for both; file-page thrashing
that is not a swap-in is then under-counted for a task that also swaps in. The
plain sum is kept as `memory_sum` (an upper bound).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from zoomd.kernel.taskstats import MEMORY_KINDS, TaskStats

Rates = Mapping[str, float]  # kind -> stall seconds per second


def task_rates(before: TaskStats, after: TaskStats, seconds: float) -> Rates | None:
    """Per-kind rates between two samples of one task; None when they cannot be compared
    (no time passed, or a total went backwards: the id now names another task)."""
    if seconds <= 0:
        return None
    rates: dict[str, float] = {}
    for kind, now in after.delays.items():
        then = before.delays.get(kind)
        if then is None:
            continue
        delta = now.total_ns - then.total_ns
        if delta < 0 or now.count < then.count:
            return None
        rates[kind] = delta / 1e9 / seconds
    return MappingProxyType(rates)


def memory_rate(rates: Rates) -> float:
    """Memory stall without the swapin/thrashing double count (see the module doc)."""
    return rates.get("freepages", 0.0) + rates.get("compact", 0.0) + \
        max(rates.get("swapin", 0.0), rates.get("thrashing", 0.0))


def memory_sum(rates: Rates) -> float:
    return sum(rates.get(kind, 0.0) for kind in MEMORY_KINDS)


def dominant_kind(rates: Rates, kinds: Iterable[str] = MEMORY_KINDS) -> str | None:
    """The memory kind with the largest rate, None when nothing stalled."""
    best = max(((rates.get(k, 0.0), k) for k in kinds), default=(0.0, ""))
    return best[1] if best[0] > 0 else None


def add_rates(parts: Iterable[Rates]) -> Rates:
    total: dict[str, float] = {}
    for part in parts:
        for kind, value in part.items():
            total[kind] = total.get(kind, 0.0) + value
    return MappingProxyType(total)


@dataclass(frozen=True, slots=True)
class StallFigures:
    """Rates of a task or a group, with the memory figures used for ranking.

    A group's memory figure is the sum of its tasks' figures, not memory_rate() of
    the summed kinds: the swapin/thrashing overlap is per task.
    """

    rates: Rates
    memory: float
    memory_sum: float

    @classmethod
    def of_task(cls, rates: Rates) -> StallFigures:
        return cls(rates, memory_rate(rates), memory_sum(rates))

    @classmethod
    def of_group(cls, parts: Iterable[StallFigures]) -> StallFigures:
        members = list(parts)
        return cls(add_rates(m.rates for m in members), sum(m.memory for m in members),
                   sum(m.memory_sum for m in members))

    @property
    def kind(self) -> str | None:
        return dominant_kind(self.rates)
