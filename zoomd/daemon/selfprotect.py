"""The killer must outlive what it is there to end: no OOM kill, no swap-out of itself,
and never a kill of its own group or PID 1's (vital_groups)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from zoomd.kernel.proc_cgroup import read_proc_cgroup
from zoomd.kernel.root import Root

MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4


def set_oom_score_adj(value: int) -> str | None:
    """Write our own oom_score_adj; returns an error text, or None on success."""
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write(str(value))
    except OSError as exc:
        return f"/proc/self/oom_score_adj: {exc.strerror or exc}"
    return None


def lock_memory() -> str | None:
    """mlockall(MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT): pages stay resident once touched."""
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
    except OSError as exc:
        return f"mlockall: cannot load libc ({exc})"
    flags = MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT
    if libc.mlockall(flags) != 0:
        errno = ctypes.get_errno()
        # Kernels before 4.4 lack MCL_ONFAULT: lock without it rather than not at all.
        if errno == 22 and libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0:
            return None
        return f"mlockall: {os.strerror(errno)}"
    return None


def vital_groups(root: Root) -> tuple[str, ...]:
    """v2 groups of PID 1 and of zoomd itself: never killed, nor any ancestor."""
    groups = []
    for pid in (1, os.getpid()):
        membership = read_proc_cgroup(root, pid)
        if membership is not None and membership.v2 is not None:
            groups.append(membership.v2)
    return tuple(groups)
