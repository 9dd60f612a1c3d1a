"""A synthetic host on disk (tmpfs preferably): /proc and /sys as zoomd reads them, with
a pure cgroup v2 tree of any size whose counters move when told to.

The kernel files start from the captured tree tests/fixtures/trees/zram-only-6.18
(meminfo, vmstat, zoneinfo, zram0); cgroups get the memory.stat of a 6.x kernel.
Used by benchmarks/soak.py, benchmarks/cost.py and tests/test_soak.py. Nothing here
touches the real /proc or /sys; pids in the tree are fake (actions on them must go to
a backend that does not signal).
"""

from __future__ import annotations

import os
import random
import shutil

from zoomd.kernel.root import Root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(REPO, "tests", "fixtures", "trees", "zram-only-6.18")
MOUNTINFO = (
    "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "23 22 0:21 / /proc rw,relatime - proc proc rw\n"
    "24 22 0:22 / /sys rw,relatime - sysfs sysfs rw\n"
    "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"
    "31 22 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw\n"
)
# memory.stat of a 6.x kernel, in the kernel's order.
MEMORY_STAT_KEYS = (  # noqa: SIM905
    "anon file kernel kernel_stack pagetables sec_pagetables percpu sock vmalloc shmem "
    "zswap zswapped file_mapped file_dirty file_writeback swapcached anon_thp file_thp "
    "shmem_thp inactive_anon active_anon inactive_file active_file unevictable "
    "slab_reclaimable slab_unreclaimable slab workingset_refault_anon "
    "workingset_refault_file workingset_activate_anon workingset_activate_file "
    "workingset_restore_anon workingset_restore_file workingset_nodereclaim pgdemote_kswapd "
    "pgdemote_direct pgdemote_khugepaged pgpromote_success pgscan pgsteal pgscan_kswapd "
    "pgscan_direct pgscan_khugepaged pgsteal_kswapd pgsteal_direct pgsteal_khugepaged "
    "pgfault pgmajfault pgrefill pgactivate pgdeactivate pglazyfree pglazyfreed zswpin "
    "zswpout zswpwb thp_fault_alloc thp_collapse_alloc thp_swpout thp_swpout_fallback"
).split()
MiB = 1 << 20


