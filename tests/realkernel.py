"""Shared checks for tests that drive the real kernel: skip with the reason, never pass."""

from __future__ import annotations

import os

import pytest


def missing_requirements(need_zram: bool = True) -> str | None:
    """Say what this machine lacks for real-kernel tests, or None when all is there."""
    if os.geteuid() != 0:
        return "not root"
    if not os.path.exists("/proc/pressure/memory"):
        return "no PSI (/proc/pressure/memory missing; boot with psi=1)"
    if need_zram and not (
        os.path.exists("/sys/class/zram-control") or os.path.exists("/sys/block/zram0")
    ):
        return "no zram (modprobe zram)"
    with open("/proc/self/mountinfo") as mountinfo:
        fstypes = [line.split(" - ")[1] for line in mountinfo if " - " in line]
    if not any(fstype.startswith("cgroup2") for fstype in fstypes):
        return "no cgroup v2 mount"
    return None


def require_real_kernel(need_zram: bool = True) -> None:
    """Skip the calling test, printing why, when the real-kernel lab is unavailable."""
    reason = missing_requirements(need_zram)
    if reason:
        pytest.skip(f"real-kernel test skipped: {reason}")
