"""Where /proc and /sys live: `/` on a live host, a directory for a captured tree."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from zoomd.errors import KernelFileError


@functools.lru_cache(maxsize=64)
def _resolves_to_slash(path: str) -> bool:
    """Cached: join() asks on every path, and realpath costs a stat per component."""
    return os.path.realpath(path) == "/"


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
        return os.path.join(self.path, kernel_path.lstrip("/"))

    def read_text(self, kernel_path: str) -> str:
        """Read a whole kernel file; failures become a KernelFileError naming the file."""
        full = self.join(kernel_path)
        try:
            with open(full, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise KernelFileError(full, "missing") from None
        except PermissionError:
            raise KernelFileError(full, "permission denied") from None
        except OSError as exc:
            raise KernelFileError(full, f"unreadable ({exc.strerror or exc})") from None
        try:
            return data.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise KernelFileError(full, "not valid UTF-8 text") from None

    def read_optional(self, kernel_path: str) -> str | None:
        """Read a file that may legitimately be absent (feature not built in)."""
        full = self.join(kernel_path)
        if not os.path.exists(full):
            return None
        return self.read_text(kernel_path)

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
