"""How much memory is really reclaimable: the kernel's belief and zoomd's models.

The kernel (zone_reclaimable_pages) counts the whole anon LRU as reclaimable as
soon as any swap slot is free. On zram a "free slot" costs RAM to fill, so that
belief keeps a host in direct reclaim for tens of minutes. Each anon mode here is
one answer to "how much would swapping anon out actually give back":

- kernel:      the kernel's belief, for comparison.
- ram-backed:  nothing when every swap is RAM-backed; else only disk slots count.
- efficiency:  anon counts only while reclaim of it is working (stolen/scanned >= N%).
- compression: a page moved into zram frees (1 - 1/ratio) of a page, bounded by
               free slots and the pool's headroom; disk slots count fully.
- auto:        compression for RAM-backed devices, full for disk, and nothing at all
               while the efficiency gate says anon reclaim is failing.

The gate needs a failure that lasts (see HostModel): when RAM first runs out the
kernel's first anon scans mostly rotate referenced pages, so efficiency reads near 0%
for a second or two even for a workload that then swaps out at ~100%.

No `from __future__ import annotations`: ModelParams is a table of zoomd.toml, whose
types pydantic must see as objects (zoomd/config/runtime.py says why).
"""

from dataclasses import dataclass, field
from typing import Annotated

from zoomd.config.units import DURATION, FORBID, PERCENT, Bounds, Within
from zoomd.kernel.keyvalue import counter_delta
from zoomd.kernel.vmstat import VmStat
from zoomd.kinds import AnonMode
from zoomd.model.snapshot import HostSnapshot, SwapDevice


@dataclass(frozen=True, slots=True)
class ModelParams:
    """Knobs of the model: the `[reclaim]` table of zoomd.toml, key for key (defined
    here, with its units and ranges, and nowhere else; zoomd/config/runtime.py)."""

    __pydantic_config__ = FORBID  # unknown keys are errors (zoomd/config/runtime.py)

    anon: AnonMode = "auto"
    min_anon_efficiency: Annotated[float, PERCENT] = 30.0
    # fewer scans than this in a window: no evidence
    min_scanned_pages: Annotated[int, Bounds(ge=1)] = 256
    # for a zram device that holds nothing yet
    assumed_compression_ratio: Annotated[float, Bounds(ge=1.0, le=64.0)] = 2.0
    # failing only after this long below the minimum
    efficiency_sustain: Annotated[float, DURATION, Within(0.0, 600.0)] = 5.0


@dataclass(frozen=True, slots=True)
class ReclaimWindow:
    """LRU scan and steal deltas (pages) between two vmstat readings."""

    seconds: float
    anon_scanned: int | None
    anon_stolen: int | None
    file_scanned: int | None
    file_stolen: int | None
    anon_refaults: int | None
    file_refaults: int | None


def reclaim_window(before: VmStat, after: VmStat, seconds: float) -> ReclaimWindow:
    return ReclaimWindow(
        seconds=seconds,
        anon_scanned=counter_delta(before.pgscan_anon, after.pgscan_anon),
        anon_stolen=counter_delta(before.pgsteal_anon, after.pgsteal_anon),
        file_scanned=counter_delta(before.pgscan_file, after.pgscan_file),
        file_stolen=counter_delta(before.pgsteal_file, after.pgsteal_file),
        anon_refaults=counter_delta(before.refault_anon, after.refault_anon),
        file_refaults=counter_delta(before.refault_file, after.refault_file),
    )


def efficiency_pct(scanned: int | None, stolen: int | None, min_scanned: int) -> float | None:
    """stolen/scanned in percent; None when the window holds too few scans to judge."""
    if scanned is None or stolen is None or scanned < max(1, min_scanned):
        return None
    return min(100.0, 100.0 * stolen / scanned)


def kernel_anon_reclaimable(anon_lru: int, swap_free: int) -> int:
    """zone_reclaimable_pages: all of anon, as soon as one swap slot is free."""
    return anon_lru if swap_free > 0 else 0


def ram_backed_anon_reclaimable(anon_lru: int, swaps: tuple[SwapDevice, ...]) -> int:
    """Only slots on devices that do not store pages in RAM free anything."""
    disk_free = sum(s.free_bytes for s in swaps if not s.kind.ram_backed)
    return min(anon_lru, disk_free)


