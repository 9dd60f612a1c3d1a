"""Replay: feed a trace through the real readers, reclaim model and engine of each config.

One materialised tree and one HostReader per trace; per configuration its own
HostModel and Engine, ticked on the trace's clock with a backend that acts on
nothing; the engines' wall clock is the trace's. Decisions are normalised (kernel
paths, the sample's own stamp) so that the same trace and configuration give the same
output, byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from zoomd.actions.backend import ActionCall, RecordingBackend
from zoomd.actions.cgroupfs import subtree_pids
from zoomd.actions.outcome import ActionOutcome
from zoomd.config.load import load_config
from zoomd.config.runtime import Config
from zoomd.daemon.decision import Decision
from zoomd.daemon.engine import Engine
from zoomd.daemon.hostmodel import HostModel
from zoomd.daemon.log import Logger
from zoomd.daemon.pipeline import step
from zoomd.errors import KernelFileError, ZoomdError
from zoomd.host import HostReader
from zoomd.kernel import tap
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.psi import stall_percent
from zoomd.kinds import ANON_MODES
from zoomd.model.reclaim import ReclaimEstimate
from zoomd.model.snapshot import HostSnapshot
from zoomd.trace.format import TraceError, trace_name
from zoomd.trace.reader import Record, Sample, TraceReader, Warn
from zoomd.trace.tree import MaterialisedTree, Rereads


@dataclass(frozen=True)
class ConfigSpec:
    """A configuration file to replay, under a short name for reports."""

    name: str
    path: str
    config: Config


def load_specs(paths: list[str]) -> list[ConfigSpec]:
    """Load each --config; names are file stems (the path where two stems collide)."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    specs = []
    for path, stem in zip(paths, stems, strict=True):
        config, _ = load_config(path)
        specs.append(ConfigSpec(stem if stems.count(stem) == 1 else path, path, config))
    return specs


class _Null:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass


class ReplayBackend(RecordingBackend):
    """Acts on nothing; says which recorded processes the action would have reached."""

    def _answer(self, call: ActionCall) -> ActionOutcome:
        self.calls.append(call)
        pids: tuple[int, ...] = ()
        if call.target.startswith("pid:"):
            pids = (int(call.target[4:]),)
        elif call.target:
            try:
                pids = tuple(sorted(subtree_pids(call.target)))
            except (OSError, ZoomdError):
                pids = ()
        return ActionOutcome(call.action, call.target, True, "replay", pids, None, None, None)


@dataclass
class PolicyTrack:
    """Per sample interval of one policy: (start, end, monitored group stalled, holds) and
    the monitored group's memory PSI full over the interval (None: no evidence)."""

    name: str
    monitor: str
    intervals: list[tuple[float, float, bool, bool]] = field(default_factory=list)
    full_pct: list[float | None] = field(default_factory=list)
    _prev: tuple[float, int] | None = None


@dataclass
class ConfigRun:
    """One configuration's engine over one trace, and what it decided."""

    spec: ConfigSpec
    model: HostModel
    engine: Engine | None  # None: could not run on this trace (see error)
    decisions: list[Decision] = field(default_factory=list)
    tracks: dict[str, PolicyTrack] = field(default_factory=dict)
    skipped_ticks: int = 0
    error: str | None = None  # why this configuration could not run on this trace


@dataclass
class TraceResult:
    """Everything a report or plot needs about one replayed trace."""

    path: str
    name: str
    header: dict[str, Any]
    runs: list[ConfigRun]
    timeline: dict[str, list[Any]]
    live: list[dict[str, Any]]
    warnings: list[str]
    samples: int = 0
    dropped: int = 0
    skipped_samples: int = 0
    t0: float = 0.0
    t_end: float = 0.0
    replay_seconds: float = 0.0

    @property
    def duration(self) -> float:
        return max(0.0, self.t_end - self.t0)


STALL_FULL_PCT = 10.0  # a monitored group stalls when memory PSI full is above this
TIMELINE_KEYS = ("t", "psi_full_pct", "psi_some_pct", "kernel_reclaimable", "free",
                 "min_free", "kernel_retry", "anon_efficiency", "file_efficiency",
                 *(f"effective_{m}" for m in ANON_MODES))


