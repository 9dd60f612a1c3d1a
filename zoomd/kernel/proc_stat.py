"""/proc/PID/stat: the few fields zoomd needs of a process, by their position.

The line has no field names: after "pid (comm)" (comm may hold spaces and
parentheses, so the split is at the last ')') come state, ppid, ... in the order
proc(5) gives. A line cut short or holding what the kernel never writes gives None
for that field, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoomd.kernel.keyvalue import is_decimal
from zoomd.kernel.root import Root

PF_KTHREAD = 0x00200000
# Positions after the comm field: state is the 3rd field of the line, index 0 here.
_FLAGS, _MAJFLT = 6, 9  # the 9th and 12th fields


@dataclass(frozen=True, slots=True)
class ProcStat:
    """state (R, S, D, Z...), flags (PF_* bits) and majflt (major faults so far)."""

    state: str | None
    flags: int | None
    majflt: int | None

    @property
    def kernel_thread(self) -> bool:
        return self.flags is not None and bool(self.flags & PF_KTHREAD)


def parse_proc_stat(text: str) -> ProcStat:
    fields = text.rsplit(")", 1)[-1].split()

    def at(i: int) -> int | None:
        return int(fields[i]) if len(fields) > i and is_decimal(fields[i]) else None

    return ProcStat(fields[0] if fields else None, at(_FLAGS), at(_MAJFLT))


def read_proc_stat(root: Root, pid: int) -> ProcStat | None:
    """None when the process is gone."""
    text = root.read_optional(f"/proc/{pid}/stat")
    return None if text is None else parse_proc_stat(text)
