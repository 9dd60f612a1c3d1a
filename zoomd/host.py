"""Reads a whole-host snapshot, keeping the per-tick files open between reads.

The swap set changes rarely; device classification (sysfs walks, mountinfo) is
redone only when /proc/swaps' text changes, and zram mm_stat files are kept open.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from zoomd.errors import KernelFileError
from zoomd.kernel.blockdev import DeviceKind, classify_swap, zswap_enabled
from zoomd.kernel.hotfile import HotFile
from zoomd.kernel.meminfo import parse_meminfo
from zoomd.kernel.mountinfo import Mount, read_mountinfo
from zoomd.kernel.psi import FULL_SINCE_PSI, Psi, parse_psi
from zoomd.kernel.root import Root
from zoomd.kernel.swaps import SwapEntry, parse_swaps
from zoomd.kernel.vmstat import VmStat
from zoomd.kernel.zoneinfo import read_min_free_bytes
from zoomd.kernel.zram import ZramDevice, list_zram, parse_mm_stat, read_zram
from zoomd.model.snapshot import HostSnapshot, SwapDevice

# (root, swap path, swap type, mounts) -> verdict; replay substitutes recorded verdicts.
Classifier = Callable[[Root, str, str, "list[Mount] | None"], DeviceKind]


def swap_set_key(entries: list[SwapEntry]) -> tuple[tuple[str, str, int, int], ...]:
    """What identifies the swap set; `Used` changes every tick and is left out."""
    return tuple((e.path, e.type, e.size_bytes, e.priority) for e in entries)


def default_page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


class HostReader:
    """Samples the host; one instance per root, reused every tick."""

    def __init__(self, root: Root, page_size: int | None = None,
                 classify: Classifier | None = None) -> None:
        self.root = root
        self.page_size = page_size or default_page_size()
        self._classify_swap = classify or classify_swap
        self._meminfo = HotFile(root.join("/proc/meminfo"))
        self._vmstat = HotFile(root.join("/proc/vmstat"), bufsize=16384)
        self._swaps = HotFile(root.join("/proc/swaps"))
        self._psi: dict[str, HotFile | None] = {}
        for resource in ("memory", "io", "cpu"):
            path = root.join(f"/proc/pressure/{resource}")
            self._psi[resource] = HotFile(path) if os.path.exists(path) else None
        self._swap_set: tuple[tuple[str, str, int, int], ...] | None = None
        self._swap_devices: tuple[SwapDevice, ...] = ()
        self._zram_files: dict[str, HotFile] = {}
        self._zram_static: dict[str, ZramDevice] = {}
        # The zones' min watermarks: read at the first sample and kept (they move only
        # by sysctl, vm.min_free_kbytes or watermark_scale_factor, or memory hotplug);
        # refresh_watermarks() has the next sample read them again (zoomd run: SIGHUP).
        self._min_free: int | None = None

    @property
    def swaps_fd(self) -> int | None:
        """Descriptor of /proc/swaps, pollable for swap set changes (POLLPRI)."""
        return self._swaps.fd

    def _read_psi(self, resource: str) -> Psi | None:
        hot = self._psi.get(resource)
        if hot is None:
            return None
        return parse_psi(hot.read(), hot.path, resource in FULL_SINCE_PSI)

    def _refresh_zram(self) -> tuple[ZramDevice, ...]:
        names = list_zram(self.root)
        devices: list[ZramDevice] = []
        for name in names:
            hot = self._zram_files.get(name)
            static = self._zram_static.get(name)
            if hot is None or static is None:
                try:
                    static = read_zram(self.root, name)
                except KernelFileError:
                    if name in self.root.listdir("/sys/block"):
                        raise  # still there: its mm_stat is missing or unreadable
                    continue  # device vanished between listing and reading
                self._zram_static[name] = static
                hot = HotFile(self.root.join(f"/sys/block/{name}/mm_stat"), bufsize=512)
                self._zram_files[name] = hot
            mm = parse_mm_stat(hot.read(), hot.path)
            devices.append(
                ZramDevice(name, static.disksize, mm, static.comp_algorithm, static.backing_dev)
            )
        for gone in set(self._zram_files) - set(names):
            self._zram_files.pop(gone).close()
            self._zram_static.pop(gone, None)
        return tuple(devices)

    def refresh_watermarks(self) -> None:
        """Read the min watermarks again at the next sample."""
        self._min_free = None

    def invalidate_devices(self) -> None:
        """Forget classification and zram static facts (after a swap/zram change)."""
        self._swap_set = None
        for hot in self._zram_files.values():
            hot.close()
        self._zram_files.clear()
        self._zram_static.clear()

    def _classify(self, entries: list[SwapEntry], zram: tuple[ZramDevice, ...]) -> None:
        needs_mounts = self._classify_swap is classify_swap and any(
            e.type == "file" for e in entries)
        mounts = read_mountinfo(self.root) if needs_mounts else None
        by_name = {z.name: z for z in zram}
        devices = []
        for entry in entries:
            kind = self._classify_swap(self.root, entry.path, entry.type, mounts)
            zdev = by_name.get(kind.block_device or "") if kind.kind.startswith("zram") else None
            devices.append(SwapDevice(entry, kind, zdev))
        self._swap_devices = tuple(devices)
        self._swap_set = swap_set_key(entries)

    def sample(self, now: float | None = None) -> HostSnapshot:
        """One snapshot stamped `now` (default: the monotonic clock; replay: the trace's)."""
        now = time.monotonic() if now is None else now
        meminfo = parse_meminfo(self._meminfo.read(), self._meminfo.path)
        vmstat = VmStat.lazy(self._vmstat.read(), self._vmstat.path)  # ~10 of ~190 used
        zram = self._refresh_zram()
        entries = parse_swaps(self._swaps.read(), self._swaps.path)
        if swap_set_key(entries) != self._swap_set:
            self.invalidate_devices()
            zram = self._refresh_zram()
            self._classify(entries, zram)
        else:
            # Usage changes every tick; the verdicts do not.
            by_name = {z.name: z for z in zram}
            self._swap_devices = tuple(
                SwapDevice(e, d.kind, by_name.get(d.zram.name) if d.zram else None)
                for e, d in zip(entries, self._swap_devices, strict=True)
            )
        if self._min_free is None:
            self._min_free = read_min_free_bytes(self.root, self.page_size)
        return HostSnapshot(
            monotonic=now,
            page_size=self.page_size,
            meminfo=meminfo,
            vmstat=vmstat,
            min_free_bytes=self._min_free,
            swaps=self._swap_devices,
            zram=zram,
            zswap_enabled=zswap_enabled(self.root),
            psi_memory=self._read_psi("memory"),
            psi_io=self._read_psi("io"),
            psi_cpu=self._read_psi("cpu"),
        )

    def close(self) -> None:
        for hot in (self._meminfo, self._vmstat, self._swaps, *self._zram_files.values()):
            hot.close()
        for maybe in self._psi.values():
            if maybe is not None:
                maybe.close()
