"""The lab's timeline: kernel counters sampled at 10 Hz, plus events, as JSON lines.

One file per run, one JSON object per line, each with wall-clock `wall` and monotonic
`t`. Samples (`"type": "sample"`) carry cumulative counters and per-cgroup PSI as
percentages over the last interval and over the last second (from `total` deltas, so
any other window can be recomputed later). Anything else (workload progress, daemon
output, lab actions) goes in through `event()`. Files stay open and are re-read with
os.pread, so sampling itself allocates and walks paths as little as possible.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from zoomd.kernel.swaps import unescape_octal
from zoomd.kernel.zram import MM_STAT_COLUMNS

VMSTAT_FIELDS = (
    "pgscan_anon",
    "pgscan_file",
    "pgsteal_anon",
    "pgsteal_file",
    "pgscan_direct",
    "pgsteal_direct",
    "pgscan_kswapd",
    "pgsteal_kswapd",
    "allocstall_normal",
    "workingset_refault_anon",
    "workingset_refault_file",
    "pswpin",
    "pswpout",
    "oom_kill",
)


class _Open:
    """A kernel file kept open and re-read from offset 0; None once it is gone."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def read(self) -> str | None:
        if self.fd is None:
            return None
        try:
            return os.pread(self.fd, 65536, 0).decode()
        except OSError:  # ENODEV after the cgroup is removed
            self.close()
            return None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _open_if_exists(path: str | None) -> _Open | None:
    if path is None or not os.path.exists(path):
        return None
    return _Open(path)


def parse_psi(text: str) -> dict[str, int]:
    """`some ... total=N` / `full ... total=N` -> {'some': N, 'full': N} (microseconds)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key == "total":
                out[kind] = int(value)
    return out


def parse_keyed(text: str, wanted: tuple[str, ...] | None = None) -> dict[str, int]:
    """`name value` lines (vmstat, memory.stat, oom_control) -> {name: value}, by name."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and (wanted is None or parts[0] in wanted):
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_swaps(text: str) -> dict[str, dict[str, int]]:
    """/proc/swaps by column name: {name: {"size_kib", "used_kib", "priority"}}."""
    lines = text.splitlines()
    if not lines:
        return {}
    header = lines[0].lower().split()
    out: dict[str, dict[str, int]] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(), strict=False))
        if "filename" in row:
            out[unescape_octal(row["filename"])] = {
                "size_kib": int(row.get("size", 0)),
                "used_kib": int(row.get("used", 0)),
                "priority": int(row.get("priority", 0)),
            }
    return out


def parse_mm_stat(text: str) -> dict[str, int]:
    """zram mm_stat by column name; older kernels print fewer columns."""
    return {name: int(v) for name, v in zip(MM_STAT_COLUMNS, text.split(), strict=False)}


@dataclass
class _Group:
    """Open files of one cgroup and its recent PSI totals for the 1 s window."""

    name: str
    pressure: _Open | None
    usage: _Open | None  # v1 memory.usage_in_bytes or v2 memory.current
    oom: _Open | None  # v1 memory.oom_control or v2 memory.events (oom_kill by name)
    history: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=64))


def _pct(delta_us: int, seconds: float) -> float:
    return round(100.0 * delta_us / (seconds * 1e6), 3) if seconds > 0 else 0.0


