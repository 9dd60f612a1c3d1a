"""Writing traces: only what changed, keyframes, a size cap with rotation, and a thread.

`TraceFile` writes synchronously; `BackgroundWriter` puts it behind a small bounded
queue so the daemon's loop never waits on the disk: when the queue is full the
sample is dropped and counted (the next written sample says how many), and since
diffs are taken against what was last *written*, a dropped sample costs detail,
never consistency.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import json
import os
import queue
import stat
import threading
import time
from typing import IO, Any

from zoomd.errors import ZoomdError

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_KEEP = 3
DEFAULT_KEYFRAME_EVERY = 300
FLUSH_EVERY_S = 2.0

FileSets = dict[str, dict[str, str]]  # set name -> {kernel path: text}, as captured


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def trace_path_refusal(path: str, keep: int = DEFAULT_KEEP) -> str | None:
    """Why `path` (or one of the rotated parts FILE.1 .. FILE.keep that rotation renames)
    may not be written as a trace; None when each is a regular file or absent.

    Rotation renames what is there: as root, `--record /var/log/zoomd` would move the
    log directory, and a symlink would have root's writes land wherever it points. A
    trace is written only to a regular file or a new name (lstat: no link followed).
    """
    for part in (path, *(f"{path}.{i}" for i in range(1, max(0, keep) + 1))):
        try:
            mode = os.lstat(part).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"{part}: cannot write the trace ({exc.strerror or exc})"
        if stat.S_ISREG(mode):
            continue
        what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        hint = "; give a file name, such as DIR/trace.jsonl" if stat.S_ISDIR(mode) else ""
        role = "" if part == path else " (a rotated part of the trace)"
        return f"{part}: is {what}{role}, not a regular file: refused as a trace{hint}"
    return None


def check_trace_path(path: str, keep: int = DEFAULT_KEEP) -> None:
    """At start-up: ZoomdError (one line, exit 2) unless `path` may be written as a trace."""
    reason = trace_path_refusal(path, keep)
    if reason is not None:
        raise ZoomdError(reason)


def _dumps(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, separators=(",", ":")) + "\n").encode()


class TraceFile:
    """One trace on disk: header, then samples and records; rotates past `max_bytes`.

    A sample is given as named sets of files read together ("host", "subtree", ...):
    a file that was in a set last time and is not now is gone, unless another set
    still holds it. Each new file (the first, and every one after a rotation) starts
    with the header and a keyframe, so any part can be replayed on its own.
    """

    def __init__(self, path: str, header: dict[str, Any], *,
                 max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP,
                 keyframe_every: int = DEFAULT_KEYFRAME_EVERY,
                 compress: bool | None = None) -> None:
        self.path = path
        self.header = header
        self.max_bytes = max_bytes
        self.keep = keep
        self.keyframe_every = max(1, keyframe_every)
        self.compress = path.endswith(".gz") if compress is None else compress
        self.samples = 0
        self.rotations = 0
        self._sets: FileSets = {}
        self._current: dict[str, str] = {}  # what a reader holds after the last line
        self._since_key = 0
        self._raw: IO[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._last_flush = 0.0
        self._reopen = False  # a rotation failed half-way: reopen before the next line
        self._unsent: dict[str, str | None] = {}
        check_trace_path(path, keep)
        self._open()

    # -- files --------------------------------------------------------------------------
    def _shift_old(self) -> None:
        """FILE -> FILE.1 -> FILE.2 ...; at most `keep` old parts are kept.

        Checked again at every rotation (what is there may have changed since start-up);
        an OSError here is a write error the writer thread counts, as for a full disk."""
        reason = trace_path_refusal(self.path, self.keep)
        if reason is not None:
            raise OSError(reason)
        if not os.path.lexists(self.path):
            return
        if self.keep <= 0:
            os.unlink(self.path)
            return
        oldest = f"{self.path}.{self.keep}"
        if os.path.exists(oldest):
            os.unlink(oldest)
        for i in range(self.keep - 1, 0, -1):
            if os.path.exists(f"{self.path}.{i}"):
                os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")

    def _open(self) -> None:
        self._shift_old()
        # A new file, never followed through a link that appeared since the check.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o666)
        raw = os.fdopen(fd, "wb")
        self._raw = raw
        self._out = gzip.GzipFile(filename="", fileobj=raw, mode="wb",
                                  compresslevel=6, mtime=0) \
            if self.compress else raw
        self._since_key = self.keyframe_every  # the next sample is a keyframe
        self._write({**self.header, "part": self.rotations})
        self._flush()

    def _write(self, data: dict[str, Any]) -> None:
        assert self._out is not None
        self._out.write(_dumps(data))

    def _ensure_open(self) -> None:
        """After a rotation that failed, try again (a new part: header, then a keyframe);
        while it keeps failing, each line is an OSError the writer thread counts."""
        if self._out is None and self._reopen:
            self._open()
            self._reopen = False

    def _flush(self) -> None:
        if self._out is not None and self._raw is not None:
            self._out.flush()  # gzip: Z_SYNC_FLUSH, so what is on disk decompresses
            self._raw.flush()
            self._last_flush = time.monotonic()

    @property
    def size(self) -> int:
        """Bytes of the current part on disk (compressed size for gzip)."""
        return self._raw.tell() if self._raw is not None else 0

    def _maybe_rotate(self) -> None:
        if self.size < self.max_bytes:
            return
        self.close()
        self.rotations += 1
        self._reopen = True
        self._open()
        self._reopen = False

    # -- lines --------------------------------------------------------------------------
    def sample(self, t: float, wall: float, sets: FileSets, dropped: int = 0) -> None:
        """Append one sample; only files whose text changed are written (or all: keyframe)."""
        self._ensure_open()
        current = dict(self._current)
        gone: set[str] = set()
        for name, files in sets.items():
            old = self._sets.get(name, {})
            self._sets[name] = dict(files)
            gone.update(p for p in old if p not in files)
            current.update(files)
        for path in gone:
            if not any(path in held for held in self._sets.values()):
                current.pop(path, None)
        line: dict[str, Any] = {"t": round(t, 4), "wall": round(wall, 3)}
        if self._since_key >= self.keyframe_every:
            line["key"] = True
            line["files"] = current
            self._since_key = 0
        else:
            diff: dict[str, str | None] = {
                p: text for p, text in current.items() if self._current.get(p) != text}
            diff.update({p: None for p in self._current if p not in current})
            line["files"] = diff
        if dropped:
            line["dropped"] = dropped
        self._write(line)
        self._sampled(current)

    def _sampled(self, current: dict[str, str]) -> None:
        """A sample line is written: it is the base of the next diff; flush and rotate
        when due."""
        self._current = current
        self._since_key += 1
        self.samples += 1
        if time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self._flush()
        self._maybe_rotate()

    def sample_changes(self, t: float, wall: float, changes: dict[str, str | None],
                       dropped: int = 0, extra: dict[str, Any] | None = None) -> None:
        """Append one sample given as what changed since the last (None: gone), as the
        tap's state hands it over; written as a diff, or everything (keyframe)."""
        # Changes of a line lost to a write error go out with this one (a file read
        # once would be lost from the trace otherwise).
        self._unsent.update(changes)
        self._ensure_open()
        changes, self._unsent = self._unsent, {}
        current = dict(self._current)
        diff: dict[str, str | None] = {}
        for path, text in changes.items():
            if text is None:
                if current.pop(path, None) is not None:
                    diff[path] = None
            elif current.get(path) != text:
                current[path] = text
                diff[path] = text
        # The stamp as the engine had it (not rounded): a replay computes with the
        # very times the live tick did.
        line: dict[str, Any] = {"t": t, "wall": round(wall, 3)}
        if self._since_key >= self.keyframe_every:
            line["key"] = True
            line["files"] = current
            self._since_key = 0
        else:
            line["files"] = diff
        if dropped:
            line["dropped"] = dropped
        for name, value in (extra or {}).items():
            if value:
                line[name] = value
        try:
            self._write(line)
        except (OSError, ValueError):
            self._unsent = diff
            raise
        self._sampled(current)

    def record(self, t: float, record: dict[str, Any], exact: bool = False) -> None:
        """Append a decision record, flushed at once: decisions must survive a crash."""
        self._ensure_open()
        self._write({"t": t if exact else round(t, 4), "record": record})
        self._flush()

    def close(self) -> None:
        if self._out is not None:
            with contextlib.suppress(OSError):
                self._flush()
                if self._out is not self._raw:
                    self._out.close()
        if self._raw is not None:
            with contextlib.suppress(OSError):
                self._raw.close()
        self._out = self._raw = None


