"""The kill counters PID 1 reads: user.oomd_ooms (+1 before a kill) and user.oomd_kill
(+ the number of processes killed, after it). On a unit's cgroup they make PID 1 log
"systemd-oomd killed N process(es) in this unit" and set Result=oom-kill.

ReportingBackend wraps the real kill backend so that every cgroup kill zoomd makes,
whichever policy chose it, is reported like systemd-oomd's; listeners (the D-Bus
Killed signal) hear of each kill. Dry-run never reaches it: nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from zoomd.actions.backend import ActionBackend, Completing, PendingAction
from zoomd.actions.outcome import ActionOutcome
from zoomd.kernel.keyvalue import is_decimal

OOMS = "user.oomd_ooms"
KILL = "user.oomd_kill"


def _counter(text: str) -> bool:
    """A uint64 in ASCII decimal. A cgroup's owner can set its user.* xattrs: isdigit()
    alone takes "²" and int() refuses more than 4300 digits, ValueErrors in the kill path."""
    return is_decimal(text) and len(text) <= 20


def read_counter(directory: str, name: str) -> int:
    """A counter xattr of a cgroup directory; 0 when absent."""
    try:
        raw = os.getxattr(directory, name)
    except OSError:
        return 0
    text = raw.decode(errors="replace").strip("\0 \n")
    return int(text) if _counter(text) else 0


def increment(directory: str, name: str, by: int) -> str | None:
    """Add `by` to a decimal counter xattr; returns an error line or None."""
    try:
        current = os.getxattr(directory, name).decode().strip("\0 \n")
    except OSError as exc:
        if exc.errno not in (61, 95):  # ENODATA (absent), EOPNOTSUPP
            return f"{directory}: {name}: {exc.strerror}"
        current = ""
    except UnicodeDecodeError:
        current = ""
    if current and not _counter(current):
        return f"{directory}: {name}: not a number: {current!r}"
    try:
        os.setxattr(directory, name, str(int(current or 0) + by).encode())
    except OSError as exc:
        return f"{directory}: {name}: {exc.strerror}"
    return None


KillListener = Callable[[str, str, ActionOutcome], None]


class ReportingBackend:
    """An ActionBackend that reports cgroup kills the systemd-oomd way."""

    def __init__(self, inner: ActionBackend, cgroup_of: Callable[[str], str]) -> None:
        self.inner = inner
        self.cgroup_of = cgroup_of  # kernel directory -> cgroup path ("/user.slice/...")
        self.listeners: list[KillListener] = []
        self.errors: list[str] = []

    def kill_cgroup(self, procs_dir: str, *, reason: str | None = None,  # type: ignore[no-untyped-def]
                    **kwargs) -> ActionOutcome:
        error = increment(procs_dir, OOMS, 1)
        return self._finish(procs_dir, self.inner.kill_cgroup(procs_dir, **kwargs), error,
                            reason)

    def start_kill_cgroup(self, procs_dir: str, *, reason: str | None = None,  # type: ignore[no-untyped-def]
                          **kwargs) -> PendingAction:
        error = increment(procs_dir, OOMS, 1)
        return Completing(self.inner.start_kill_cgroup(procs_dir, **kwargs),
                          lambda outcome: self._finish(procs_dir, outcome, error, reason))

    def _finish(self, procs_dir: str, outcome: ActionOutcome, error: str | None,
                reason: str | None) -> ActionOutcome:
        if outcome.ok or outcome.pids:
            error = increment(procs_dir, KILL, len(outcome.pids)) or error
        if error:
            self.errors.append(error)
        if outcome.ok:
            for listener in self.listeners:
                listener(self.cgroup_of(procs_dir), reason or "memory-pressure", outcome)
        return outcome

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)
