"""Per-process mode: the largest process of a group, for hosts where apps share one group.

"Largest" is resident plus swapped memory (VmRSS + VmSwap from /proc/PID/status):
what killing it gives back, zram slots included.
"""

from __future__ import annotations

import os
import re

from zoomd.config.runtime import ProcessRules
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.keyvalue import is_decimal


def _process_size(reader: CgroupReader, pid: int) -> tuple[int, str, str] | None:
    status = reader.root.read_optional(f"/proc/{pid}/status")
    if status is None:
        return None
    size = 0
    name = ""
    for line in status.splitlines():
        if line.startswith("Name:"):
            name = line.split(None, 1)[1] if len(line.split()) > 1 else ""
        elif line.startswith(("VmRSS:", "VmSwap:")):
            parts = line.split()
            if len(parts) >= 2 and is_decimal(parts[1]):
                size += int(parts[1]) * 1024
    cmdline = reader.root.read_optional(f"/proc/{pid}/cmdline") or ""
    return size, name, cmdline.replace("\0", " ").strip()


def choose_process(reader: CgroupReader, path: str, rules: ProcessRules | None) -> int | None:
    """The PID to kill in `path`, or None when every process is protected."""
    protect = [re.compile(p) for p in (rules.protect if rules else ())]
    prefer = [re.compile(p) for p in (rules.prefer if rules else ())]
    best: tuple[int, int, int] | None = None  # (preferred, size, -pid)
    own = os.getpid()
    for pid in reader.subtree_procs(path):
        if pid in (1, own):
            continue
        found = _process_size(reader, pid)
        if found is None:
            continue
        size, name, cmdline = found
        if not cmdline:  # kernel threads have no command line
            continue
        if any(p.search(name) or p.search(cmdline) for p in protect):
            continue
        preferred = int(any(p.search(name) or p.search(cmdline) for p in prefer))
        key = (preferred, size, -pid)
        if best is None or key > best:
            best = key
    return None if best is None else -best[2]
