"""Kill a cgroup (cgroup.kill, else pidfd SIGKILL until empty) or one process, and measure it.

cgroup.kill (5.14+) kills the whole subtree atomically, forks included. Where it is
missing (v1, older kernels) or refused (EBUSY, EOPNOTSUPP in threaded groups), every
process is SIGKILLed through a pidfd, repeatedly, until the group is empty. Either way
each known process gets process_mrelease so its memory returns without waiting for it
to run, and the time until the group is empty and the memory freed are measured.
"""

from __future__ import annotations

import errno
import os
import time

from zoomd.actions.cgroupfs import read_usage, subtree_pids, write_value
from zoomd.actions.outcome import ActionOutcome, describe, failed
from zoomd.actions.pidfd import (
    close_all,
    has_exited,
    mrelease,
    open_pidfd,
    send_sigkill,
    wait_any_exit,
)
from zoomd.actions.safety import group_refusal, is_live, refusal
from zoomd.errors import KernelFileError

# After writing cgroup.kill, processes still there this long later (moved in after the
# write, which cgroup.kill does not cover, or a write that did nothing) are SIGKILLed
# again one by one through pidfds; a second SIGKILL to a dying process is harmless.
STRAGGLER_GRACE_S = 0.1
_POLL_SLICE_S = 0.01  # longest wait between two readings of cgroup.procs
_IDLE_SLICE_S = 0.002  # wait when no pidfd can tell us about an exit


class _Refused(Exception):
    """A forbidden process appeared in the group while it was being killed."""


class _GroupKill:
    """State of one kill: the pidfds we hold and which processes we signalled."""

    def __init__(self, procs_dir: str, protected_pids: frozenset[int]) -> None:
        self.procs_dir = procs_dir
        self.protected = protected_pids
        self.method = "pidfd"
        self.fds: dict[int, int] = {}  # pid -> pidfd
        self.signalled: set[int] = set()  # pids whose current pidfd got SIGKILL
        self.pids: list[int] = []  # every process signalled, in order
        self.by_pidfd = 0  # signalled by us rather than by cgroup.kill
        self.live: list[int] = []

    def close(self) -> None:
        close_all(list(self.fds.values()))
        self.fds.clear()

    def open_all(self, pids: list[int]) -> None:
        """pidfds for the processes cgroup.kill is about to kill, for process_mrelease."""
        for pid in pids:
            try:
                fd = open_pidfd(pid)
            except OSError:
                continue  # e.g. EMFILE: that one is killed without process_mrelease
            if fd is not None:
                self.fds[pid] = fd

    def signal(self, live: list[int]) -> None:
        """SIGKILL, through a pidfd, every live process we have not signalled yet."""
        fresh = [p for p in live if p not in self.signalled or has_exited(self.fds[p])]
        if not fresh:
            return
        reason = group_refusal(fresh, self.procs_dir, self.protected)
        if reason:
            raise _Refused(reason)
        released: list[int] = []
        held: list[int] = []
        for pid in fresh:
            fd = self.fds.pop(pid, None)
            if fd is not None and (pid in self.signalled or has_exited(fd)):
                os.close(fd)  # that process is gone; the pid now names another one
                fd = None
            self.signalled.discard(pid)
            if fd is None:
                fd = open_pidfd(pid)
                if fd is None:
                    continue
            self.fds[pid] = fd
            held.append(pid)
        # The pids were read before their pidfds were opened: a pid that exited and was
        # reused in between names a stranger now. Listed again after the pidfd was
        # opened, a pid still in the group names a member (a live process owns its pid),
        # or the pidfd's process is dead and signalling it does nothing.
        members = set(subtree_pids(self.procs_dir, vanished_ok=True)) if held else set()
        for pid in held:
            fd = self.fds[pid]
            if pid not in members:
                os.close(self.fds.pop(pid))  # left the group before its pidfd was opened
                continue
            # Check the process the pidfd names, not whoever had the pid before.
            reason = refusal(pid, self.protected)
            if reason:
                raise _Refused(f"{self.procs_dir}: refusing to act on the group: {reason}")
            if has_exited(fd) or not send_sigkill(fd, pid):
                continue
            self.signalled.add(pid)
            if pid not in self.pids:
                self.pids.append(pid)
            self.by_pidfd += 1
            released.append(fd)
        for fd in released:
            mrelease(fd)

    def check_empty(self, deadline: float, straggler_after: float | None,
                    ) -> tuple[bool, float | None]:
        """One look at the subtree: (finished, monotonic time it held no live process;
        None with finished on timeout). Signals stragglers; never waits."""
        listed = subtree_pids(self.procs_dir, vanished_ok=True)
        self.live = [p for p in listed if is_live(p)]
        now = time.monotonic()
        if not self.live:
            return True, now
        if straggler_after is None or now >= straggler_after:
            self.signal(self.live)
        if now >= deadline:
            return True, None
        return False, None

    def pending_fds(self) -> list[int]:
        """pidfds of live members that have not exited yet: readable at their exit."""
        return [self.fds[p] for p in self.live if p in self.fds and not has_exited(self.fds[p])]


