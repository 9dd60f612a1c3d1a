"""/proc/zoneinfo: per-zone free pages and watermarks (the kernel's retry arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass

from zoomd.errors import KernelFileError
from zoomd.kernel.keyvalue import kernel_fields, kernel_lines, parse_uint
from zoomd.kernel.root import Root


@dataclass(frozen=True, slots=True)
class Zone:
    """One zone; page counts."""

    node: int
    name: str
    free: int
    min: int
    low: int
    high: int
    managed: int


_ZONE_FIELDS = ("free", "min", "low", "high", "managed")


def parse_zoneinfo(text: str, path: str) -> list[Zone]:
    """Every zone with its figures; a zone lacking one of them is an error, not a 0.

    Every kernel zoomd runs on (PSI: 4.20+) prints pages free, min, low, high and
    managed for every zone, populated or not.
    """
    zones: list[Zone] = []
    current: dict[str, int | str] | None = None

    def flush() -> None:
        if current is None:
            return
        for name in _ZONE_FIELDS:
            if name not in current:
                label = "pages free" if name == "free" else name
                raise KernelFileError(path, "missing", f"{current['zone']}.{label}")
        zones.append(
            Zone(
                node=int(current["node"]),
                name=str(current["zone"]),
                free=int(current["free"]),
                min=int(current["min"]),
                low=int(current["low"]),
                high=int(current["high"]),
                managed=int(current["managed"]),
            )
        )

    for line in kernel_lines(text):
        parts = kernel_fields(line)
        if not parts:
            continue
        if parts[0] == "Node":
            if len(parts) != 4 or parts[2] != "zone" or not parts[1].endswith(","):
                raise KernelFileError(path, f"expected 'Node N, zone NAME', got {line!r}")
            flush()
            current = {"node": parse_uint(path, "Node", parts[1][:-1]), "zone": parts[3]}
            continue
        if current is None:
            continue
        if parts[:2] == ["pages", "free"]:
            if len(parts) != 3 or "free" in current:
                raise KernelFileError(path, f"unexpected {line!r}",
                                      f"{current['zone']}.pages free")
            current["free"] = parse_uint(path, f"{current['zone']}.pages free", parts[2])
        elif parts[0] in ("min", "low", "high", "managed") and parts[0] not in current:
            # The first occurrence is the zone's own (later ones belong to other lists).
            if len(parts) != 2:
                raise KernelFileError(path, f"unexpected {line!r}",
                                      f"{current['zone']}.{parts[0]}")
            current[parts[0]] = parse_uint(path, f"{current['zone']}.{parts[0]}", parts[1])
    flush()
    if not zones:
        raise KernelFileError(path, "no zone with watermarks found")
    return zones


def read_min_free_bytes(root: Root, page_size: int) -> int:
    """Sum of the zones' min watermarks; falls back to vm.min_free_kbytes."""
    text = root.read_optional("/proc/zoneinfo")
    if text is not None:
        return sum(z.min for z in parse_zoneinfo(text, root.join("/proc/zoneinfo"))) * page_size
    path = "/proc/sys/vm/min_free_kbytes"
    value = root.read_text(path).strip()
    return parse_uint(root.join(path), "min_free_kbytes", value) * 1024
