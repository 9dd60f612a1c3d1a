"""The host reclaim model as the daemon runs it: each snapshot against the one ~5 s before.

Kept apart from the loop so that replay feeds recorded snapshots through exactly the
same windowing (and so gets the same efficiency figures) as the live daemon.
"""

from __future__ import annotations

from collections import deque

from zoomd.config.schema import Config
from zoomd.model.reclaim import ModelParams, ReclaimEstimate, estimate, reclaim_window
from zoomd.model.snapshot import HostSnapshot

EFFICIENCY_WINDOW_S = 5.0
KEEP_S = 6.0


def model_params(config: Config) -> ModelParams:
    r = config.reclaim
    return ModelParams(mode=r.anon, min_anon_efficiency_pct=r.min_anon_efficiency,
                       min_scanned_pages=r.min_scanned_pages,
                       assumed_compression_ratio=r.assumed_compression_ratio)


class HostModel:
    """Turns successive host snapshots into reclaim estimates (efficiency over ~5 s)."""

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        self._window: deque[HostSnapshot] = deque(maxlen=64)

    def update(self, snap: HostSnapshot) -> ReclaimEstimate:
        self._window.append(snap)
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
        est = estimate(snap, window, self.params)
        while self._window and snap.monotonic - self._window[0].monotonic > KEEP_S:
            self._window.popleft()
        return est
