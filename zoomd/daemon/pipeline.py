"""One step of the decision pipeline: a host snapshot through the reclaim model and the
engine, as one TickResult.

The daemon's loop and replay run this same step (the VM-lab probe judges its policies
with the engine's own verdict function), so what one decides from a snapshot the
other decides too; what surrounds it (the loop's triggers, integrations and
observers, replay's tracks and timeline) reads the result instead of wiring reader,
model and engine again.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from zoomd.daemon.decision import Decision
from zoomd.daemon.engine import Engine
from zoomd.daemon.hostmodel import HostModel
from zoomd.model.reclaim import ReclaimEstimate
from zoomd.model.snapshot import HostSnapshot


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick saw and decided, and how long it took."""

    host: HostSnapshot
    estimate: ReclaimEstimate
    decisions: tuple[Decision, ...]
    seconds: float  # from the tick's start to its result (this process's monotonic clock)

    def with_decisions(self, more: list[Decision], started: float) -> TickResult:
        """The result with decisions made after the engine's (integrations' rules),
        timed from `started` again."""
        return dataclasses.replace(self, decisions=(*self.decisions, *more),
                                   seconds=time.monotonic() - started)


def step(snap: HostSnapshot, model: HostModel, engine: Engine,
         started: float | None = None) -> TickResult:
    """Model the snapshot and advance every policy by it (`started`: when the tick
    began, if before the snapshot was taken)."""
    began = time.monotonic() if started is None else started
    estimate = model.update(snap)
    decisions = engine.tick(snap, estimate)
    return TickResult(snap, estimate, tuple(decisions), time.monotonic() - began)
