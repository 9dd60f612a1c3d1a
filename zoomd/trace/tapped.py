"""What a trace written from the tap holds: the last text each reader got of each file.

A file stays in the trace until the host shows it gone: a read found it absent, or a
listing of a directory above it no longer names it (a group removed, a zram device
reset, a process exited and its group re-listed). So a replay reads, for every file
the daemon read in a tick, the bytes the daemon read, and a file read once (the
zones' watermarks, mountinfo at start-up) is still there in a rotated part's keyframe.

A process's files (/proc/PID/...) also go once no tick has read them for
PROC_KEEP_TICKS (looked for every PROC_KEEP_TICKS ticks): processes come and go by
the thousand, nothing reads one once and relies on it later, and a replay reads them
only in ticks the daemon read them in.
"""

from __future__ import annotations

from zoomd.kernel.tap import TapTake

Changes = dict[str, str | None]  # kernel path -> text now held (None: gone)
PROC_KEEP_TICKS = 60


class TapState:
    """The files held, indexed by directory so a listing can drop what it no longer
    shows without a scan of every path."""

    __slots__ = ("_children", "_pids", "files", "ticks")

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self._children: dict[str, set[str]] = {}  # directory -> names held under it
        self._pids: dict[str, int] = {}  # /proc/PID -> the tick that last read it
        self.ticks = 0

    def _add(self, path: str) -> None:
        child = path
        while True:
            parent, _, name = child.rpartition("/")
            parent = parent or "/"
            names = self._children.setdefault(parent, set())
            if name in names:
                return
            names.add(name)
            if parent == "/":
                return
            child = parent

    def _drop_name(self, path: str) -> None:
        child = path
        while child != "/":
            parent, _, name = child.rpartition("/")
            parent = parent or "/"
            names = self._children.get(parent)
            if names is None:
                return
            names.discard(name)
            if names or parent in self.files:
                return
            del self._children[parent]
            child = parent

    def _drop_tree(self, path: str, changes: Changes) -> None:
        """`path` and everything held under it."""
        stack = [path]
        while stack:
            current = stack.pop()
            if self.files.pop(current, None) is not None:
                changes[current] = None
            below = self._children.pop(current, None)
            if below:
                base = current.rstrip("/")
                stack.extend(f"{base}/{name}" for name in below)
        self._drop_name(path)

    def apply(self, take: TapTake) -> Changes:
        """Bring the state up to what the readers saw; returns what changed."""
        changes: Changes = {}
        for directory, names, dirs_only in take.listings:
            held = self._children.get(directory)
            if not held:
                continue
            base = directory.rstrip("/")
            for name in [n for n in held if n not in names]:
                path = f"{base}/{name}"
                if dirs_only and path not in self._children:
                    continue  # a file of the group: a listing of groups does not show it
                self._drop_tree(path, changes)
        ticks = self.ticks = self.ticks + 1
        for path, text in take.reads.items():
            if path.startswith("/proc/") and path[6:7].isdigit():
                self._pids[path[:path.find("/", 6)]] = ticks
            if text is None:
                self._drop_tree(path, changes)
            elif self.files.get(path) is not text:
                if path not in self.files:
                    self._add(path)
                self.files[path] = text
                changes[path] = text
        if ticks % PROC_KEEP_TICKS == 0:
            for pid_dir in [p for p, seen in self._pids.items()
                            if ticks - seen >= PROC_KEEP_TICKS]:
                del self._pids[pid_dir]
                self._drop_tree(pid_dir, changes)
        return changes
