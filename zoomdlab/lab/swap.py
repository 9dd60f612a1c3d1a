"""Swap the lab sets up and always takes down: a zram device, and a disk swap file beside it.

Both are host-wide state, so callers hold `lab_lock()` around them. Teardown runs on
any exit (exception, Ctrl-C, SIGTERM turned into KeyboardInterrupt) with signals
deferred, and reports every step that failed rather than stopping at the first.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from zoomd.kernel.swaps import unescape_octal
from zoomdlab.lab.signals import deferred_signals
from zoomdlab.lab.sysfs import (
    RAM_FILESYSTEMS,
    LabError,
    filesystem_type,
    read_text,
    run,
    write_text,
)

ZRAM_CONTROL = "/sys/class/zram-control"


@dataclass(frozen=True, slots=True)
class ZramSwap:
    """The zram device the lab swaps on."""

    name: str  # zram0
    dev_path: str  # /dev/zram0
    sysfs: str  # /sys/block/zram0
    size_bytes: int
    algorithm: str
    priority: int
    hot_added: bool


@dataclass(frozen=True, slots=True)
class SwapFile:
    """The disk swap file the lab swaps on."""

    path: str
    size_bytes: int
    priority: int


def active_swaps() -> list[str]:
    """Names in /proc/swaps (octal escapes undone), header excluded."""
    names = []
    for line in read_text("/proc/swaps").splitlines()[1:]:
        if line.strip():
            names.append(unescape_octal(line.split()[0]))
    return names


def _teardown(steps: list[tuple[str, Callable[[], None]]], unwinding: bool) -> None:
    """Run every step; collect failures and raise them together (as notes when unwinding)."""
    errors: list[str] = []
    with deferred_signals():
        for what, step in steps:
            try:
                step()
            except (OSError, LabError) as exc:
                errors.append(f"{what}: {exc}")
    if errors and not unwinding:
        raise LabError("teardown failed: " + "; ".join(errors))
    if errors:
        # The original exception is propagating; make the leak visible on stderr.
        for e in errors:
            print(f"zoomdlab.lab: teardown failed: {e}", flush=True)


def _retry_busy(action: Callable[[], None], what: str, timeout: float = 5.0) -> None:
    """Retry on EBUSY: the device can stay open for a moment after swapoff."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            action()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise LabError(f"{what}: {exc.strerror}") from None
            time.sleep(0.05)


def _pick_zram(hot_add: bool) -> tuple[str, bool]:
    """zram0 when it is free, else a device of our own from hot_add."""
    initstate = "/sys/block/zram0/initstate"
    if not hot_add and os.path.exists(initstate) and read_text(initstate).strip() == "0":
        return "zram0", False
    if not os.path.exists(f"{ZRAM_CONTROL}/hot_add"):
        raise LabError("zram0 is in use and /sys/class/zram-control/hot_add is missing")
    dev_id = int(read_text(f"{ZRAM_CONTROL}/hot_add").strip())
    return f"zram{dev_id}", True


def _wait_for_node(path: str, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise LabError(f"{path} did not appear (is /dev a devtmpfs?)")
        time.sleep(0.02)


@contextmanager
def zram_swap(
    size_bytes: int,
    algorithm: str = "lzo-rle",
    priority: int = 100,
    hot_add: bool = False,
) -> Iterator[ZramSwap]:
    """Swap on a zram device for the block; reset (and hot_remove if we added it) after."""
    name, added = _pick_zram(hot_add)
    sysfs, dev_path = f"/sys/block/{name}", f"/dev/{name}"
    swapped_on = False
    unwinding = True
    try:
        available = read_text(f"{sysfs}/comp_algorithm").replace("[", "").replace("]", "")
        if algorithm not in available.split():
            raise LabError(f"{sysfs}: algorithm {algorithm!r} not in {available.split()}")
        write_text(f"{sysfs}/comp_algorithm", algorithm)
        write_text(f"{sysfs}/disksize", size_bytes)
        _wait_for_node(dev_path)
        run(["mkswap", dev_path])
        swapped_on = True  # swapon may fail after activating; teardown checks /proc/swaps
        run(["swapon", "-p", str(priority), dev_path])
        yield ZramSwap(name, dev_path, sysfs, size_bytes, algorithm, priority, added)
        unwinding = False
    finally:
        steps: list[tuple[str, Callable[[], None]]] = []
        if swapped_on:
            steps.append(("swapoff", lambda: _swapoff_if_active(dev_path)))
        steps.append(
            ("reset", lambda: _retry_busy(lambda: write_text(f"{sysfs}/reset", 1), "reset"))
        )
        if added:
            steps.append(
                (
                    "hot_remove",
                    lambda: _retry_busy(
                        lambda: write_text(f"{ZRAM_CONTROL}/hot_remove", name[4:]), "hot_remove"
                    ),
                )
            )
        _teardown(steps, unwinding)


def _swapoff_if_active(path: str) -> None:
    if path in active_swaps():
        run(["swapoff", path])


def _fill_zeros(fd: int, size_bytes: int) -> None:
    """Write real zeros (what dd does): for filesystems whose fallocate swapon refuses."""
    chunk = bytes(1 << 20)
    os.lseek(fd, 0, os.SEEK_SET)
    left = size_bytes
    while left > 0:
        left -= os.write(fd, chunk[: min(left, len(chunk))])
    os.fsync(fd)


@contextmanager
def disk_swapfile(path: str, size_bytes: int, priority: int = 10) -> Iterator[SwapFile]:
    """A swap file on a real disk for the block; swapoff and unlink after."""
    directory = os.path.dirname(os.path.abspath(path))
    fstype = filesystem_type(directory)
    if fstype in RAM_FILESYSTEMS:
        raise LabError(f"{directory} is on {fstype}: a swap file there is RAM, not disk")
    # O_EXCL: never clobber a file we did not create.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    unwinding = True
    try:
        try:
            os.posix_fallocate(fd, 0, size_bytes)
            preallocated = True
        except OSError:
            _fill_zeros(fd, size_bytes)
            preallocated = False
        os.fchmod(fd, 0o600)
        run(["mkswap", path])
        try:
            run(["swapon", "-p", str(priority), path])
        except LabError:
            if not preallocated:
                raise
            # Some filesystems treat fallocated extents as holes for swap: write zeros.
            _fill_zeros(fd, size_bytes)
            run(["mkswap", path])
            run(["swapon", "-p", str(priority), path])
        os.close(fd)
        fd = -1
        yield SwapFile(os.path.abspath(path), size_bytes, priority)
        unwinding = False
    finally:
        if fd >= 0:
            os.close(fd)
        _teardown(
            [
                ("swapoff", lambda: _swapoff_if_active(os.path.abspath(path))),
                ("unlink", lambda: os.unlink(path)),
            ],
            unwinding,
        )
