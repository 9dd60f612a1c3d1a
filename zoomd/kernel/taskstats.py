"""struct taskstats, decoded by version from the raw TASKSTATS_TYPE_STATS bytes.

Why our own decoder: pyroute2 0.9.7 decodes v16 (what 6.15+ kernels send) only up
to cpu_scaled_run_real_total, which is before every memory delay we need. The
layouts below follow include/uapi/linux/taskstats.h: fields are appended per
version (v8 ... v14, v16, v17), except v15, which inserted delay max/min in the
middle of the struct and was replaced by v16 (kernel commit "taskstats: fix struct
taskstats breaks backward compatibility since version 15"). Offsets are those of a
64-bit kernel (x86_64, aarch64); the bytes are in host order.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from zoomd.errors import KernelFileError

SOURCE = "netlink TASKSTATS reply"
OLDEST_VERSION = 8
NEWEST_KNOWN_VERSION = 17

# Every delay the kernel accounts, in header order, and the ones that are memory.
DELAY_KINDS = ("cpu", "blkio", "swapin", "freepages", "thrashing", "compact", "wpcopy", "irq")
MEMORY_KINDS = ("freepages", "thrashing", "swapin", "compact")

# (name, struct code, alignment); alignment is the C one, aligned(8) included.
_Field = tuple[str, str, int]


def _u64(*names: str) -> list[_Field]:
    return [(n, "Q", 8) for n in names]


_V8: list[_Field] = [
    ("version", "H", 2), ("ac_exitcode", "I", 4), ("ac_flag", "B", 1), ("ac_nice", "B", 1),
    *_u64("cpu_count", "cpu_delay_total", "blkio_count", "blkio_delay_total",
          "swapin_count", "swapin_delay_total", "cpu_run_real_total", "cpu_run_virtual_total"),
    ("ac_comm", "32s", 1), ("ac_sched", "B", 8), ("ac_pad", "3s", 1),
    ("ac_uid", "I", 8), ("ac_gid", "I", 4), ("ac_pid", "I", 4), ("ac_ppid", "I", 4),
    ("ac_btime", "I", 4),
    *_u64("ac_etime", "ac_utime", "ac_stime", "ac_minflt", "ac_majflt",
          "coremem", "virtmem", "hiwater_rss", "hiwater_vm",
          "read_char", "write_char", "read_syscalls", "write_syscalls",
          "read_bytes", "write_bytes", "cancelled_write_bytes", "nvcsw", "nivcsw",
          "ac_utimescaled", "ac_stimescaled", "cpu_scaled_run_real_total",
          "freepages_count", "freepages_delay_total"),
]
_APPENDED: dict[int, list[_Field]] = {
    9: _u64("thrashing_count", "thrashing_delay_total"),
    10: _u64("ac_btime64"),
    11: _u64("compact_count", "compact_delay_total"),
    12: [("ac_tgid", "I", 4), *_u64("ac_tgetime", "ac_exe_dev", "ac_exe_inode")],
    13: _u64("wpcopy_count", "wpcopy_delay_total"),
    14: _u64("irq_count", "irq_delay_total"),
    16: _u64(*(f"{k}_delay_{m}" for k in DELAY_KINDS for m in ("max", "min"))),
    # struct timespec64 {s64 tv_sec; long tv_nsec;} per kind: 16 bytes on 64-bit.
    17: _u64(*(f"{k}_delay_max_ts_{p}" for k in DELAY_KINDS for p in ("sec", "nsec"))),
}


def _v15(v14: list[_Field]) -> list[_Field]:
    """v15: max and min right after each kind's delay total (the layout v16 undid)."""
    out: list[_Field] = []
    for item in v14:
        out.append(item)
        name = item[0]
        if name.endswith("_delay_total") and name[: -len("_delay_total")] in DELAY_KINDS:
            kind = name[: -len("_delay_total")]
            out.extend(_u64(f"{kind}_delay_max", f"{kind}_delay_min"))
    return out


@dataclass(frozen=True, slots=True)
class Layout:
    """Offsets of one struct version: name -> (offset, struct code), and its size."""

    version: int
    fields: Mapping[str, tuple[int, str]]
    size: int


