"""`zoomd replay --plot`: one timeline figure per trace (needs the `report` extra).

matplotlib is imported here and only here, when a plot is asked for: the daemon and
every other command stay free of it.
"""

from __future__ import annotations

import os
from typing import Any

from zoomd.errors import ZoomdError
from zoomd.kinds import ANON_MODES
from zoomd.trace.replay import TraceResult
from zoomd.trace.summary import decided_at, repeats

GiB = float(1 << 30)
COLORS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ZoomdError("--plot needs matplotlib: pip install 'zoomd[report]'") from None
    return plt


def output_paths(results: list[TraceResult], path: str) -> list[str]:
    """FILE.png for one trace; FILE-<trace>.png for each of several."""
    if len(results) == 1:
        return [path]
    stem, ext = os.path.splitext(path)
    return [f"{stem}-{r.name}{ext or '.png'}" for r in results]


def _gib(values: list[Any]) -> list[float | None]:
    return [None if v is None else v / GiB for v in values]


def _none_to_nan(values: list[Any]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def plot_trace(plt: Any, result: TraceResult, path: str) -> None:
    line = result.timeline
    xs = [t - result.t0 for t in line["t"]]
    fig, axes = plt.subplots(4, 1, figsize=(12, 11), sharex=True,
                             gridspec_kw={"height_ratios": [3, 3, 2, 1.4]})
    psi, avail, eff, marks = axes
    fig.suptitle(f"{result.name}: {result.header.get('hostname')} "
                 f"(kernel {result.header.get('kernel')}, scope {result.header.get('scope')})")

    psi.plot(xs, _none_to_nan(line["psi_full_pct"]), label="host full", color="black")
    psi.plot(xs, _none_to_nan(line["psi_some_pct"]), label="host some", color="grey",
             linestyle=":")
    monitors_drawn: set[str] = set()
    for run in result.runs:
        for track in run.tracks.values():
            if track.monitor == "/" or track.monitor in monitors_drawn:
                continue
            monitors_drawn.add(track.monitor)
            ends = [end - result.t0 for _, end, _, _ in track.intervals]
            psi.plot(ends, _none_to_nan(track.full_pct), label=f"{track.monitor} full")
    psi.set_ylabel("memory PSI %")
    psi.set_ylim(0, 100)
    psi.legend(loc="upper left", fontsize="small")

    for mode in ANON_MODES:
        avail.plot(xs, _none_to_nan(_gib(line[f"effective_{mode}"])), label=f"effective ({mode})")
    avail.plot(xs, _none_to_nan(_gib(line["kernel_reclaimable"])), label="kernel reclaimable",
               color="black", linestyle="--")
    avail.plot(xs, _none_to_nan(_gib(line["min_free"])), label="min watermark", color="red",
               linestyle=":")
    avail.set_ylabel("GiB")
    avail.legend(loc="upper left", fontsize="small", ncol=2)

    eff.plot(xs, _none_to_nan(line["anon_efficiency"]), label="anon stolen/scanned")
    eff.plot(xs, _none_to_nan(line["file_efficiency"]), label="file stolen/scanned")
    eff.set_ylabel("reclaim efficiency %")
    eff.set_ylim(0, 100)
    eff.legend(loc="upper left", fontsize="small")

    labels = []
    for i, run in enumerate(result.runs):
        color = COLORS[i % len(COLORS)]
        labels.append(run.spec.name)
        for track in run.tracks.values():
            for start, end, _, holds in track.intervals:
                if holds:
                    marks.axvspan(start - result.t0, end - result.t0, ymin=(i + 0.3) /
                                  len(result.runs), ymax=(i + 0.7) / len(result.runs),
                                  color=color, alpha=0.2, linewidth=0)
        for name, track in run.tracks.items():
            mine = [d for d in run.decisions if d.policy == name]
            for d, again in zip(mine, repeats(track, mine), strict=True):
                x = decided_at(d) - result.t0
                if again:  # the trace went on as recorded: the policy fired again
                    marks.plot([x], [i], marker="v", color=color, markersize=6,
                               fillstyle="none")
                    continue
                marks.plot([x], [i], marker="v", color=color, markersize=11)
                marks.annotate(f"{d.action} {d.victim}", (x, i), xytext=(4, 7),
                               textcoords="offset points", fontsize="x-small")
                for ax in (psi, avail, eff):
                    ax.axvline(x, color=color, alpha=0.7, linewidth=1.2)
    marks.set_yticks(range(len(labels)), labels)
    marks.set_ylim(-0.5, max(0.5, len(labels) - 0.5))
    marks.set_xlabel("seconds since the trace began")
    marks.set_title("decisions (shaded: conditions hold; hollow: the policy firing again "
                    "on the recorded stall)", fontsize="small")
    if xs:
        marks.set_xlim(min(xs), max(max(xs), min(xs) + 1e-3))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_results(results: list[TraceResult], path: str) -> list[str]:
    """Write one PNG per trace; returns the paths written."""
    plt = _pyplot()
    paths = output_paths(results, path)
    for result, out in zip(results, paths, strict=True):
        plot_trace(plt, result, out)
    return paths
