"""Actions in flight: a decision's "before" hooks, then its action, finished from later ticks.

A before-hook may take its whole timeout, and a cgroup kill up to 5 s until the
group is empty. Done inside the tick, either held the loop: no watchdog ping, no
other policy evaluated (one 12 s hook left a 13 s gap between pings; two slow hooks
and systemd's WatchdogSec=30s would kill zoomd in the middle of a brownout). Like
systemd-oomd, which marks a kill and finishes it from its event loop, a decision
becomes an InFlight that the engine advances each tick, and the loop whenever one of
its descriptors (a hook's or a dying process's pidfd) turns readable or its wake
time comes. Nothing here waits, except `wait()` (shutdown and tests).
"""

from __future__ import annotations

import select
from collections.abc import Callable
from dataclasses import dataclass, field

from zoomd.actions.backend import PendingAction
from zoomd.actions.outcome import ActionOutcome
from zoomd.daemon.decision import Decision, HookRun
from zoomd.daemon.hooks import BeforeHooks


@dataclass
class InFlight:
    """One decision between its hooks starting and its record.

    `issue` performs the action (returning at once with a PendingAction) once the
    before-hooks are done; `finish` turns the outcome and the hooks' runs into the
    decision record (logged, kept, after-hooks started).
    """

    owner: object  # the policy state that may not fire again meanwhile
    hooks: BeforeHooks | None
    issue: Callable[[], PendingAction]
    finish: Callable[[ActionOutcome, list[HookRun]], Decision]
    pending: PendingAction | None = None
    record: Decision | None = None

    def advance(self) -> Decision | None:
        """As far as it goes without waiting; the record once the action is over."""
        if self.record is not None:
            return self.record
        if self.hooks is not None and not self.hooks.poll():
            return None
        if self.pending is None:
            self.pending = self.issue()
        outcome = self.pending.step()
        if outcome is None:
            return None
        self.pending.close()
        runs = list(self.hooks.runs) if self.hooks is not None else []
        self.record = self.finish(outcome, runs)
        return self.record

    def fds(self) -> list[int]:
        if self.pending is not None:
            return self.pending.fds()
        return self.hooks.fds() if self.hooks is not None else []

    def wake_in(self) -> float | None:
        if self.pending is not None:
            return self.pending.wake_in()
        return self.hooks.wake_in() if self.hooks is not None else 0.0

    def wait(self) -> Decision:
        """Block until the record is made (shutdown and tests; the loop never does)."""
        while (record := self.advance()) is None:
            poller = select.poll()
            for fd in self.fds():
                poller.register(fd, select.POLLIN)
            wake = self.wake_in()
            poller.poll(1000 if wake is None else max(1, int(wake * 1000)))
        return record


@dataclass
class InFlightSet:
    """The engine's actions in flight."""

    items: list[InFlight] = field(default_factory=list)

    def start(self, item: InFlight) -> Decision | None:
        """Take a new decision and advance it at once: an action with no hooks and an
        outcome known at once (dry run) is recorded in the tick that decided it."""
        record = item.advance()
        if record is None:
            self.items.append(item)
        return record

    def advance(self) -> list[Decision]:
        done = []
        for item in list(self.items):
            record = item.advance()
            if record is not None:
                self.items.remove(item)
                done.append(record)
        return done

    def owned_by(self, owner: object) -> bool:
        return any(item.owner is owner for item in self.items)

    def fds(self) -> list[int]:
        return [fd for item in self.items for fd in item.fds()]

    def wake_in(self) -> float | None:
        """Seconds until some action wants a look even without an event (None: none)."""
        wakes = [w for w in (item.wake_in() for item in self.items) if w is not None]
        return min(wakes) if wakes else None

    def drain(self) -> list[Decision]:
        """Finish every action, waiting (bounded by the hooks' timeouts and the kills')."""
        done = [item.wait() for item in self.items]
        self.items.clear()
        return done

    def __len__(self) -> int:
        return len(self.items)
