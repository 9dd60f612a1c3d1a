"""Per-process choice: the largest process of a group, for when there is no group to act on.

Used by action = "kill-process" (apps sharing one group), and by the engine when a
stuck domain holds no candidate group at all (every process in the root cgroup, as
on hosts without systemd and in many containers; or directly in a domain's group),
as earlyoom would. "Largest" is what killing it gives back, zram slots included, counted
as the process's own share: proportional set size plus proportional swap (Pss and
SwapPss from /proc/PID/smaps_rollup: pages shared with other processes count for a
fraction, so a process is not credited with its neighbours' memory), or resident plus
swapped (VmRSS + VmSwap from /proc/PID/status) where smaps_rollup cannot be read
(kernels before 4.14, captured trees without it). These are the process's own
figures, whatever group it shares.

Never chosen: PID 1, zoomd itself, kernel threads (no command line), processes whose
oom_score_adj is -1000 (the kernel's own "never kill me", which sshd and systemd's
services set), and those the policy's [policy.process] protect regexes match.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from zoomd.config.runtime import ProcessRules
from zoomd.kernel.cgroups import MAX_PIDS_OWNED, CgroupReader
from zoomd.kernel.keyvalue import is_decimal
from zoomd.kernel.proc_stat import read_proc_stat

OOM_SCORE_ADJ_DISABLED = -1000


@dataclass(frozen=True, slots=True)
class ProcessChoice:
    """The process chosen, and the figures it was chosen on (the record shows them)."""

    pid: int
    name: str
    rss: int  # bytes
    swap: int  # bytes
    preferred: bool
    pss: int | None = None  # bytes, with swap_pss: None where smaps_rollup is unreadable
    swap_pss: int | None = None
    # Major faults since the policy's conditions began to hold (pages it had to wait
    # for: swap-ins and file reads), when that start was seen; see major_faults().
    major_faults: int | None = None

    @property
    def size(self) -> int:
        """What it was ranked on: its own share where known, else RSS + swap."""
        if self.pss is not None:
            return self.pss + (self.swap_pss or 0)
        return self.rss + self.swap

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "name": self.name, "rss_bytes": self.rss,
                "swap_bytes": self.swap, "pss_bytes": self.pss,
                "swap_pss_bytes": self.swap_pss, "ranked_bytes": self.size,
                "basis": "smaps_rollup" if self.pss is not None else "status",
                "preferred": self.preferred, "major_faults": self.major_faults}


def major_faults(reader: CgroupReader, pid: int) -> int | None:
    """The process's major faults so far: each one a page it had to wait for, a
    swap-in from zram included (one page per fault: zram is read synchronously,
    without swap readahead). It is the process's own refault figure, which groups
    have in memory.stat and single processes have nowhere else; None when it exited
    or the line is not what the kernel writes."""
    stat = read_proc_stat(reader.root, pid)
    return None if stat is None else stat.majflt


def _own_share(reader: CgroupReader, pid: int) -> tuple[int | None, int | None]:
    """(Pss, SwapPss) in bytes from /proc/PID/smaps_rollup; (None, None) when absent."""
    text = reader.root.read_optional(f"/proc/{pid}/smaps_rollup")
    if text is None:
        return None, None
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Pss", "SwapPss"):
            parts = rest.split()
            if parts and is_decimal(parts[0]):
                found[name] = int(parts[0]) * 1024
    return found.get("Pss"), found.get("SwapPss")


def _process_figures(reader: CgroupReader, pid: int) -> tuple[int, int, str, str] | None:
    """(rss, swap, name, cmdline) of a process; None when it exited."""
    status = reader.root.read_optional(f"/proc/{pid}/status")
    if status is None:
        return None
    rss = swap = 0
    name = ""
    for line in status.splitlines():
        if line.startswith("Name:"):
            name = line.split(None, 1)[1] if len(line.split()) > 1 else ""
        elif line.startswith(("VmRSS:", "VmSwap:")):
            parts = line.split()
            if len(parts) >= 2 and is_decimal(parts[1]):
                if line.startswith("VmRSS:"):
                    rss = int(parts[1]) * 1024
                else:
                    swap = int(parts[1]) * 1024
    cmdline = reader.root.read_optional(f"/proc/{pid}/cmdline") or ""
    return rss, swap, name, cmdline.replace("\0", " ").strip()


def _oom_disabled(reader: CgroupReader, pid: int) -> bool:
    text = reader.root.read_optional(f"/proc/{pid}/oom_score_adj")
    value = text.strip() if text else ""
    return value.lstrip("-").isdigit() and int(value) <= OOM_SCORE_ADJ_DISABLED


def choose_process(reader: CgroupReader, path: str, rules: ProcessRules | None, *,
                   direct_only: bool = False) -> ProcessChoice | None:
    """The process to kill in `path` (its whole subtree, or with `direct_only` only
    the processes directly in it), or None when every one is excluded."""
    protect = [re.compile(p) for p in (rules.protect if rules else ())]
    prefer = [re.compile(p) for p in (rules.prefer if rules else ())]
    best: tuple[int, int, int] | None = None  # (preferred, size, -pid)
    chosen: ProcessChoice | None = None
    own = os.getpid()
    pids = reader.procs(path) if direct_only else \
        reader.subtree_procs(path, limit=MAX_PIDS_OWNED)
    for pid in pids:
        if pid in (1, own):
            continue
        found = _process_figures(reader, pid)
        if found is None:
            continue
        rss, swap, name, cmdline = found
        if not cmdline:  # kernel threads have no command line
            continue
        if any(p.search(name) or p.search(cmdline) for p in protect):
            continue
        if _oom_disabled(reader, pid):
            continue
        preferred = any(p.search(name) or p.search(cmdline) for p in prefer)
        pss, swap_pss = _own_share(reader, pid)
        found_choice = ProcessChoice(pid, name, rss, swap, preferred, pss, swap_pss)
        key = (int(preferred), found_choice.size, -pid)
        if best is None or key > best:
            best = key
            chosen = found_choice
    return chosen
