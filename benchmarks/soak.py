#!/usr/bin/env python3
"""Soak: zoomd's loop (HostReader + host model + Engine) over a changing synthetic host,
on a simulated clock, for an hour or more; watches RSS, open descriptors and tick time.

The host (benchmarks/synthhost.py, on tmpfs) changes all the time: counters move every
tick, a thrashing episode every 5 simulated minutes makes the policies fire (kill on
the host, freeze then thaw or kill in /user.slice, kill-process in /system.slice),
killed groups go away and come back 30 s later, a service is replaced every minute,
and a disk swap file joins and leaves the swap set every 15 minutes. Actions go to a
backend that applies their effect to the synthetic tree only (no signal is sent).

    python benchmarks/soak.py --hours 8            # the long run
    python benchmarks/soak.py --hours 1 --json     # machine-readable summary

tests/test_soak.py runs one simulated hour of the same in CI.
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import os
import shutil
import statistics
import sys
import time
from collections import deque
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from synthhost import SynthHost  # noqa: E402

from zoomd.actions.backend import FinishedAtOnce  # noqa: E402
from zoomd.actions.outcome import ActionOutcome  # noqa: E402
from zoomd.config.schema import validate  # noqa: E402
from zoomd.daemon.engine import Engine  # noqa: E402
from zoomd.daemon.hostmodel import HostModel  # noqa: E402
from zoomd.daemon.log import Logger  # noqa: E402
from zoomd.host import HostReader  # noqa: E402
from zoomd.kernel.cgroups import CgroupReader  # noqa: E402

POLICIES = [
    {"name": "stuck-memory", "monitor": "/", "window": "2s", "for": "1s",
     "rank": ["refaults", "memory"], "post_action_delay": "10s",
     "all": {"memory_pressure_full_above": "40%"},
     "any": {"refault_rate_above": "15%", "anon_efficiency_below": "25%",
             "effective_available_below": "3%"}},
    {"name": "user", "monitor": "/user.slice", "window": "2s", "for": "2s",
     "action": "freeze", "thaw_after": "20s", "kill_after_frozen": "40s",
     "post_action_delay": "10s", "all": {"memory_pressure_full_above": "30%"}},
    {"name": "system", "monitor": "/system.slice", "window": "2s", "for": "2s",
     "action": "kill-process", "post_action_delay": "10s",
     "all": {"memory_pressure_full_above": "30%"}},
]


class SyntheticEffects(FinishedAtOnce):
    """An ActionBackend whose kills remove groups from the synthetic tree; never signals."""

    def __init__(self, host: SynthHost) -> None:
        self.host = host
        self.killed: list[str] = []
        self.counts: dict[str, int] = {}

    def _cgpath(self, directory: str | None) -> str:
        return "/" + os.path.relpath(directory or "", self.host.cg("/")).strip(".")

    def _ok(self, action: str, target: str) -> ActionOutcome:
        self.counts[action] = self.counts.get(action, 0) + 1
        return ActionOutcome(action, target, True, "synthetic", (), 0.0, None, None)

    def kill_cgroup(self, procs_dir: str, **_: Any) -> ActionOutcome:
        self.killed.append(self._cgpath(procs_dir))
        return self._ok("kill", procs_dir)

    def kill_process(self, pid: int, **_: Any) -> ActionOutcome:
        return self._ok("kill-process", f"pid:{pid}")

    def freeze_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None,
                      **_: Any) -> ActionOutcome:
        return self._ok("freeze", v2_dir or "")

    def thaw_cgroup(self, v2_dir: str | None, v1_freezer_dir: str | None,
                    **_: Any) -> ActionOutcome:
        return self._ok("thaw", v2_dir or "")


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


WARMUP_S = 600.0


def soak(sim_seconds: float = 3600.0, groups: int = 200, seed: int = 1,
         base: str | None = None, interval: float = 1.0, fast_interval: float = 0.25,
         sample_every: float = 60.0, progress: bool = False,
         warmup_s: float = WARMUP_S) -> dict[str, Any]:
    """Run the loop for `sim_seconds` of simulated time; returns samples and a summary."""
    gc.collect()  # what earlier code left for the collector is not the soak's to count
    host = SynthHost(base, groups, seed)
    rng = host.rng
    config = validate({"policy": POLICIES})
    backend = SyntheticEffects(host)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below
    reader = HostReader(host.root, page_size=4096)
    engine = Engine(config, CgroupReader(host.root), backend, Logger("json", "info", devnull),
                    vital_groups=("/init.scope",), page_size=4096)
    model = HostModel(config.reclaim)
    leaves = [p for p in host.groups if p.endswith(".service")]
    t, ticks, wall0 = 0.0, 0, time.monotonic()
    thrashing: list[str] = []
    episode_end = -1.0
    restarts: list[tuple[float, str]] = []
    next_churn, next_swap, next_sample = 60.0, 900.0, 0.0
    swapfile = ("/var/swapfile", "file", 1048572, 0, -2)
    # The harness keeps nothing that grows, so that any growth measured is zoomd's:
    # samples go into a preallocated array, tick times into a fixed window at the
    # start (after warm-up), a rolling one at the end and a fixed histogram (10 us
    # buckets up to 1 s) for the p99.
    columns = ("t", "ticks", "rss_kib", "fds", "tick_median_us", "records_kept")
    n_samples = int(sim_seconds // sample_every) + 2
    table = array.array("q", bytes(8 * len(columns) * n_samples))
    taken = 0
    span = 600
    early: list[float] = []
    late: deque[float] = deque(maxlen=span)
    recent: deque[float] = deque(maxlen=200)
    histogram = [0] * 100_001
    try:
        while t < sim_seconds:
            pressured = bool(thrashing)
            dt = fast_interval if engine.busy or pressured else interval
            t += dt
            # -- the world changes ----------------------------------------------------
            if t >= episode_end and thrashing:
                thrashing = []
            if not thrashing and int(t) % 300 == 0 and t - int(t) < dt and t > 1:
                slice_ = rng.choice(SynthHost.SLICES)
                pool = [p for p in leaves if p.startswith(slice_ + "/") and p in host.groups]
                if pool:
                    thrashing = [rng.choice(pool)]
                    episode_end = t + 45.0
            if t >= next_churn:
                next_churn += 60.0
                quiet = [p for p in leaves if p in host.groups and p not in thrashing]
                if quiet:
                    old = rng.choice(quiet)
                    host.remove(old)
                    leaves.remove(old)
                    # A new unit in the same slice (a new name and pid, like a
                    # transient scope), so the tree keeps its size and shape.
                    parent = old.rsplit("/", 1)[0]
                    new = f"{parent}/unit{groups + ticks}.service"
                    if new not in host.groups:
                        host.add(new)
                        leaves.append(new)
            if t >= next_swap:
                next_swap += 900.0
                if swapfile in host.swaps:
                    host.swaps.remove(swapfile)
                else:
                    host.swaps.append(swapfile)
            for when, path in list(restarts):
                if t >= when:
                    restarts.remove((when, path))
                    if path not in host.groups:
                        host.add(path)
            host.advance(dt, stall_pct=60.0 if thrashing else 0.0, thrashing=thrashing)
            # -- one daemon tick (what is timed) --------------------------------------
            start = time.perf_counter()
            snap = reader.sample(now=t)
            estimate = model.update(snap)
            engine.tick(snap, estimate)
            took = time.perf_counter() - start
            recent.append(took)
            late.append(took)
            if t >= warmup_s and len(early) < span:
                early.append(took)
            histogram[min(100_000, int(took * 1e5))] += 1
            ticks += 1
            # -- what the actions did -------------------------------------------------
            for path in backend.killed:
                if path in host.groups:
                    host.remove(path)
                    if path in thrashing:
                        thrashing.remove(path)
                    restarts.append((t + 30.0, path))
            backend.killed.clear()
            if t >= next_sample and taken < n_samples:
                next_sample += sample_every
                row = (int(t), ticks, rss_kib(), open_fds(),
                       int(statistics.median(recent) * 1e6), len(engine.records))
                table[taken * len(columns):(taken + 1) * len(columns)] = \
                    array.array("q", row)
                taken += 1
                if progress:
                    print(json.dumps(dict(zip(columns, row, strict=True))), file=sys.stderr,
                          flush=True)
    finally:
        engine.close()
        reader.close()
        devnull.close()
        if base is None:
            shutil.rmtree(host.base, ignore_errors=True)
    samples = [dict(zip(columns, table[i * len(columns):(i + 1) * len(columns)], strict=True))
               for i in range(taken)]
    p99_at, seen = ticks * 0.99, 0
    p99 = 0.0
    for bucket, n in enumerate(histogram):
        seen += n
        if seen >= p99_at:
            p99 = (bucket + 1) * 1e-5
            break
    return {"samples": samples, "ticks": ticks, "simulated_s": t,
            "tick_early_median_s": statistics.median(early) if early else None,
            "tick_late_median_s": statistics.median(late) if late else None,
            "tick_p99_s": p99,
            "wall_s": time.monotonic() - wall0, "actions": dict(backend.counts),
            "groups": groups}


def summary(result: dict[str, Any], warmup_s: float = WARMUP_S) -> dict[str, Any]:
    """Growth after warm-up: RSS, descriptors, and tick time (medians of the first 600
    ticks after warm-up and of the last 600)."""
    samples = [s for s in result["samples"] if s["t"] >= warmup_s]
    first, last = samples[0], samples[-1]
    return {
        "simulated_hours": round(result["simulated_s"] / 3600, 2),
        "wall_s": round(result["wall_s"], 1), "ticks": result["ticks"],
        "actions": result["actions"], "groups": result["groups"],
        "rss_kib_after_warmup": first["rss_kib"], "rss_kib_end": last["rss_kib"],
        "rss_growth_kib": last["rss_kib"] - first["rss_kib"],
        "rss_max_kib": max(s["rss_kib"] for s in samples),
        "fds_after_warmup": first["fds"], "fds_end": last["fds"],
        "fds_max": max(s["fds"] for s in samples),
        "tick_median_ms_early": round(result["tick_early_median_s"] * 1e3, 4),
        "tick_median_ms_late": round(result["tick_late_median_s"] * 1e3, 4),
        "tick_p99_ms": round(result["tick_p99_s"] * 1e3, 2),
        "records_kept_max": max(s["records_kept"] for s in samples),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    result = soak(args.hours * 3600, args.groups, args.seed, progress=args.progress)
    out = summary(result)
    if args.json:
        print(json.dumps({"summary": out, "samples": result["samples"]}, indent=1))
    else:
        for key, value in out.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
