"""One lab at a time: zram0 and the swap set are host-wide, so runs take a flock."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

LAB_LOCK_PATH = "/run/lock/zoomd-lab.lock"


@contextmanager
def lab_lock(path: str = LAB_LOCK_PATH, timeout: float = 1800.0) -> Iterator[None]:
    """Hold an exclusive flock on our own lock file for the duration of a lab run."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path}: another lab run holds the lock") from None
                time.sleep(0.5)
        yield
    finally:
        os.close(fd)