class CgroupKill:
    """One cgroup kill: issued when made, finished by `step()` from later ticks.

    The daemon's loop polls `fds()` (pidfds, readable at each exit) and wakes after
    `wake_in()` at the latest, so a kill that takes seconds never holds the loop.
    `kill_cgroup` is this, stepped until done.
    """

    def __init__(self, procs_dir: str, *, usage_file: str | None = None,
                 timeout_s: float = 5.0, use_cgroup_kill: bool = True,
                 protected_pids: frozenset[int] = frozenset()) -> None:
        self.state = _GroupKill(procs_dir, protected_pids)
        self.usage_file = usage_file
        self.timeout_s = timeout_s
        self.outcome: ActionOutcome | None = None
        self.before: int | None = None
        self.note: str | None = None
        self.start = self.deadline = 0.0
        self.straggler_after: float | None = None
        self._guarded(lambda: self._issue(use_cgroup_kill))

    def _guarded(self, work) -> None:  # type: ignore[no-untyped-def]
        state = self.state
        try:
            work()
        except _Refused as exc:
            self.outcome = failed("kill", state.procs_dir, state.method, str(exc),
                                  tuple(state.pids))
        except (OSError, KernelFileError) as exc:
            self.outcome = failed("kill", state.procs_dir, state.method,
                                  describe(exc, state.procs_dir), tuple(state.pids))
        if self.outcome is not None:
            state.close()

    def _issue(self, use_cgroup_kill: bool) -> None:
        state = self.state
        procs_dir = state.procs_dir
        kill_file = os.path.join(procs_dir, "cgroup.kill")
        if use_cgroup_kill and os.path.exists(kill_file):
            state.method = "cgroup.kill"
        os.stat(procs_dir)  # a vanished group: "<dir>: No such file or directory"
        listed = subtree_pids(procs_dir)
        reason = group_refusal(listed, procs_dir, state.protected)
        if reason:
            self.outcome = failed("kill", procs_dir, state.method, reason)
            return
        self.before = read_usage(self.usage_file)
        self.start = time.monotonic()
        if state.method == "cgroup.kill":
            state.open_all(listed)
            self.start = time.monotonic()
            try:
                write_value(kill_file, "1")
            except OSError as exc:
                if exc.errno == errno.ENOENT and not os.path.isdir(procs_dir):
                    # Removed since it was listed: only an empty group can be removed.
                    self.outcome = failed("kill", procs_dir, state.method,
                                          describe(exc, kill_file))
                    return
                # EBUSY, EOPNOTSUPP (threaded groups), ENOENT with the group still there...
                self.note = f"fell back to pidfd: {describe(exc, kill_file)}"
                state.method = "pidfd"
            else:
                state.pids.extend(listed)
                for fd in state.fds.values():
                    mrelease(fd)
                self.straggler_after = self.start + STRAGGLER_GRACE_S
        self.deadline = self.start + self.timeout_s
        self._check()

    def _check(self) -> None:
        state = self.state
        finished, empty_at = state.check_empty(self.deadline, self.straggler_after)
        if not finished:
            return
        procs_dir = state.procs_dir
        if empty_at is None:
            shown = " ".join(str(p) for p in state.live[:10])
            more = " ..." if len(state.live) > 10 else ""
            self.outcome = failed("kill", procs_dir, state.method,
                                  f"{procs_dir}: {len(state.live)} processes still there "
                                  f"after {self.timeout_s:g}s: {shown}{more}",
                                  tuple(state.pids))
            return
        note = self.note
        if state.method == "cgroup.kill" and state.by_pidfd:
            note = (f"{state.by_pidfd} processes still there {STRAGGLER_GRACE_S:g}s after "
                    "cgroup.kill were SIGKILLed again by pidfd")
        after = read_usage(self.usage_file)
        freed = self.before - after if self.before is not None and after is not None \
            else None
        self.outcome = ActionOutcome("kill", procs_dir, True, state.method,
                                     tuple(state.pids), empty_at - self.start, freed, note)
        state.close()

    def step(self) -> ActionOutcome | None:
        """One look, never waiting: the outcome once the group is empty (or the kill
        failed or timed out), None while processes are still dying."""
        if self.outcome is None:
            self._guarded(self._check)
        return self.outcome

    def fds(self) -> list[int]:
        return [] if self.outcome is not None else self.state.pending_fds()

    def wake_in(self) -> float | None:
        """Seconds until the next look is due even without an exit."""
        if self.outcome is not None:
            return None
        now = time.monotonic()
        slice_s = _POLL_SLICE_S if self.fds() else _IDLE_SLICE_S
        wake = min(slice_s, max(0.0, self.deadline - now))
        if self.straggler_after is not None and now < self.straggler_after:
            wake = min(wake, self.straggler_after - now)
        return wake

    def close(self) -> None:
        self.state.close()


