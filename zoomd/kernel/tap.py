"""The recording tee: what each kernel read returned, kept for the trace.

Every reader of a kernel file goes through root.py (open-read-close) or hotfile.py
(kept open, pread); both tell `ACTIVE` what a read returned. With no trace being
written `ACTIVE` is None and a read costs one attribute test: nothing is copied. While
tracing, the tap keeps a reference to the text the reader already made (no copy),
the first read of each file in a tick winning, up to `max_bytes` a tick, so the trace
holds the bytes a decision used, never a later re-read of them.

It also hears what a read found absent, and which children a directory listing
showed, so the trace can drop what the host no longer has. A file read again in the
same tick with other text keeps all its reads in order (`rereads`), so that replay
(trace/tree.Rereads, the same hook) serves the second read the second text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# A tick's first reads kept at most (the ranking walk of ~5,000 groups and their
# processes reads ~10 MiB); past it the rest of the tick is not kept, and counted.
MAX_TICK_BYTES = 16 << 20


@dataclass(slots=True)
class TapTake:
    """What the readers saw since the last take: path -> text (None: found absent),
    the listings made (directory, names seen, only directories counted), and the
    counts of what could not be kept exactly."""

    reads: dict[str, str | None] = field(default_factory=dict)
    listings: list[tuple[str, frozenset[str], bool]] = field(default_factory=list)
    over_budget: int = 0  # reads not kept: the tick's max_bytes was spent
    reread_changed: int = 0  # files read again in the tick with different text
    # Such files: every read after the first, in order (the first is in `reads`).
    rereads: dict[str, list[str]] = field(default_factory=dict)


class Tap(Protocol):
    """What the readers report to: the recording tee, or replay's server of re-reads.
    `read` returns the text the reader is to use (the tee: the very text it read)."""

    def read(self, full: str, text: str) -> str: ...

    def absent(self, full: str) -> None: ...

    def listing(self, full_dir: str, names: list[str] | frozenset[str],
                dirs_only: bool) -> None: ...


class FileTap:
    """Collects the reads under one root (kernel paths: the root's prefix removed)."""

    __slots__ = ("_again", "_bytes", "_carry", "_changed", "_listings", "_prefix", "_tick",
                 "max_bytes", "over_budget", "reread_changed")

    def __init__(self, root_path: str = "/", max_bytes: int = MAX_TICK_BYTES) -> None:
        self._prefix = "" if root_path.rstrip("/") == "" else root_path.rstrip("/")
        self.max_bytes = max_bytes
        self._tick: dict[str, str | None] = {}  # this tick: the first read wins
        self._carry: dict[str, str | None] = {}  # before it (start-up, between ticks)
        self._listings: list[tuple[str, frozenset[str], bool]] = []
        self._bytes = 0
        self._again: dict[str, list[str]] = {}  # reads after the first, this tick
        self._changed: set[str] = set()  # of those, the files whose text changed
        self.over_budget = 0
        self.reread_changed = 0

    def _kernel(self, full: str) -> str | None:
        prefix = self._prefix
        if not prefix:
            return full
        if full.startswith(prefix) and full[len(prefix):len(prefix) + 1] == "/":
            return full[len(prefix):]
        return None  # another root (a test's second tree): not this trace's host

    def read(self, full: str, text: str) -> str:
        path = self._kernel(full)
        if path is None:
            return text
        tick = self._tick
        if path in tick:
            # Every re-read is kept (a reference: the reader made the text anyway), so
            # replay can serve the n-th read the n-th text; counted, never refused.
            again = self._again.get(path)
            if again is None:
                again = self._again[path] = []
            again.append(text)
            if path in self._changed:
                self._bytes += len(text)
            elif text != tick[path]:
                self._changed.add(path)
                self.reread_changed += 1
                self._bytes += sum(len(t) for t in again)
            return text
        if self._bytes + len(text) > self.max_bytes:
            self.over_budget += 1
            return text
        self._bytes += len(text)
        tick[path] = text
        return text

    def absent(self, full: str) -> None:
        path = self._kernel(full)
        if path is not None and path not in self._tick:
            self._tick[path] = None

    def listing(self, full_dir: str, names: list[str] | frozenset[str],
                dirs_only: bool) -> None:
        path = self._kernel(full_dir.rstrip("/") or "/")
        if path is not None:
            self._listings.append((path, frozenset(names), dirs_only))

    def begin(self) -> None:
        """A tick starts: what was read before it (start-up, actions in flight) is kept
        as last seen, and the tick's own first reads go over it."""
        self._carry.update(self._tick)
        self._tick = {}
        self._again, self._changed = {}, set()
        self._bytes = 0

    def take(self) -> TapTake:
        """Everything heard since the last take, and start afresh."""
        reads = self._carry
        reads.update(self._tick)
        rereads = {p: self._again[p] for p in self._changed if self._tick.get(p) is not None}
        out = TapTake(reads, self._listings, self.over_budget, self.reread_changed, rereads)
        self._carry, self._tick, self._listings = {}, {}, []
        self._again, self._changed = {}, set()
        self._bytes = self.over_budget = self.reread_changed = 0
        return out


ACTIVE: Tap | None = None


def start(root_path: str = "/", max_bytes: int = MAX_TICK_BYTES) -> FileTap:
    """Install a tap (one per process: the daemon writing a trace)."""
    global ACTIVE
    ACTIVE = FileTap(root_path, max_bytes)
    return ACTIVE


def stop(tap: Tap | None = None) -> None:
    """Remove the tap (`tap`: only if it is still the one installed)."""
    global ACTIVE
    if tap is None or ACTIVE is tap:
        ACTIVE = None