def _layout(version: int, fields: list[_Field]) -> Layout:
    offsets: dict[str, tuple[int, str]] = {}
    offset = 0
    for name, code, align in fields:
        offset = -(-offset // align) * align
        offsets[name] = (offset, code)
        offset += struct.calcsize("=" + code)
    size = -(-offset // 8) * 8  # the struct holds u64s: its size is a multiple of 8
    return Layout(version, MappingProxyType(offsets), size)


def _build_layouts() -> dict[int, Layout]:
    layouts: dict[int, Layout] = {}
    fields = list(_V8)
    for version in range(OLDEST_VERSION, NEWEST_KNOWN_VERSION + 1):
        if version == 15:
            layouts[15] = _layout(15, _v15(fields))
            continue
        fields = fields + _APPENDED.get(version, [])
        layouts[version] = _layout(version, fields)
    return layouts


LAYOUTS: Mapping[int, Layout] = MappingProxyType(_build_layouts())


def layout_for(version: int) -> Layout:
    """The layout to read a struct of `version` with; newer ones only append fields."""
    if version < OLDEST_VERSION:
        raise KernelFileError(SOURCE, f"struct version {version} is older than the oldest "
                                      f"decoded ({OLDEST_VERSION})", "version")
    return LAYOUTS[min(version, NEWEST_KNOWN_VERSION)]


@dataclass(frozen=True, slots=True)
class Delay:
    """One kind of delay of a task (or the sum over a thread group), since it started."""

    count: int
    total_ns: int
    max_ns: int | None = None  # v15+: the longest single delay
    min_ns: int | None = None  # v15+: the shortest non-zero delay


@dataclass(frozen=True, slots=True)
class TaskStats:
    """What the kernel reported for one PID or TGID; kinds absent from `delays` are
    ones this struct version does not carry (not zero)."""

    version: int
    pid: int | None  # the thread asked for (None for a TGID query)
    tgid: int | None  # the thread group (None when neither asked for nor in the struct)
    comm: str  # empty in TGID replies
    delays: Mapping[str, Delay] = field(default_factory=dict)

    def delay(self, kind: str) -> Delay | None:
        return self.delays.get(kind)

    def total_ns(self, kinds: tuple[str, ...] = MEMORY_KINDS) -> int:
        """Sum of the delay totals of `kinds` that this version carries."""
        return sum(d.total_ns for k, d in self.delays.items() if k in kinds)


def decode(payload: bytes, *, pid: int | None = None, tgid: int | None = None,
           byteorder: str = "=") -> TaskStats:
    """Decode a struct taskstats; `pid`/`tgid` are the ids the reply was tagged with.

    The payload may be longer than the layout (a newer kernel); shorter is an error,
    because a missing field must never read as a zero delay.
    """
    if len(payload) < 2:
        raise KernelFileError(SOURCE, f"{len(payload)} bytes, too short for a version",
                              "version")
    (version,) = struct.unpack_from(byteorder + "H", payload, 0)
    layout = layout_for(version)
    if len(payload) < layout.size:
        raise KernelFileError(SOURCE, f"{len(payload)} bytes, struct version {version} "
                                      f"needs {layout.size}", "stats")

    def get(name: str) -> int | None:
        spec = layout.fields.get(name)
        if spec is None:
            return None
        return int(struct.unpack_from(byteorder + spec[1], payload, spec[0])[0])

    delays: dict[str, Delay] = {}
    for kind in DELAY_KINDS:
        count, total = get(f"{kind}_count"), get(f"{kind}_delay_total")
        if count is not None and total is not None:
            delays[kind] = Delay(count, total, get(f"{kind}_delay_max"),
                                 get(f"{kind}_delay_min"))
    comm_at = layout.fields["ac_comm"][0]
    comm = payload[comm_at:comm_at + 32].split(b"\0", 1)[0].decode("utf-8", "replace")
    ac_pid, ac_tgid = get("ac_pid"), get("ac_tgid")
    if pid is None and tgid is None:
        pid = ac_pid or None
        tgid = ac_tgid or None
    elif tgid is None and ac_tgid:
        tgid = ac_tgid
    return TaskStats(version, pid, tgid, comm, MappingProxyType(delays))
