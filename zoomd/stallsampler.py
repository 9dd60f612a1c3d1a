"""Who stalls on memory in the groups a policy cares about, within a query budget.

Each call lists the tasks of the given cgroups (CgroupReader.subtree_procs), asks
taskstats for at most `budget` of them, and turns each task's delay totals into
rates against that task's previous sample. A query is one netlink round trip:
210-440 us with pyroute2 0.9.7 on the 2-CPU development host, idle to loaded, so
the default budget of 128 costs ~25-60 ms a call (benchmarks/results/
taskstats-rss.md). When a host has more tasks than the budget, successive calls
rotate through them (`rotate=True`, the daemon) or keep asking for the same ones
(`rotate=False`, a one-shot window such as `zoomd status --stalls`); either way
every group says how many of its tasks were listed, asked for and rated, so a
partial figure never passes for a whole one. Tasks that exit between two samples
take their delays with them (the kernel's exit notifications would be needed to
keep those).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.taskstats import TaskStats
from zoomd.model.stall_rates import StallFigures, task_rates

DEFAULT_TASK_BUDGET = 128  # taskstats queries per call
LIST_FACTOR = 8  # list at most budget * LIST_FACTOR tasks per group


class DelaySource(Protocol):
    """Where per-process delay totals come from (TaskstatsClient, or a fake in tests)."""

    def tgid(self, tgid: int) -> TaskStats | None: ...


@dataclass(frozen=True, slots=True)
class ProcessStall:
    """One process's rates over its own window (time since its previous sample)."""

    tgid: int
    seconds: float
    figures: StallFigures
    stats: TaskStats  # the latest totals


@dataclass(frozen=True, slots=True)
class GroupStall:
    """A group's rates: the sum over the tasks of its subtree that were rated."""

    path: str
    figures: StallFigures
    listed: int  # processes found (capped at budget * LIST_FACTOR; kernel threads left out)
    sampled: int  # asked for in this call
    rated: int  # with a rate in this call
    capped: bool  # the listing hit its cap: there may be more

    @property
    def complete(self) -> bool:
        return not self.capped and self.rated == self.listed


@dataclass(frozen=True, slots=True)
class StallSample:
    monotonic: float
    processes: tuple[ProcessStall, ...]
    groups: Mapping[str, GroupStall]
    queries: int
    budget: int


class StallSampler:
    """Keeps each task's previous totals between calls; one instance per loop."""

    def __init__(self, source: DelaySource, cgroups: CgroupReader,
                 budget: int = DEFAULT_TASK_BUDGET, *, rotate: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if budget < 1:
            raise ValueError("budget must be at least 1")
        self.source = source
        self.cgroups = cgroups
        self.budget = budget
        self.rotate = rotate
        self.clock = clock
        self._last: dict[int, tuple[float, TaskStats]] = {}
        self._cursor: dict[str, int] = {}
        self._kernel_threads: dict[int, bool] = {}

    def _is_kernel_thread(self, pid: int) -> bool:
        """Kernel threads have no command line; they never stall on user memory."""
        known = self._kernel_threads.get(pid)
        if known is None:
            cmdline = self.cgroups.root.read_optional(f"/proc/{pid}/cmdline")
            known = self._kernel_threads[pid] = cmdline == ""
        return known

    def _listing(self, groups: Sequence[str]) -> tuple[dict[str, list[int]], set[str], set[int]]:
        """Each group's processes (kernel threads left out), the groups whose listing
        hit the cap, and every pid seen (kernel threads included)."""
        cap = self.budget * LIST_FACTOR
        listing: dict[str, list[int]] = {}
        capped: set[str] = set()
        seen: set[int] = set()
        for group in groups:
            raw = self.cgroups.subtree_procs(group, limit=cap)
            seen.update(raw)
            if len(raw) >= cap:
                capped.add(group)
            listing[group] = [p for p in raw if not self._is_kernel_thread(p)]
        return listing, capped, seen

    def _choose(self, listing: dict[str, list[int]]) -> list[int]:
        """Up to `budget` distinct pids, taken round-robin so every group gets a share."""
        queues: dict[str, list[int]] = {}
        for group, pids in listing.items():
            start = self._cursor.get(group, 0) % len(pids) if pids else 0
            queues[group] = pids[start:] + pids[:start]
        chosen: list[int] = []
        seen: set[int] = set()
        taken = dict.fromkeys(queues, 0)
        position = dict.fromkeys(queues, 0)
        while len(chosen) < self.budget:
            progressed = False
            for group, queue in queues.items():
                while position[group] < len(queue):
                    pid = queue[position[group]]
                    position[group] += 1
                    if pid not in seen:
                        seen.add(pid)
                        chosen.append(pid)
                        taken[group] += 1
                        progressed = True
                        break
                if len(chosen) >= self.budget:
                    break
            if not progressed:
                break
        if self.rotate:
            for group in queues:
                self._cursor[group] = self._cursor.get(group, 0) + position[group]
        return chosen

    def sample(self, groups: Sequence[str]) -> StallSample:
        """Query up to `budget` tasks of `groups`; rates for those seen before."""
        listing, capped, seen = self._listing(groups)
        chosen = self._choose(listing)
        rated: dict[int, ProcessStall] = {}
        queries = 0
        for pid in chosen:
            stats = self.source.tgid(pid)
            queries += 1
            now = self.clock()
            if stats is None:  # exited
                self._last.pop(pid, None)
                continue
            previous = self._last.get(pid)
            self._last[pid] = (now, stats)
            if previous is None:
                continue
            rates = task_rates(previous[1], stats, now - previous[0])
            if rates is not None:
                rated[pid] = ProcessStall(pid, now - previous[0], StallFigures.of_task(rates),
                                          stats)
        for cache in (self._last, self._kernel_threads):
            for pid in [p for p in cache if p not in seen]:
                del cache[pid]
        asked = set(chosen)
        out: dict[str, GroupStall] = {}
        for group, pids in listing.items():
            parts = [rated[p].figures for p in pids if p in rated]
            out[group] = GroupStall(group, StallFigures.of_group(parts), len(pids),
                                    sum(1 for p in pids if p in asked), len(parts),
                                    capped=group in capped)
        return StallSample(self.clock(), tuple(rated.values()), MappingProxyType(out),
                           queries, self.budget)
