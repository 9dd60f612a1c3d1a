"""One reading of a watched group (or of the host) and a bounded history of them."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GroupSample:
    """Counters of a watched group at one monotonic time; None = not available here."""

    t: float
    psi_some_us: int | None
    psi_full_us: int | None
    psi_full_avg10: float | None
    refaults: int | None  # pages, anon + file, cumulative
    pgscan: int | None  # pages, cumulative (group's own on v2, host's otherwise)
    anon_scanned: int | None  # host-wide vmstat, cumulative
    anon_stolen: int | None
    memory_basis: int | None  # bytes that effective_available_below "N%" is relative to
    refault_basis: int | None  # bytes that refault rates are relative to
    effective_available: int | None  # bytes, reclaim model applied
    all_swap_ram_backed: bool
    # Pages pushed out of memory, cumulative (pgsteal; pgpgout on v1): what refaults
    # are a share of. Bytes held in swap: what refaults turn over.
    evicted: int | None = None
    swap: int | None = None


class History:
    """Samples of one group, long enough to cover the longest window asked for."""

    __slots__ = ("_samples", "horizon")

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self._samples: deque[GroupSample] = deque()

    def add(self, sample: GroupSample) -> None:
        self._samples.append(sample)
        cutoff = sample.t - self.horizon - 1.0
        while len(self._samples) > 2 and self._samples[1].t <= cutoff:
            self._samples.popleft()

    def latest(self) -> GroupSample | None:
        return self._samples[-1] if self._samples else None

    def at_or_before(self, t: float) -> GroupSample | None:
        """The newest sample taken no later than t (the start of a window)."""
        found = None
        for sample in self._samples:
            if sample.t <= t:
                found = sample
            else:
                break
        return found

    def __iter__(self) -> Iterator[GroupSample]:
        """Oldest first."""
        return iter(self._samples)

    def oldest(self) -> GroupSample | None:
        return self._samples[0] if self._samples else None

    def clear(self) -> None:
        self._samples.clear()

    def __len__(self) -> int:
        return len(self._samples)
