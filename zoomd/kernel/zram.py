"""zram devices: mm_stat (5 to 9 columns by kernel version), disksize, algorithm, writeback."""

from __future__ import annotations

from dataclasses import dataclass

from zoomd.errors import KernelFileError
from zoomd.kernel.keyvalue import kernel_fields, parse_uint
from zoomd.kernel.root import Root

# Documentation/admin-guide/blockdev/zram.rst; the first five are bytes, the rest pages.
MM_STAT_COLUMNS = (
    "orig_data_size",
    "compr_data_size",
    "mem_used_total",
    "mem_limit",
    "mem_used_max",
    "same_pages",
    "pages_compacted",
    "huge_pages",
    "huge_pages_since",
)
MIN_MM_STAT_COLUMNS = 5


@dataclass(frozen=True, slots=True)
class MmStat:
    """zram mm_stat; columns a kernel does not print are None."""

    orig_data_size: int
    compr_data_size: int
    mem_used_total: int
    mem_limit: int  # 0 = no limit
    mem_used_max: int
    same_pages: int | None = None
    pages_compacted: int | None = None
    huge_pages: int | None = None
    huge_pages_since: int | None = None

    @property
    def compression_ratio(self) -> float | None:
        """Bytes stored per byte of RAM the pool costs; None while the device is empty."""
        if self.orig_data_size <= 0 or self.mem_used_total <= 0:
            return None
        return self.orig_data_size / self.mem_used_total


def parse_mm_stat(text: str, path: str) -> MmStat:
    parts = kernel_fields(text.rstrip("\n"))
    if len(parts) < MIN_MM_STAT_COLUMNS:
        raise KernelFileError(
            path, f"expected at least {MIN_MM_STAT_COLUMNS} columns, got {len(parts)}"
        )
    values = [
        parse_uint(path, name, raw) for name, raw in zip(MM_STAT_COLUMNS, parts, strict=False)
    ]
    return MmStat(*values)


@dataclass(frozen=True, slots=True)
class ZramDevice:
    """One zram device and its pool figures."""

    name: str
    disksize: int
    mm_stat: MmStat
    comp_algorithm: str | None
    backing_dev: str | None  # None: not configured or no CONFIG_ZRAM_WRITEBACK

    def pool_headroom(self, mem_total: int) -> int:
        """RAM the pool may still take: up to mem_limit, or up to all of RAM."""
        limit = self.mm_stat.mem_limit or mem_total
        return max(0, limit - self.mm_stat.mem_used_total)


def _selected_algorithm(text: str) -> str | None:
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    words = text.split()
    return words[0] if len(words) == 1 else None


def read_zram(root: Root, name: str) -> ZramDevice:
    base = f"/sys/block/{name}"
    mm_path = f"{base}/mm_stat"
    mm = parse_mm_stat(root.read_text(mm_path), root.join(mm_path))
    disksize_text = root.read_text(f"{base}/disksize").strip()
    disksize = parse_uint(root.join(f"{base}/disksize"), "disksize", disksize_text)
    algorithm_text = root.read_optional(f"{base}/comp_algorithm")
    backing_text = root.read_optional(f"{base}/backing_dev")
    backing = backing_text.strip() if backing_text is not None else None
    if backing in ("none", ""):
        backing = None
    return ZramDevice(
        name=name,
        disksize=disksize,
        mm_stat=mm,
        comp_algorithm=_selected_algorithm(algorithm_text) if algorithm_text else None,
        backing_dev=backing,
    )


def list_zram(root: Root) -> list[str]:
    return [n for n in root.listdir("/sys/block") if n.startswith("zram")]
