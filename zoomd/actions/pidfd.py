"""Signals through pidfds (no pid-reuse race) and process_mrelease (memory back at once).

A pidfd names one process for as long as it is open, so a pid reused between reading
cgroup.procs and signalling cannot make us kill a stranger. process_mrelease reaps the
dying process's address space from our context instead of waiting for it to be
scheduled, which is what frees memory quickly on a host stalled in reclaim.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import time

# process_mrelease(2): 448 in the generic table (aarch64) and on x86_64; other
# architectures simply do without it.
SYS_PROCESS_MRELEASE: int | None = {"x86_64": 448, "aarch64": 448}.get(os.uname().machine)

_libc: ctypes.CDLL | None = None
_mrelease_missing = SYS_PROCESS_MRELEASE is None


def open_pidfd(pid: int) -> int | None:
    """A pidfd for `pid`, or None when the process is already gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, f"pid:{pid}") from None


def send_sigkill(fd: int, pid: int) -> bool:
    """SIGKILL the process behind `fd`; False when it had already exited."""
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        return False
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, f"pid:{pid}") from None
    return True


def has_exited(fd: int) -> bool:
    """A pidfd polls readable once its whole thread group has exited."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def wait_any_exit(fds: list[int], timeout_s: float) -> None:
    """Sleep until one of `fds` reports its exit, or `timeout_s` passes."""
    if not fds:
        if timeout_s > 0:
            time.sleep(timeout_s)
        return
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    poller.poll(max(0, int(timeout_s * 1000)))


def _syscall() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def mrelease(fd: int, retry_s: float = 0.02) -> str:
    """process_mrelease(fd, 0): "released", "gone", "unsupported" or "not dying".

    EINVAL means the kernel does not see the task as dying yet (the kill is still
    being delivered) or its memory is shared with a live process: retry briefly,
    then let the exit free it the normal way.
    """
    global _mrelease_missing
    if _mrelease_missing or SYS_PROCESS_MRELEASE is None:
        return "unsupported"
    libc = _syscall()
    deadline = time.monotonic() + retry_s
    while True:
        if libc.syscall(ctypes.c_long(SYS_PROCESS_MRELEASE), ctypes.c_int(fd),
                        ctypes.c_uint(0)) == 0:
            return "released"
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            _mrelease_missing = True
            return "unsupported"
        if err == errno.ESRCH:
            return "gone"
        if err not in (errno.EINVAL, errno.EINTR) or time.monotonic() >= deadline:
            return "not dying" if err == errno.EINVAL else os.strerror(err)
        time.sleep(0.001)


def close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