def compression_anon_reclaimable(
    anon_lru: int, swaps: tuple[SwapDevice, ...], mem_total: int, assumed_ratio: float
) -> int:
    """RAM actually returned by pushing anon out, device by device in priority order."""
    remaining = anon_lru
    freed = 0.0
    # The pool of every zram device without a mem_limit grows from the same RAM.
    shared_headroom: float | None = None
    for swap in sorted(swaps, key=lambda s: -s.entry.priority):
        if remaining <= 0:
            break
        if not swap.kind.ram_backed:
            moved = min(remaining, swap.free_bytes)
            freed += moved
            remaining -= moved
            continue
        zram = swap.zram
        if zram is None:  # brd or RAM-backed loop: a page in costs a page
            continue
        ratio = zram.mm_stat.compression_ratio or assumed_ratio
        if ratio <= 1.0:
            continue
        if zram.mm_stat.mem_limit:
            headroom = float(zram.pool_headroom(mem_total))
        else:
            if shared_headroom is None:
                shared_headroom = float(zram.pool_headroom(mem_total))
            headroom = shared_headroom
        moved = min(float(remaining), float(swap.free_bytes), headroom * ratio)
        if moved <= 0:
            continue
        cost = moved / ratio
        if not zram.mm_stat.mem_limit and shared_headroom is not None:
            shared_headroom = max(0.0, shared_headroom - cost)
        freed += moved - cost
        remaining -= int(moved)
    return int(freed)


@dataclass(frozen=True, slots=True)
class ReclaimEstimate:
    """The model's answer for one snapshot (and window); bytes unless named otherwise."""

    mode: AnonMode
    free_bytes: int
    min_free_bytes: int
    file_reclaimable: int
    anon_lru: int
    kernel_reclaimable: int
    anon_reclaimable: int
    effective_available: int
    anon_efficiency_pct: float | None
    file_efficiency_pct: float | None
    anon_by_mode: dict[AnonMode, int] = field(default_factory=dict)

    @property
    def kernel_would_retry(self) -> bool:
        """should_reclaim_retry()'s watermark test: reclaimable + free above min."""
        return self.kernel_reclaimable + self.free_bytes > self.min_free_bytes


def estimate(
    snapshot: HostSnapshot,
    window: ReclaimWindow | None,
    params: ModelParams,
    anon_failing: bool | None = None,
) -> ReclaimEstimate:
    """Apply every anon mode to a snapshot; the chosen mode decides effective_available.

    `anon_failing` is the efficiency gate's verdict when the caller judges it over
    time (the daemon's HostModel); left None, this window alone decides (one-shot
    `zoomd status`).
    """
    mem = snapshot.meminfo
    anon_lru = mem.anon_lru
    file_lru = mem.file_lru
    swaps = snapshot.swaps
    kernel_anon = kernel_anon_reclaimable(anon_lru, snapshot.swap_free_bytes)
    anon_eff = file_eff = None
    if window is not None:
        anon_eff = efficiency_pct(window.anon_scanned, window.anon_stolen,
                                  params.min_scanned_pages)
        file_eff = efficiency_pct(window.file_scanned, window.file_stolen,
                                  params.min_scanned_pages)
    failing = (anon_failing if anon_failing is not None
               else anon_eff is not None and anon_eff < params.min_anon_efficiency)
    compression = compression_anon_reclaimable(
        kernel_anon, swaps, mem.total, params.assumed_compression_ratio
    )
    by_mode = {
        "kernel": kernel_anon,
        "ram-backed": ram_backed_anon_reclaimable(kernel_anon, swaps),
        "efficiency": 0 if failing else kernel_anon,
        "compression": compression,
        "auto": 0 if failing else compression,
    }
    anon = by_mode[params.anon]
    free_above_min = max(0, mem.free - snapshot.min_free_bytes)
    return ReclaimEstimate(
        mode=params.anon,
        free_bytes=mem.free,
        min_free_bytes=snapshot.min_free_bytes,
        file_reclaimable=file_lru,
        anon_lru=anon_lru,
        kernel_reclaimable=file_lru + kernel_anon,
        anon_reclaimable=anon,
        effective_available=free_above_min + file_lru + anon,
        anon_efficiency_pct=anon_eff,
        file_efficiency_pct=file_eff,
        anon_by_mode=by_mode,
    )
