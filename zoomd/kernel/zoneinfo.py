"""/proc/zoneinfo: per-zone free pages and watermarks (the kernel's retry arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass

from zoomd.errors import KernelFileError
from zoomd.kernel.keyvalue import parse_int
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


def parse_zoneinfo(text: str, path: str) -> list[Zone]:
    zones: list[Zone] = []
    current: dict[str, int | str] | None = None

    def flush() -> None:
        if current is not None and "min" in current:
            zones.append(
                Zone(
                    node=int(current["node"]),
                    name=str(current["zone"]),
                    free=int(current.get("free", 0)),
                    min=int(current["min"]),
                    low=int(current.get("low", 0)),
                    high=int(current.get("high", 0)),
                    managed=int(current.get("managed", 0)),
                )
            )

    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "Node" and len(parts) >= 4 and parts[2] == "zone":
            flush()
            current = {"node": parse_int(path, "Node", parts[1].rstrip(",")), "zone": parts[3]}
            continue
        if current is None:
            continue
        if parts[:2] == ["pages", "free"] and len(parts) == 3:
            current["free"] = parse_int(path, f"{current['zone']}.pages free", parts[2])
        elif (
            parts[0] in ("min", "low", "high", "managed")
            and len(parts) == 2
            and parts[0] not in current  # first occurrence is the zone's own
        ):
            current[parts[0]] = parse_int(path, f"{current['zone']}.{parts[0]}", parts[1])
    flush()
    if not zones:
        raise KernelFileError(path, "no zone with watermarks found")
    return zones


def read_zoneinfo(root: Root) -> list[Zone]:
    return parse_zoneinfo(root.read_text("/proc/zoneinfo"), root.join("/proc/zoneinfo"))


def read_min_free_bytes(root: Root, page_size: int) -> int:
    """Sum of the zones' min watermarks; falls back to vm.min_free_kbytes."""
    text = root.read_optional("/proc/zoneinfo")
    if text is not None:
        return sum(z.min for z in parse_zoneinfo(text, root.join("/proc/zoneinfo"))) * page_size
    path = "/proc/sys/vm/min_free_kbytes"
    value = root.read_text(path).strip()
    return parse_int(root.join(path), "min_free_kbytes", value) * 1024
