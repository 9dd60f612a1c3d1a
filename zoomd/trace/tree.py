"""A trace's files materialised as a host root in a temporary directory.

Files are rewritten in place (same inode), because the readers keep them open and
re-read with pread exactly as they do /proc. Paths from the trace are confined to
the directory: a trace is data from another host, never a licence to write elsewhere.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile

from zoomd.kernel.blockdev import DeviceKind, classify_swap
from zoomd.kernel.mountinfo import Mount
from zoomd.kernel.root import Root
from zoomd.trace.format import SWAP_KINDS, TraceError
from zoomd.trace.reader import Sample

NAME_MAX = 255  # bytes in one path component, as Linux allows
PATH_MAX = 4095  # bytes in a whole path (the kernel's 4096 include the NUL)


def _shown(kernel_path: str) -> str:
    """A path for a one-line message: its repr, cut in the middle if long."""
    text = repr(kernel_path)
    return text if len(text) <= 120 else f"{text[:60]}...{text[-40:]}"


def _impossible(kernel_path: str) -> str | None:
    """Why no kernel could have written this path; None if one could."""
    if "\x00" in kernel_path:
        return "holds a NUL byte"
    try:
        raw = kernel_path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return "is not a file name (a lone surrogate)"
    if len(raw) > PATH_MAX:
        return f"is longer than {PATH_MAX} bytes"
    if any(len(part) > NAME_MAX for part in raw.split(b"/")):
        return f"has a name longer than {NAME_MAX} bytes"
    return None


class Rereads:
    """Replay's side of the tap (zoomd/kernel/tap.py): a file the daemon read more than
    once in a tick, its text changing in between, is served to the replayed readers in
    the same order (the tree holds its first read; this, every later one)."""

    __slots__ = ("_at_host", "_count", "_prefix", "rereads")

    def __init__(self, base: str) -> None:
        self._prefix = base.rstrip("/")
        self.rereads: dict[str, list[str]] = {}
        self._count: dict[str, int] = {}
        self._at_host: dict[str, int] = {}

    def start(self, rereads: dict[str, list[str]]) -> None:
        """A sample: its re-reads, none served yet."""
        self.rereads = rereads
        self._count = {}

    def host_done(self) -> None:
        """The host sampler has read: each configuration's tick goes on from here."""
        self._at_host = dict(self._count)

    def next_run(self) -> None:
        """Another configuration's tick: the reads after the host sampler's again."""
        self._count = dict(self._at_host)

    def read(self, full: str, text: str) -> str:
        texts = self.rereads.get(full[len(self._prefix):]) if self.rereads and \
            full.startswith(self._prefix + "/") else None
        if texts is None:
            return text
        path = full[len(self._prefix):]
        seen = self._count.get(path, 0)
        self._count[path] = seen + 1
        return texts[seen - 1] if 0 < seen <= len(texts) else text

    def absent(self, full: str) -> None:
        pass

    def listing(self, full_dir: str, names: list[str] | frozenset[str],
                dirs_only: bool) -> None:
        pass


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

    def _full(self, kernel_path: str, line: int = 0) -> str:
        where = f"{self.trace_path}: line {line}" if line else self.trace_path
        why = _impossible(kernel_path)
        if why is not None:
            raise TraceError(f"{where}: file path {_shown(kernel_path)} {why}: "
                             "no kernel writes such a path")
        norm = os.path.normpath(kernel_path)
        if not kernel_path.startswith("/") or ".." in kernel_path.split("/") or norm == "/":
            raise TraceError(f"{where}: unsafe file path {_shown(kernel_path)} in trace")
        return os.path.join(self.base, norm.lstrip("/"))

    def _conflict(self, kernel_path: str, line: int, exc: OSError) -> TraceError:
        """One line for a path the tree cannot hold beside the others the trace has."""
        where = f"{self.trace_path}: line {line}" if line else self.trace_path
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):
            why = "lies under a file the trace also holds"
        elif exc.errno == errno.EISDIR:
            why = "is a directory in this trace (other recorded files lie under it)"
        else:
            why = f"cannot be materialised ({exc.strerror or exc})"
        return TraceError(f"{where}: file path {_shown(kernel_path)} {why}")

    def _write(self, kernel_path: str, text: str, line: int = 0) -> None:
        full = self._full(kernel_path, line)
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            where = f"{self.trace_path}: line {line}" if line else self.trace_path
            raise TraceError(f"{where}: file {_shown(kernel_path)} holds a lone surrogate, "
                             "not text a kernel writes") from None
        directory = os.path.dirname(full)
        try:
            if directory not in self._dirs:
                os.makedirs(directory, exist_ok=True)
                self._dirs.add(directory)
            with open(full, "wb") as handle:
                handle.write(data)  # O_TRUNC on the same inode: open readers see the new text
        except OSError as exc:
            raise self._conflict(kernel_path, line, exc) from None
        self._paths.add(kernel_path)

    def _remove(self, kernel_path: str, line: int = 0) -> None:
        full = self._full(kernel_path, line)
        try:
            os.unlink(full)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass  # never written as a file: nothing to remove
        except OSError as exc:
            raise self._conflict(kernel_path, line, exc) from None
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
                self._remove(path, sample.line)
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
                self._remove(path, sample.line)
            else:
                self._write(path, text, sample.line)

    def classify(self, root: Root, path: str, swap_type: str,
                 mounts: list[Mount] | None = None) -> DeviceKind:
        """The recorded verdict for a swap device; the tree's own walk if none was kept."""
        try:
            verdicts = json.loads(self.facts.get(SWAP_KINDS, "{}"))
            kind, ram_backed, block, via = verdicts[path]
        except (ValueError, KeyError, TypeError, RecursionError):  # a damaged trace
            return classify_swap(root, path, swap_type, mounts)
        # As recorder.swap_kinds_text writes them; bool("false") would call a disk RAM.
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
