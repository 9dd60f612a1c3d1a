"""The text `oomctl dump` prints (org.freedesktop.oom1.Manager.DumpByFileDescriptor).

Layout as systemd-oomd writes it (src/oom/oomd-manager.c manager_get_dump_string,
src/oom/oomd-util.c oomd_dump_*): "current" is systemd 253 and later, "v252" the
Debian 12 layout (no commas, no per-cgroup duration). Numbers use systemd's own
formats: load-average fixed point for percentages, IEC bytes, time spans.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.meminfo import MemInfo
from zoomd.systemd.managed import ManagedCgroup
from zoomd.systemd.oomdconf import OomdConf
from zoomd.systemd.values import (
    format_bytes,
    format_protection,
    format_timespan,
    loadavg_format,
    loadavg_from_float,
    loadavg_from_permyriad,
    permyriad_to_percent,
)


@dataclass
class DumpState:
    """What the dump shows besides the kernel's figures."""

    dry_run: bool
    conf: OomdConf
    swap: list[ManagedCgroup]
    pressure: list[ManagedCgroup]


def _int_file(reader: CgroupReader, path: str, name: str) -> int | None:
    text = reader.root.read_optional(f"{reader.layout.v2_dir(path)}/{name}")
    if text is None:
        return None
    value = text.strip()
    if value == "max":
        return (1 << 64) - 1
    return int(value) if value.isdigit() else None


class Dumper:
    """Renders the dump; remembers each cgroup's pgscan for "Last Pgscan"."""

    def __init__(self, reader: CgroupReader, style: str = "current") -> None:
        self.reader = reader
        self.style = style
        self.last_pgscan: dict[str, int] = {}

    def render(self, state: DumpState, meminfo: MemInfo) -> str:
        conf = state.conf
        sep = ", " if self.style == "current" else " "
        available = meminfo.available if meminfo.available is not None else meminfo.free
        mem_used = meminfo.total - available
        swap_used = meminfo.swap_total - meminfo.swap_free
        out = [
            f"Dry Run: {'yes' if state.dry_run else 'no'}",
            f"Swap Used Limit: {permyriad_to_percent(conf.swap_used_limit)}",
            "Default Memory Pressure Limit: "
            f"{loadavg_format(loadavg_from_permyriad(conf.pressure_limit))}%",
            "Default Memory Pressure Duration: "
            f"{format_timespan(conf.pressure_duration_usec)}",
            "System Context:",
            f"\tMemory: Used: {format_bytes(mem_used)}{sep}Total: {format_bytes(meminfo.total)}",
            f"\tSwap: Used: {format_bytes(swap_used)}{sep}"
            f"Total: {format_bytes(meminfo.swap_total)}",
            "Swap Monitored CGroups:",
        ]
        for entry in state.swap:
            out.append(f"\tPath: {entry.path}")
            if entry.path == "/":
                out.append("\t\tSwap Usage: (see System Context)")
            else:
                used = _int_file(self.reader, entry.path, "memory.swap.current") or 0
                out.append(f"\t\tSwap Usage: {format_bytes(used)}")
        out.append("Memory Pressure Monitored CGroups:")
        for entry in state.pressure:
            out.extend(self._pressure_lines(entry, conf, mem_used, sep))
        return "\n".join(out) + "\n"

    def _pressure_lines(self, entry: ManagedCgroup, conf: OomdConf, mem_used: int,
                        sep: str) -> list[str]:
        path = entry.path
        limit = loadavg_format(loadavg_from_permyriad(entry.effective_limit(conf)))
        lines = [f"\tPath: {path}", f"\t\tMemory Pressure Limit: {limit}%"]
        if self.style == "current":
            lines.append("\t\tMemory Pressure Duration: "
                         f"{format_timespan(entry.effective_duration(conf))}")
        psi = self.reader.pressure(path)
        full = psi.full if psi is not None else None
        avgs = [loadavg_format(loadavg_from_float(v)) for v in
                ((full.avg10, full.avg60, full.avg300) if full else (0.0, 0.0, 0.0))]
        total = format_timespan(full.total_us) if full else "0"
        lines.append(f"\t\tPressure: Avg10: {avgs[0]}{sep}Avg60: {avgs[1]}{sep}"
                     f"Avg300: {avgs[2]}{sep}Total: {total}")
        if path == "/":
            lines.append(f"\t\tCurrent Memory Usage: {format_bytes(mem_used)}")
            return lines
        memory = self.reader.memory(path)
        current = memory.current if memory is not None and memory.current is not None else 0
        pgscan = (memory.get("pgscan") if memory is not None else None) or 0
        last = self.last_pgscan.get(path, 0)
        self.last_pgscan[path] = pgscan
        lines += [
            f"\t\tCurrent Memory Usage: {format_bytes(current)}",
            f"\t\tMemory Min: {format_protection(_int_file(self.reader, path, 'memory.min'))}",
            f"\t\tMemory Low: {format_protection(_int_file(self.reader, path, 'memory.low'))}",
            f"\t\tPgscan: {pgscan}",
            f"\t\tLast Pgscan: {last}",
        ]
        return lines