_STOP = object()


class BackgroundWriter:
    """A TraceFile written from its own thread; `submit_*` never block."""

    def __init__(self, trace: TraceFile, max_queue: int = 8) -> None:
        self.trace = trace
        self.dropped = 0  # samples dropped because the writer fell behind
        self.errors = 0  # lines lost to write errors (disk full, I/O error)
        self.last_error: str | None = None
        self._pending_drops = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._records: collections.deque[tuple[float, dict[str, Any]]] = \
            collections.deque(maxlen=4096)
        self._thread = threading.Thread(target=self._run, name="zoomd-trace", daemon=True)
        self._thread.start()

    def submit_sample(self, t: float, wall: float, sets: FileSets) -> bool:
        """Queue a sample; False (and counted) when the writer is behind."""
        try:
            self._queue.put_nowait((t, wall, sets, self._pending_drops))
        except queue.Full:
            self._pending_drops += 1
            self.dropped += 1
            return False
        self._pending_drops = 0
        return True

    def submit_tick(self, t: float, wall: float, changes: dict[str, str | None],
                    records: list[dict[str, Any]], extra: dict[str, Any] | None = None,
                    ) -> bool:
        """Queue a tick: its sample (as changes) and then its decision records, in that
        order. False when the writer is behind: the sample is dropped (and counted),
        the records wait beside the queue; the caller keeps the changes for the next."""
        try:
            self._queue.put_nowait(("tick", t, wall, changes, self._pending_drops,
                                    records, extra))
        except queue.Full:
            self._pending_drops += 1
            self.dropped += 1
            for record in records:
                self.submit_record(t, record)
            return False
        self._pending_drops = 0
        return True

    def submit_record(self, t: float, record: dict[str, Any]) -> None:
        """Records wait beside the queue and go out before the next sample."""
        self._records.append((t, record))

    def _drain_records(self) -> None:
        while self._records:
            t, record = self._records.popleft()
            self._guard(self.trace.record, t, record)

    def _guard(self, func: Any, *args: Any) -> None:
        try:
            func(*args)
        except (OSError, ValueError) as exc:
            self.errors += 1
            self.last_error = str(exc)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            self._drain_records()
            if item is _STOP:
                return
            if isinstance(item, tuple) and item[0] == "tick":
                _, t, wall, changes, drops, records, extra = item
                self._guard(self.trace.sample_changes, t, wall, changes, drops, extra)
                for record in records:
                    self._guard(self.trace.record, t, record, True)
                continue
            t, wall, sets, drops = item  # type: ignore[misc]
            self._guard(self.trace.sample, t, wall, sets, drops)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then close the file (waits at most `timeout`)."""
        deadline = time.monotonic() + timeout
        while self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            self._drain_records()
            self.trace.close()
