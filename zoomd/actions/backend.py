"""Swappable effectors: the real cgroupfs one, a dry run that only looks, and a recorder.

The daemon holds an ActionBackend and never calls the kernel effectors directly, so
dry-run is a property of the backend (it cannot write by construction) and tests can
script outcomes without touching cgroupfs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, NamedTuple, Protocol, runtime_checkable

from zoomd.actions.cgroupfs import subtree_pids
from zoomd.actions.freeze import (
    FreezerChange,
    choose_freezer,
    freeze_cgroup,
    no_freezer_error,
    thaw_cgroup,
)
from zoomd.actions.kill import CgroupKill, ProcessKill, kill_cgroup, kill_process
from zoomd.actions.outcome import ActionOutcome, describe, failed
from zoomd.actions.safety import group_refusal, proc_stat, refusal
from zoomd.errors import KernelFileError


class PendingAction(Protocol):
    """An action issued and not finished yet (a kill whose processes are dying).

    The loop calls `step()` (never waits) when one of `fds()` turns readable or after
    `wake_in()` seconds, until it returns the outcome; then `close()`.
    """

    def step(self) -> ActionOutcome | None: ...

    def fds(self) -> list[int]: ...

    def wake_in(self) -> float | None: ...

    def close(self) -> None: ...


class Finished:
    """A PendingAction that was over when it was issued (dry run, a refusal, tests)."""

    def __init__(self, outcome: ActionOutcome) -> None:
        self.outcome = outcome

    def step(self) -> ActionOutcome:
        return self.outcome

    def fds(self) -> list[int]:
        return []

    def wake_in(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class Completing:
    """A PendingAction whose outcome goes through `then` once, when it is known."""

    def __init__(self, inner: PendingAction,
                 then: Callable[[ActionOutcome], ActionOutcome]) -> None:
        self.inner, self.then = inner, then
        self.outcome: ActionOutcome | None = None

    def step(self) -> ActionOutcome | None:
        if self.outcome is None:
            done = self.inner.step()
            if done is not None:
                self.outcome = self.then(done)
        return self.outcome

    def fds(self) -> list[int]:
        return self.inner.fds()

    def wake_in(self) -> float | None:
        return self.inner.wake_in()

    def close(self) -> None:
        self.inner.close()


class FinishedAtOnce:
    """start_* for a backend whose kills are over when they return (dry run, tests)."""

    def start_kill_cgroup(self, procs_dir: str, *, reason: str | None = None,
                          **kwargs: Any) -> PendingAction:
        return Finished(self.kill_cgroup(procs_dir, **kwargs))  # type: ignore[attr-defined]

    def start_kill_process(self, pid: int, **kwargs: Any) -> PendingAction:
        return Finished(self.kill_process(pid, **kwargs))  # type: ignore[attr-defined]

    def start_freeze_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None,
                            **kwargs: Any) -> PendingAction:
        return Finished(self.freeze_cgroup(v2_dir, v1_freezer_dir, **kwargs))  # type: ignore[attr-defined]

    def start_thaw_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None,
                          **kwargs: Any) -> PendingAction:
        return Finished(self.thaw_cgroup(v2_dir, v1_freezer_dir, **kwargs))  # type: ignore[attr-defined]


@runtime_checkable
class ActionBackend(Protocol):
    """What the daemon may do to a chosen cgroup or process.

    The daemon's loop uses the start_* forms of the kills, which return at once with
    a PendingAction; the plain forms wait for the outcome (tests, the command line).
    """

    def start_kill_cgroup(self, procs_dir: str, *, usage_file: str | None = None,
                          timeout_s: float = 5.0, use_cgroup_kill: bool = True,
                          protected_pids: frozenset[int] = frozenset(),
                          reason: str | None = None) -> PendingAction:
        """`reason`: why, in systemd-oomd's words ("memory-used" for the swap rule);
        what reports kills the systemd way tells it on; the others ignore it."""

    def start_kill_process(self, pid: int, *, protected_pids: frozenset[int] = frozenset(),
                           timeout_s: float = 5.0) -> PendingAction: ...

    def start_freeze_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                            timeout_s: float = 5.0) -> PendingAction: ...

    def start_thaw_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                          timeout_s: float = 5.0) -> PendingAction: ...

    def kill_cgroup(self, procs_dir: str, *, usage_file: str | None = None,
                    timeout_s: float = 5.0, use_cgroup_kill: bool = True,
                    protected_pids: frozenset[int] = frozenset()) -> ActionOutcome: ...

    def kill_process(self, pid: int, *, protected_pids: frozenset[int] = frozenset(),
                     timeout_s: float = 5.0) -> ActionOutcome: ...

    def freeze_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                      timeout_s: float = 5.0) -> ActionOutcome: ...

    def thaw_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                    timeout_s: float = 5.0) -> ActionOutcome: ...


class CgroupfsBackend:
    """The real effectors: writes cgroupfs and sends signals."""

    def start_kill_cgroup(self, procs_dir: str, *, usage_file: str | None = None,
                          timeout_s: float = 5.0, use_cgroup_kill: bool = True,
                          protected_pids: frozenset[int] = frozenset(),
                          reason: str | None = None) -> PendingAction:
        return CgroupKill(procs_dir, usage_file=usage_file, timeout_s=timeout_s,
                          use_cgroup_kill=use_cgroup_kill, protected_pids=protected_pids)

    def start_kill_process(self, pid: int, *, protected_pids: frozenset[int] = frozenset(),
                           timeout_s: float = 5.0) -> PendingAction:
        return ProcessKill(pid, protected_pids=protected_pids, timeout_s=timeout_s)

    def start_freeze_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                            timeout_s: float = 5.0) -> PendingAction:
        return FreezerChange("freeze", v2_dir, v1_freezer_dir, True, timeout_s)

    def start_thaw_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                          timeout_s: float = 5.0) -> PendingAction:
        return FreezerChange("thaw", v2_dir, v1_freezer_dir, False, timeout_s)

    def kill_cgroup(self, procs_dir: str, *, usage_file: str | None = None,
                    timeout_s: float = 5.0, use_cgroup_kill: bool = True,
                    protected_pids: frozenset[int] = frozenset()) -> ActionOutcome:
        return kill_cgroup(procs_dir, usage_file=usage_file, timeout_s=timeout_s,
                           use_cgroup_kill=use_cgroup_kill, protected_pids=protected_pids)

    def kill_process(self, pid: int, *, protected_pids: frozenset[int] = frozenset(),
                     timeout_s: float = 5.0) -> ActionOutcome:
        return kill_process(pid, protected_pids=protected_pids, timeout_s=timeout_s)

    def freeze_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                      timeout_s: float = 5.0) -> ActionOutcome:
        return freeze_cgroup(v2_dir, v1_freezer_dir, timeout_s=timeout_s)

    def thaw_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                    timeout_s: float = 5.0) -> ActionOutcome:
        return thaw_cgroup(v2_dir, v1_freezer_dir, timeout_s=timeout_s)


ACTION_OF_METHOD = {
    "kill_cgroup": "kill",
    "kill_process": "kill-process",
    "freeze_cgroup": "freeze",
    "thaw_cgroup": "thaw",
}


class ActionCall(NamedTuple):
    """One call a backend received; a tuple so tests can match `(method, target, ...)`."""

    method: str  # "kill_cgroup", "kill_process", "freeze_cgroup", "thaw_cgroup"
    target: str  # the directory acted on, or "pid:N"
    kwargs: dict[str, Any]

    @property
    def action(self) -> str:
        """The outcome's action name: "kill", "kill-process", "freeze" or "thaw"."""
        return ACTION_OF_METHOD[self.method]