class Timeline:
    """A recorder thread writing samples (and any events) to one JSON-lines file."""

    def __init__(
        self,
        path: str,
        groups: Mapping[str, tuple[str | None, str | None]],
        zram_sysfs: str | None = None,
        interval: float = 0.1,
    ) -> None:
        """`groups`: name -> (v2 dir, v1 memory dir or None); host PSI is always added."""
        self.path = path
        self.interval = interval
        self._file: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._groups = [_Group("host", _open_if_exists("/proc/pressure/memory"), None, None)]
        for name, (v2, v1) in groups.items():
            mem_dir = v1 or v2
            usage = "memory.usage_in_bytes" if v1 else "memory.current"
            oom = "memory.oom_control" if v1 else "memory.events"
            self._groups.append(
                _Group(
                    name,
                    _open_if_exists(f"{v2}/memory.pressure" if v2 else None),
                    _open_if_exists(f"{mem_dir}/{usage}" if mem_dir else None),
                    _open_if_exists(f"{mem_dir}/{oom}" if mem_dir else None),
                )
            )
        self._vmstat = _Open("/proc/vmstat")
        self._mm_stat = _open_if_exists(f"{zram_sysfs}/mm_stat" if zram_sysfs else None)
        self._swaps = _Open("/proc/swaps")
        self.samples = 0

    def event(self, kind: str, **fields: Any) -> None:
        """Append a record (`"type": kind`) with the current wall and monotonic times."""
        record: dict[str, Any] = {"type": kind, "wall": round(time.time(), 4)}
        record["t"] = round(time.monotonic(), 4)
        record.update(fields)
        self._write(record)

    def _write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(line)
                self._file.flush()

    def sample(self) -> dict[str, Any]:
        """Read everything once and write one sample record."""
        now = time.monotonic()
        record: dict[str, Any] = {"type": "sample", "wall": round(time.time(), 4), "t": now}
        psi: dict[str, Any] = {}
        mem: dict[str, Any] = {}
        for g in self._groups:
            text = g.pressure.read() if g.pressure else None
            if text is not None:
                psi[g.name] = self._psi_entry(g, now, parse_psi(text))
            usage = g.usage.read() if g.usage else None
            if usage is not None:
                entry: dict[str, int] = {"usage": int(usage.split()[0])}
                oom_text = g.oom.read() if g.oom else None
                if oom_text is not None:
                    counters = parse_keyed(oom_text, ("oom_kill", "oom"))
                    entry.update(counters)
                mem[g.name] = entry
        record["t"] = round(now, 4)
        record["psi"] = psi
        record["mem"] = mem
        vmstat = self._vmstat.read()
        record["vmstat"] = parse_keyed(vmstat, VMSTAT_FIELDS) if vmstat else {}
        mm = self._mm_stat.read() if self._mm_stat else None
        if mm is not None:
            record["zram"] = parse_mm_stat(mm)
        swaps = self._swaps.read()
        if swaps is not None:
            record["swaps"] = parse_swaps(swaps)
        self._write(record)
        self.samples += 1
        return record

    @staticmethod
    def _psi_entry(g: _Group, now: float, totals: dict[str, int]) -> dict[str, Any]:
        some, full = totals.get("some", 0), totals.get("full", 0)
        entry: dict[str, Any] = {"some_total": some, "full_total": full}
        if g.history:
            t0, s0, f0 = g.history[-1]
            entry["some_pct"] = _pct(some - s0, now - t0)
            entry["full_pct"] = _pct(full - f0, now - t0)
            # 1 s window: the newest sample at least one second old (or the oldest kept).
            base = g.history[0]
            for h in reversed(g.history):
                if now - h[0] >= 1.0:
                    base = h
                    break
            entry["some_1s"] = _pct(some - base[1], now - base[0])
            entry["full_1s"] = _pct(full - base[2], now - base[0])
        g.history.append((now, some, full))
        return entry

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample()
            except (OSError, ValueError) as exc:  # record, never kill the recorder
                self.event("recorder_error", error=str(exc))
            next_t += self.interval
            delay = next_t - time.monotonic()
            if delay < 0:
                next_t = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def start(self) -> Timeline:
        self._thread = threading.Thread(target=self._run, name="zoomd-lab-timeline", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and close every file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for g in self._groups:
            for f in (g.pressure, g.usage, g.oom):
                if f:
                    f.close()
        self._vmstat.close()
        self._swaps.close()
        if self._mm_stat:
            self._mm_stat.close()
        with self._lock:
            self._file.close()

    def __enter__(self) -> Timeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_timeline(path: str) -> Iterator[dict[str, Any]]:
    """Records of a timeline file, in order (a torn last line is skipped)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
