"""/proc/vmstat: event counters (pages) parsed by name.

Old kernels lack pgscan_anon/pgsteal_anon (5.8) and the split workingset_refault
(5.9); new ones add fields. Accessors return None for what a kernel does not have,
so that a model can say "no evidence" instead of computing from zeros.
"""

from __future__ import annotations

from zoomd.errors import KernelFileError
from zoomd.kernel.keyvalue import parse_name_values, pick_values
from zoomd.kernel.root import Root

# Counted by every kernel (nr_free_pages since 2.6.x): a vmstat without it is not one.
REQUIRED = "nr_free_pages"


class VmStat:
    """All counters of one reading, keyed by the kernel's names.

    Built from a dict, or from the file's text with `VmStat.lazy` (what the daemon does
    every tick): a counter is then parsed, strictly, when first asked for, and the
    whole file only if `counters` is wanted. The model reads about ten of ~190.
    """

    __slots__ = ("_complete", "_counters", "_path", "_text")

    def __init__(self, counters: dict[str, int]) -> None:
        self._counters: dict[str, int | None] = dict(counters)
        self._complete = True
        self._text = ""
        self._path = ""

    @classmethod
    def lazy(cls, text: str, path: str) -> VmStat:
        stat = cls.__new__(cls)
        stat._counters = {}
        stat._complete = False
        stat._text = text
        stat._path = path
        if stat.get(REQUIRED) is None:  # an empty file would read as "no evidence"
            raise KernelFileError(path, "missing", REQUIRED)
        return stat

    @property
    def counters(self) -> dict[str, int]:
        if not self._complete:
            self._counters = dict(parse_name_values(self._text, self._path))
            self._complete = True
        return {k: v for k, v in self._counters.items() if v is not None}

    def get(self, name: str) -> int | None:
        if self._complete or name in self._counters:
            return self._counters.get(name)
        value = pick_values(self._text, self._path, (name,)).get(name)
        self._counters[name] = value  # None: this kernel has no such counter
        return value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VmStat) and self.counters == other.counters

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"VmStat({self.counters!r})"

    def sum_of(self, *names: str) -> int | None:
        """Sum of counters, None if any is missing (no partial sums pass as facts)."""
        total = 0
        for name in names:
            value = self.get(name)
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
    def pgsteal_total(self) -> int | None:
        """All pages reclaimed (what refaults are a share of); as pgscan_total."""
        split = self.sum_of("pgsteal_anon", "pgsteal_file")
        if split is not None:
            return split
        return self.sum_of("pgsteal_kswapd", "pgsteal_direct")

    @property
    def refault_anon(self) -> int | None:
        return self.get("workingset_refault_anon")

    @property
    def refault_file(self) -> int | None:
        value = self.get("workingset_refault_file")
        return value if value is not None else self.get("workingset_refault")

    @property
    def refaults(self) -> int | None:
        """Host refaults, anon plus file; None without file refaults (no such counter)."""
        file = self.refault_file
        return None if file is None else (self.refault_anon or 0) + file


def parse_vmstat(text: str, path: str) -> VmStat:
    counters = parse_name_values(text, path)
    if REQUIRED not in counters:
        raise KernelFileError(path, "missing", REQUIRED)
    return VmStat(counters)


def read_vmstat(root: Root) -> VmStat:
    return parse_vmstat(root.read_text("/proc/vmstat"), root.join("/proc/vmstat"))
