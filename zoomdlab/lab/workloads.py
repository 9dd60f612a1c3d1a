"""The lab's workloads: small stdlib-only programs with bounded size and duration.

Run as `python -m zoomdlab.lab.workload <name> [--size N] [--duration S]`. Each prints
progress as JSON lines on stdout (monotonic `t`, wall `wall`, `iter`, ...) so the
harness can record progress next to PSI, and exits 0 at --duration or on SIGTERM.

- thrash: a working set 2-3x the memory limit, each page half random and half zero
  (compresses about 2:1), written one byte per 4 KiB page, pass after pass: the
  production brownout.
- compressible: more data than the limit but almost all zeros (a few distinct bytes
  per page, so zram's same-page dedup does not hide it), and a hot set that fits; it
  loops over the hot set and slowly visits the cold set. It must keep making progress.
- bystander: fixed small CPU+memory work every 10 ms, timing each iteration; prints
  p50/p99 at exit.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import struct
import sys
import time
import zlib
from array import array
from collections.abc import Callable
from types import FrameType

PAGE = 4096
MAX_SIZE = 2 << 30  # 2 GiB: the lab host has 24 GiB, and hogs stay bounded
MAX_DURATION = 3600.0
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'512M', '1.25G', '4096' -> bytes (binary units; a trailing 'B'/'iB' is allowed)."""
    s = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = s[-1] if s and s[-1] in _UNITS else ""
    number = s[: len(s) - len(unit)] if unit else s
    try:
        return int(float(number) * _UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None


class _Stop:
    """Deadline plus SIGTERM/SIGINT: every workload stops the same clean way."""

    def __init__(self, duration: float) -> None:
        self.deadline = time.monotonic() + duration
        self.signalled = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.signalled = True

    def __bool__(self) -> bool:
        return self.signalled or time.monotonic() >= self.deadline


class _Progress:
    """JSON progress lines, at most every `every` seconds, plus one at the end."""

    def __init__(self, workload: str, every: float = 0.25) -> None:
        self.workload = workload
        self.every = every
        self.last = 0.0

    def emit(self, force: bool = False, **fields: object) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        record = {"t": round(now, 4), "wall": round(time.time(), 4), "workload": self.workload}
        record.update(fields)
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


def _anon(size: int) -> mmap.mmap:
    """Anonymous private memory in 4 KiB pages (THP off, so reclaim works page by page)."""
    if not 0 < size <= MAX_SIZE:
        raise SystemExit(f"size {size} outside 1..{MAX_SIZE}")
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return buf


def _half_random_block(pages: int) -> bytes:
    """Pages whose first half is random and second half zero: about 2:1 under lzo/lz4."""
    half = PAGE // 2
    rnd = os.urandom(pages * half)
    zeros = bytes(half)
    return b"".join(rnd[i * half : (i + 1) * half] + zeros for i in range(pages))


def _fill(
    buf: mmap.mmap,
    start: int,
    end: int,
    make_block: Callable[[int, int], bytes],
    stop: _Stop,
    progress: _Progress,
    rate: int = 0,
    block_pages: int = 256,
) -> bool:
    """Fill [start, end) block by block, at most `rate` bytes/s if set; False when stopped."""
    off, t0 = start, time.monotonic()
    while off < end:
        if stop:
            return False
        n = min(block_pages * PAGE, end - off)
        buf[off : off + n] = make_block(off, n // PAGE)
        off += n
        if rate:
            ahead = (off - start) / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        progress.emit(phase="fill", bytes_filled=off, iter=0, pages_touched=off // PAGE)
    return True


def _touch(buf: mmap.mmap, start: int, end: int, value: int) -> int:
    """Write one byte into every page of [start, end); returns pages touched."""
    pages = (end - start + PAGE - 1) // PAGE
    buf[start:end:PAGE] = bytes((value & 0xFF,)) * pages
    return pages


def thrash(size: int, duration: float, chunk: int = 16 << 20) -> int:
    stop, progress = _Stop(duration), _Progress("thrash")
    size -= size % PAGE
    buf = _anon(size)
    if not _fill(buf, 0, size, lambda _off, pages: _half_random_block(pages), stop, progress):
        progress.emit(force=True, phase="done", iter=0, pages_touched=0)
        return 0
    iteration, touched, worst, since, t_since = 0, 0, 0.0, 0, time.monotonic()
    while not stop:
        iteration += 1
        t0 = time.monotonic()
        off = 0
        while off < size and not stop:
            # One byte per page, at offset 1 (in the random half): the page is dirtied.
            touched += _touch(buf, off + 1, min(off + chunk, size), iteration)
            off += chunk
        took = time.monotonic() - t0
        if off < size:
            iteration -= 1  # a pass cut short by the deadline is not an iteration
            break
        worst, since = max(worst, took), since + 1
        now = time.monotonic()
        if now - progress.last >= progress.every:
            progress.emit(
                phase="run",
                iter=iteration,
                pages_touched=touched,
                iter_seconds=round((now - t_since) / since, 6),
                max_iter_seconds=round(worst, 6),
            )
            worst, since, t_since = 0.0, 0, now
    progress.emit(force=True, phase="done", iter=iteration, pages_touched=touched)
    return 0


def _sparse_block(off: int, pages: int) -> bytes:
    """Mostly-zero pages with a few distinct bytes each (page number, a marker, a checksum)."""
    out = bytearray(pages * PAGE)
    for i in range(pages):
        n = off // PAGE + i
        base = i * PAGE
        struct.pack_into("<QQ", out, base, n, 0x5A5A5A5A5A5A5A5A)
        struct.pack_into("<I", out, base + PAGE // 2, zlib.crc32(n.to_bytes(8, "little")))
    return bytes(out)


def compressible(
    size: int,
    hot: int,
    duration: float,
    cold_bytes_per_s: int = 4 << 20,
    pause: float = 0.002,
    fill_rate: int = 0,
) -> int:
    stop, progress = _Stop(duration), _Progress("compressible")
    size -= size % PAGE
    hot = min(hot - hot % PAGE, size)
    buf = _anon(size)
    ok = _fill(
        buf, 0, hot, lambda _off, pages: _half_random_block(pages), stop, progress, fill_rate
    )
    if ok:
        ok = _fill(buf, hot, size, _sparse_block, stop, progress, fill_rate)
    iteration, touched, cold_cursor, cold_touched = 0, 0, hot, 0
    worst, since, t_since, t_cold = 0.0, 0, time.monotonic(), time.monotonic()
    while ok and not stop:
        iteration += 1
        t0 = time.monotonic()
        touched += _touch(buf, 1, hot, iteration)
        took = time.monotonic() - t0
        worst, since = max(worst, took), since + 1
        now = time.monotonic()
        if size > hot and now - t_cold >= 0.25:
            # Visit the cold set slowly: a quarter-second's worth of the rate, round robin.
            n = max(PAGE, int(cold_bytes_per_s * (now - t_cold)))
            end = min(cold_cursor + n, size)
            touched += _touch(buf, cold_cursor + PAGE // 2 + 8, end, iteration)
            cold_touched += (end - cold_cursor) // PAGE
            cold_cursor = hot if end >= size else end
            t_cold = now
        if now - progress.last >= progress.every:
            progress.emit(
                phase="run",
                iter=iteration,
                pages_touched=touched,
                cold_pages_touched=cold_touched,
                iter_seconds=round((now - t_since) / since, 6),
                max_iter_seconds=round(worst, 6),
            )
            worst, since, t_since = 0.0, 0, now
        if pause:
            time.sleep(pause)
    progress.emit(
        force=True,
        phase="done",
        iter=iteration,
        pages_touched=touched,
        cold_pages_touched=cold_touched,
    )
    return 0


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def bystander(duration: float, period: float = 0.010, work_bytes: int = 4 << 20) -> int:
    """Every `period`: checksum 256 KiB and dirty one byte per page of `work_bytes`."""
    stop, progress = _Stop(duration), _Progress("bystander", every=1.0)
    buf = _anon(work_bytes)
    _touch(buf, 0, work_bytes, 1)
    durations, window = array("d"), array("d")
    late_worst, iteration = 0.0, 0
    next_t = time.monotonic()
    while not stop:
        iteration += 1
        t0 = time.monotonic()
        late_worst = max(late_worst, t0 - next_t)
        zlib.crc32(buf[: 256 << 10])
        _touch(buf, iteration % PAGE, work_bytes, iteration)
        took = time.monotonic() - t0
        durations.append(took)
        window.append(took)
        if t0 - progress.last >= progress.every:
            w = sorted(window)
            progress.emit(
                phase="run",
                iter=iteration,
                p50_ms=round(_quantile(w, 0.5) * 1e3, 3),
                p99_ms=round(_quantile(w, 0.99) * 1e3, 3),
                max_ms=round(w[-1] * 1e3, 3),
                max_late_ms=round(late_worst * 1e3, 3),
            )
            window, late_worst = array("d"), 0.0
        next_t += period
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_t = time.monotonic()  # overran: do not try to catch up in a burst
    s = sorted(durations)
    progress.emit(
        force=True,
        phase="done",
        iter=iteration,
        p50_ms=round(_quantile(s, 0.5) * 1e3, 3),
        p99_ms=round(_quantile(s, 0.99) * 1e3, 3),
        max_ms=round((s[-1] if s else 0) * 1e3, 3),
        count=len(s),
    )
    return 0


def _duration(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_DURATION:
        raise argparse.ArgumentTypeError(f"duration must be in (0, {MAX_DURATION}] s")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoomdlab.lab.workload")
    sub = parser.add_subparsers(dest="name", required=True)
    p = sub.add_parser("thrash", help="working set 2-3x the limit, half compressible")
    p.add_argument("--size", type=parse_size, required=True, help="bytes, e.g. 640M (<= 2G)")
    p.add_argument("--duration", type=_duration, default=60.0)
    p = sub.add_parser("compressible", help="large, highly compressible, small hot set")
    p.add_argument("--size", type=parse_size, required=True)
    p.add_argument("--hot", type=parse_size, required=True, help="hot set; must fit the limit")
    p.add_argument("--cold-rate", type=parse_size, default=4 << 20, help="cold bytes per s")
    p.add_argument("--pause", type=float, default=0.002, help="sleep after each hot pass")
    p.add_argument("--fill-rate", type=parse_size, default=0, help="bytes/s while filling")
    p.add_argument("--duration", type=_duration, default=60.0)
    p = sub.add_parser("bystander", help="latency-sensitive loop, p50/p99 at exit")
    p.add_argument("--period", type=float, default=0.010)
    p.add_argument("--work", type=parse_size, default=4 << 20)
    p.add_argument("--duration", type=_duration, default=60.0)
    args = parser.parse_args(argv)
    if args.name == "thrash":
        return thrash(args.size, args.duration)
    if args.name == "compressible":
        return compressible(
            args.size, args.hot, args.duration, args.cold_rate, args.pause, args.fill_rate
        )
    return bystander(args.duration, args.period, args.work)