class DryRunBackend(FinishedAtOnce):
    """Says what the real backend would do; only ever reads, never writes or signals.

    It reads the group's processes (so a record names who would have died) and applies
    the same refusals as the real effectors: ok is False when the real action would
    have been refused or the group is gone, with the same one-line error.
    """

    def __init__(self) -> None:
        self.calls: list[ActionCall] = []

    def _preview(self, action: str, directory: str,
                 protected_pids: frozenset[int] = frozenset(),
                 check_kthread: bool = True) -> ActionOutcome:
        try:
            os.stat(directory)
            pids = tuple(subtree_pids(directory))
        except (OSError, KernelFileError) as exc:
            return failed(action, directory, "dry-run", describe(exc, directory))
        if action in ("kill", "freeze"):
            reason = group_refusal(pids, directory, protected_pids, check_kthread)
            if reason:
                return failed(action, directory, "dry-run", reason, pids)
        return ActionOutcome(action, directory, True, "dry-run", pids, None, None, None)

    def kill_cgroup(self, procs_dir: str, *, usage_file: str | None = None,
                    timeout_s: float = 5.0, use_cgroup_kill: bool = True,
                    protected_pids: frozenset[int] = frozenset()) -> ActionOutcome:
        self.calls.append(ActionCall("kill_cgroup", procs_dir, {
            "usage_file": usage_file, "timeout_s": timeout_s,
            "use_cgroup_kill": use_cgroup_kill, "protected_pids": protected_pids}))
        return self._preview("kill", procs_dir, protected_pids)

    def kill_process(self, pid: int, *, protected_pids: frozenset[int] = frozenset(),
                     timeout_s: float = 5.0) -> ActionOutcome:
        target = f"pid:{pid}"
        self.calls.append(ActionCall("kill_process", target, {
            "protected_pids": protected_pids, "timeout_s": timeout_s}))
        reason = refusal(pid, protected_pids)
        if reason:
            return failed("kill-process", target, "dry-run", f"{target}: refusing: {reason}")
        if proc_stat(pid) is None:
            return failed("kill-process", target, "dry-run", f"{target}: No such process")
        return ActionOutcome("kill-process", target, True, "dry-run", (pid,), None, None, None)

    def freeze_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                      timeout_s: float = 5.0) -> ActionOutcome:
        return self._freezer("freeze", v2_dir, v1_freezer_dir, timeout_s)

    def thaw_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                    timeout_s: float = 5.0) -> ActionOutcome:
        return self._freezer("thaw", v2_dir, v1_freezer_dir, timeout_s)

    def _freezer(self, action: str, v2_dir: str | None, v1_freezer_dir: str | None,
                 timeout_s: float) -> ActionOutcome:
        chosen = choose_freezer(v2_dir, v1_freezer_dir)
        target = chosen[1] if chosen else (v2_dir or v1_freezer_dir or "")
        method = "freeze_cgroup" if action == "freeze" else "thaw_cgroup"
        self.calls.append(ActionCall(method, target, {
            "v2_dir": v2_dir, "v1_freezer_dir": v1_freezer_dir, "timeout_s": timeout_s}))
        if chosen is None:
            return failed(action, target, "dry-run", no_freezer_error(v2_dir, v1_freezer_dir))
        return self._preview(action, chosen[1], check_kthread=False)


