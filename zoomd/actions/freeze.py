"""Freeze or thaw a cgroup: v2 cgroup.freeze where it exists, else v1 freezer.state.

A frozen group keeps its memory but stops allocating and stops competing for reclaim,
which buys time on batch hosts where a kill would lose work. Both freezers are
asynchronous, so success means the kernel reports the group frozen (or thawed), not
merely that the write was accepted.
"""

from __future__ import annotations

import os
import select
import time

from zoomd.actions.cgroupfs import read_text, subtree_pids, write_value
from zoomd.actions.outcome import ActionOutcome, describe, failed
from zoomd.actions.safety import group_refusal
from zoomd.errors import KernelFileError

_V1_POLL_MAX_S = 0.02


def freeze_cgroup(v2_dir: str | None, v1_freezer_dir: str | None, *,
                  timeout_s: float = 5.0) -> ActionOutcome:
    """Freeze the group; ok once cgroup.events says `frozen 1` (v2) or freezer.state FROZEN.

    Refuses a group holding PID 1 or zoomd itself: freezing either would hang the host
    or the daemon that is supposed to thaw it.
    """
    return _set_frozen("freeze", v2_dir, v1_freezer_dir, True, timeout_s)


def thaw_cgroup(v2_dir: str | None, v1_freezer_dir: str | None, *,
                timeout_s: float = 5.0) -> ActionOutcome:
    """Thaw the group; ok once it reads `frozen 0` (v2) or THAWED (v1)."""
    return _set_frozen("thaw", v2_dir, v1_freezer_dir, False, timeout_s)


def choose_freezer(v2_dir: str | None, v1_freezer_dir: str | None) -> tuple[str, str] | None:
    """(method, directory) that would be used: v2 when the group has cgroup.freeze."""
    if v2_dir and os.path.exists(os.path.join(v2_dir, "cgroup.freeze")):
        return "cgroup.freeze", v2_dir
    if v1_freezer_dir:
        return "freezer.state", v1_freezer_dir
    return None


def no_freezer_error(v2_dir: str | None, v1_freezer_dir: str | None) -> str:
    if v2_dir:
        return f"{os.path.join(v2_dir, 'cgroup.freeze')}: No such file or directory"
    return "no cgroup v2 directory and no v1 freezer directory given"


class FreezerChange:
    """One freeze or thaw: written when made, its completion seen by `step()`.

    The daemon's loop looks again after `wake_in()` (a freeze of tasks stuck in
    reclaim can take seconds); `freeze_cgroup`/`thaw_cgroup` step it until done,
    sleeping on cgroup.events' change notification (POLLPRI) in between.
    """

    def __init__(self, action: str, v2_dir: str | None, v1_freezer_dir: str | None,
                 freeze: bool, timeout_s: float) -> None:
        self.action, self.freeze, self.timeout_s = action, freeze, timeout_s
        self.outcome: ActionOutcome | None = None
        self.pids: tuple[int, ...] = ()
        self.start = self.deadline = 0.0
        self._events_fd: int | None = None
        self._pause = 0.0005
        chosen = choose_freezer(v2_dir, v1_freezer_dir)
        if chosen is None:
            self.method, self.directory = "cgroup.freeze", v2_dir or v1_freezer_dir or ""
            self.outcome = failed(action, self.directory, self.method,
                                  no_freezer_error(v2_dir, v1_freezer_dir))
            return
        self.method, self.directory = chosen
        if self.method == "cgroup.freeze":
            self.want = f"frozen {int(freeze)}"
        else:
            self.want = "FROZEN" if freeze else "THAWED"
        self._guarded(self._issue)

    def _guarded(self, work) -> None:  # type: ignore[no-untyped-def]
        try:
            work()
        except (OSError, KernelFileError) as exc:
            self.outcome = failed(self.action, self.directory, self.method,
                                  describe(exc, self.directory), self.pids)
        if self.outcome is not None:
            self.close()

    def _issue(self) -> None:
        directory = self.directory
        os.stat(directory)
        self.pids = tuple(subtree_pids(directory))
        if self.freeze:
            reason = group_refusal(self.pids, directory, check_kthread=False)
            if reason:
                self.outcome = failed(self.action, directory, self.method, reason)
                return
        self.start = time.monotonic()
        self.deadline = self.start + self.timeout_s
        if self.method == "cgroup.freeze":
            write_value(os.path.join(directory, "cgroup.freeze"), "1" if self.freeze else "0")
            events = os.path.join(directory, "cgroup.events")
            try:
                self._events_fd = os.open(events, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, events) from None
        else:
            write_value(os.path.join(directory, "freezer.state"), self.want)
        self._check()

    def _reached(self) -> bool:
        if self._events_fd is not None:
            # Reading through the polled descriptor re-arms its change notification.
            text = os.pread(self._events_fd, 4096, 0).decode("utf-8", "replace")
            key, _, value = self.want.partition(" ")
            return any(line.partition(" ")[0] == key and line.partition(" ")[2].strip() == value
                       for line in text.splitlines())
        return read_text(os.path.join(self.directory, "freezer.state")).strip() == self.want

    def _check(self) -> None:
        if self._reached():
            self.outcome = ActionOutcome(self.action, self.directory, True, self.method,
                                         self.pids, time.monotonic() - self.start, None, None)
        elif time.monotonic() >= self.deadline:
            self.outcome = failed(self.action, self.directory, self.method,
                                  f"{self.directory}: not {self.want} after "
                                  f"{self.timeout_s:g}s", self.pids)
        if self.outcome is not None:
            self.close()

    def step(self) -> ActionOutcome | None:
        """One look, never waiting: the outcome once the group reads frozen (thawed)."""
        if self.outcome is None:
            self._guarded(self._check)
        return self.outcome

    def fds(self) -> list[int]:
        return []  # cgroup.events signals POLLPRI, and always polls readable

    def wake_in(self) -> float | None:
        if self.outcome is not None:
            return None
        return min(_V1_POLL_MAX_S / 2, max(0.0, self.deadline - time.monotonic()))

    def wait(self) -> None:
        """Sleep until the next look is worth it (blocking callers only)."""
        remaining = max(0.0, self.deadline - time.monotonic())
        if self._events_fd is not None:
            poller = select.poll()
            poller.register(self._events_fd, select.POLLPRI)
            # Capped: regular files (tests) never signal POLLPRI.
            poller.poll(int(min(remaining, 0.05) * 1000) + 1)
        else:
            time.sleep(min(self._pause, remaining))
            self._pause = min(self._pause * 2, _V1_POLL_MAX_S)

    def close(self) -> None:
        if self._events_fd is not None:
            os.close(self._events_fd)
            self._events_fd = None


def _set_frozen(action: str, v2_dir: str | None, v1_freezer_dir: str | None, freeze: bool,
                timeout_s: float) -> ActionOutcome:
    change = FreezerChange(action, v2_dir, v1_freezer_dir, freeze, timeout_s)
    try:
        while (outcome := change.step()) is None:
            change.wait()
        return outcome
    finally:
        change.close()
