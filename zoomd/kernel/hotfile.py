"""Kernel files the daemon re-reads every tick: opened once, re-read with os.pread.

Opening /proc files allocates a file object and a dentry walk each time; under memory
pressure that is exactly what we cannot afford. A HotFile keeps the descriptor and
reads from offset 0 into one buffer size chosen from the first read.
"""

from __future__ import annotations

import os
import resource

from zoomd.errors import KernelFileError
from zoomd.kernel import tap
from zoomd.kernel.root import MAX_READ_BYTES, NotKernelFile, open_kernel_file, read_text_once

# Descriptors left for everything that is not kept open: reads of files seen once
# (ranking, /proc/PID), a kill's pidfds, sockets, the validating child's pipe.
MIN_RESERVE = 256


def budget_for(soft_limit: int) -> int:
    """How many descriptors may be kept open under a soft RLIMIT_NOFILE."""
    reserve = max(MIN_RESERVE, soft_limit // 4)
    return max(0, soft_limit - reserve)


class FdBudget:
    """How many descriptors watched groups may keep open (hot files, PSI triggers).

    systemd starts services with a soft limit of 1,024: four files and a trigger per
    watched group would run out at ~200 groups, and every read after that (including
    the host's own) would fail with EMFILE. Past the budget a group's files are read
    open-read-close instead: slower, never blind.
    """

    __slots__ = ("held", "limit", "refused")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.refused = 0  # acquisitions turned down (benchmarks/cost.py reports them)

    def acquire(self) -> bool:
        if self.held >= self.limit:
            self.refused += 1
            return False
        self.held += 1
        return True

    def release(self) -> None:
        if self.held > 0:
            self.held -= 1


def _finite(limit: int) -> int:
    return limit if limit != resource.RLIM_INFINITY else 1 << 20


def process_budget() -> FdBudget:
    """A budget sized to this process's soft RLIMIT_NOFILE now. The daemon makes one
    and hands it to its engine (every watched group's files) and its PSI triggers;
    raise_fd_limit resizes it."""
    return FdBudget(budget_for(_finite(resource.getrlimit(resource.RLIMIT_NOFILE)[0])))


_started_with: list[int] = []  # the soft limit zoomd was started with, once raised


def raise_fd_limit(budget: FdBudget) -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (zoomd polls, never select()s, so high
    descriptors are safe) and the budget sized to it; returns (soft, budget).

    Programs zoomd starts (hooks) get the soft limit it was started with back: one
    that select()s or closes every descriptor up to the limit expects ~1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            if not _started_with:
                _started_with.append(soft)
            soft = hard
        except (OSError, ValueError):
            pass  # keep the soft limit we have; the budget follows it
    budget.limit = budget_for(_finite(soft))
    return soft, budget.limit


def started_soft_limit() -> int | None:
    """The soft RLIMIT_NOFILE before raise_fd_limit raised it; None if it did not."""
    return _started_with[0] if _started_with else None


class HotFile:
    """An open kernel file re-read from the start on every `read()`."""

    __slots__ = ("_bufsize", "_fd", "path")

    def __init__(self, path: str, bufsize: int = 8192) -> None:
        self.path = path
        self._bufsize = bufsize
        self._fd: int | None = None
        try:  # never blocks on a FIFO; refuses a device (root.py)
            self._fd = open_kernel_file(path)
        except FileNotFoundError:
            raise KernelFileError(path, "missing") from None
        except NotKernelFile as exc:
            raise KernelFileError(path, exc.strerror) from None
        except OSError as exc:
            raise KernelFileError(path, f"cannot open ({exc.strerror or exc})") from None

    def read_bytes(self) -> bytes:
        fd = self._fd
        if fd is None:
            raise KernelFileError(self.path, "read after close")
        try:
            data = os.pread(fd, self._bufsize, 0)
            while len(data) == self._bufsize:
                # The file outgrew the buffer: grow once and re-read so the content is
                # one consistent generation rather than pieces of two.
                if self._bufsize > MAX_READ_BYTES:
                    raise KernelFileError(self.path, f"larger than any kernel file "
                                                     f"({MAX_READ_BYTES >> 20} MiB)")
                self._bufsize *= 2
                data = os.pread(fd, self._bufsize, 0)
        except OSError as exc:
            raise KernelFileError(self.path, f"unreadable ({exc.strerror or exc})") from None
        return data

    def read(self) -> str:
        try:
            text = self.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise KernelFileError(self.path, "not valid UTF-8 text") from None
        if tap.ACTIVE is not None:  # a trace is written (it keeps this text) or replayed
            text = tap.ACTIVE.read(self.path, text)
        return text

    @property
    def fd(self) -> int | None:
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> HotFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _absent(path: str) -> None:
    """A file found not there (what a trace being written must hear too)."""
    if tap.ACTIVE is not None:
        tap.ACTIVE.absent(path)


class HotFileCache:
    """Files of groups the daemon watches every tick, opened once on first use.

    `text(path)` is None for a file that does not exist (or vanished with its group),
    so callers treat "not there" exactly as when they read through a Root. Each open
    file takes one descriptor from `budget`; once it is spent, files are read
    open-read-close on every call.
    """

    __slots__ = ("_budget", "_files")

    def __init__(self, budget: FdBudget) -> None:
        self._files: dict[str, HotFile] = {}
        self._budget = budget

    def text(self, path: str) -> str | None:
        hot = self._files.get(path)
        if hot is None:
            if not self._budget.acquire():
                return read_text_once(path)  # absent: None, as below
            if not os.path.exists(path):
                self._budget.release()
                return _absent(path)
            try:
                hot = HotFile(path, bufsize=4096)
            except KernelFileError:
                self._budget.release()
                if not os.path.exists(path):
                    return _absent(path)
                raise
            self._files[path] = hot
        try:
            return hot.read()
        except KernelFileError:
            self._drop(path)
            if not os.path.exists(path):
                return _absent(path)  # the group went away between ticks
            raise

    def _drop(self, path: str) -> None:
        self._files.pop(path).close()
        self._budget.release()

    def close(self) -> None:
        for hot in self._files.values():
            hot.close()
            self._budget.release()
        self._files.clear()

    def __len__(self) -> int:
        return len(self._files)

    def __del__(self) -> None:
        self.close()  # a cache dropped without close() gives its descriptors back too