def kill_cgroup(procs_dir: str, *, usage_file: str | None = None, timeout_s: float = 5.0,
                use_cgroup_kill: bool = True,
                protected_pids: frozenset[int] = frozenset()) -> ActionOutcome:
    """SIGKILL everything in `procs_dir` and its descendants; ok once the subtree is empty.

    Refuses (ok=False, nothing signalled) when the group holds PID 1, zoomd, a kernel
    thread or a protected pid. When cgroup.kill failed and pidfds did the work, `error`
    notes the fallback even though ok is True. Blocks until done: see CgroupKill.
    """
    return run_to_end(CgroupKill(procs_dir, usage_file=usage_file, timeout_s=timeout_s,
                                 use_cgroup_kill=use_cgroup_kill,
                                 protected_pids=protected_pids))


class ProcessKill:
    """One process kill: SIGKILL and process_mrelease at once, its exit seen by `step()`."""

    def __init__(self, pid: int, *, protected_pids: frozenset[int] = frozenset(),
                 timeout_s: float = 5.0) -> None:
        self.pid = pid
        self.target = f"pid:{pid}"
        self.timeout_s = timeout_s
        self.fd: int | None = None
        self.start = self.deadline = 0.0
        self.outcome: ActionOutcome | None = None
        try:
            self.outcome = self._issue(protected_pids)
        except OSError as exc:
            self.outcome = failed("kill-process", self.target, "pidfd",
                                  describe(exc, self.target))
        if self.outcome is not None:
            self.close()

    def _issue(self, protected_pids: frozenset[int]) -> ActionOutcome | None:
        target = self.target
        reason = refusal(self.pid, protected_pids)
        if reason:
            return failed("kill-process", target, "pidfd", f"{target}: refusing: {reason}")
        self.fd = fd = open_pidfd(self.pid)
        reason = refusal(self.pid, protected_pids)  # now about the process the pidfd names
        if reason:
            return failed("kill-process", target, "pidfd", f"{target}: refusing: {reason}")
        self.start = time.monotonic()
        if fd is None or has_exited(fd) or not send_sigkill(fd, self.pid):
            return failed("kill-process", target, "pidfd", f"{target}: No such process")
        mrelease(fd)
        self.deadline = self.start + self.timeout_s
        return self._check()

    def _check(self) -> ActionOutcome | None:
        assert self.fd is not None
        if has_exited(self.fd):
            return ActionOutcome("kill-process", self.target, True, "pidfd", (self.pid,),
                                 time.monotonic() - self.start, None, None)
        if time.monotonic() >= self.deadline:
            return failed("kill-process", self.target, "pidfd",
                          f"{self.target}: still running {self.timeout_s:g}s after SIGKILL",
                          (self.pid,))
        return None

    def step(self) -> ActionOutcome | None:
        if self.outcome is None:
            try:
                self.outcome = self._check()
            except OSError as exc:
                self.outcome = failed("kill-process", self.target, "pidfd",
                                      describe(exc, self.target))
            if self.outcome is not None:
                self.close()
        return self.outcome

    def fds(self) -> list[int]:
        return [self.fd] if self.outcome is None and self.fd is not None else []

    def wake_in(self) -> float | None:
        if self.outcome is not None:
            return None
        return min(0.1, max(0.0, self.deadline - time.monotonic()))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def kill_process(pid: int, *, protected_pids: frozenset[int] = frozenset(),
                 timeout_s: float = 5.0) -> ActionOutcome:
    """SIGKILL one process through a pidfd, release its memory, wait for it to exit."""
    return run_to_end(ProcessKill(pid, protected_pids=protected_pids, timeout_s=timeout_s))


def run_to_end(kill: CgroupKill | ProcessKill) -> ActionOutcome:
    """Step a kill in flight until it is done, sleeping on its pidfds in between (the
    blocking callers: the loop steps them itself)."""
    try:
        while (outcome := kill.step()) is None:
            wait_any_exit(kill.fds(), kill.wake_in() or 0.0)
        return outcome
    finally:
        kill.close()
