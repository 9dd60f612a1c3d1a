"""`python -m zoomdlab.vmlab bench --out DIR [--runs N]`: every scenario under every daemon.

Runs go to DIR/runs/<scenario>/<daemon>/<n>/ (a run with a summary.json is not run
again, so an interrupted bench resumes); then DIR/results.json (per run and
medians), DIR/README.md (the table, the kernel, the command) and PNG timelines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from typing import Any

from zoomdlab.vmlab.provision import provision
from zoomdlab.vmlab.runner import DAEMON_NOTES, DAEMONS, SCENARIOS, VmRun, run_vm
from zoomdlab.vmlab.summary import summarize_vm


def _runs(out: str) -> dict[str, dict[str, list[tuple[str, dict[str, Any]]]]]:
    """scenario -> daemon -> [(run dir, summary)], from what is on disk."""
    found: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = {}
    base = os.path.join(out, "runs")
    for scenario in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        for daemon in sorted(os.listdir(os.path.join(base, scenario))):
            ddir = os.path.join(base, scenario, daemon)
            for n in sorted(os.listdir(ddir)):
                path = os.path.join(ddir, n, "summary.json")
                if os.path.exists(path):
                    with open(path) as f:
                        summary = json.load(f)
                    if os.path.exists(os.path.join(ddir, n, "timeline.jsonl")):
                        summary = _resummarize(os.path.join(ddir, n), summary)
                    found.setdefault(scenario, {}).setdefault(daemon, []).append(
                        (os.path.join(ddir, n), summary))
    return found


def _resummarize(run_dir: str, old: dict[str, Any]) -> dict[str, Any]:
    """Recompute a run's summary from its timeline (keeping what only the host knew)."""
    fresh = summarize_vm(run_dir)
    for key in ("vm", "kernel_package"):
        if key in old:
            fresh[key] = old[key]
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(fresh, f, indent=2)
        f.write("\n")
    return fresh


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 2) if vals else None


