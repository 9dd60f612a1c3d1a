"""A VM run's numbers, all in guest time, from the files the guest wrote.

On top of the cgroup lab's summary (brownout from *host-wide* memory PSI full over
1 s >= 10%, reclaim efficiency, zram peak, workload exit) it adds:
- actions: what the daemon under test did and when (zoomd's decision records,
  earlyoom's and nohang's "sending SIG..." lines), onset to first action, action
  to memory returned (zram holding under 10% of what it held at the action), and
  false actions (any action on something other than the workload, and any action
  at all in global-compressible);
- the daemon's CPU and RSS from /usr/bin/time -v;
- the kernel's view: per sample, should_reclaim_retry()'s estimate for the largest
  zone, zone_reclaimable_pages() (file LRU + anon LRU while any swap slot is free)
  + free pages, against the zone's min watermark, and whether reclaim made any
  progress (pgsteal grew: no_progress_loops is reset); next to zoomd's model of the
  same samples (effective available, anon efficiency, refault rate, and whether
  the default policy's conditions hold: "stuck").
"""

from __future__ import annotations

import json
import os
import re
import statistics
from itertools import pairwise
from typing import Any

from zoomdlab.lab.summary import summarize
from zoomdlab.lab.timeline import read_timeline

MiB = 1 << 20
PAGE = 4096
_EARLYOOM = re.compile(r"sending (SIG\w+) to process (\d+)")
_NOHANG_SEND = re.compile(r"Sending (SIG\w+) to the victim")
_NOHANG_PID = re.compile(r"PID:\s+(\d+)")


def parse_time_v(path: str) -> dict[str, Any] | None:
    """/usr/bin/time -v: CPU seconds, max RSS (KiB), wall, exit status."""
    if not os.path.exists(path):
        return None
    fields: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.strip().rpartition(": ")
            if sep:
                fields[key] = value
    if "User time (seconds)" not in fields:
        return None  # the daemon or the guest died before time(1) could report
    try:
        user = float(fields.get("User time (seconds)", "nan"))
        system = float(fields.get("System time (seconds)", "nan"))
        rss = int(fields.get("Maximum resident set size (kbytes)", "0"))
    except ValueError:
        return None
    wall = fields.get("Elapsed (wall clock) time (h:mm:ss or m:ss)", "")
    seconds = 0.0
    for part in wall.split(":"):
        try:
            seconds = seconds * 60 + float(part)
        except ValueError:
            seconds = float("nan")
    return {
        "cpu_user_s": user,
        "cpu_system_s": system,
        "cpu_s": round(user + system, 2),
        "wall_s": round(seconds, 1),
        "cpu_pct": round(100 * (user + system) / seconds, 2) if seconds > 0 else None,
        "max_rss_kib": rss,
    }


