"""Things that watch the loop without steering it: the trace recorder and the metrics.

The loop calls `observe()` after each tick with its TickResult (what the tick saw and
decided, and how long it took); an observer copies what it needs and hands any disk
or network work to its own thread, so it can never delay the next tick. Observers
read the daemon through DaemonView, never its loop.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from zoomd.config.runtime import Config
from zoomd.daemon.engine import Engine
from zoomd.daemon.log import Logger
from zoomd.daemon.pipeline import TickResult
from zoomd.host import HostReader
from zoomd.kernel.root import Root
from zoomd.kernel.tap import FileTap


class DaemonView(Protocol):
    """What observers read of the daemon (zoomd.daemon.loop.Daemon is one)."""

    root: Root
    scope: str
    host: HostReader
    engine: Engine
    config: Config
    config_files: list[str]
    logger: Logger
    tap: FileTap | None
    observers: list[TickObserver]


class TickObserver(Protocol):
    def observe(self, daemon: DaemonView, result: TickResult) -> None: ...

    def on_reload(self, daemon: DaemonView) -> None: ...

    def close(self) -> None: ...


def monitored(daemon: DaemonView) -> tuple[str, ...]:
    return tuple(sorted({s.monitor.path for s in daemon.engine.states}))


class TraceObserver:
    """`zoomd run --record FILE`: every tick's reads (the daemon's tap) and decisions."""

    def __init__(self, daemon: DaemonView, path: str) -> None:
        from zoomd.daemon.selfprotect import vital_groups
        from zoomd.kernel import tap
        from zoomd.trace.recorder import TapRecorder

        self.daemon = daemon
        try:
            self.recorder = TapRecorder(
                path, daemon.tap, scope=daemon.scope, page_size=daemon.host.page_size,
                vital_groups=vital_groups(daemon.root),
                extra={"recorder": "zoomd run", "dry_run": bool(daemon.engine.dry_run),
                       "config_files": list(daemon.config_files),
                       "monitors": list(monitored(daemon)), "tap": True})
        except BaseException:
            tap.stop(daemon.tap)  # no trace: no tap left listening
            raise

    def observe(self, daemon: DaemonView, result: TickResult) -> None:
        # The tap heard the tick's reads as they happened; they go out with its records.
        self.recorder.tick(result.host, list(result.decisions))

    def on_reload(self, daemon: DaemonView) -> None:
        pass

    def close(self) -> None:
        from zoomd.kernel import tap

        self.recorder.close()
        tap.stop(self.recorder.tap)
        writer = self.recorder.writer
        self.daemon.logger.info("trace closed", path=writer.trace.path,
                                samples=writer.trace.samples, dropped=writer.dropped,
                                write_errors=writer.errors or None)


class MetricsObserver:
    """The [metrics] table: an HTTP endpoint and/or a textfile, fed after each tick."""

    def __init__(self, daemon: DaemonView, trace: TraceObserver | None = None) -> None:
        from zoomd.metrics.collect import DaemonMetrics

        self.metrics = DaemonMetrics()
        self.trace = trace
        self.daemon = daemon
        self.server: Any = None
        self._stop = threading.Event()
        self._textfile_thread: threading.Thread | None = None
        self._start(daemon.config.metrics)

    def render(self) -> str:
        from zoomd.metrics.exposition import render

        return render(self.metrics.families())

    def _start(self, settings: Any) -> None:
        self.settings = settings
        if settings.listen:
            from zoomd.metrics.export import MetricsServer

            self.server = MetricsServer(settings.listen, self.render)
            host, port = self.server.address
            self.daemon.logger.info("metrics endpoint listening", address=f"{host}:{port}")
        if settings.textfile:
            from zoomd.metrics.export import check_textfile

            check_textfile(settings.textfile)  # refused at start, not warned every write
            self._stop.clear()
            self._textfile_thread = threading.Thread(
                target=self._textfile_loop, name="zoomd-textfile", daemon=True)
            self._textfile_thread.start()

    def _write_textfile(self) -> None:
        from zoomd.metrics.export import write_textfile

        try:
            write_textfile(self.settings.textfile, self.render())
        except OSError as exc:
            self.daemon.logger.warning("cannot write the metrics textfile",
                                       path=self.settings.textfile, error=str(exc))

    def _textfile_loop(self) -> None:
        while not self._stop.wait(self.settings.textfile_interval):
            self._write_textfile()

    def _stop_exports(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._textfile_thread is not None:
            self._stop.set()
            self._textfile_thread.join(5.0)
            self._textfile_thread = None
            self._write_textfile()

    def observe(self, daemon: DaemonView, result: TickResult) -> None:
        self.metrics.observe(daemon.engine, result)
        if self.trace is not None:
            self.metrics.extra["zoomd_trace_dropped_samples_total"] = \
                self.trace.recorder.dropped

    def on_reload(self, daemon: DaemonView) -> None:
        if daemon.config.metrics != self.settings:
            self._stop_exports()
            self._start(daemon.config.metrics)

    def close(self) -> None:
        self._stop_exports()


def reload_observers(daemon: DaemonView) -> None:
    """Give each observer the new configuration, and start [metrics] when a reload
    turns it on (make_observers, at start, only made it when it was on then)."""
    for obs in daemon.observers:
        obs.on_reload(daemon)
    settings = daemon.config.metrics
    if (settings.listen or settings.textfile) and \
            not any(isinstance(o, MetricsObserver) for o in daemon.observers):
        trace = next((o for o in daemon.observers if isinstance(o, TraceObserver)), None)
        daemon.observers.append(MetricsObserver(daemon, trace))


def make_observers(daemon: DaemonView, record: str | None) -> list[TickObserver]:
    """The observers a daemon's options and configuration ask for."""
    out: list[TickObserver] = []
    trace = TraceObserver(daemon, record) if record else None
    if trace is not None:
        out.append(trace)
    settings = getattr(daemon.config, "metrics", None)
    if settings is not None and (settings.listen or settings.textfile):
        try:
            out.append(MetricsObserver(daemon, trace))
        except BaseException:
            for obs in out:
                obs.close()
            raise
    return out
