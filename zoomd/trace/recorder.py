"""Recording: `zoomd run --record` from the tap after every tick, `zoomd record` on its
own clock.

The daemon's trace is a tap (zoomd/kernel/tap.py): it holds the text each reader got,
never a re-read, so a replay of the same configuration reads the bytes the decision
used. `zoomd record` has no engine: it calls the readers an engine would
(standalone.py), and the same tap keeps what they read.
Encoding, diffs, compression and the disk belong to the writer thread, so a slow disk
costs dropped samples (counted in the trace) and never a late tick.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

from zoomd.daemon.decision import Decision
from zoomd.daemon.engine import scoped
from zoomd.errors import ZoomdError, exit_status
from zoomd.kernel import tap
from zoomd.kernel.root import Root
from zoomd.kernel.tap import FileTap
from zoomd.model.snapshot import HostSnapshot, SwapDevice
from zoomd.trace.format import SWAP_KINDS, make_header
from zoomd.trace.standalone import DEFAULT_SUBTREE_EVERY, RecordSampler
from zoomd.trace.tapped import Changes, TapState
from zoomd.trace.writer import DEFAULT_KEEP, DEFAULT_MAX_BYTES, BackgroundWriter, TraceFile


def monitors_of(config_path: str | None, scope: str) -> tuple[str, ...]:
    """The groups a configuration watches, re-rooted under the scope (`zoomd record`;
    the daemon passes its own, and never loads the schema)."""
    from zoomd.config.load import load_config

    config, _ = load_config(config_path)
    return tuple(sorted({scoped(p.monitor, scope) for p in config.policy}))


def swap_kinds_text(devices: tuple[SwapDevice, ...]) -> str:
    """The sampler's own verdicts on the swap devices, as the trace keeps them (replay
    cannot walk sysfs and mountinfo from a few files): JSON, sorted, stable."""
    return json.dumps({d.entry.path: [d.kind.kind, d.kind.ram_backed, d.kind.block_device,
                                      d.kind.via] for d in devices}, sort_keys=True)


def _open_trace(path: str, header: dict[str, Any], max_bytes: int, keep: int) -> TraceFile:
    try:
        return TraceFile(path, header, max_bytes=max_bytes, keep=keep)
    except OSError as exc:
        raise ZoomdError(f"{path}: cannot write the trace ({exc.strerror or exc})") \
            from None


class TapRecorder:
    """`zoomd run --record`: after each tick, what the tap heard and the tick's records.

    Memory: the tap holds references to the texts the readers made (bounded a tick by
    its max_bytes); the state holds the last text of each file; what goes to the writer
    is the changes. A sample the writer could not take keeps its changes for the next.
    """

    def __init__(self, path: str, file_tap: FileTap, *, scope: str, page_size: int,
                 vital_groups: tuple[str, ...] = (), max_bytes: int = DEFAULT_MAX_BYTES,
                 keep: int = DEFAULT_KEEP, hostname: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        header = make_header(page_size=page_size, scope=scope, started_wall=time.time(),
                             hostname=hostname, vital_groups=list(vital_groups),
                             **(extra or {}))
        self.tap = file_tap
        self.state = TapState()
        self.writer = BackgroundWriter(_open_trace(path, header, max_bytes, keep))
        self._pending: Changes = {}
        self._swaps: tuple[object, ...] | None = None

    def tick(self, snap: HostSnapshot, records: list[Decision]) -> None:
        """The tick is over: hand its reads (as changes) and records to the writer."""
        take = self.tap.take()
        changes = self.state.apply(take)
        swaps = tuple((d.entry.path, d.kind) for d in snap.swaps)
        if swaps != self._swaps:
            self._swaps = swaps
            changes[SWAP_KINDS] = swap_kinds_text(snap.swaps)
        if self._pending:
            self._pending.update(changes)
            changes = self._pending
        extra = {"over_budget": take.over_budget, "rereads": take.rereads} \
            if take.over_budget or take.rereads else None
        taken = self.writer.submit_tick(snap.monotonic, time.time(), changes,
                                        [r.to_json() for r in records], extra)
        self._pending = {} if taken else changes

    @property
    def dropped(self) -> int:
        return self.writer.dropped

    def close(self) -> None:
        self.writer.close()


def record_paths_exist(root: Root) -> list[str]:
    """Host files a recording needs that this root lacks (for an early, clear error)."""
    return [p for p in ("/proc/meminfo", "/proc/vmstat", "/proc/swaps")
            if not os.path.exists(root.join(p))]


def record_for(path: str, root: Root, *, interval: float, duration: float | None,
               scope: str, config_path: str | None, page_size: int | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP,
               subtree_every: int = DEFAULT_SUBTREE_EVERY, hostname: str | None = None,
               ) -> int:
    """`zoomd record`: sample every `interval` until `duration` or SIGINT/SIGTERM, through
    the readers (standalone.RecordSampler), the tap keeping what they read."""
    from zoomd.daemon.selfprotect import vital_groups

    missing = record_paths_exist(root)
    if missing:
        raise ZoomdError(f"cannot record: {', '.join(root.join(p) for p in missing)} "
                         "missing")
    monitors = monitors_of(config_path, scope)
    file_tap = tap.start("/" if root.is_live else root.path)
    try:
        sampler = RecordSampler(root, scope=scope, monitors=monitors,
                                subtree_every=subtree_every, page_size=page_size)
        if scope not in ("", "/") and (sampler.cgroups is None
                                        or not sampler.cgroups.exists(scope)):
            sampler.close()
            raise ZoomdError(f"cannot record: scope {scope} is not a cgroup2 group here")
        recorder = TapRecorder(
            path, file_tap, scope=scope, page_size=sampler.host.page_size,
            vital_groups=vital_groups(root), max_bytes=max_bytes, keep=keep,
            hostname=hostname, extra={"interval": interval, "recorder": "zoomd record",
                                      "monitors": list(monitors), "tap": True})
    except BaseException:
        tap.stop(file_tap)
        raise
    stop = threading.Event()
    stopped_by: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopped_by.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    started = time.monotonic()
    next_at = started
    samples = 0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            file_tap.begin()
            recorder.tick(sampler.sample(now), [])
            samples += 1
            next_at += interval
            if next_at < time.monotonic():  # fell behind: skip, never burst
                next_at = time.monotonic() + interval
            stop.wait(max(0.0, next_at - time.monotonic()))
    finally:
        recorder.close()
        sampler.close()
        tap.stop(file_tap)
    writer = recorder.writer
    print(f"zoomd: recorded {samples} samples to {path} ({writer.dropped} dropped, "
          f"{writer.trace.rotations} rotations, {writer.errors} write errors)",
          file=sys.stderr)
    if writer.last_error:
        print(f"zoomd: last write error: {writer.last_error}", file=sys.stderr)
    return exit_status(stopped_by[0] if stopped_by else None)
