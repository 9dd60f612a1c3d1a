"""What the daemon exports: figures of the last tick, counters and histograms since start.

`observe()` runs in the loop after each tick and only copies numbers it already has;
`families()` builds the exposition on demand (scrape or textfile), under a lock,
from those copies. Nothing here reads a kernel file but /proc/self/statm for RSS.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field

from zoomd import __version__
from zoomd.daemon.decision import Decision
from zoomd.daemon.engine import Engine
from zoomd.daemon.pipeline import TickResult
from zoomd.kinds import ANON_MODES
from zoomd.metrics.exposition import Family, Histogram
from zoomd.model.reclaim import ReclaimEstimate
from zoomd.model.snapshot import HostSnapshot

LOOP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
EFFECT_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


def rss_bytes() -> int | None:
    """The daemon's resident set (statm field 2, in pages)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class _Group:
    """A watched group as the last tick saw it."""

    policy: str
    cgroup: str
    some_us: int | None
    full_us: int | None
    window_full_pct: float | None
    window_some_pct: float | None
    holds: bool


@dataclass
class _Tick:
    snap: HostSnapshot
    estimate: ReclaimEstimate
    groups: list[_Group] = field(default_factory=list)


class DaemonMetrics:
    """State behind /metrics and the textfile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tick: _Tick | None = None
        self.ticks = 0
        self.actions: Counter[tuple[str, str, str, str]] = Counter()
        self.loop = Histogram(LOOP_BUCKETS)
        self.effect: dict[str, Histogram] = {}
        self._pending: dict[str, float] = {}  # policy -> when its conditions began to hold
        self.extra: dict[str, float] = {}  # e.g. trace drops, set by other observers

    def observe(self, engine: Engine, result: TickResult) -> None:
        """Copy one tick's figures (engine: the daemon's Engine, read only)."""
        snap, estimate, records = result.host, result.estimate, result.decisions
        groups = []
        for state in engine.states:
            latest = state.history.latest()
            fig = state.verdict.figures
            holds = state.verdict.holds  # judged once, by the engine
            groups.append(_Group(
                state.policy.name, state.monitor.path,
                latest.psi_some_us if latest else None, latest.psi_full_us if latest else None,
                fig.pressure_full_pct if fig else None, fig.pressure_some_pct if fig else None,
                holds))
        with self._lock:
            self._tick = _Tick(snap, estimate, groups)
            self.ticks += 1
            self.loop.observe(result.seconds)
            for record in records:
                self._count(record, snap.monotonic)
            for state in engine.states:
                name = state.policy.name
                if state.pending_since is not None:
                    self._pending[name] = state.pending_since
                elif not any(r.policy == name for r in records):
                    self._pending.pop(name, None)

    def _count(self, record: Decision, now: float) -> None:
        policy = record.policy
        outcome = "ok" if record.ok else "failed"
        self.actions[(policy, record.action, record.mode, outcome)] += 1
        effect = record.outcome.seconds_to_effect
        began = self._pending.pop(policy, now)  # no pending tick seen: it fired at once
        if effect is not None:
            self.effect.setdefault(policy, Histogram(EFFECT_BUCKETS)).observe(
                max(0.0, now - began) + round(effect, 6))  # as the record says

    # -- exposition -----------------------------------------------------------------------
    def families(self) -> list[Family]:
        with self._lock:
            tick = self._tick
            fams = [self._build_info(), *self._counters()]
            if tick is not None:
                fams.extend(self._pressure(tick))
                fams.extend(self._reclaim(tick.estimate))
                fams.extend(self._swap(tick.snap))
            fams.extend(self._self())
        return fams

    def _build_info(self) -> Family:
        fam = Family("zoomd_build_info", "gauge", "zoomd's version (always 1).")
        fam.add(1, version=__version__)
        return fam

    def _counters(self) -> list[Family]:
        actions = Family("zoomd_actions_total", "counter",
                         "Actions taken (mode=acted) and would-be actions in dry-run "
                         "(mode=would), by policy, action and result.")
        for (policy, action, mode, result), n in sorted(self.actions.items()):
            actions.add(n, policy=policy, action=action, mode=mode, result=result)
        effect = Family("zoomd_trigger_to_effect_seconds", "histogram",
                        "From the policy's conditions first holding to the action's effect "
                        "(group empty or frozen).")
        for policy, hist in sorted(self.effect.items()):
            hist.export(effect, policy=policy)
        loop = Family("zoomd_loop_iteration_seconds", "histogram",
                      "Time one loop iteration (sample, model, policies, actions) took.")
        self.loop.export(loop)
        ticks = Family("zoomd_ticks_total", "counter", "Loop iterations since start.")
        ticks.add(self.ticks)
        return [actions, effect, loop, ticks]

    def _pressure(self, tick: _Tick) -> list[Family]:
        total = Family("zoomd_memory_pressure_seconds_total", "counter",
                       "Memory PSI stall time of each monitored cgroup (\"/\": the host).")
        window = Family("zoomd_memory_pressure_window_ratio", "gauge",
                        "Memory PSI over the policy's window, from totals (0-1).")
        holds = Family("zoomd_policy_conditions_hold", "gauge",
                       "1 while the policy's trigger conditions hold.")
        seen: set[str] = set()
        for g in tick.groups:
            if g.cgroup not in seen:
                seen.add(g.cgroup)
                total.add(None if g.some_us is None else g.some_us / 1e6, cgroup=g.cgroup,
                          kind="some")
                total.add(None if g.full_us is None else g.full_us / 1e6, cgroup=g.cgroup,
                          kind="full")
            for kind, pct in (("some", g.window_some_pct), ("full", g.window_full_pct)):
                window.add(None if pct is None else pct / 100.0, policy=g.policy,
                           cgroup=g.cgroup, kind=kind)
            holds.add(int(g.holds), policy=g.policy, cgroup=g.cgroup)
        return [total, window, holds]

    def _reclaim(self, est: ReclaimEstimate) -> list[Family]:
        base = max(0, est.free_bytes - est.min_free_bytes) + est.file_reclaimable
        effective = Family("zoomd_effective_available_bytes", "gauge",
                           "Free above the min watermark + reclaimable file + anon under "
                           "each anon model.")
        anon = Family("zoomd_anon_reclaimable_bytes", "gauge",
                      "Anonymous memory counted as reclaimable under each anon model.")
        for mode in ANON_MODES:
            value = est.anon_by_mode.get(mode)
            anon.add(value, mode=mode)
            effective.add(None if value is None else base + value, mode=mode)
        mode = Family("zoomd_reclaim_mode_info", "gauge",
                      "The anon model the configuration uses (always 1).")
        mode.add(1, mode=est.mode)
        simple = [
            ("zoomd_file_reclaimable_bytes", "File LRU pages, in bytes.", est.file_reclaimable),
            ("zoomd_kernel_reclaimable_bytes",
             "What zone_reclaimable_pages() counts (file + anon while swap is free).",
             est.kernel_reclaimable),
            ("zoomd_free_bytes", "MemFree.", est.free_bytes),
            ("zoomd_min_watermark_bytes", "Sum of the zones' min watermarks.",
             est.min_free_bytes),
            ("zoomd_kernel_would_retry",
             "1 when should_reclaim_retry()'s watermark test passes (reclaimable + free "
             "above min).", int(est.kernel_would_retry)),
        ]
        out = [effective, anon, mode]
        for name, text, value in simple:
            fam = Family(name, "gauge", text)
            fam.add(value)
            out.append(fam)
        eff = Family("zoomd_reclaim_efficiency_ratio", "gauge",
                     "Pages stolen / scanned over the last ~5 s, by LRU (absent without "
                     "enough scanning to judge).")
        eff.add(None if est.anon_efficiency_pct is None else est.anon_efficiency_pct / 100,
                lru="anon")
        eff.add(None if est.file_efficiency_pct is None else est.file_efficiency_pct / 100,
                lru="file")
        out.append(eff)
        return out

    def _swap(self, snap: HostSnapshot) -> list[Family]:
        devices = Family("zoomd_swap_devices", "gauge", "Active swap devices by kind.")
        kinds = Counter((s.kind.kind, str(s.kind.ram_backed).lower()) for s in snap.swaps)
        for (kind, ram), n in sorted(kinds.items()):
            devices.add(n, kind=kind, ram_backed=ram)
        size = Family("zoomd_swap_size_bytes", "gauge", "Size of each swap device.")
        used = Family("zoomd_swap_used_bytes", "gauge", "Used space of each swap device.")
        for s in snap.swaps:
            size.add(s.entry.size_bytes, device=s.entry.path, kind=s.kind.kind)
            used.add(s.entry.used_bytes, device=s.entry.path, kind=s.kind.kind)
        ratio = Family("zoomd_zram_compression_ratio", "gauge",
                       "Data stored per byte of RAM the zram pool uses (absent when empty).")
        pool = Family("zoomd_zram_pool_bytes", "gauge", "RAM used by the zram pool "
                      "(mem_used_total).")
        stored = Family("zoomd_zram_stored_bytes", "gauge", "Uncompressed data stored "
                        "(orig_data_size).")
        limit = Family("zoomd_zram_pool_limit_bytes", "gauge", "mem_limit (0: no limit).")
        for z in snap.zram:
            ratio.add(z.mm_stat.compression_ratio, device=z.name)
            pool.add(z.mm_stat.mem_used_total, device=z.name)
            stored.add(z.mm_stat.orig_data_size, device=z.name)
            limit.add(z.mm_stat.mem_limit, device=z.name)
        return [devices, size, used, ratio, pool, stored, limit]

    def _self(self) -> list[Family]:
        rss = Family("zoomd_resident_memory_bytes", "gauge", "The daemon's resident memory.")
        rss.add(rss_bytes())
        out = [rss]
        for name, value in sorted(self.extra.items()):
            fam = Family(name, "counter" if name.endswith("_total") else "gauge",
                         name.replace("_", " "))
            fam.add(value)
            out.append(fam)
        return out
