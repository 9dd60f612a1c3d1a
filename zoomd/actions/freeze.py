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

from zoomd.actions.cgroupfs import read_key, read_text, subtree_pids, write_value
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


def _set_frozen(action: str, v2_dir: str | None, v1_freezer_dir: str | None, freeze: bool,
                timeout_s: float) -> ActionOutcome:
    chosen = choose_freezer(v2_dir, v1_freezer_dir)
    if chosen is None:
        return failed(action, v2_dir or v1_freezer_dir or "", "cgroup.freeze",
                      no_freezer_error(v2_dir, v1_freezer_dir))
    method, directory = chosen
    pids: tuple[int, ...] = ()
    try:
        os.stat(directory)
        pids = tuple(subtree_pids(directory))
        if freeze:
            reason = group_refusal(pids, directory, check_kthread=False)
            if reason:
                return failed(action, directory, method, reason)
        start = time.monotonic()
        deadline = start + timeout_s
        if method == "cgroup.freeze":
            write_value(os.path.join(directory, "cgroup.freeze"), "1" if freeze else "0")
            done = _wait_v2(os.path.join(directory, "cgroup.events"), freeze, deadline)
            want = f"frozen {int(freeze)}"
        else:
            want = "FROZEN" if freeze else "THAWED"
            state_file = os.path.join(directory, "freezer.state")
            write_value(state_file, want)
            done = _wait_v1(state_file, want, deadline)
        if not done:
            return failed(action, directory, method,
                          f"{directory}: not {want} after {timeout_s:g}s", pids)
        return ActionOutcome(action, directory, True, method, pids,
                             time.monotonic() - start, None, None)
    except (OSError, KernelFileError) as exc:
        return failed(action, directory, method, describe(exc, directory), pids)


def _wait_v2(events: str, frozen: bool, deadline: float) -> bool:
    """Wait for `frozen 0|1` in cgroup.events, woken by its POLLPRI change notification."""
    want = "1" if frozen else "0"
    try:
        fd = os.open(events, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, events) from None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        while True:
            # Reading re-arms the notification, so read first, then poll.
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "frozen" and value.strip() == want:
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Capped: regular files (tests) never signal POLLPRI.
            poller.poll(int(min(remaining, 0.05) * 1000) + 1)
    finally:
        os.close(fd)


def _wait_v1(state_file: str, want: str, deadline: float) -> bool:
    """Re-read freezer.state (FREEZING while in progress) with short, growing sleeps."""
    pause = 0.0005
    while True:
        if read_text(state_file).strip() == want:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, _V1_POLL_MAX_S)


def frozen_now(v2_dir: str) -> bool | None:
    """`frozen` from cgroup.events, for callers checking a group's state; None if absent."""
    value = read_key(os.path.join(v2_dir, "cgroup.events"), "frozen")
    return None if value is None else value == "1"