@contextlib.contextmanager
def served(tree: MaterialisedTree) -> Iterator[Rereads]:
    """Replay's readers report to the tree's re-reads server while the trace replays."""
    server = Rereads(tree.base)
    before, tap.ACTIVE = tap.ACTIVE, server
    try:
        yield server
    finally:
        tap.ACTIVE = before


class Replayer:
    """Replays one trace under several configurations in a single pass."""

    def __init__(self, path: str, specs: list[ConfigSpec], warn: Warn | None = None,
                 stall_pct: float = STALL_FULL_PCT) -> None:
        self.path = path
        self.specs = specs
        self.warn = warn
        self.stall_pct = stall_pct
        self._wall = 0.0  # the wall time of the sample being replayed

    def _wall_clock(self) -> float:
        """The engines' wall clock: the trace's, to the millisecond."""
        return round(self._wall, 3)

    def _start(self, tree: MaterialisedTree, header: dict[str, Any]) -> tuple[
            HostReader, list[ConfigRun]]:
        try:
            host = HostReader(tree.root, int(header["page_size"]), classify=tree.classify)
            cgroups = CgroupReader(tree.root)
        except ZoomdError as exc:
            raise TraceError(f"{self.path}: first sample lacks what the readers need: "
                             f"{tree.strip(str(exc))}") from None
        vital = tuple(str(g) for g in header.get("vital_groups", ()))
        runs = []
        for spec in self.specs:
            backend = ReplayBackend()
            try:
                engine = Engine(spec.config, cgroups, backend, Logger("json", "error", _Null()),
                                scope=str(header["scope"]), dry_run=True, vital_groups=vital,
                                page_size=int(header["page_size"]),
                                wall_clock=self._wall_clock)
            except KernelFileError as exc:
                error = f"{tree.strip(exc.path)}: not in this trace (a monitored group)"
                runs.append(ConfigRun(spec, HostModel(spec.config.reclaim), None,
                                      error=error))
                if self.warn is not None:
                    self.warn(f"{self.path}: config {spec.name} not replayed: {error}")
                continue
            engine.dry_backend = backend  # dry-run must not look at this host either
            run = ConfigRun(spec, HostModel(spec.config.reclaim), engine)
            for state in engine.states:
                run.tracks[state.policy.name] = PolicyTrack(state.policy.name,
                                                            state.monitor.path)
            runs.append(run)
        return host, runs

    def run(self) -> TraceResult:
        started = time.perf_counter()
        reader = TraceReader(self.path, self.warn)
        result = TraceResult(self.path, trace_name(self.path), reader.header, [],
                             {k: [] for k in TIMELINE_KEYS}, [], reader.warnings)
        with MaterialisedTree(self.path) as tree, served(tree) as rereads:
            host: HostReader | None = None
            prev: HostSnapshot | None = None
            for event in reader.events():
                if isinstance(event, Record):
                    result.live.append({"t": event.t, "record": event.record})
                    continue
                tree.apply(event)
                if host is None:
                    host, result.runs = self._start(tree, reader.header)
                    result.t0 = event.t
                result.samples += 1
                result.dropped += event.dropped
                result.t_end = event.t
                self._wall = event.wall
                rereads.start(event.rereads)  # after start-up's reads, as the live tap
                try:
                    snap = host.sample(now=event.t)
                except ZoomdError as exc:
                    result.skipped_samples += 1
                    self._warn_once(result, f"sample at t={event.t:.3f} skipped: "
                                            f"{tree.strip(str(exc))}")
                    continue
                rereads.host_done()
                estimates = []
                for run in result.runs:
                    rereads.next_run()
                    estimates.append(self._tick(run, snap, event, tree, result))
                self._timeline(result, snap, prev, estimates[0] if estimates else None)
                prev = snap
            if host is not None:
                host.close()
            for run in result.runs:
                if run.engine is not None:
                    run.engine.close()
        if result.samples == 0:
            # Nothing to replay, and no runs to report on: refused, as any bad trace.
            raise TraceError(f"{self.path}: line {reader.lines_read}: no samples after the "
                             "header (a recording of zero length?)")
        for item in result.live:
            item["t"] = round(item["t"] - result.t0, 3)
        result.replay_seconds = time.perf_counter() - started
        return result

    def _warn_once(self, result: TraceResult, message: str) -> None:
        if message not in result.warnings:
            result.warnings.append(message)
            if self.warn is not None:
                self.warn(message)

    def _tick(self, run: ConfigRun, snap: HostSnapshot, sample: Sample,
              tree: MaterialisedTree, result: TraceResult) -> ReclaimEstimate:
        if run.engine is None:
            return run.model.update(snap)
        try:
            records: tuple[Decision, ...] = step(snap, run.model, run.engine).decisions
        except ZoomdError as exc:
            run.skipped_ticks += 1
            self._warn_once(result, f"config {run.spec.name}: tick skipped: "
                                    f"{tree.strip(str(exc))}")
            records = ()
        est = run.model.last  # this sample's, whether or not the engine's tick ran
        assert est is not None
        for record in records:
            run.decisions.append(_normalise(record, sample, tree))
        for state in run.engine.states:
            track = run.tracks.get(state.policy.name)
            if track is None:  # a template's instance, made as its group appeared
                track = run.tracks[state.policy.name] = PolicyTrack(state.policy.name,
                                                                    state.monitor.path)
            latest = state.history.latest()
            holds = state.verdict.holds  # as the engine judged it this tick
            pct = None
            if latest is not None and latest.psi_full_us is not None:
                if track._prev is not None:
                    pct = stall_percent(track._prev[1], latest.psi_full_us,
                                        latest.t - track._prev[0])
                track._prev = (latest.t, latest.psi_full_us)
            start = track.intervals[-1][1] if track.intervals else sample.t
            track.intervals.append((start, sample.t, pct is not None and pct >= self.stall_pct,
                                    holds))
            track.full_pct.append(pct)
        return est

    def _timeline(self, result: TraceResult, snap: HostSnapshot, prev: HostSnapshot | None,
                  est: ReclaimEstimate | None) -> None:
        line = result.timeline
        line["t"].append(snap.monotonic)
        full = some = None
        if prev is not None and snap.psi_memory and prev.psi_memory:
            seconds = snap.monotonic - prev.monotonic
            some = stall_percent(prev.psi_memory.some.total_us, snap.psi_memory.some.total_us,
                                 seconds)
            if snap.psi_memory.full and prev.psi_memory.full:
                full = stall_percent(prev.psi_memory.full.total_us,
                                     snap.psi_memory.full.total_us, seconds)
        line["psi_full_pct"].append(full)
        line["psi_some_pct"].append(some)
        if est is None:
            for key in TIMELINE_KEYS[3:]:
                line[key].append(None)
            return
        line["kernel_reclaimable"].append(est.kernel_reclaimable)
        line["free"].append(est.free_bytes)
        line["min_free"].append(est.min_free_bytes)
        line["kernel_retry"].append(est.kernel_would_retry)
        line["anon_efficiency"].append(est.anon_efficiency_pct)
        line["file_efficiency"].append(est.file_efficiency_pct)
        base = max(0, est.free_bytes - est.min_free_bytes) + est.file_reclaimable
        for mode in ANON_MODES:
            line[f"effective_{mode}"].append(base + est.anon_by_mode.get(mode, 0))


def _normalise(record: Decision, sample: Sample, tree: MaterialisedTree) -> Decision:
    """The engine's record with the trace's kernel paths (no temp directory).

    `monotonic` is the sample's own stamp, as the live recorder stamps its records: the
    engine rounds its copy to 3 places, and rounding that again after subtracting t0
    could land a replayed decision 1 ms from the live one it matches.
    """

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return tree.strip(value)
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [fix(v) for v in value]
        return value

    out = fix(record.to_json())
    out["monotonic"] = sample.t
    return Decision.from_json(out)
