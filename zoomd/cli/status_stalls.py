"""`zoomd status --stalls`: the processes and cgroups losing the most time to memory.

PSI says that something stalls; delay accounting says who, and on what (direct
reclaim, thrashing, swap-in, compaction). Two taskstats samples `--sample` seconds
apart give each process's stall rate (seconds per second); cgroups are the sums
over their sampled processes. With delay accounting off the kernel reports zeros,
so we say so instead of ranking them, unless --enable-delayacct turns it on for
the window (and back off after).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from zoomd.errors import ZoomdError
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.delayacct import DelayAccounting, DelayacctState
from zoomd.kernel.proc_cgroup import read_proc_cgroup
from zoomd.kernel.root import Root
from zoomd.kernel.taskstats import MEMORY_KINDS
from zoomd.model.stall_rates import StallFigures
from zoomd.stallsampler import ProcessStall, StallSample, StallSampler

STATUS_TASK_BUDGET = 2048  # one-shot: at most ~0.4-0.9 s of queries per sample
SHOWN_KINDS = (*MEMORY_KINDS, "cpu", "blkio")


def _rates_json(figures: StallFigures) -> dict[str, Any]:
    return {
        "memory": round(figures.memory, 4),
        "memory_sum": round(figures.memory_sum, 4),
        "kind": figures.kind,
        "rates": {k: round(figures.rates[k], 4) for k in SHOWN_KINDS if k in figures.rates},
    }


def _delayacct_json(state: DelayacctState, switched: bool) -> dict[str, Any]:
    return {"on": state.on, "switch": state.switch, "switched_on_for_window": switched,
            "describe": state.describe}


def _membership(root: Root, reader: CgroupReader, pid: int) -> tuple[str | None, str | None]:
    """(v2 group, v1 memory cgroup on hybrid hosts) of a process; Nones if it is gone."""
    member = read_proc_cgroup(root, pid)
    if member is None:
        return None, None
    memory = member.v1.get("memory") if reader.layout.hybrid else None
    return member.v2, memory


def stalls_json(root: Root, reader: CgroupReader, first: StallSample, second: StallSample,
                window: float, top: int, acct: dict[str, Any]) -> dict[str, Any]:
    scope = next(iter(second.groups.values()))
    ranked = sorted(second.processes, key=lambda p: (-p.figures.memory, p.tgid))
    processes: list[dict[str, Any]] = []
    groups: dict[tuple[str | None, str | None], list[ProcessStall]] = {}
    for proc in ranked:
        key = _membership(root, reader, proc.tgid)
        groups.setdefault(key, []).append(proc)
        if len(processes) < top and proc.figures.memory > 0:
            comm = (root.read_optional(f"/proc/{proc.tgid}/comm") or "").strip()
            processes.append({"pid": proc.tgid, "comm": comm, "cgroup": key[0],
                              "memory_cgroup": key[1], "window_seconds": round(proc.seconds, 3),
                              **_rates_json(proc.figures)})
    group_rows = []
    for (v2, memory), members in groups.items():
        figures = StallFigures.of_group(m.figures for m in members)
        group_rows.append({"cgroup": v2, "memory_cgroup": memory,
                           "processes_rated": len(members), **_rates_json(figures)})
    group_rows.sort(key=lambda g: (-g["memory"], str(g["cgroup"]), str(g["memory_cgroup"])))
    return {
        "version": 1,
        "window_seconds": round(window, 3),
        "delayacct": acct,
        "available": True,
        "memory_stall": "freepages + compact + max(swapin, thrashing), seconds per second",
        "coverage": {"processes_listed": scope.listed, "processes_sampled": scope.sampled,
                     "processes_rated": scope.rated, "listing_capped": scope.capped,
                     "budget": second.budget, "queries": first.queries + second.queries},
        "processes": processes,
        "cgroups": [g for g in group_rows if g["memory"] > 0][:top],
    }


def collect(root: Root, window: float, top: int, enable: bool,
            budget: int = STATUS_TASK_BUDGET) -> dict[str, Any]:
    if window <= 0:
        raise ZoomdError("status --stalls needs a --sample window above 0 s")
    if not root.is_live:
        raise ZoomdError("status --stalls asks the running kernel (taskstats): "
                         "it cannot read a captured tree (--root)")
    from zoomd.kernel.taskstats_netlink import TaskstatsClient

    with DelayAccounting(root, enable) as switch:
        state = switch.state
        acct = _delayacct_json(state, switch.changed)
        if not state.on:
            return {"version": 1, "window_seconds": round(window, 3), "delayacct": acct,
                    "available": False, "reason": "delay accounting is off",
                    "processes": None, "cgroups": None}
        reader = CgroupReader(root)
        with TaskstatsClient() as client:
            sampler = StallSampler(client, reader, budget, rotate=False)
            first = sampler.sample(["/"])
            time.sleep(window)
            second = sampler.sample(["/"])
        return stalls_json(root, reader, first, second, second.monotonic - first.monotonic,
                           top, acct)


def _row(fig: dict[str, Any]) -> str:
    rates = fig["rates"]
    cells = " ".join(f"{rates.get(k, 0.0):>9.3f}" if k in rates else f"{'-':>9}"
                     for k in MEMORY_KINDS)
    return f"{fig['memory']:>7.3f}  {fig['kind'] or '-':<9} {cells}"


def render_text(data: dict[str, Any]) -> str:
    acct = data["delayacct"]
    if not data["available"]:
        return (f"stalls   {data['reason']}: the kernel reports zero memory delays, which "
                f"are not measurements.\n         Turn kernel.task_delayacct on, or run "
                f"`zoomd status --stalls --enable-delayacct` (on for the window, restored "
                f"after).")
    cov = data["coverage"]
    switched = " (switched on for this window)" if acct["switched_on_for_window"] else ""
    why = []
    if cov["listing_capped"] or cov["processes_sampled"] < cov["processes_listed"]:
        why.append(f"budget of {cov['budget']} queries reached")
    if cov["processes_rated"] < cov["processes_sampled"]:
        why.append(f"{cov['processes_sampled'] - cov['processes_rated']} started or exited "
                   f"during the window")
    partial = f" ({'; '.join(why)})" if why else ""
    lines = [f"stalls   window {data['window_seconds']} s, {acct['describe']}{switched}; "
             f"{cov['processes_rated']} of {cov['processes_listed']}"
             f"{'+' if cov['listing_capped'] else ''} processes rated{partial}",
             f"         memory stall = {data['memory_stall']}"]
    head = f"{'memory':>7}  {'kind':<9} " + " ".join(f"{k:>9}" for k in MEMORY_KINDS)
    if not data["processes"]:
        lines.append("process  no process stalled on memory in the window")
    else:
        lines.append(f"process  {'PID':>7} {'NAME':<16} {head}  CGROUP")
        for p in data["processes"]:
            where = p["cgroup"] + (f" (memory {p['memory_cgroup']})" if p["memory_cgroup"]
                                   else "") if p["cgroup"] else "-"
            lines.append(f"         {p['pid']:>7} {p['comm'][:16]:<16} {_row(p)}  {where}")
    if data["cgroups"]:
        lines.append(f"cgroup   {'PROCS':>7} {'':<16} {head}  CGROUP")
        for g in data["cgroups"]:
            where = (g["cgroup"] or "-") + (f" (memory {g['memory_cgroup']})"
                                            if g["memory_cgroup"] else "")
            lines.append(f"         {g['processes_rated']:>7} {'':<16} {_row(g)}  {where}")
    return "\n".join(lines)


def cmd_stalls(args: argparse.Namespace) -> int:
    data = collect(Root(args.root), args.sample, args.top, args.enable_delayacct)
    as_json = args.json or getattr(args, "format", "text") == "json"
    print(json.dumps(data, indent=2) if as_json else render_text(data))
    return 0
