"""The host reclaim model as the daemon runs it: each snapshot against the one ~5 s before.

The efficiency gate (anon counts as unreclaimable while reclaim of it fails) is judged
over time here: anon reclaim is failing only once every ~1 s step for
`efficiency_sustain` recovered less than the minimum. A 5 s window alone is fooled
by the swap-onset burst (a second of scanning referenced pages at 0% that dominates
the window for five), which made the default policy kill a workload that was only
filling zram (VM lab, benchmarks/results/vmlab/FINDINGS.md).

Kept apart from the loop so that replay feeds recorded snapshots through exactly the
same windowing (and so gets the same efficiency figures) as the live daemon.
"""

from __future__ import annotations

from collections import deque

from zoomd.model.reclaim import (
    ModelParams,
    ReclaimEstimate,
    efficiency_pct,
    estimate,
    reclaim_window,
)
from zoomd.model.snapshot import HostSnapshot

EFFICIENCY_WINDOW_S = 5.0
STEP_S = 1.0  # the gate's step: efficiency between snapshots at least this far apart
KEEP_S = 6.0


class HostModel:
    """Turns successive host snapshots into reclaim estimates (efficiency over ~5 s)."""

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        self._window: deque[HostSnapshot] = deque(maxlen=64)
        self._step_start: HostSnapshot | None = None
        self._failing_since: float | None = None
        self.last: ReclaimEstimate | None = None  # update()'s latest, as it returned it

    @property
    def failing_since(self) -> float | None:
        """Monotonic time since which every step's anon efficiency was below the minimum."""
        return self._failing_since

    def _judge_step(self, snap: HostSnapshot) -> None:
        """Close a step once it is STEP_S long; a step without evidence ends a failure."""
        start = self._step_start
        if start is None or snap.monotonic < start.monotonic:
            self._step_start, self._failing_since = snap, None
            return
        if snap.monotonic - start.monotonic < STEP_S:
            return
        step = reclaim_window(start.vmstat, snap.vmstat, snap.monotonic - start.monotonic)
        eff = efficiency_pct(step.anon_scanned, step.anon_stolen, self.params.min_scanned_pages)
        if eff is not None and eff < self.params.min_anon_efficiency:
            if self._failing_since is None:
                self._failing_since = start.monotonic
        else:
            self._failing_since = None
        self._step_start = snap

    def anon_failing(self, now: float) -> bool:
        since = self._failing_since
        return since is not None and now - since >= self.params.efficiency_sustain

    def update(self, snap: HostSnapshot) -> ReclaimEstimate:
        self._window.append(snap)
        self._judge_step(snap)
        window = None
        # The efficiency window: the sample nearest 5 s ago (or the oldest one kept).
        first = None
        for old in self._window:
            if snap.monotonic - old.monotonic >= EFFICIENCY_WINDOW_S:
                first = old
        if first is None and len(self._window) > 1:
            first = self._window[0]
        if first is not None and first is not snap:
            window = reclaim_window(first.vmstat, snap.vmstat, snap.monotonic - first.monotonic)
        est = estimate(snap, window, self.params, self.anon_failing(snap.monotonic))
        while self._window and snap.monotonic - self._window[0].monotonic > KEEP_S:
            self._window.popleft()
        self.last = est
        return est
