"""`zoomd status`: what the kernel believes is reclaimable, and what really is."""

from __future__ import annotations

import json
import time
from typing import Any

from zoomd.host import HostReader
from zoomd.kernel.psi import Psi
from zoomd.kernel.root import Root
from zoomd.model.reclaim import ModelParams, ReclaimEstimate, estimate, reclaim_window
from zoomd.model.snapshot import HostSnapshot


def _psi_json(psi: Psi | None) -> dict[str, Any] | None:
    if psi is None:
        return None
    out: dict[str, Any] = {}
    for name, line in (("some", psi.some), ("full", psi.full)):
        out[name] = None if line is None else {
            "avg10": line.avg10, "avg60": line.avg60, "avg300": line.avg300,
            "total": line.total_us,
        }
    return out


def collect(root: Root, sample_seconds: float, params: ModelParams,
            page_size: int | None = None) -> tuple[HostSnapshot, ReclaimEstimate, float]:
    """Take one snapshot, or two `sample_seconds` apart for the reclaim window."""
    reader = HostReader(root, page_size)
    try:
        first = reader.sample()
        if sample_seconds <= 0:
            return first, estimate(first, None, params), 0.0
        time.sleep(sample_seconds)
        second = reader.sample()
        elapsed = second.monotonic - first.monotonic
        window = reclaim_window(first.vmstat, second.vmstat, elapsed)
        return second, estimate(second, window, params), elapsed
    finally:
        reader.close()


def status_json(snap: HostSnapshot, est: ReclaimEstimate, window_s: float) -> dict[str, Any]:
    mem = snap.meminfo
    return {
        "version": 1,
        "psi": {
            "memory": _psi_json(snap.psi_memory),
            "io": _psi_json(snap.psi_io),
            "cpu": _psi_json(snap.psi_cpu),
        },
        "memory": {
            "total_bytes": mem.total,
            "free_bytes": mem.free,
            "available_bytes": mem.available,
            "min_watermark_bytes": snap.min_free_bytes,
            "anon_lru_bytes": mem.anon_lru,
            "file_lru_bytes": mem.file_lru,
            "zswap_bytes": mem.fields.get("Zswap"),
            "zswapped_bytes": mem.fields.get("Zswapped"),
        },
        "swap": {
            "devices": [
                {
                    "path": s.entry.path,
                    "type": s.entry.type,
                    "kind": s.kind.kind,
                    "ram_backed": s.kind.ram_backed,
                    "block_device": s.kind.block_device,
                    "via": s.kind.via,
                    "size_bytes": s.entry.size_bytes,
                    "used_bytes": s.entry.used_bytes,
                    "priority": s.entry.priority,
                }
                for s in snap.swaps
            ],
            "total_bytes": mem.swap_total,
            "free_bytes": mem.swap_free,
            "all_ram_backed": snap.all_ram_backed,
            "zswap_enabled": snap.zswap_enabled,
        },
        "zram": [
            {
                "name": z.name,
                "disksize": z.disksize,
                "comp_algorithm": z.comp_algorithm,
                "backing_dev": z.backing_dev,
                "orig_data_size": z.mm_stat.orig_data_size,
                "compr_data_size": z.mm_stat.compr_data_size,
                "mem_used_total": z.mm_stat.mem_used_total,
                "mem_limit": z.mm_stat.mem_limit,
                "mem_used_max": z.mm_stat.mem_used_max,
                "same_pages": z.mm_stat.same_pages,
                "huge_pages": z.mm_stat.huge_pages,
                "compression_ratio": z.mm_stat.compression_ratio,
                "pool_headroom_bytes": z.pool_headroom(mem.total),
            }
            for z in snap.zram
        ],
        "reclaim": {
            "mode": est.mode,
            "window_seconds": round(window_s, 3),
            "kernel_reclaimable_bytes": est.kernel_reclaimable,
            "kernel_would_retry": est.kernel_would_retry,
            "anon_reclaimable_bytes": est.anon_reclaimable,
            "anon_reclaimable_by_mode": est.anon_by_mode,
            "file_reclaimable_bytes": est.file_reclaimable,
            "effective_available_bytes": est.effective_available,
            "anon_efficiency_pct": est.anon_efficiency_pct,
            "file_efficiency_pct": est.file_efficiency_pct,
        },
    }


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} TiB"


def _pct(value: float | None) -> str:
    return "no evidence" if value is None else f"{value:.1f}%"


