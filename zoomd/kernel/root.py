"""Where /proc and /sys live: `/` on a live host, a directory for a captured tree."""

from __future__ import annotations

import errno
import functools
import os
from dataclasses import dataclass

from zoomd.errors import KernelFileError


@functools.lru_cache(maxsize=64)
def _resolves_to_slash(path: str) -> bool:
    """Cached: join() asks on every path, and realpath costs a stat per component."""
    return os.path.realpath(path) == "/"


def _open(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _read_all(path: str) -> bytes:
    """The whole file through a bare descriptor: half the cost of open().read(), which
    matters when ranking reads a few files of each of thousands of groups."""
    fd = _open(path)
    try:
        data = os.read(fd, 65536)
        if data:
            more = [data]
            while chunk := os.read(fd, 65536):
                more.append(chunk)
            data = b"".join(more) if len(more) > 1 else data
        return data
    finally:
        os.close(fd)


def read_text_once(full: str, absent_ok: bool = True) -> str | None:
    """Open, read, close one file by its full path; failures become a KernelFileError
    naming it, absence None when `absent_ok`."""
    try:
        data = _read_all(full)
    except FileNotFoundError:
        if absent_ok:
            return None
        raise KernelFileError(full, "missing") from None
    except PermissionError:
        raise KernelFileError(full, "permission denied") from None
    except OSError as exc:
        # ENOTDIR: a parent is no directory (absent); ESRCH: /proc/PID of a process
        # that exited after the open; ENODEV: a cgroup file after its rmdir.
        if absent_ok and exc.errno in (errno.ENOTDIR, errno.ESRCH, errno.ENODEV):
            return None
        raise KernelFileError(full, f"unreadable ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise KernelFileError(full, "not valid UTF-8 text") from None


@dataclass(frozen=True, slots=True)
class Root:
    """A filesystem root under which kernel paths are resolved."""

    path: str = "/"

    @property
    def is_live(self) -> bool:
        return _resolves_to_slash(self.path)

    def join(self, kernel_path: str) -> str:
        """Map an absolute kernel path (e.g. /proc/vmstat) into this root."""
        if self.is_live:
            return kernel_path
        # os.path.join's result, for an absolute kernel path, at a third of its cost.
        return self.path.rstrip("/") + "/" + kernel_path.lstrip("/")

    def read_text(self, kernel_path: str) -> str:
        """Read a whole kernel file; failures become a KernelFileError naming the file."""
        text = self._read(kernel_path, absent_ok=False)
        assert text is not None
        return text

    def read_optional(self, kernel_path: str) -> str | None:
        """Read a file that may legitimately be absent (feature not built in, a group or
        process that went away): None then. One open, no exists() first, so a file that
        vanishes in between is "absent", not an error."""
        return self._read(kernel_path, absent_ok=True)

    def _read(self, kernel_path: str, absent_ok: bool) -> str | None:
        return read_text_once(self.join(kernel_path), absent_ok)

    def exists(self, kernel_path: str) -> bool:
        return os.path.exists(self.join(kernel_path))

    def listdir(self, kernel_path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.join(kernel_path)))
        except OSError:
            return []

    def realpath(self, kernel_path: str) -> str:
        """Resolve symlinks inside the root; the answer is again a kernel path."""
        full = os.path.realpath(self.join(kernel_path))
        if self.is_live:
            return full
        base = os.path.realpath(self.path)
        rel = os.path.relpath(full, base)
        return "/" + rel if not rel.startswith("..") else full