def aggregate(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs; a brownout still open at the end counts as longer than any."""
    n = len(summaries)
    never = [s for s in summaries if s.get("brownout_s") == "never"]
    browns = sorted((_num(s.get("brownout_s")) or 0.0) if s.get("brownout_s") != "never"
                    else float("inf") for s in summaries)
    med_brown = statistics.median(browns) if browns else None
    kv = [s.get("kernel_view") or {} for s in summaries]
    res = [s.get("daemon_resources") or {} for s in summaries]
    return {
        "runs": n,
        "brownout_s_median": (None if med_brown is None else
                              "never" if med_brown == float("inf") else round(med_brown, 2)),
        "brownout_never_runs": len(never),
        "brownout_open_at_end_s_median": _median(
            [_num(s.get("brownout_open_at_end_s")) for s in never]),
        "onset_to_action_s_median": _median([_num(s.get("onset_to_action_s"))
                                             for s in summaries]),
        "action_to_memory_returned_s_median": _median(
            [_num(s.get("action_to_memory_returned_s")) for s in summaries]),
        "workload_killed_runs": sum(bool(s.get("workload_killed")) for s in summaries),
        "false_actions_total": sum(int(s.get("false_actions") or 0) for s in summaries),
        "oom_kill_total": sum(int(s.get("oom_kill_delta") or 0) for s in summaries),
        "host_psi_full_mean_pct_median": _median(
            [_num((s.get("workload_psi_full_pct") or {}).get("mean_run")) for s in summaries]),
        "daemon_cpu_s_median": _median([_num(r.get("cpu_s")) for r in res]),
        "daemon_cpu_pct_median": _median([_num(r.get("cpu_pct")) for r in res]),
        "daemon_max_rss_mib_median": _median(
            [(_num(r.get("max_rss_kib")) or 0) / 1024 if r else None for r in res]),
        "kernel_would_retry_frac_median": _median([_num(k.get("kernel_would_retry_frac"))
                                                   for k in kv]),
        "kernel_available_over_min_median": _median(
            [_num(k.get("kernel_available_over_min_median")) for k in kv]),
        "reclaim_progress_frac_median": _median([_num(k.get("reclaim_progress_frac"))
                                                 for k in kv]),
        "zoomd_model_stuck_frac_median": _median([_num(k.get("zoomd_model_stuck_frac"))
                                                  for k in kv]),
        "zoomd_model_first_stuck_s_median": _median(
            [_num(s.get("zoomd_model_first_stuck_s")) for s in summaries]),
    }


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}{unit}"
    return f"{v}{unit}"


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The markdown table: one row per scenario x daemon."""
    head = ("| scenario | daemon | runs | brownout (s) | onset → action (s) | action → memory "
            "back (s) | workload killed | false actions | OOM kills | host PSI full mean | "
            "daemon CPU s (%) | daemon max RSS MiB | kernel would retry | reclaimable+free / "
            "min | zoomd model stuck |")
    lines = [head, "|" + " --- |" * 15]
    for scenario, by_daemon in results.items():
        for daemon, a in by_daemon.items():
            brown = a["brownout_s_median"]
            if brown == "never":
                brown = f"never (open {a['brownout_open_at_end_s_median']} s at end)"
            elif a["brownout_never_runs"]:
                brown = f"{brown} ({a['brownout_never_runs']} never)"
            cpu = (f"{_fmt(a['daemon_cpu_s_median'])} ({_fmt(a['daemon_cpu_pct_median'], '%')})"
                   if a["daemon_cpu_s_median"] is not None else "-")
            rss = a["daemon_max_rss_mib_median"]
            lines.append(
                f"| {scenario} | {daemon} | {a['runs']} | {brown} | "
                f"{_fmt(a['onset_to_action_s_median'])} | "
                f"{_fmt(a['action_to_memory_returned_s_median'])} | "
                f"{a['workload_killed_runs']}/{a['runs']} | {a['false_actions_total']} | "
                f"{a['oom_kill_total']} | {_fmt(a['host_psi_full_mean_pct_median'], '%')} | "
                f"{cpu} | {_fmt(round(rss, 1) if rss else None)} | "
                f"{_fmt(a['kernel_would_retry_frac_median'])} | "
                f"{_fmt(a['kernel_available_over_min_median'], '×')} | "
                f"{_fmt(a['zoomd_model_stuck_frac_median'])} |")
    return "\n".join(lines) + "\n"


def report(out: str, command: str | None = None, publish: str | None = None
           ) -> dict[str, Any]:
    """results.json, table.md and PNGs from the runs in OUT, written to PUBLISH (or OUT)
    with each run's summary.json (the timelines stay in OUT)."""
    from zoomdlab.vmlab import plot

    found = _runs(out)
    dest = publish or out
    os.makedirs(dest, exist_ok=True)
    if publish:
        for by in found.values():
            for runs in by.values():
                for run_dir, _ in runs:
                    target = os.path.join(dest, os.path.relpath(run_dir, out))
                    os.makedirs(target, exist_ok=True)
                    shutil.copy(os.path.join(run_dir, "summary.json"), target)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    order = list(DAEMONS)
    for scenario in [s for s in SCENARIOS if s in found]:
        by_daemon = found[scenario]
        results[scenario] = {d: aggregate([s for _, s in by_daemon[d]])
                             for d in order if d in by_daemon}
        first = {d: by_daemon[d][0][0] for d in order if d in by_daemon}
        plot.scenario_figure(scenario, first, {d: by_daemon[d][0][1] for d in first},
                             os.path.join(dest, f"{scenario}.png"))
        if "kernel" in by_daemon:
            plot.kernel_view_figure(
                by_daemon["kernel"][0][0],
                f"{scenario}, kernel alone: the kernel's retry arithmetic and zoomd's model",
                os.path.join(dest, f"{scenario}-kernel-view.png"))
    any_summary = next((s for d in found.values() for r in d.values() for _, s in r), {})
    meta = {
        "kernel_package": any_summary.get("kernel_package"),
        "guest_kernel": any_summary.get("guest_kernel"),
        "host_kernel": platform.release(),
        "command": command,
        "scenarios": {k: v.description for k, v in SCENARIOS.items()},
        "daemons": DAEMON_NOTES,
    }
    per_run = {sc: {d: [{"dir": os.path.relpath(p, out), **{k: s.get(k) for k in (
        "brownout_s", "brownout_open_at_end_s", "onset_to_action_s",
        "action_to_memory_returned_s", "false_actions", "workload_killed", "oom_kill_delta",
        "daemon_resources", "kernel_view", "zoomd_model_first_stuck_s", "actions")}}
        for p, s in runs] for d, runs in by.items()} for sc, by in found.items()}
    with open(os.path.join(dest, "results.json"), "w") as f:
        json.dump({"meta": meta, "medians": results, "runs": per_run}, f, indent=1)
        f.write("\n")
    with open(os.path.join(dest, "table.md"), "w") as f:
        f.write(table(results))
    with open(os.path.join(dest, "README.md"), "w") as f:
        f.write(_readme(meta, results, found))
    return results


def _versions() -> dict[str, str]:
    import subprocess

    out = {}
    for name, argv in (("qemu", ["qemu-system-x86_64", "--version"]),
                       ("earlyoom", ["earlyoom", "-v"])):
        try:
            text = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=10).stdout
            out[name] = text.splitlines()[0] if text else "?"
        except (OSError, subprocess.SubprocessError):
            out[name] = "not installed"
    return out


