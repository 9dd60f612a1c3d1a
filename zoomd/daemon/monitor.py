"""Samples a watched group every tick: its pressure file is kept open, the rest is cheap.

"/" is the whole host: system PSI, /proc/vmstat and the host reclaim model. Any
other path is a cgroup: its memory.pressure, and its memory figures from v2 or,
on hybrid hosts, from the v1 memory cgroup its processes share.
"""

from __future__ import annotations

import dataclasses
import os

from zoomd.daemon.sample import GroupSample
from zoomd.errors import KernelFileError
from zoomd.kernel.cgroups import CgroupMemory, CgroupReader
from zoomd.kernel.hotfile import FdBudget, HotFileCache, process_budget
from zoomd.kernel.psi import parse_psi
from zoomd.model.reclaim import ReclaimEstimate
from zoomd.model.snapshot import HostSnapshot

V1_PATH_REFRESH_S = 10.0
# The memory.stat fields a sample uses (of ~60): parsing only these halves the cost of
# watching a group.
SAMPLED_FIELDS = ("anon", "file", "workingset_refault_anon", "workingset_refault_file",
                  "pgscan", "pgsteal", "pgpgout", "swap")


def group_effective_available(mem: CgroupMemory, host: ReclaimEstimate,
                              mem_total: int) -> tuple[int | None, int]:
    """Effective available of a group against its limit, and the basis it is relative to.

    Anon counts in the same proportion as on the host under the chosen mode: the
    same swap devices, ratio and efficiency gate decide what pushing it out gives.
    """
    if mem.limit is None or mem.current is None:
        return host.effective_available, mem_total
    kernel_anon = host.anon_by_mode.get("kernel", 0)
    fraction = host.anon_reclaimable / kernel_anon if kernel_anon > 0 else 0.0
    anon = int((mem.anon or 0) * fraction)
    headroom = max(0, mem.limit - mem.current)
    return headroom + (mem.file or 0) + anon, mem.limit


class GroupMonitor:
    """One watched group's sampler."""

    def __init__(self, path: str, reader: CgroupReader, v1_path: str | None = None,
                 limit: int | None = None, *, budget: FdBudget) -> None:
        """`v1_path`/`limit`: a memory domain's own v1 memory cgroup and limit, found by
        discovery (daemon/domains.py); otherwise the v1 group is looked for, and used
        only when its figures are provably the group's own."""
        self.path = path
        self.reader = reader
        self.pinned_v1 = v1_path
        self.limit = limit
        self._v1_path: str | None = v1_path
        self._v1_checked = 1e18 if v1_path else -1e9
        self._pressure_path = reader.root.join(
            "/proc/pressure/memory" if path == "/"
            else f"{reader.layout.v2_dir(path)}/memory.pressure")
        # Kept open (within the descriptor budget) and re-read every tick; the pressure
        # file apart, as a move of the group's processes between v1 groups drops only
        # the memory files.
        self._pressure = HotFileCache(budget)
        self._files = HotFileCache(budget)
        self._joined: dict[str, str] = {}  # kernel path -> path under the root, per file
        if path != "/" and not os.path.exists(self.pressure_path):
            raise KernelFileError(self.pressure_path, "missing")

    @property
    def pressure_path(self) -> str:
        return self._pressure_path

    def close(self) -> None:
        self._pressure.close()
        self._files.close()

    def _text_of(self, kernel_path: str) -> str | None:
        full = self._joined.get(kernel_path)
        if full is None:
            full = self._joined[kernel_path] = self.reader.root.join(kernel_path)
        return self._files.text(full)

    def _memory(self, now: float) -> CgroupMemory | None:
        """`now`: the snapshot's clock, so a replay refreshes exactly when the daemon did."""
        reader = self.reader
        if reader.layout.memory_on_v2:
            return reader.memory_v2(self.path, self._text_of, SAMPLED_FIELDS,
                                    with_swap=self.limit is not None)
        if now - self._v1_checked > V1_PATH_REFRESH_S:
            v1_path = reader.owned_v1_memory_path(self.path)
            if v1_path != self._v1_path:
                self._files.close()  # the group's processes moved: drop the old files
                self._joined.clear()
            self._v1_path = v1_path
            self._v1_checked = now
        if self._v1_path and self._v1_path != "/":
            found = reader.memory_v1(self._v1_path, self._text_of, SAMPLED_FIELDS)
            if found is not None:
                return found
            if self.pinned_v1 is None:
                self._v1_checked = -1e9  # the v1 group vanished: look again next tick
        # No v1 memory group of its own (its processes sit in the v1 root, or it has
        # none): nothing a sample uses. reader.memory() would walk the whole subtree
        # and sum every process's /proc status on every tick, for figures without
        # refaults or a limit, which give the same sample as none at all.
        return None

    def sample(self, host: HostSnapshot, estimate: ReclaimEstimate) -> GroupSample:
        if self.path == "/":
            return host_sample(host, estimate)
        vm = host.vmstat
        anon_scanned, anon_stolen = vm.pgscan_anon, vm.pgsteal_anon
        pressure_path = self.pressure_path
        text = self._pressure.text(pressure_path)
        if text is None:
            raise KernelFileError(pressure_path, "missing")
        psi = parse_psi(text, pressure_path)
        mem = self._memory(host.monotonic)
        refaults = pgscan = evicted = swap = None
        effective: int | None = estimate.effective_available
        basis: int | None = host.meminfo.total
        refault_basis: int | None = basis
        if mem is not None:
            refaults = mem.refaults
            pgscan = mem.get("pgscan")
            evicted = mem.get("pgsteal")
            if evicted is None:
                evicted = mem.get("pgpgout")
            swap = mem.swap if mem.swap is not None else mem.get("swap")
            if self.limit is not None and (mem.limit is None or self.limit < mem.limit):
                mem = dataclasses.replace(mem, limit=self.limit)  # memory.high, memsw
            effective, basis = group_effective_available(mem, estimate, host.meminfo.total)
            # Refault rates relative to the group's limit, or to what it holds.
            refault_basis = mem.limit or mem.current or basis
        return GroupSample(
            t=host.monotonic,
            psi_some_us=psi.some.total_us,
            psi_full_us=psi.full.total_us if psi.full else None,
            psi_full_avg10=psi.full.avg10 if psi.full else None,
            refaults=refaults,
            pgscan=pgscan if pgscan is not None else vm.pgscan_total,
            anon_scanned=anon_scanned,
            anon_stolen=anon_stolen,
            memory_basis=basis,
            refault_basis=refault_basis,
            effective_available=effective,
            all_swap_ram_backed=host.all_ram_backed,
            evicted=evicted,
            swap=swap,
        )


