"""PNG timelines of VM runs (matplotlib, the `report` extra): one figure per scenario
with a row per daemon, and the kernel's view beside zoomd's model for one run."""

from __future__ import annotations

import os
from typing import Any

from zoomdlab.lab.timeline import read_timeline

MiB = 1 << 20
PAGE = 4096


def _load(run_dir: str) -> tuple[float, list[dict[str, Any]]]:
    records = list(read_timeline(os.path.join(run_dir, "timeline.jsonl")))
    t0 = next(r["t"] for r in records if r.get("type") == "run_start")
    return t0, records


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scenario_figure(scenario: str, runs: dict[str, str], summaries: dict[str, dict],
                    path: str) -> None:
    """Rows: daemons. Host memory PSI full (1 s), zram RAM used, MemAvailable; actions."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.1 * len(runs) + 0.6), sharex=True,
                             squeeze=False)
    for ax, (daemon, run_dir) in zip(axes[:, 0], runs.items(), strict=True):
        t0, records = _load(run_dir)
        samples = [r for r in records if r.get("type") == "sample" and r["t"] >= t0]
        t = [s["t"] - t0 for s in samples]
        full = [s["psi"].get("host", {}).get("full_1s", 0.0) for s in samples]
        ax.fill_between(t, full, color="tab:red", alpha=0.35, label="host PSI full 1 s (%)")
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax2 = ax.twinx()
        zram = [s.get("zram", {}).get("mem_used_total", 0) / MiB for s in samples]
        ax2.plot(t, zram, color="tab:purple", lw=1.2, label="zram RAM used (MiB)")
        kv = [r for r in records if r.get("type") == "kview" and r["t"] >= t0]
        avail = [(r["t"] - t0, (r.get("model") or {}).get("mem_available", 0) / MiB) for r in kv]
        if avail:
            ax2.plot(*zip(*avail, strict=True), color="tab:green", lw=1.0,
                     label="MemAvailable (MiB)")
        ax2.set_ylim(0, 1024)
        ax2.set_ylabel("MiB")
        summary = summaries.get(daemon, {})
        for action in summary.get("actions", []):
            ax.axvline(action["t"], color="black", ls="--", lw=1)
        brown = summary.get("brownout_s")
        brown_txt = f"{brown} s" if isinstance(brown, (int, float)) else str(brown)
        ax.set_title(f"{daemon}: brownout {brown_txt}, actions {len(summary.get('actions', []))}"
                     f", false {summary.get('false_actions', 0)}", fontsize=9, loc="left")
        if ax is axes[0, 0]:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax.legend(h1 + h2, [*l1, *l2], loc="upper left", fontsize=7)
    axes[-1, 0].set_xlabel("guest seconds since the workload started (dashed: daemon action)")
    fig.suptitle(f"{scenario} (1 GiB guest)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def kernel_view_figure(run_dir: str, title: str, path: str) -> None:
    """should_reclaim_retry()'s estimate vs the min watermark, and zoomd's model."""
    plt = _pyplot()
    t0, records = _load(run_dir)
    kv = [r for r in records if r.get("type") == "kview" and r["t"] >= t0 and r.get("zones")]
    t, reclaimable, free_, min_, eff, anon_eff, refault, full, stuck = ([] for _ in range(9))
    for r in kv:
        zone = max(r["zones"], key=lambda z: z["managed"])
        model = r.get("model") or {}
        window = model.get("window") or {}
        swap_free = model.get("swap_free", 1)
        t.append(r["t"] - t0)
        reclaimable.append((zone["file"] + (zone["anon"] if swap_free > 0 else 0)) * PAGE / MiB)
        free_.append(zone["free"] * PAGE / MiB)
        min_.append(zone["min"] * PAGE / MiB)
        eff.append((model.get("effective_available") or 0) / MiB)
        anon_eff.append(window.get("anon_efficiency_pct"))
        refault.append(window.get("refault_rate_pct"))
        full.append(window.get("memory_pressure_full_pct"))
        stuck.append(bool(model.get("stuck")))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    ax1.plot(t, [a + b for a, b in zip(reclaimable, free_, strict=True)], color="tab:blue",
             label="kernel: zone_reclaimable_pages + free (largest zone)")
    ax1.plot(t, min_, color="black", ls=":", label="min watermark")
    ax1.plot(t, eff, color="tab:orange", label="zoomd: effective available (auto model)")
    ax1.set_yscale("symlog", linthresh=10)
    ax1.set_ylabel("MiB")
    ax1.legend(fontsize=8, loc="lower left")
    ax1.set_title("the kernel keeps retrying (blue above the watermark); zoomd's model",
                  fontsize=9, loc="left")
    ax2.plot(t, [v if v is not None else float("nan") for v in full], color="tab:red",
             label="PSI full over zoomd's window (%)")
    ax2.plot(t, [v if v is not None else float("nan") for v in anon_eff], color="tab:green",
             label="anon reclaim efficiency over the window (%)")
    ax2.plot(t, [v if v is not None else float("nan") for v in refault], color="tab:purple",
             label="refaults (% of RAM per s)")
    ax2.fill_between(t, [100 if s else 0 for s in stuck], color="grey", alpha=0.2, step="post",
                     label="zoomd default policy: conditions hold")
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("%")
    ax2.set_xlabel("guest seconds since the workload started")
    ax2.legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
