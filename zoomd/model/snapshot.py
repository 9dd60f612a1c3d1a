"""Typed, immutable views of one moment of a host, as the model consumes them."""

from __future__ import annotations

from dataclasses import dataclass

from zoomd.kernel.blockdev import DeviceKind
from zoomd.kernel.meminfo import MemInfo
from zoomd.kernel.psi import Psi
from zoomd.kernel.swaps import SwapEntry
from zoomd.kernel.vmstat import VmStat
from zoomd.kernel.zram import ZramDevice


@dataclass(frozen=True, slots=True)
class SwapDevice:
    """An active swap area with the verdict on what backs it."""

    entry: SwapEntry
    kind: DeviceKind
    zram: ZramDevice | None  # the zram device behind it, when it is one

    @property
    def free_bytes(self) -> int:
        return max(0, self.entry.size_bytes - self.entry.used_bytes)


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """Everything the model reads about the host at one monotonic time."""

    monotonic: float
    page_size: int
    meminfo: MemInfo
    vmstat: VmStat
    min_free_bytes: int
    swaps: tuple[SwapDevice, ...]
    zram: tuple[ZramDevice, ...]
    zswap_enabled: bool | None
    psi_memory: Psi | None
    psi_io: Psi | None
    psi_cpu: Psi | None

    @property
    def all_ram_backed(self) -> bool:
        """True when there is swap and every active device stores its pages in RAM."""
        return bool(self.swaps) and all(s.kind.ram_backed for s in self.swaps)

    @property
    def swap_free_bytes(self) -> int:
        return sum(s.free_bytes for s in self.swaps)