def host_sample(host: HostSnapshot, estimate: ReclaimEstimate) -> GroupSample:
    """The host's ("/") sample: system-wide PSI, /proc/vmstat and /proc/meminfo."""
    vm, psi = host.vmstat, host.psi_memory
    return GroupSample(
        t=host.monotonic,
        psi_some_us=psi.some.total_us if psi else None,
        psi_full_us=psi.full.total_us if psi and psi.full else None,
        psi_full_avg10=psi.full.avg10 if psi and psi.full else None,
        refaults=vm.refaults,
        pgscan=vm.pgscan_total,
        anon_scanned=vm.pgscan_anon,
        anon_stolen=vm.pgsteal_anon,
        memory_basis=host.meminfo.total,
        refault_basis=host.meminfo.total,
        effective_available=estimate.effective_available,
        all_swap_ram_backed=host.all_ram_backed,
        evicted=vm.pgsteal_total,
        swap=_host_swap_used(host),
    )


def _host_swap_used(host: HostSnapshot) -> int | None:
    fields = host.meminfo.fields
    total, free = fields.get("SwapTotal"), fields.get("SwapFree")
    return None if total is None or free is None else max(0, total - free)


def check_monitored(path: str, reader: CgroupReader) -> None:
    """A missing group is reported, not guessed at (`run` and `zoomd check`)."""
    if path != "/" and not reader.exists(path):
        raise KernelFileError(reader.root.join(reader.layout.v2_dir(path)),
                              "monitored cgroup does not exist")


def open_monitor(path: str, reader: CgroupReader, v1_path: str | None = None,
                 limit: int | None = None, *, budget: FdBudget | None = None) -> GroupMonitor:
    """A monitor for `path` (a group that exists, see check_monitored); its files kept
    open within `budget` (None: a budget of its own, sized to the soft limit now)."""
    check_monitored(path, reader)
    return GroupMonitor(path, reader, v1_path, limit,
                        budget=budget if budget is not None else process_budget())
