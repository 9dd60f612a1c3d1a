"""Builders of synthetic snapshots for pure model and trigger tests."""

from __future__ import annotations

from zoomd.kernel.blockdev import DeviceKind
from zoomd.kernel.meminfo import MemInfo
from zoomd.kernel.swaps import SwapEntry
from zoomd.kernel.vmstat import VmStat
from zoomd.kernel.zram import MmStat, ZramDevice
from zoomd.model.snapshot import HostSnapshot, SwapDevice

GiB = 1 << 30
MiB = 1 << 20


def meminfo(total: int, free: int, anon: int, file: int, swap_total: int = 0,
            swap_free: int = 0) -> MemInfo:
    return MemInfo({
        "MemTotal": total, "MemFree": free, "MemAvailable": free + file,
        "Active(anon)": anon // 2, "Inactive(anon)": anon - anon // 2,
        "Active(file)": file // 2, "Inactive(file)": file - file // 2,
        "SwapTotal": swap_total, "SwapFree": swap_free,
    })


def zram_swap(size: int, used: int, orig: int, mem_used: int, mem_limit: int = 0,
              name: str = "zram0", priority: int = 100) -> SwapDevice:
    zram = ZramDevice(name, size, MmStat(orig, mem_used, mem_used, mem_limit, mem_used),
                      "lzo-rle", None)
    return SwapDevice(SwapEntry(f"/dev/{name}", "partition", size, used, priority),
                      DeviceKind("zram", True, name, "test"), zram)


def disk_swap(size: int, used: int, path: str = "/dev/sda3", priority: int = -2) -> SwapDevice:
    return SwapDevice(SwapEntry(path, "partition", size, used, priority),
                      DeviceKind("partition", False, "sda3", "test"), None)


def snapshot(mem: MemInfo, swaps: tuple[SwapDevice, ...] = (), min_free: int = 64 * MiB,
             vm: dict[str, int] | None = None, t: float = 0.0) -> HostSnapshot:
    zram = tuple(s.zram for s in swaps if s.zram is not None)
    return HostSnapshot(
        monotonic=t, page_size=4096, meminfo=mem, vmstat=VmStat(dict(vm or {})),
        min_free_bytes=min_free, swaps=swaps, zram=zram, zswap_enabled=False,
        psi_memory=None, psi_io=None, psi_cpu=None,
    )
