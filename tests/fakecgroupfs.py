"""A fake host root with a pure cgroup v2 tree, materialised in a temp dir (like oomd's
test builders): enough of /proc and /sys for the cgroup readers, candidates and engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MOUNTINFO = (
    "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"
)


@dataclass
class FakeGroup:
    path: str
    pids: list[int] = field(default_factory=list)
    current: int = 0
    limit: int | None = None
    anon: int = 0
    file: int = 0
    swap: int = 0
    refault_anon: int = 0
    refault_file: int = 0
    pgscan: int = 0
    pgsteal: int = 0
    full_us: int = 0
    some_us: int = 0
    oom_group: bool = False


def _rewrite(path: str, text: str) -> None:
    """Write `path` the way a reader running meanwhile (a daemon in a subprocess) never
    sees it empty: only when it changed, new bytes over the old, then cut to length
    (open(..., "w") truncates first: a read in between saw an empty memory.current)."""
    data = text.encode()
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class FakeHost:
    """Writes groups and processes under `base`; call write() after changing figures."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.groups: dict[str, FakeGroup] = {}
        self.proc_groups: dict[int, str] = {}
        self.kernel_threads: set[int] = set()  # pids whose stat flags carry PF_KTHREAD
        self.proc_rss_kb: dict[int, int] = {}  # VmRSS where not the default (the pid, kB)
        self.proc_majflt: dict[int, int] = {}  # major faults so far (stat field 12)
        os.makedirs(f"{base}/proc/self", exist_ok=True)
        with open(f"{base}/proc/self/mountinfo", "w") as f:
            f.write(MOUNTINFO)
        os.makedirs(f"{base}/sys/fs/cgroup", exist_ok=True)
        with open(f"{base}/sys/fs/cgroup/cgroup.controllers", "w") as f:
            f.write("cpu io memory pids\n")
        self.add("/", pids=[1])

    def dir(self, path: str) -> str:
        return f"{self.base}/sys/fs/cgroup" + ("" if path == "/" else path)

    def add(self, path: str, **figures: object) -> FakeGroup:
        group = FakeGroup(path, **figures)  # type: ignore[arg-type]
        self.groups[path] = group
        for pid in group.pids:
            self.proc_groups[pid] = path
        self.write()
        return group

    def write(self) -> None:
        for group in self.groups.values():
            d = self.dir(group.path)
            os.makedirs(d, exist_ok=True)
            files = {
                "cgroup.procs": "".join(f"{p}\n" for p in group.pids),
                "memory.pressure": (
                    f"some avg10=0.00 avg60=0.00 avg300=0.00 total={group.some_us}\n"
                    f"full avg10=0.00 avg60=0.00 avg300=0.00 total={group.full_us}\n"),
                "cgroup.events": "populated 1\nfrozen 0\n",
            }
            if group.path != "/":
                files.update({
                    "memory.current": f"{group.current}\n",
                    "memory.max": "max\n" if group.limit is None else f"{group.limit}\n",
                    "memory.swap.current": f"{group.swap}\n",
                    "memory.oom.group": f"{int(group.oom_group)}\n",
                    "memory.stat": (
                        f"anon {group.anon}\nfile {group.file}\n"
                        f"workingset_refault_anon {group.refault_anon}\n"
                        f"workingset_refault_file {group.refault_file}\n"
                        f"pgscan {group.pgscan}\npgsteal {group.pgsteal}\n"),
                })
            for name, text in files.items():
                _rewrite(f"{d}/{name}", text)
        for pid, path in self.proc_groups.items():
            d = f"{self.base}/proc/{pid}"
            os.makedirs(d, exist_ok=True)
            with open(f"{d}/cgroup", "w") as f:
                f.write(f"0::{path}\n")
            with open(f"{d}/stat", "w") as f:
                flags = 4194560 | (0x00200000 if pid in self.kernel_threads else 0)
                majflt = self.proc_majflt.get(pid, 0)
                f.write(f"{pid} (proc{pid}) S 1 {pid} {pid} 0 -1 {flags} 0 0 {majflt} 0 0\n")
            with open(f"{d}/status", "w") as f:
                rss = self.proc_rss_kb.get(pid, pid)
                f.write(f"Name:\tproc{pid}\nVmRSS:\t{rss} kB\nVmSwap:\t0 kB\n")
            with open(f"{d}/cmdline", "w") as f:
                f.write(f"proc{pid}\0--flag\0")
