"""Reading traces: plain or gzip, streamed, tolerant of a writer killed mid-line.

A last line cut short (no newline, not JSON) or a gzip stream without its end is
what a killed writer leaves: it is skipped with a warning. Damage anywhere else is
a corrupted trace: one TraceError naming the file and line.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from zoomd.trace.format import TraceError, check_header

CHUNK = 1 << 16
GZIP_MAGIC = b"\x1f\x8b"

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample line: the files that changed (None: removed), or all of them (key)."""

    t: float
    wall: float
    files: dict[str, str | None]
    key: bool = False
    dropped: int = 0
    line: int = 0  # where it is in its file, for errors found later (replay's tree)
    # Files read again in the tick with other text: every read after the first.
    rereads: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Record:
    """A decision record the live daemon wrote into the trace."""

    t: float
    record: dict[str, Any] = field(default_factory=dict)
    line: int = 0


def _chunks(path: str) -> Iterator[bytes]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in finally
    except OSError as exc:
        raise TraceError(f"{path}: cannot open ({exc.strerror or exc})") from None
    try:
        yield from iter(lambda: handle.read(CHUNK), b"")
    except OSError as exc:
        raise TraceError(f"{path}: unreadable ({exc.strerror or exc})") from None
    finally:
        handle.close()


def _decompressed(path: str, chunks: Iterator[bytes], warn: Warn,
                  lines_so_far: Callable[[], int]) -> Iterator[bytes]:
    """Gunzip a stream of members; a missing end is a warning, bad data an error."""
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    fed = False  # the current member has started
    for chunk in chunks:
        data = chunk
        while data:
            if not fed and not GZIP_MAGIC.startswith(data[:2]):
                raise TraceError(f"{path}: corrupted gzip data after line {lines_so_far()} "
                                 "(garbage after a member)")
            fed = True
            try:
                yield decomp.decompress(data)
            except zlib.error as exc:
                raise TraceError(f"{path}: corrupted gzip data after line {lines_so_far()} "
                                 f"({exc})") from None
            data = b""
            if decomp.eof:
                data = decomp.unused_data
                decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
                fed = False
    if fed:
        yield decomp.flush()
        warn(f"{path}: gzip stream ends early (writer killed?); read up to the last "
             "complete line")


def _lines(path: str, warn: Warn) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes, ended by newline) for every line of the file."""
    count = 0

    def seen() -> int:
        return count

    chunks = _chunks(path)
    first = next(chunks, b"")
    if not first:
        raise TraceError(f"{path}: empty file, not a zoomd trace")

    def all_chunks() -> Iterator[bytes]:
        yield first
        yield from chunks

    stream = _decompressed(path, all_chunks(), warn, seen) \
        if first.startswith(GZIP_MAGIC) else all_chunks()
    pending = b""
    for data in stream:
        pending += data
        *complete, pending = pending.split(b"\n")
        for line in complete:
            count += 1
            yield count, line, True
    if pending:
        count += 1
        yield count, pending, False


def _finite(value: Any) -> float | None:
    """A JSON number as a finite float; None for a bool, NaN, an infinity or an integer
    too large for a float (json reads "NaN", "1e400" and 400-digit integers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _sample(data: dict[str, Any], where: str, line: int = 0) -> Sample | Record:
    t = _finite(data.get("t"))
    if t is None:
        raise TraceError(f"{where}: corrupted (no numeric 't')")
    if "record" in data:
        if not isinstance(data["record"], dict):
            raise TraceError(f"{where}: corrupted ('record' is not an object)")
        return Record(t, data["record"], line)
    files = data.get("files")
    wall = _finite(data.get("wall", 0.0))
    if not isinstance(files, dict) or wall is None:
        raise TraceError(f"{where}: corrupted (a sample needs 'files' and 'wall')")
    for path, text in files.items():
        if not (text is None or isinstance(text, str)):
            raise TraceError(f"{where}: corrupted (file {path!r} is not text or null)")
    # The writer puts "key": true and a non-negative integer "dropped"; anything else is
    # damage, not something to coerce ("dropped": "x" or 1e400 used to escape int()).
    key, dropped = data.get("key", False), data.get("dropped", 0)
    if not isinstance(key, bool) or isinstance(dropped, bool) or not isinstance(dropped, int) \
            or dropped < 0:
        raise TraceError(f"{where}: corrupted ('key' or 'dropped' of the wrong type)")
    rereads = data.get("rereads", {})
    if not isinstance(rereads, dict) or not all(
            isinstance(texts, list) and all(isinstance(x, str) for x in texts)
            for texts in rereads.values()):
        raise TraceError(f"{where}: corrupted ('rereads' is not files and their texts)")
    return Sample(t, wall, files, key, dropped, line, rereads)


def _json(raw: bytes) -> Any:
    """json.loads; a nesting too deep for its recursion is a ValueError like any other."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class TraceReader:
    """A trace file: `header` at once, then `events()` (Samples and Records) streamed."""

    def __init__(self, path: str, warn: Warn | None = None) -> None:
        self.path = path
        self.warnings: list[str] = []
        self._warn_cb = warn
        self._lines = _lines(path, self._warn)
        try:
            number, raw, _ = next(self._lines)
        except StopIteration:
            raise TraceError(f"{path}: empty file, not a zoomd trace") from None
        try:
            data = _json(raw)
        except ValueError:
            raise TraceError(f"{path}: not a zoomd trace (line {number} is not JSON)") from None
        self.header = check_header(data, path)
        self.lines_read = number  # the last line handed out (the header: 1)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        if self._warn_cb is not None:
            self._warn_cb(message)

    def events(self) -> Iterator[Sample | Record]:
        held: tuple[int, bytes, bool] | None = None
        for item in self._lines:
            if held is not None:
                yield self._parse(*held, last=False)
            held = item
            self.lines_read = item[0]
        if held is not None:
            number, raw, ended = held
            try:
                yield self._parse(number, raw, ended, last=True)
            except _Truncated:
                self._warn(f"{self.path}: line {number}: truncated last line skipped "
                           "(writer killed mid-write?)")

    def _parse(self, number: int, raw: bytes, ended: bool, *, last: bool) -> Sample | Record:
        where = f"{self.path}: line {number}"
        try:
            data = _json(raw)
        except ValueError as exc:
            if last and not ended:
                raise _Truncated from None
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise TraceError(f"{where}: corrupted (not JSON: {reason})") from None
        if not isinstance(data, dict):
            raise TraceError(f"{where}: corrupted (not a JSON object)")
        return _sample(data, where, number)


class _Truncated(Exception):
    pass
