"""The replay report: one JSON document (sorted keys, floats rounded) and its text form.

Both are pure functions of the replay results, so the same traces and configurations
print the same bytes every time.
"""

from __future__ import annotations

import json
from typing import Any

from zoomd.daemon.decision import Decision
from zoomd.trace.replay import ConfigSpec, TraceResult
from zoomd.trace.summary import config_summary, fleet_summary, kernel_view, r3, repeats

REPORT_VERSION = 1
DIGITS = 3


def rounded(value: Any) -> Any:
    """Every float rounded to DIGITS, recursively (byte-stable output)."""
    if isinstance(value, float):
        return round(value, DIGITS)
    if isinstance(value, dict):
        return {str(k): rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def _kernel_at(result: TraceResult, t: float) -> dict[str, Any]:
    line = result.timeline
    for i in range(len(line["t"]) - 1, -1, -1):
        if line["t"][i] <= t + 1e-9:
            return {"would_retry": line["kernel_retry"][i],
                    "kernel_reclaimable_bytes": line["kernel_reclaimable"][i],
                    "free_bytes": line["free"][i],
                    "min_watermark_bytes": line["min_free"][i]}
    return {}


def _decision(record: Decision, config: str, result: TraceResult) -> dict[str, Any]:
    shown = record.to_json()  # the nested figures as the record shows them
    monotonic = _monotonic(record)
    return {
        "t": r3(monotonic - result.t0),
        "wall": record.time,
        "config": config,
        "policy": record.policy,
        "monitor": record.monitor,
        "action": record.action,
        "victim": record.victim,
        "held": sorted(record.held),
        "trigger": shown.get("trigger", {}),
        "reclaim": shown.get("reclaim"),
        "candidates": shown.get("candidates", []),
        "skipped": dict(record.skipped or {}),
        "pids": list(record.outcome.pids),
        "summary": record.summary,
        "kernel": _kernel_at(result, monotonic),
    }


def _monotonic(record: Decision) -> float:
    """When it was decided; replay stamps every decision with its sample's time."""
    assert record.monotonic is not None, "a replayed decision carries its sample's stamp"
    return record.monotonic


def trace_report(result: TraceResult, specs: list[ConfigSpec]) -> dict[str, Any]:
    order = {s.name: i for i, s in enumerate(specs)}
    decisions = []
    for run in result.runs:
        flags: dict[int, bool] = {}
        for name, track in run.tracks.items():
            mine = [d for d in run.decisions if d.policy == name]
            flags.update((id(d), r) for d, r in zip(mine, repeats(track, mine), strict=True))
        for record in run.decisions:
            decisions.append({**_decision(record, run.spec.name, result),
                              "repeat": flags.get(id(record), False)})
    decisions.sort(key=lambda d: (d["t"], order[d["config"]], d["policy"]))
    header = result.header
    return {
        "trace": result.name,
        "path": result.path,
        "hostname": header.get("hostname"),
        "kernel": header.get("kernel"),
        "scope": header.get("scope"),
        "started_wall": header.get("started_wall"),
        "samples": result.samples,
        "duration_s": r3(result.duration),
        "dropped_samples": result.dropped,
        "skipped_samples": result.skipped_samples,
        "warnings": list(result.warnings),
        "kernel_view": kernel_view(result),
        "decisions": decisions,
        "live_decisions": [{"t": item["t"], "policy": item["record"].get("policy"),
                            "action": item["record"].get("action"),
                            "victim": item["record"].get("victim"),
                            "dry_run": item["record"].get("dry_run"),
                            "summary": item["record"].get("summary")}
                           for item in result.live],
        "summary": {run.spec.name: config_summary(run, result) for run in result.runs},
    }


def build_report(results: list[TraceResult], specs: list[ConfigSpec],
                 skipped: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The report; `skipped`: traces of a fleet that could not be replayed (path, error),
    listed and left out of every figure."""
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "configs": [{"name": s.name, "path": s.path,
                     "policies": [p.name for p in s.config.policy]} for s in specs],
        "traces": [trace_report(r, specs) for r in results],
    }
    if skipped:
        report["skipped_traces"] = [{"path": p, "error": e} for p, e in skipped]
    if len(results) > 1:
        report["fleet"] = fleet_summary(results, [s.name for s in specs])
    return rounded(report)


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True, indent=2) + "\n"


# -- text -------------------------------------------------------------------------------
def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def _why(d: dict[str, Any]) -> str:
    fig = d["trigger"].get("figures", {})
    parts = [
        f"full {_num(fig.get('memory_pressure_full_pct'), '{:.0f}%')}",
        f"some {_num(fig.get('memory_pressure_some_pct'), '{:.0f}%')}",
        f"avg10 {_num(fig.get('memory_pressure_full_avg10'), '{:.0f}%')}",
        f"refault {_num(fig.get('refault_rate_pct'), '{:.1f}%/s')}",
        f"anon-eff {_num(fig.get('anon_efficiency_pct'), '{:.0f}%')}",
        f"eff-avail {_bytes(fig.get('effective_available_bytes'))}",
        f"over {_num(fig.get('window_seconds'), '{:.1f}s')}",
    ]
    return f"[{', '.join(d['held'])}] " + " ".join(parts)


def _kernel_text(k: dict[str, Any]) -> str:
    if not k or k.get("would_retry") is None:
        return "kernel: -"
    verb = "retrying" if k["would_retry"] else "would give up"
    return (f"kernel: {verb} (reclaimable {_bytes(k['kernel_reclaimable_bytes'])} + free "
            f"{_bytes(k['free_bytes'])} vs min {_bytes(k['min_watermark_bytes'])})")


def _trace_text(tr: dict[str, Any], names: list[str]) -> list[str]:
    out = [f"trace {tr['trace']}: host {tr['hostname']}, kernel {tr['kernel']}, scope "
           f"{tr['scope']}, {tr['samples']} samples over {tr['duration_s']:.3f} s"
           + (f", {tr['dropped_samples']} dropped by the recorder"
              if tr["dropped_samples"] else "")]
    out.extend(f"  warning: {w}" for w in tr["warnings"])
    width = max([len(n) for n in names] + [6])
    out.append("  decisions:")
    if not tr["decisions"]:
        out.append("    none")
    pad = f"    {'':>10}  {'':<{width}}  "
    for n, d in enumerate(tr["decisions"]):
        if d["repeat"]:
            continue
        out.append(f"    {d['t']:>9.3f}s  {d['config']:<{width}}  {d['policy']}: "
                   f"{d['action']} {d['victim']}")
        out.append(pad + _why(d))
        out.append(pad + _kernel_text(d["kernel"]))
        again = [e for e in tr["decisions"][n + 1:] if e["repeat"] and
                 (e["config"], e["policy"], e["victim"]) == (d["config"], d["policy"],
                                                              d["victim"])]
        if again:
            out.append(pad + f"(and {len(again)} repeats until {again[-1]['t']:.3f}s: "
                             "in the trace the stall went on)")
    for live in tr["live_decisions"]:
        out.append(f"    {live['t']:>9.3f}s  {'(live)':<{width}}  {live['summary']}")
    kv = tr["kernel_view"]
    out.append(f"  kernel view: should_reclaim_retry() passes the watermark test in "
               f"{kv['samples_retrying']}/{kv['samples']} samples ({kv['retrying_s']:.3f} s); "
               f"reclaimable {_bytes(kv['kernel_reclaimable_bytes_min'])}.."
               f"{_bytes(kv['kernel_reclaimable_bytes_max'])} vs min watermark "
               f"{_bytes(kv['min_watermark_bytes'])}")
    out.append(f"  summary:  {'config':<{width}}  actions  repeats  first(s)  stall-before(s)  "
               "stall-avoided(s)  stalled(s)  kernel-retry-while-stuck(s)")
    for name in names:
        s = tr["summary"][name]
        if s["error"]:
            out.append(f"            {name:<{width}}  not replayed: {s['error']}")
            continue
        out.append(f"            {name:<{width}}  {s['actions']:>7}  {s['repeats']:>7}  "
                   f"{_num(s['first_action_t']):>8}  "
                   f"{_num(s['stall_before_first_action_s']):>15}  "
                   f"{_num(s['stall_avoided_s']):>16}  {_num(s['stalled_s']):>10}  "
                   f"{_num(s['kernel_retry_while_stuck_s']):>27}")
    return out


def render_text(report: dict[str, Any]) -> str:
    names = [c["name"] for c in report["configs"]]
    lines: list[str] = []
    for tr in report["traces"]:
        lines.extend(_trace_text(tr, names))
        lines.append("")
    skipped = report.get("skipped_traces", [])
    lines.extend(f"skipped: {item['error']}" for item in skipped)
    if skipped:
        lines.append("")
    fleet = report.get("fleet")
    if fleet:
        width = max([len(n) for n in names] + [6])
        some = next(iter(fleet["configs"].values()))
        lines.append(f"fleet: {some['traces']} traces, {some['hosts']} hosts, "
                     f"{some['host_days']:.6f} host-days"
                     + (f" ({len(skipped)} traces skipped, not counted)" if skipped else ""))
        lines.append(f"  {'config':<{width}}  hosts-acted  actions  actions/host-day  "
                     "stall-avoided(s)")
        for name in names:
            f = fleet["configs"][name]
            lines.append(f"  {name:<{width}}  {f['hosts_acted']:>5}/{f['hosts']:<5}  "
                         f"{f['actions']:>7}  {_num(f['actions_per_host_day']):>16}  "
                         f"{_num(f['stall_avoided_s']):>16}")
        if fleet["disagreements"]:
            lines.append("  policies disagree on:")
            for item in fleet["disagreements"]:
                verdicts = "; ".join(f"{k}: {v}" for k, v in item["verdicts"].items())
                lines.append(f"    {item['trace']} ({item['hostname']}): {verdicts}")
        else:
            lines.append("  policies agree on every trace")
    return "\n".join(lines).rstrip("\n") + "\n"
