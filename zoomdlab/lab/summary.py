"""Reduce a run's timeline to the numbers the benchmark reports.

Brownout: from the first sample where the workload cgroup's memory PSI `full` over the
last second is >= 10% until the last time it drops under and stays under (or the
cgroup is gone); still above at the end of the run -> "never". Computed from the
timeline file alone, so any old run can be summarised again.
"""

from __future__ import annotations

import statistics
from typing import Any

from zoomdlab.lab.timeline import read_timeline

BROWNOUT_FULL_PCT = 10.0


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def brownout(series: list[tuple[float, float]], threshold: float = BROWNOUT_FULL_PCT) -> dict:
    """`series`: (seconds since start, full % over 1 s). Onset, end, length or 'never'."""
    onset = next((t for t, v in series if v >= threshold), None)
    if onset is None:
        return {"brownout_onset_s": None, "brownout_s": 0.0, "brownout_ended_s": None}
    last_above = max(i for i, (_, v) in enumerate(series) if v >= threshold)
    if last_above == len(series) - 1:
        open_for = series[-1][0] - onset
        return {
            "brownout_onset_s": round(onset, 2),
            "brownout_s": "never",
            "brownout_open_at_end_s": round(open_for, 2),
            "brownout_ended_s": None,
        }
    end = series[last_above + 1][0]
    above = sum(
        series[i + 1][0] - series[i][0] for i in range(len(series) - 1) if series[i][1] >= threshold
    )
    return {
        "brownout_onset_s": round(onset, 2),
        "brownout_s": round(end - onset, 2),
        "brownout_ended_s": round(end, 2),
        "brownout_above_threshold_s": round(above, 2),
    }


def _window_mean(series: list[tuple[float, float]], t0: float, t1: float) -> float | None:
    values = [v for t, v in series if t0 <= t <= t1]
    return round(statistics.fmean(values), 2) if values else None


def _released_at(samples: list[dict[str, Any]], t_exit: float, key: str) -> float | None:
    """First time from the kill on when zram's `key` fell under 10% of what it held.

    "What it held" is the most in the 2 s before the exit was recorded: the lab notes
    the exit when it reaps the process, and by then the kernel may already have freed
    the slots, so the sample just before the exit can be the released value.
    """
    before = [s["zram"].get(key, 0) for s in samples
              if t_exit - 2.0 <= s["t"] <= t_exit and "zram" in s]
    held = max(before) if before else 0
    if held <= 0:
        return None
    return next(
        (
            s["t"]
            for s in samples
            if s["t"] >= t_exit - 2.0 and "zram" in s and s["zram"].get(key, 0) <= held / 10
        ),
        None,
    )


def _after_kill(
    samples: list[dict[str, Any]], t_exit: float, t0: float, onset: float | None
) -> dict[str, Any]:
    """Onset -> kill; kill -> zram slots freed (data stored under 10% of what it held at the
    kill), and kill -> zram pool memory returned (mem_used_total likewise; zsmalloc may keep
    fragmented pool pages until it compacts, so this one can lag or not happen in a run)."""
    out: dict[str, Any] = {
        "onset_to_kill_s": round(t_exit - t0 - onset, 2) if onset is not None else None
    }
    slots = _released_at(samples, t_exit, "orig_data_size")
    pool = _released_at(samples, t_exit, "mem_used_total")
    # Negative when the slots were free before the lab reaped the process: report 0.
    out["kill_to_zram_released_s"] = max(0.0, round(slots - t_exit, 2)) \
        if slots is not None else None
    out["kill_to_zram_pool_released_s"] = max(0.0, round(pool - t_exit, 2)) \
        if pool is not None else None
    return out