def write(path: str, text: str) -> None:
    """Rewrite in place (same inode), as a kernel file changes under an open descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def default_base() -> str:
    """Somewhere on tmpfs when there is one (/dev/shm), else the temp directory."""
    import tempfile

    shm = "/dev/shm"
    return tempfile.mkdtemp(prefix="zoomd-synth-",
                            dir=shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None)


class Group:
    __slots__ = ("anon", "file", "full_us", "path", "pids", "refaults", "scanned", "some_us")

    def __init__(self, path: str, pids: list[int]) -> None:
        self.path = path
        self.pids = pids
        self.anon = 64 * MiB
        self.file = 32 * MiB
        self.some_us = self.full_us = 0
        self.refaults = self.scanned = 0


class SynthHost:
    """`n_groups` leaf groups under /system.slice, /user.slice and /machine.slice."""

    SLICES = ("/system.slice", "/user.slice", "/machine.slice")

    def __init__(self, base: str | None = None, n_groups: int = 100, seed: int = 1,
                 procs: bool = True) -> None:
        self.base = base or default_base()
        self.rng = random.Random(seed)
        self.root = Root(self.base)
        self.procs = procs
        shutil.copytree(os.path.join(TEMPLATE, "proc"), os.path.join(self.base, "proc"),
                        dirs_exist_ok=True)
        shutil.copytree(os.path.join(TEMPLATE, "sys"), os.path.join(self.base, "sys"),
                        dirs_exist_ok=True, symlinks=True)
        write(self.p("/proc/self/mountinfo"), MOUNTINFO)
        self.vmstat = self._read_pairs("/proc/vmstat", " ")
        self.meminfo = self._read_pairs("/proc/meminfo", ":")
        self.psi = {"some": 0, "full": 0}
        self.mm = [368939008, 109500828, 111763456, 0, 112254976, 0, 0, 22271, 99068]
        self.swaps: list[tuple[str, str, int, int, int]] = [
            ("/dev/zram0", "partition", 4194300, 360308, 100)]
        os.makedirs(self.cg("/"), exist_ok=True)
        write(self.cg("/") + "/cgroup.controllers", "cpuset cpu io memory hugetlb pids\n")
        self.groups: dict[str, Group] = {}
        self.next_pid = 10_000
        self.add("/init.scope", pids=[1])
        for sl in self.SLICES:
            self.add(sl, pids=[])
        for i in range(n_groups):
            self.add(self.leaf_path(i))
        self.write_host()

    # -- paths -------------------------------------------------------------------------
    def p(self, kernel_path: str) -> str:
        return os.path.join(self.base, kernel_path.lstrip("/"))

    def cg(self, cgpath: str) -> str:
        return self.p("/sys/fs/cgroup" + ("" if cgpath == "/" else cgpath))

    def leaf_path(self, i: int) -> str:
        sl = self.SLICES[i % len(self.SLICES)]
        if len(self.groups) < 100 and i < 100:
            return f"{sl}/unit{i}.service"
        return f"{sl}/part{i // 100}.slice/unit{i}.service"

    def _read_pairs(self, kernel_path: str, sep: str) -> dict[str, int]:
        out = {}
        with open(self.p(kernel_path)) as f:
            for line in f:
                name, _, rest = line.partition(sep)
                out[name.strip()] = int(rest.split()[0])
        return out

    # -- groups ------------------------------------------------------------------------
    def add(self, path: str, pids: list[int] | None = None) -> Group:
        """A group (and its parents) with one fake process unless `pids` is given."""
        parent = path.rsplit("/", 1)[0] or "/"
        if parent != "/" and parent not in self.groups:
            self.add(parent, pids=[])
        if pids is None:
            pids = [self.next_pid]
            self.next_pid += 1
        group = Group(path, pids)
        self.groups[path] = group
        os.makedirs(self.cg(path), exist_ok=True)
        d = self.cg(path)
        write(f"{d}/cgroup.procs", "".join(f"{p}\n" for p in pids))
        write(f"{d}/cgroup.events", "populated 1\nfrozen 0\n")
        write(f"{d}/memory.max", "max\n")
        write(f"{d}/memory.oom.group", "0\n")
        write(f"{d}/cgroup.type", "domain\n")
        self.write_group(group)
        if self.procs:
            for pid in pids:
                pd = self.p(f"/proc/{pid}")
                os.makedirs(pd, exist_ok=True)
                write(f"{pd}/cgroup", f"0::{path}\n")
                write(f"{pd}/stat", f"{pid} (unit) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0\n")
                write(f"{pd}/status", f"Name:\tunit\nVmRSS:\t{pid} kB\nVmSwap:\t0 kB\n")
                write(f"{pd}/cmdline", "unit\0--serve\0")
        return group

    def remove(self, path: str) -> None:
        """A group going away (a service stopping), its children and processes with it."""
        for sub in [p for p in self.groups if p == path or p.startswith(path + "/")]:
            group = self.groups.pop(sub)
            for pid in group.pids:
                shutil.rmtree(self.p(f"/proc/{pid}"), ignore_errors=True)
        shutil.rmtree(self.cg(path), ignore_errors=True)

    def write_group(self, g: Group) -> None:
        d = self.cg(g.path)
        stat = dict.fromkeys(MEMORY_STAT_KEYS, 0)
        stat.update(anon=g.anon, file=g.file, active_anon=g.anon // 2,
                    inactive_anon=g.anon - g.anon // 2, active_file=g.file // 2,
                    inactive_file=g.file - g.file // 2, workingset_refault_anon=g.refaults,
                    pgscan=g.scanned, pgsteal=g.scanned // 2)
        write(f"{d}/memory.stat", "".join(f"{k} {v}\n" for k, v in stat.items()))
        write(f"{d}/memory.current", f"{g.anon + g.file}\n")
        write(f"{d}/memory.swap.current", "0\n")
        write(f"{d}/memory.pressure",
              f"some avg10=0.00 avg60=0.00 avg300=0.00 total={g.some_us}\n"
              f"full avg10=0.00 avg60=0.00 avg300=0.00 total={g.full_us}\n")

    # -- the host ----------------------------------------------------------------------
    def write_host(self) -> None:
        write(self.p("/proc/vmstat"), "".join(f"{k} {v}\n" for k, v in self.vmstat.items()))
        write(self.p("/proc/meminfo"), "".join(
            f"{k + ':':<16}{v:>8}{'' if k.startswith('HugePages_') else ' kB'}\n"
            for k, v in self.meminfo.items()))
        s, f = self.psi["some"], self.psi["full"]
        write(self.p("/proc/pressure/memory"),
              f"some avg10=0.00 avg60=0.00 avg300=0.00 total={s}\n"
              f"full avg10=0.00 avg60=0.00 avg300=0.00 total={f}\n")
        write(self.p("/sys/block/zram0/mm_stat"), " ".join(f"{v:>8}" for v in self.mm) + "\n")
        text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        for path, kind, size, used, prio in self.swaps:
            pad = " " * max(1, 40 - len(path))
            text += f"{path}{pad}{kind}\t{size}\t\t{used}\t\t{prio}\n"
        write(self.p("/proc/swaps"), text)

    def advance(self, seconds: float, stall_pct: float = 0.0,
                thrashing: list[str] = ()) -> None:
        """Move the host's counters on by `seconds`; `thrashing` groups stall and refault."""
        us = int(seconds * 1e6)
        stall = int(us * stall_pct / 100)
        self.psi["some"] += stall + int(us * 0.001)
        self.psi["full"] += stall
        v = self.vmstat
        for key, rate in (("pgscan_anon", 2000), ("pgsteal_anon", 1500), ("pgscan_file", 500),
                          ("pgsteal_file", 450), ("workingset_refault_file", 50),
                          ("pgfault", 10_000), ("pswpout", 100)):
            if key in v:
                v[key] += int(rate * seconds * (1 + 20 * stall_pct / 100))
        if thrashing:  # anon reclaim scanning hard and failing: what zoomd is for
            v["workingset_refault_anon"] = v.get("workingset_refault_anon", 0) + \
                int(40_000 * seconds)
            v["pgscan_anon"] = v.get("pgscan_anon", 0) + int(200_000 * seconds)
            v["pgsteal_anon"] = v.get("pgsteal_anon", 0) + int(20_000 * seconds)
        self.mm[0] += 4096
        self.mm[2] += 1024
        for path in thrashing:
            g = self.groups.get(path)
            if g is None:
                continue
            g.some_us += stall
            g.full_us += stall
            g.refaults += int(40_000 * seconds)
            g.scanned += int(80_000 * seconds)
            g.anon += MiB
            self.write_group(g)
        for path in self.SLICES:  # monitored slices see their children's stalls
            g = self.groups[path]
            g.some_us += stall if any(t.startswith(path + "/") for t in thrashing) else 0
            g.full_us = g.some_us
            self.write_group(g)
        self.write_host()
