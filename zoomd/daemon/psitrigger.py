"""PSI triggers: the kernel wakes us (POLLPRI) when memory stalls, so idle costs nothing.

Without CAP_SYS_RESOURCE the kernel accepts only windows that are multiples of 2 s
(EINVAL otherwise); we try a 1 s window first and fall back to 2 s, then to none.
"""

from __future__ import annotations

import contextlib
import os


class PsiTrigger:
    """One trigger on one pressure file."""

    def __init__(self, path: str, fd: int, spec: str) -> None:
        self.path = path
        self.fd = fd
        self.spec = spec

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_trigger(path: str, stall_us: int = 100_000) -> tuple[PsiTrigger | None, str | None]:
    """Arm "some <stall> <window>" on a pressure file; returns (trigger, error)."""
    last_error = None
    for window_us in (1_000_000, 2_000_000):
        stall = min(stall_us * window_us // 1_000_000, window_us)
        spec = f"some {stall} {window_us}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            return None, f"{path}: {exc.strerror or exc}"
        try:
            os.write(fd, spec.encode() + b"\0")
        except OSError as exc:
            os.close(fd)
            last_error = f"{path}: trigger {spec!r} refused ({exc.strerror or exc})"
            continue
        return PsiTrigger(path, fd, spec), None
    return None, last_error
