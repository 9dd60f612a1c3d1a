"""Recording: `zoomd record` on its own clock, and `zoomd run --record` after every tick.

Files are read in the caller's thread, at the moment they describe; encoding, diffs,
compression and the disk belong to the writer thread, so a slow disk costs dropped
samples (counted in the trace) and never a late tick.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

from zoomd.daemon.engine import scoped
from zoomd.errors import ZoomdError, exit_status
from zoomd.host import default_page_size
from zoomd.kernel.root import Root
from zoomd.trace.capture import (
    DEFAULT_STATIC_EVERY,
    DEFAULT_SUBTREE_EVERY,
    Capturer,
    record_paths_exist,
)
from zoomd.trace.format import make_header
from zoomd.trace.writer import DEFAULT_KEEP, DEFAULT_MAX_BYTES, BackgroundWriter, TraceFile


def monitors_of(config_path: str | None, scope: str) -> tuple[str, ...]:
    """The groups a configuration watches, re-rooted under the scope (`zoomd record`;
    the daemon passes its own, and never loads the schema)."""
    from zoomd.config.load import load_config

    config, _ = load_config(config_path)
    return tuple(sorted({scoped(p.monitor, scope) for p in config.policy}))


class TickRecorder:
    """Captures a sample (and the tick's decision records) into a background writer."""

    def __init__(self, path: str, root: Root, *, scope: str, monitors: tuple[str, ...],
                 page_size: int | None = None, vital_groups: tuple[str, ...] = (),
                 max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP,
                 subtree_every: int = DEFAULT_SUBTREE_EVERY,
                 static_every: int = DEFAULT_STATIC_EVERY, hostname: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        missing = record_paths_exist(root)
        if missing:
            raise ZoomdError(f"cannot record: {', '.join(root.join(p) for p in missing)} "
                             "missing")
        self.capturer = Capturer(root, scope=scope, monitors=monitors,
                                 subtree_every=subtree_every, static_every=static_every)
        if scope not in ("", "/") and (self.capturer.cgroups is None
                                        or not self.capturer.cgroups.exists(scope)):
            raise ZoomdError(f"cannot record: scope {scope} is not a cgroup2 group here")
        header = make_header(page_size=page_size or default_page_size(), scope=scope,
                             started_wall=time.time(), hostname=hostname,
                             vital_groups=list(vital_groups), monitors=list(monitors),
                             **(extra or {}))
        try:
            trace = TraceFile(path, header, max_bytes=max_bytes, keep=keep)
        except OSError as exc:
            raise ZoomdError(f"{path}: cannot write the trace ({exc.strerror or exc})") \
                from None
        self.writer = BackgroundWriter(trace)

    def sample(self, t: float) -> None:
        """Read the files now and queue them as the sample stamped `t`."""
        sets = self.capturer.capture()
        self.writer.submit_sample(t, time.time(), sets)

    def records(self, t: float, records: list[dict[str, Any]]) -> None:
        """Queue a tick's decision records (written before the next sample)."""
        for record in records:
            self.writer.submit_record(t, record)

    def set_monitors(self, monitors: tuple[str, ...]) -> None:
        self.capturer.set_monitors(monitors)

    @property
    def dropped(self) -> int:
        return self.writer.dropped

    def close(self) -> None:
        self.writer.close()


def record_for(path: str, root: Root, *, interval: float, duration: float | None,
               scope: str, config_path: str | None, page_size: int | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP,
               subtree_every: int = DEFAULT_SUBTREE_EVERY, hostname: str | None = None,
               ) -> int:
    """`zoomd record`: sample every `interval` until `duration` or SIGINT/SIGTERM."""
    from zoomd.daemon.selfprotect import vital_groups

    stop = threading.Event()
    stopped_by: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopped_by.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    recorder = TickRecorder(
        path, root, scope=scope, monitors=monitors_of(config_path, scope),
        page_size=page_size, vital_groups=vital_groups(root), max_bytes=max_bytes,
        keep=keep, subtree_every=subtree_every, hostname=hostname,
        extra={"interval": interval, "recorder": "zoomd record"})
    started = time.monotonic()
    next_at = started
    samples = 0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            recorder.sample(now)
            samples += 1
            next_at += interval
            if next_at < time.monotonic():  # fell behind: skip, never burst
                next_at = time.monotonic() + interval
            stop.wait(max(0.0, next_at - time.monotonic()))
    finally:
        recorder.close()
    writer = recorder.writer
    print(f"zoomd: recorded {samples} samples to {path} ({writer.dropped} dropped, "
          f"{writer.trace.rotations} rotations, {writer.errors} write errors)",
          file=sys.stderr)
    if writer.last_error:
        print(f"zoomd: last write error: {writer.last_error}", file=sys.stderr)
    return exit_status(stopped_by[0] if stopped_by else None)
