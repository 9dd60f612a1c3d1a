"""/proc/vmstat: event counters (pages) parsed by name.

Old kernels lack pgscan_anon/pgsteal_anon (5.8) and the split workingset_refault
(5.9); new ones add fields. Accessors return None for what a kernel does not have,
so that a model can say "no evidence" instead of computing from zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoomd.kernel.keyvalue import parse_name_values
from zoomd.kernel.root import Root


@dataclass(frozen=True, slots=True)
class VmStat:
    """All counters of one reading, keyed by the kernel's names."""

    counters: dict[str, int]

    def get(self, name: str) -> int | None:
        return self.counters.get(name)

    def sum_of(self, *names: str) -> int | None:
        """Sum of counters, None if any is missing (no partial sums pass as facts)."""
        total = 0
        for name in names:
            value = self.counters.get(name)
            if value is None:
                return None
            total += value
        return total

    @property
    def pgscan_anon(self) -> int | None:
        return self.get("pgscan_anon")

    @property
    def pgsteal_anon(self) -> int | None:
        return self.get("pgsteal_anon")

    @property
    def pgscan_file(self) -> int | None:
        return self.get("pgscan_file")

    @property
    def pgsteal_file(self) -> int | None:
        return self.get("pgsteal_file")

    @property
    def pgscan_total(self) -> int | None:
        """All LRU scans. pgscan_anon/file (5.8+) count cgroup-limit reclaim too, which
        pgscan_kswapd/direct leave out; older kernels only have the latter."""
        split = self.sum_of("pgscan_anon", "pgscan_file")
        if split is not None:
            return split
        return self.sum_of("pgscan_kswapd", "pgscan_direct")

    @property
    def refault_anon(self) -> int | None:
        return self.get("workingset_refault_anon")

    @property
    def refault_file(self) -> int | None:
        value = self.get("workingset_refault_file")
        return value if value is not None else self.get("workingset_refault")


def parse_vmstat(text: str, path: str) -> VmStat:
    return VmStat(parse_name_values(text, path))


def read_vmstat(root: Root) -> VmStat:
    return parse_vmstat(root.read_text("/proc/vmstat"), root.join("/proc/vmstat"))
