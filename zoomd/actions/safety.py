"""Which processes an effector must never signal or freeze, whatever the caller chose.

The daemon's candidate filter should already exclude them; this is the last check,
and when it finds one it refuses the whole group, because a group holding init or
zoomd itself means the choice was wrong, not that part of it may be killed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from zoomd.errors import ZoomdError
from zoomd.kernel.proc_stat import ProcStat, read_proc_stat
from zoomd.kernel.root import Root

# Effectors act on this host's processes, never on a captured tree's.
_LIVE = Root("/")


def proc_stat(pid: int) -> ProcStat | None:
    """The live process's /proc/PID/stat fields, or None when it is gone (or the file
    cannot be read: then no figure of it is trusted)."""
    try:
        return read_proc_stat(_LIVE, pid)
    except ZoomdError:
        return None


def is_live(pid: int) -> bool:
    """Whether the process still exists and is not a zombie (a zombie holds no memory)."""
    stat = proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X", "x")


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
        if stat is not None and stat.kernel_thread:
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
