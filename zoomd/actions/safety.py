"""Which processes an effector must never signal or freeze, whatever the caller chose.

The daemon's candidate filter should already exclude them; this is the last check,
and when it finds one it refuses the whole group, because a group holding init or
zoomd itself means the choice was wrong, not that part of it may be killed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

PF_KTHREAD = 0x00200000


def proc_stat(pid: int, proc: str = "/proc") -> tuple[str, int] | None:
    """(state, flags) from /proc/PID/stat, or None when the process is gone."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: the fields after it follow the last ')'.
    rest = data[data.rfind(b")") + 1 :].split()
    try:
        return rest[0].decode(), int(rest[6])
    except (IndexError, ValueError):
        return None


def is_live(pid: int) -> bool:
    """Whether the process still exists and is not a zombie (a zombie holds no memory)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X", "x")


def refusal(pid: int, protected_pids: frozenset[int] = frozenset(),
            check_kthread: bool = True) -> str | None:
    """Why `pid` must not be acted on, or None when it may be."""
    if pid <= 0:
        return f"pid {pid} is not a process id"
    if pid == 1:
        return "pid 1 is init"
    if pid == os.getpid():
        return f"pid {pid} is zoomd itself"
    if pid in protected_pids:
        return f"pid {pid} is protected"
    if check_kthread:
        stat = proc_stat(pid)
        if stat is not None and stat[1] & PF_KTHREAD:
            return f"pid {pid} is a kernel thread"
    return None


def group_refusal(pids: Iterable[int], where: str,
                  protected_pids: frozenset[int] = frozenset(),
                  check_kthread: bool = True) -> str | None:
    """One line naming every forbidden pid in a group, or None when none is there."""
    reasons = [r for r in (refusal(p, protected_pids, check_kthread) for p in pids) if r]
    if not reasons:
        return None
    return f"{where}: refusing to act on the group: {'; '.join(reasons)}"