def _readme(meta: dict[str, Any], results: dict[str, dict[str, dict[str, Any]]],
            found: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]]) -> str:
    """The results page: what was run, on what, how to run it again, the table."""
    counts = sorted({len(r) for by in found.values() for r in by.values()})
    versions = _versions()
    lines = [
        "# VM lab: the host-wide zram brownout (generated by `python -m zoomdlab.vmlab bench`)",
        "",
        f"- Guest kernel: Debian package `{meta['kernel_package']}` "
        f"(`uname -r` {meta['guest_kernel']}), booted with virtme-ng under "
        f"{versions['qemu']}, software emulation (TCG), 1 GiB RAM, 2 vCPUs; "
        f"host kernel {meta['host_kernel']}, 2 cores.",
        f"- Runs per configuration: {', '.join(map(str, counts))} (medians over the runs; "
        "a brownout still open when the workload stopped counts as longer than any).",
        "- All times are guest seconds from the workload's start. Brownout: host memory "
        "PSI full over 1 s >= 10% until it is gone for good; `never` = still open when "
        "the workload stopped (its --duration).",
        "- Daemon CPU is under emulation (TCG runs guest code several times slower than "
        "the host): compare the daemons with each other, not with bare metal.",
        f"- Reproduce: `{meta['command']}` (root; provisions qemu, the kernel package and "
        "virtme-ng first; one run of every configuration takes about an hour).",
        "",
        "Scenarios:",
        "",
        *[f"- `{k}`: {v}" for k, v in meta["scenarios"].items()],
        "",
        "Daemons:",
        "",
        *[f"- `{k}`: {v}" for k, v in meta["daemons"].items()],
        "",
        "Columns: *kernel would retry* = share of samples over the brownout (until the "
        "first action) in which should_reclaim_retry()'s estimate for the largest zone "
        "(file LRU + anon LRU while any swap slot is free, + free pages) is above the "
        "zone's min watermark; *reclaimable+free / min* = its median ratio; *zoomd model "
        "stuck* = share of those samples in which zoomd's default policy conditions hold.",
        "",
        table(results),
        *[f"![{sc}]({sc}.png)\n" for sc in results],
        *[f"![{sc} kernel view]({sc}-kernel-view.png)\n" for sc in results
          if "kernel" in results[sc]],
        "See FINDINGS.md for what the numbers say, and results.json for every run.",
        "",
    ]
    return "\n".join(lines)


def bench(args: argparse.Namespace) -> int:
    """Run what is missing, then write the report."""
    command_file = os.path.join(args.out, "bench-command.txt")
    if not args.report_only:
        os.makedirs(args.out, exist_ok=True)
        with open(command_file, "w") as f:
            f.write("python -m zoomdlab.vmlab " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        tools = provision(args.cache)
        scenarios = [s for s in args.scenarios.split(",") if s]
        daemons = [d for d in args.daemons.split(",") if d]
        for n in range(args.runs):
            for scenario in scenarios:
                for daemon in daemons:
                    run_dir = os.path.join(args.out, "runs", scenario, daemon, str(n + 1))
                    if os.path.exists(os.path.join(run_dir, "summary.json")):
                        continue
                    t = time.monotonic()
                    s = run_vm(VmRun(scenario, daemon, args.duration, run_dir), tools)
                    print(f"{scenario} {daemon} #{n + 1}: brownout {s.get('brownout_s')}, "
                          f"actions {len(s.get('actions', []))}, false "
                          f"{s.get('false_actions')}, {time.monotonic() - t:.0f} s wall",
                          flush=True)
    command = None
    if os.path.exists(command_file):
        with open(command_file) as f:
            command = f.read().strip()
    report(args.out, command, args.publish)
    with open(os.path.join(args.publish or args.out, "table.md")) as f:
        print(f.read())
    return 0