Responder = ActionOutcome | Callable[[ActionCall], ActionOutcome]


class RecordingBackend(FinishedAtOnce):
    """For tests: records every call and answers with configured outcomes.

    `outcomes` maps an action ("kill", "kill-process", "freeze", "thaw") or a method
    name ("kill_cgroup", ...) to an ActionOutcome (returned with the call's action and
    target filled in) or to a function of the call. Unconfigured calls succeed with
    method "recorded".
    """

    def __init__(self, outcomes: Mapping[str, Responder] | None = None) -> None:
        self.outcomes: dict[str, Responder] = dict(outcomes or {})
        self.calls: list[ActionCall] = []

    def _answer(self, call: ActionCall) -> ActionOutcome:
        self.calls.append(call)
        configured = self.outcomes.get(call.method, self.outcomes.get(call.action))
        if configured is None:
            return ActionOutcome(call.action, call.target, True, "recorded", (), None, None,
                                 None)
        if isinstance(configured, ActionOutcome):
            return replace(configured, action=call.action, target=call.target)
        return configured(call)

    def kill_cgroup(self, procs_dir: str, *, usage_file: str | None = None,
                    timeout_s: float = 5.0, use_cgroup_kill: bool = True,
                    protected_pids: frozenset[int] = frozenset()) -> ActionOutcome:
        return self._answer(ActionCall("kill_cgroup", procs_dir, {
            "usage_file": usage_file, "timeout_s": timeout_s,
            "use_cgroup_kill": use_cgroup_kill, "protected_pids": protected_pids}))

    def kill_process(self, pid: int, *, protected_pids: frozenset[int] = frozenset(),
                     timeout_s: float = 5.0) -> ActionOutcome:
        return self._answer(ActionCall("kill_process", f"pid:{pid}", {
            "protected_pids": protected_pids, "timeout_s": timeout_s}))

    def freeze_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                      timeout_s: float = 5.0) -> ActionOutcome:
        return self._answer(ActionCall("freeze_cgroup", v2_dir or v1_freezer_dir or "", {
            "v2_dir": v2_dir, "v1_freezer_dir": v1_freezer_dir, "timeout_s": timeout_s}))

    def thaw_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None, *,
                    timeout_s: float = 5.0) -> ActionOutcome:
        return self._answer(ActionCall("thaw_cgroup", v2_dir or v1_freezer_dir or "", {
            "v2_dir": v2_dir, "v1_freezer_dir": v1_freezer_dir, "timeout_s": timeout_s}))
