"""A trace's files materialised as a host root in a temporary directory.

Files are rewritten in place (same inode), because the readers keep them open and
re-read with pread exactly as they do /proc. Paths from the trace are confined to
the directory: a trace is data from another host, never a licence to write elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

from zoomd.kernel.blockdev import DeviceKind, classify_swap
from zoomd.kernel.mountinfo import Mount
from zoomd.kernel.root import Root
from zoomd.trace.format import SWAP_KINDS, TraceError
from zoomd.trace.reader import Sample


class MaterialisedTree:
    """The current state of every recorded file, on disk under `root`."""

    def __init__(self, trace_path: str = "") -> None:
        self.trace_path = trace_path
        shm = "/dev/shm"  # tmpfs: opening thousands of small files per second is cheap
        where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
        self.base = tempfile.mkdtemp(prefix="zoomd-replay-", dir=where)
        self.root = Root(self.base)
        self.facts: dict[str, str] = {}  # "@..." entries: zoomd's facts, not files
        self._paths: set[str] = set()
        self._dirs: set[str] = set()

    def _full(self, kernel_path: str) -> str:
        norm = os.path.normpath(kernel_path)
        if not kernel_path.startswith("/") or ".." in kernel_path.split("/") or norm == "/":
            raise TraceError(f"{self.trace_path}: unsafe file path {kernel_path!r} in trace")
        return os.path.join(self.base, norm.lstrip("/"))

    def _write(self, kernel_path: str, text: str) -> None:
        full = self._full(kernel_path)
        directory = os.path.dirname(full)
        if directory not in self._dirs:
            os.makedirs(directory, exist_ok=True)
            self._dirs.add(directory)
        with open(full, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)  # O_TRUNC on the same inode: open readers see the new text
        self._paths.add(kernel_path)

    def _remove(self, kernel_path: str) -> None:
        full = self._full(kernel_path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(full)
        self._paths.discard(kernel_path)
        directory = os.path.dirname(full)
        while directory != self.base and directory.startswith(self.base):
            try:
                os.rmdir(directory)  # only empty ones: a removed cgroup disappears
            except OSError:
                break
            self._dirs.discard(directory)
            directory = os.path.dirname(directory)

    def apply(self, sample: Sample) -> None:
        """Bring the tree to the state after `sample` (a keyframe replaces everything)."""
        if sample.key:
            for path in sorted(self._paths - sample.files.keys()):
                self._remove(path)
            for name in list(self.facts):
                if name not in sample.files:
                    del self.facts[name]
        for path, text in sample.files.items():
            if path.startswith("@"):
                if text is None:
                    self.facts.pop(path, None)
                else:
                    self.facts[path] = text
            elif text is None:
                self._remove(path)
            else:
                self._write(path, text)

    def classify(self, root: Root, path: str, swap_type: str,
                 mounts: list[Mount] | None = None) -> DeviceKind:
        """The recorded verdict for a swap device; the tree's own walk if none was kept."""
        try:
            verdicts = json.loads(self.facts.get(SWAP_KINDS, "{}"))
            kind, ram_backed, block, via = verdicts[path]
        except (ValueError, KeyError, TypeError, RecursionError):  # a damaged trace
            return classify_swap(root, path, swap_type, mounts)
        # As capture.swap_verdicts writes them; bool("false") would call a disk RAM.
        if isinstance(kind, str) and isinstance(ram_backed, bool) and isinstance(via, str) \
                and (block is None or isinstance(block, str)):
            return DeviceKind(kind, ram_backed, block, via)
        return classify_swap(root, path, swap_type, mounts)

    def strip(self, text: str) -> str:
        """A path inside the tree, as the kernel path it stands for."""
        return text.replace(self.base, "") if self.base in text else text

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> MaterialisedTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
