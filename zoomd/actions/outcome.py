"""The one result every effector returns, so the daemon logs kills, freezes and dry runs alike.

Effectors never raise: an OSError becomes `ok=False` with `error="<path>: <strerror>"`,
because a daemon under memory pressure must keep running and say what failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoomd.kinds import OutcomeAction


@dataclass(frozen=True)
class ActionOutcome:
    """What an action did: on which group, how, to which processes, and how fast."""

    action: OutcomeAction
    target: str  # cgroup path (as given) or "pid:N"
    ok: bool
    method: str  # "cgroup.kill", "pidfd", "cgroup.freeze", "freezer.state", "dry-run"
    pids: tuple[int, ...]  # processes signalled / frozen
    seconds_to_effect: float | None  # until the group is empty (kill) / frozen (freeze)
    memory_freed_bytes: int | None  # usage drop across the kill, when a usage file was given
    error: str | None  # one line; when ok is True it may note a fallback that was taken

    def to_json(self) -> dict[str, Any]:
        seconds = self.seconds_to_effect
        return {
            "action": self.action,
            "target": self.target,
            "ok": self.ok,
            "method": self.method,
            "pids": list(self.pids),
            "seconds_to_effect": None if seconds is None else round(seconds, 6),
            "memory_freed_bytes": self.memory_freed_bytes,
            "error": self.error,
        }


def failed(action: str, target: str, method: str, error: str,
           pids: tuple[int, ...] = ()) -> ActionOutcome:
    """A failed outcome: nothing measured, one line saying why."""
    return ActionOutcome(action, target, False, method, pids, None, None, error)


def describe(exc: BaseException, fallback_path: str) -> str:
    """`<path>: <strerror>` for an OSError (or the message of a parse error), on one line."""
    if isinstance(exc, OSError):
        path = exc.filename if exc.filename is not None else fallback_path
        reason = exc.strerror or str(exc)
        return f"{path}: {reason}".replace("\n", " ")
    return str(exc).replace("\n", " ")