def parse_actions(records: list[dict[str, Any]], workload_pid: int | None) -> list[dict]:
    """Actions of the daemon under test: t, kind, victim, and whether it is the workload."""
    actions: list[dict[str, Any]] = []
    nohang_pid: int | None = None
    for rec in records:
        if rec.get("type") != "daemon":
            continue
        line = rec.get("line", "")
        t = rec["t"]
        if line.startswith("<6>record ") or (line.startswith("{") and '"victim"' in line):
            try:
                body = json.loads(line.removeprefix("<6>record "))
            except json.JSONDecodeError:
                continue
            if "victim" not in body or body.get("dry_run"):
                continue
            victim = str(body["victim"])
            t = float(body.get("monotonic", t))  # the decision, not the log line's arrival
            process = body.get("process")  # a process chosen where no group could be
            on_workload = process.get("pid") == workload_pid \
                if isinstance(process, dict) else victim.rstrip("/").endswith("/workload")
            actions.append({"t": t, "by": "zoomd", "action": body.get("action"),
                            "victim": victim, "on_workload": on_workload,
                            "summary": body.get("summary")})
            continue
        m = _EARLYOOM.search(line)
        if m:
            pid = int(m.group(2))
            actions.append({"t": t, "by": "earlyoom", "action": m.group(1), "victim": pid,
                            "on_workload": pid == workload_pid, "summary": line})
            continue
        m = _NOHANG_PID.search(line)
        if m:
            nohang_pid = int(m.group(1))
        m = _NOHANG_SEND.search(line)
        if m:
            actions.append({"t": t, "by": "nohang", "action": m.group(1), "victim": nohang_pid,
                            "on_workload": nohang_pid == workload_pid, "summary": line})
    return actions


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _frac(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def kernel_view(records: list[dict[str, Any]], t0: float, t_from: float | None,
                t_to: float) -> dict[str, Any]:
    """should_reclaim_retry()'s arithmetic beside zoomd's model, over [t_from, t_to]."""
    if t_from is None:
        return {"window": None}
    samples = [r for r in records if r.get("type") == "sample"]
    kviews = [r for r in records if r.get("type") == "kview" and t_from <= r["t"] - t0 <= t_to]
    ratios, retry, stuck, eff_avail, anon_eff, refault, full = [], [], [], [], [], [], []
    reclaimable_mib, min_mib = [], []
    for kv in kviews:
        zones = kv.get("zones") or []
        model = kv.get("model") or {}
        if not zones:
            continue
        zone = max(zones, key=lambda z: z["managed"])
        swap_free = model.get("swap_free", 1)
        reclaimable = zone["file"] + (zone["anon"] if swap_free > 0 else 0)
        available = reclaimable + zone["free"]
        reclaimable_mib.append(reclaimable * PAGE / MiB)
        min_mib.append(zone["min"] * PAGE / MiB)
        ratios.append(available / zone["min"] if zone["min"] else float("inf"))
        retry.append(available > zone["min"])
        if "stuck" in model:
            stuck.append(bool(model["stuck"]))
            window = model.get("window") or {}
            if window.get("refault_rate_pct") is not None:
                refault.append(window["refault_rate_pct"])
            if window.get("memory_pressure_full_pct") is not None:
                full.append(window["memory_pressure_full_pct"])
            if window.get("anon_efficiency_pct") is not None:
                anon_eff.append(window["anon_efficiency_pct"])
        if model.get("effective_available") is not None:
            eff_avail.append(model["effective_available"] / MiB)
    window_samples = [s for s in samples if t_from <= s["t"] - t0 <= t_to]
    progress = []
    for a, b in pairwise(window_samples):
        va, vb = a.get("vmstat", {}), b.get("vmstat", {})
        stolen = sum(vb.get(k, 0) - va.get(k, 0) for k in ("pgsteal_anon", "pgsteal_file"))
        progress.append(stolen > 0)
    first, last = (window_samples[0], window_samples[-1]) if window_samples else ({}, {})
    vm0, vm1 = first.get("vmstat", {}), last.get("vmstat", {})
    scanned = vm1.get("pgscan_direct", 0) - vm0.get("pgscan_direct", 0)
    stolen = vm1.get("pgsteal_direct", 0) - vm0.get("pgsteal_direct", 0)
    return {
        "window_s": [round(t_from, 2), round(t_to, 2)],
        "samples": len(kviews),
        "kernel_reclaimable_mib_median": _median(reclaimable_mib),
        "min_watermark_mib": _median(min_mib),
        "kernel_available_over_min_median": _median([r for r in ratios if r != float("inf")]),
        "kernel_would_retry_frac": _frac(retry),
        "reclaim_progress_frac": _frac(progress),
        "allocstall_delta": vm1.get("allocstall_normal", 0) - vm0.get("allocstall_normal", 0),
        "direct_reclaim_efficiency": round(stolen / scanned, 3) if scanned else None,
        "oom_kill_delta": vm1.get("oom_kill", 0) - vm0.get("oom_kill", 0),
        "zoomd_model_stuck_frac": _frac(stuck),
        "zoomd_effective_available_mib_median": _median(eff_avail),
        "zoomd_anon_efficiency_pct_median": _median(anon_eff),
        "zoomd_refault_rate_pct_median": _median(refault),
        "zoomd_psi_full_pct_median": _median(full),
    }


def _memory_returned(records: list[dict[str, Any]], t_action: float) -> float | None:
    """Seconds from the action until zram holds under 10% of what it held just before.

    "Just before" is the peak over the 2 s up to the action: a log line can arrive
    after the kill has already freed the memory.
    """
    samples = [r for r in records if r.get("type") == "sample" and "zram" in r]
    before = [s["zram"].get("mem_used_total", 0) for s in samples
              if t_action - 2.0 <= s["t"] <= t_action]
    if not before:
        return None
    held = max(before)
    back = next((s["t"] for s in samples
                 if s["t"] > t_action and s["zram"].get("mem_used_total", 0) <= held / 10), None)
    return round(back - t_action, 2) if back is not None else None


def summarize_vm(out: str) -> dict[str, Any]:
    """The run's summary (see the module docstring); an `error` key when the guest failed."""
    path = os.path.join(out, "timeline.jsonl")
    if not os.path.exists(path):
        return {"error": "no timeline: the guest did not run (see console.log, guest.log)"}
    base = summarize(path)
    if "error" in base:
        return base
    records = list(read_timeline(path))
    start = next(r for r in records if r.get("type") == "run_start")
    t0 = start["t"]
    end = next((r["t"] for r in records if r.get("type") == "run_end"), records[-1]["t"])
    scenario = start.get("scenario", "")
    wl = next((r for r in records if r.get("type") == "workload_start"), {})
    actions = parse_actions(records, wl.get("pid"))
    first = actions[0] if actions else None
    onset = base.get("brownout_onset_s")
    out_: dict[str, Any] = dict(base)
    out_["daemon"] = start.get("daemon") or "kernel"
    out_["guest_kernel"] = start.get("kernel")
    out_["actions"] = [{**a, "t": round(a["t"] - t0, 2)} for a in actions]
    out_["first_action_s"] = round(first["t"] - t0, 2) if first else None
    out_["onset_to_action_s"] = (
        round(first["t"] - t0 - onset, 2) if first and onset is not None else None
    )
    out_["action_to_memory_returned_s"] = (
        _memory_returned(records, first["t"]) if first else None
    )
    exit_ = next((r for r in records if r.get("type") == "exit"), None)
    hit = next((a for a in actions if a["on_workload"]), None)
    if exit_ is not None and hit is not None and hit["t"] <= exit_["t"] \
            and not base.get("workload_killed"):
        # SIGTERM: the lab workloads stop cleanly (exit 0), but it was the daemon's doing.
        out_["workload_killed"] = True
        out_["workload_killed_by"] = (f"{hit['by']} {hit['action']}; the workload exited "
                                      f"{exit_['returncode']} {exit_['t'] - hit['t']:.1f} s later")
        out_["onset_to_kill_s"] = (round(exit_["t"] - t0 - onset, 2)
                                   if onset is not None else None)
    if exit_ is not None and out_.get("workload_killed"):
        out_["kill_to_zram_released_s"] = _memory_returned(records, exit_["t"])
    false = [a for a in actions if not a["on_workload"]]
    if scenario == "global-compressible":
        false = actions
    out_["false_actions"] = len(false)
    bystander = next((r for r in records if r.get("type") == "bystander"), None)
    if bystander is not None:  # global-thrash-root: the small group beside the workload
        # Alive at the workload's exit, or ended by its own --duration: not killed.
        rc = bystander.get("returncode")
        out_["bystander_killed"] = not bystander.get("alive") and (rc is None or rc < 0)
    if scenario == "global-compressible" and base.get("workload_killed") and not actions:
        out_["false_actions"] = 1  # killed by something we could not parse
    if (exit_ is not None and not out_.get("workload_killed") and onset is not None
            and isinstance(base.get("brownout_s"), (int, float))
            and base["brownout_ended_s"] >= exit_["t"] - t0 - 2.0):
        # It ended because the workload stopped at --duration: nothing ended it.
        out_["brownout_s"] = "never"
        out_["brownout_open_at_end_s"] = round(exit_["t"] - t0 - onset, 2)
        out_["brownout_ended_by"] = "the workload's own end at --duration"
    out_["daemon_resources"] = parse_time_v(os.path.join(out, "daemon.time"))
    # The kernel's view over the brownout (or the whole run if there was none).
    brown_end = base.get("brownout_ended_s")
    t_to = brown_end if isinstance(brown_end, (int, float)) else end - t0
    if first is not None:
        t_to = min(t_to, first["t"] - t0)
    out_["kernel_view"] = kernel_view(records, t0, onset if onset is not None else 0.0, t_to)
    stuck_at = next((r["t"] - t0 for r in records if r.get("type") == "kview"
                     and r["t"] >= t0 and (r.get("model") or {}).get("stuck")), None)
    out_["zoomd_model_first_stuck_s"] = round(stuck_at, 2) if stuck_at is not None else None
    return out_