def summarize(timeline_path: str) -> dict[str, Any]:
    """The run summary: brownout, PSI levels, reclaim efficiency, OOM kills, bystander."""
    start: dict[str, Any] = {}
    end_t: float | None = None
    samples: list[dict[str, Any]] = []
    exits: list[dict[str, Any]] = []
    finals: dict[str, dict[str, Any]] = {}
    last_progress: dict[str, dict[str, Any]] = {}
    actions: list[dict[str, Any]] = []
    for rec in read_timeline(timeline_path):
        kind = rec.get("type")
        if kind == "run_start":
            start = rec
        elif kind == "run_end":
            end_t = rec["t"]
        elif kind == "sample":
            samples.append(rec)
        elif kind == "exit":
            exits.append(rec)
        elif kind == "progress":
            last_progress[rec.get("workload", "?")] = rec
            if rec.get("phase") == "done":
                finals[rec.get("workload", "?")] = rec
        elif kind in ("action", "daemon"):
            actions.append(rec)
    if not samples or not start:
        return {"error": "timeline has no run_start or no samples"}
    t0 = start["t"]
    t_end = end_t if end_t is not None else samples[-1]["t"]
    group = start.get("workload_group", "workload")

    def series(name: str, key: str = "full_1s") -> list[tuple[float, float]]:
        return [
            (s["t"] - t0, s["psi"][name][key])
            for s in samples
            if name in s.get("psi", {}) and key in s["psi"][name] and t0 <= s["t"] <= t_end
        ]

    full = series(group)
    run_s = t_end - t0
    out: dict[str, Any] = {
        "scenario": start.get("scenario"),
        "run_seconds": round(run_s, 2),
        "samples": len(samples),
        "sample_hz": round(len(samples) / run_s, 1) if run_s > 0 else None,
    }
    out.update(brownout(full))
    interval_full = series(group, "full_pct")
    out["workload_psi_full_pct"] = {
        "mean_run": _window_mean(interval_full, 0, run_s),
        "mean_last_10s": _window_mean(interval_full, run_s - 10, run_s),
        "max_1s": round(max((v for _, v in full), default=0.0), 2),
        "median_1s_after_onset": (
            round(statistics.median(v for t, v in full if t >= out["brownout_onset_s"]), 2)
            if out["brownout_onset_s"] is not None
            else None
        ),
    }
    host = series("host", "full_pct")
    out["host_psi_full_pct_mean"] = _window_mean(host, 0, run_s)
    first = next(s for s in samples if s["t"] >= t0)
    last = [s for s in samples if s["t"] <= t_end][-1]
    vm = {k: last["vmstat"].get(k, 0) - first["vmstat"].get(k, 0) for k in last["vmstat"]}
    out["vmstat_delta"] = vm
    out["anon_reclaim_efficiency"] = _ratio(vm.get("pgsteal_anon", 0), vm.get("pgscan_anon", 0))
    out["file_reclaim_efficiency"] = _ratio(vm.get("pgsteal_file", 0), vm.get("pgscan_file", 0))
    out["oom_kill_delta"] = vm.get("oom_kill", 0)
    zram = [s["zram"] for s in samples if "zram" in s]
    if zram:
        peak = max(zram, key=lambda z: z.get("mem_used_total", 0))
        out["zram_peak"] = {
            "mem_used_total": peak.get("mem_used_total"),
            "orig_data_size": peak.get("orig_data_size"),
            "ratio": _ratio(peak.get("orig_data_size", 0), peak.get("compr_data_size", 0)),
        }
    peaks: dict[str, int] = {}
    for s in samples:
        for name, row in s.get("swaps", {}).items():
            peaks[name] = max(peaks.get(name, 0), row["used_kib"])
    out["swap_peak_used_kib"] = peaks
    usage = [s["mem"][group]["usage"] for s in samples if group in s.get("mem", {})]
    out["workload_peak_usage"] = max(usage, default=None)
    out["workloads"] = {}
    for name, rec in last_progress.items():
        entry = {k: rec[k] for k in ("iter", "pages_touched", "phase") if k in rec}
        out["workloads"][name] = entry
    by = finals.get("bystander")
    if by:
        out["bystander"] = {k: by.get(k) for k in ("p50_ms", "p99_ms", "max_ms", "count")}
    out["exits"] = {
        e["workload"]: {
            "returncode": e.get("returncode"),
            "by": e.get("by"),
            "at_s": round(e["t"] - t0, 2),
        }
        for e in exits
    }
    main = start.get("workload_name")
    main_exit = next((e for e in exits if e["workload"] == main), None)
    killed = main_exit is not None and main_exit.get("returncode") not in (0, None)
    out["workload_killed"] = killed
    out["workload_killed_by"] = main_exit.get("by") if main_exit and killed else None
    if main_exit and killed:
        out.update(_after_kill(samples, main_exit["t"], t0, out["brownout_onset_s"]))
    out["daemon_lines"] = sum(1 for a in actions if a.get("type") == "daemon")
    return out