def render_text(data: dict[str, Any]) -> str:
    lines: list[str] = []
    mem, swap, rec = data["memory"], data["swap"], data["reclaim"]
    lines.append(f"memory   total {_size(mem['total_bytes'])}, free {_size(mem['free_bytes'])}, "
                 f"MemAvailable {_size(mem['available_bytes'])}, "
                 f"min watermark {_size(mem['min_watermark_bytes'])}")
    lines.append(f"         anon LRU {_size(mem['anon_lru_bytes'])}, "
                 f"file LRU {_size(mem['file_lru_bytes'])}")
    psi = data["psi"]["memory"]
    if psi:
        full = psi["full"]
        full_text = f"full {full['avg10']:.2f}/{full['avg60']:.2f}/{full['avg300']:.2f}" \
            if full else "full -"
        some = psi["some"]
        lines.append(f"pressure memory some {some['avg10']:.2f}/{some['avg60']:.2f}/"
                     f"{some['avg300']:.2f}, {full_text} (avg10/60/300 %)")
    else:
        lines.append("pressure unavailable (no /proc/pressure/memory)")
    if not swap["devices"]:
        lines.append("swap     none active")
    for dev in swap["devices"]:
        ram = "RAM-backed" if dev["ram_backed"] else "disk"
        lines.append(f"swap     {dev['path']}: {dev['kind']} ({ram}), used "
                     f"{_size(dev['used_bytes'])} of {_size(dev['size_bytes'])}, "
                     f"prio {dev['priority']} - {dev['via']}")
    if swap["devices"]:
        lines.append(f"         all RAM-backed: {'yes' if swap['all_ram_backed'] else 'no'}; "
                     f"zswap: {swap['zswap_enabled']}")
    for z in data["zram"]:
        ratio = z["compression_ratio"]
        lines.append(f"zram     {z['name']}: {_size(z['orig_data_size'])} stored in "
                     f"{_size(z['mem_used_total'])} of RAM (ratio "
                     f"{'-' if ratio is None else f'{ratio:.2f}'}), "
                     f"algorithm {z['comp_algorithm']}, pool headroom "
                     f"{_size(z['pool_headroom_bytes'])}")
    lines.append(f"reclaim  window {rec['window_seconds']} s: anon efficiency "
                 f"{_pct(rec['anon_efficiency_pct'])}, file efficiency "
                 f"{_pct(rec['file_efficiency_pct'])}")
    lines.append(f"kernel   believes reclaimable {_size(rec['kernel_reclaimable_bytes'])} "
                 f"(file + all anon while a swap slot is free); would retry reclaim: "
                 f"{'yes' if rec['kernel_would_retry'] else 'no'}")
    modes = ", ".join(f"{m} {_size(v)}" for m, v in rec["anon_reclaimable_by_mode"].items())
    lines.append(f"zoomd    anon reclaimable by mode: {modes}")
    lines.append(f"         mode {rec['mode']}: file {_size(rec['file_reclaimable_bytes'])} + "
                 f"anon {_size(rec['anon_reclaimable_bytes'])} -> effective available "
                 f"{_size(rec['effective_available_bytes'])}")
    lines.extend(_domain_lines(data.get("domains")))
    return "\n".join(lines)


SHOWN_DOMAINS = 20


def _domain_lines(domains: dict[str, Any] | None) -> list[str]:
    """Memory-limited groups (each judged against its own limit by the default)."""
    if not domains:
        return []
    if "error" in domains:
        return [f"domains  cannot be listed: {domains['error']}"]
    limited, unguarded = domains["limited"], domains["unguarded"]
    lines = [f"domains  {len(limited)} memory-limited group(s)"
             + (" (the walk stopped at its bound)" if domains["truncated"] else "")]
    for d in limited[:SHOWN_DOMAINS]:
        lines.append(f"         {d['path']}: limit {_size(d['limit_bytes'])} ({d['source']}), "
                     f"memory PSI full avg10 {_pct(d['memory_pressure_full_avg10'])}")
    if len(limited) > SHOWN_DOMAINS:
        lines.append(f"         ... and {len(limited) - SHOWN_DOMAINS} more (--json lists all)")
    for group, reason in list(unguarded.items())[:SHOWN_DOMAINS]:
        lines.append(f"         not guarded: {group}: {reason}")
    return lines


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False)
