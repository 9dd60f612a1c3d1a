"""Kernel files the daemon re-reads every tick: opened once, re-read with os.pread.

Opening /proc files allocates a file object and a dentry walk each time; under memory
pressure that is exactly what we cannot afford. A HotFile keeps the descriptor and
reads from offset 0 into one buffer size chosen from the first read.
"""

from __future__ import annotations

import os

from zoomd.errors import KernelFileError


class HotFile:
    """An open kernel file re-read from the start on every `read()`."""

    __slots__ = ("_bufsize", "_fd", "path")

    def __init__(self, path: str, bufsize: int = 8192) -> None:
        self.path = path
        self._bufsize = bufsize
        self._fd: int | None = None
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KernelFileError(path, "missing") from None
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
                self._bufsize *= 2
                data = os.pread(fd, self._bufsize, 0)
        except OSError as exc:
            raise KernelFileError(self.path, f"unreadable ({exc.strerror or exc})") from None
        return data

    def read(self) -> str:
        try:
            return self.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise KernelFileError(self.path, "not valid UTF-8 text") from None

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


class HotFileCache:
    """Files of groups the daemon watches every tick, opened once on first use.

    `text(path)` is None for a file that does not exist (or vanished with its group),
    so callers treat "not there" exactly as when they read through a Root.
    """

    __slots__ = ("_files",)

    def __init__(self) -> None:
        self._files: dict[str, HotFile] = {}

    def text(self, path: str) -> str | None:
        hot = self._files.get(path)
        if hot is None:
            if not os.path.exists(path):
                return None
            try:
                hot = HotFile(path, bufsize=4096)
            except KernelFileError:
                if not os.path.exists(path):
                    return None
                raise
            self._files[path] = hot
        try:
            return hot.read()
        except KernelFileError:
            self._files.pop(path).close()
            if not os.path.exists(path):
                return None  # the group went away between ticks
            raise

    def close(self) -> None:
        for hot in self._files.values():
            hot.close()
        self._files.clear()

    def __len__(self) -> int:
        return len(self._files)
