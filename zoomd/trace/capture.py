"""What a trace holds: the raw text of every file zoomd's readers read, in named sets.

- "host", every sample: meminfo, vmstat, swaps, PSI, zram mm_stat, and the swap
  devices' verdicts (classification walks sysfs and mountinfo, which replay cannot
  reproduce from a few files, so the verdicts themselves are kept);
- "static", at the start, every `static_every` samples and when the swap set
  changes: zoneinfo, min_free_kbytes, mountinfo, zswap, zram disksize/algorithm/
  backing_dev, the cgroup2 root's controllers;
- "monitors", every sample: the watched groups' pressure and memory files (the v1
  memory group's on hybrid hosts);
- "subtree", every `subtree_every` samples, every sample while memory is stalling:
  every group under the scope (procs, pressure, memory, oom.group) and, for their
  processes, /proc/PID/{cgroup,cmdline} and the parts of stat and status zoomd reads.
"""

from __future__ import annotations

import json
import os

from zoomd.errors import ZoomdError
from zoomd.host import swap_set_key
from zoomd.kernel.blockdev import classify_swap
from zoomd.kernel.cgroups import (
    MAX_PIDS_SAMPLED,
    CgroupLayout,
    CgroupReader,
    common_ancestor,
    detect_layout,
)
from zoomd.kernel.proc_cgroup import parse_proc_cgroup
from zoomd.kernel.psi import parse_psi
from zoomd.kernel.root import Root
from zoomd.kernel.swaps import parse_swaps
from zoomd.kernel.zram import list_zram
from zoomd.trace.format import SWAP_KINDS
from zoomd.trace.writer import FileSets

HOST_FILES = ("/proc/meminfo", "/proc/vmstat", "/proc/swaps", "/proc/pressure/memory",
              "/proc/pressure/io", "/proc/pressure/cpu")
STATIC_FILES = ("/proc/zoneinfo", "/proc/sys/vm/min_free_kbytes", "/proc/self/mountinfo",
                "/sys/module/zswap/parameters/enabled")
ZRAM_STATIC = ("disksize", "comp_algorithm", "backing_dev")
MONITOR_FILES = ("memory.pressure", "memory.stat", "memory.current", "memory.max", "memory.high",
                 "memory.swap.current")
GROUP_FILES = (*MONITOR_FILES, "cgroup.procs", "memory.oom.group", "cgroup.freeze")
V1_MEMORY_FILES = ("memory.stat", "memory.usage_in_bytes", "memory.limit_in_bytes",
                   "memory.memsw.limit_in_bytes", "cgroup.procs")
STATUS_FIELDS = ("Name:", "Pid:", "VmRSS:", "VmSwap:")
STAT_FIELDS_KEPT = 9  # pid (comm) state ppid pgrp session tty tpgid flags
DEFAULT_SUBTREE_EVERY = 5
DEFAULT_STATIC_EVERY = 300
DEFAULT_MAX_PIDS = 2048


def _read(root: Root, kernel_path: str) -> str | None:
    """A file's text, or None when it is absent, vanished or unreadable."""
    try:
        with open(root.join(kernel_path), "rb") as handle:
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def trim_stat(text: str) -> str:
    """/proc/PID/stat up to `flags` (the kernel-thread bit): the rest changes every tick."""
    head, sep, tail = text.rpartition(")")
    if not sep:
        return text
    fields = tail.split()
    return f"{head}) {' '.join(fields[:STAT_FIELDS_KEPT - 2])}\n"


def trim_status(text: str) -> str:
    """/proc/PID/status reduced to the lines zoomd reads (name, size)."""
    return "".join(line + "\n" for line in text.splitlines() if line.startswith(STATUS_FIELDS))


def swap_verdicts(root: Root, swaps_text: str) -> str:
    """The classification of each swap device, as JSON text (sorted, stable)."""
    verdicts: dict[str, list[object]] = {}
    for entry in parse_swaps(swaps_text, root.join("/proc/swaps")):
        kind = classify_swap(root, entry.path, entry.type)
        verdicts[entry.path] = [kind.kind, kind.ram_backed, kind.block_device, kind.via]
    return json.dumps(verdicts, sort_keys=True)


class Capturer:
    """Reads one sample's file sets from a root (the live host, or a captured tree)."""

    def __init__(self, root: Root, *, scope: str = "/", monitors: tuple[str, ...] = ("/",),
                 subtree_every: int = DEFAULT_SUBTREE_EVERY,
                 static_every: int = DEFAULT_STATIC_EVERY,
                 max_pids: int = DEFAULT_MAX_PIDS) -> None:
        self.root = root
        self.scope = "/" + scope.strip("/") if scope not in ("", "/") else "/"
        self.monitors = monitors
        self.subtree_every = max(1, subtree_every)
        self.static_every = max(1, static_every)
        self.max_pids = max_pids
        self.samples = 0
        self.layout: CgroupLayout | None = None
        try:
            self.layout = detect_layout(root)
            if self.layout.v2 is None:
                self.layout = None
        except ZoomdError:
            self.layout = None
        self.cgroups = CgroupReader(root, self.layout) if self.layout else None
        self._swap_set: object = None
        self._verdicts = "{}"
        self._psi_some: int | None = None
        self._v1_paths: dict[str, str | None] = {}
        self._children_of: dict[str, list[str]] = {}

    def set_monitors(self, monitors: tuple[str, ...]) -> None:
        """The watched groups changed (configuration reload)."""
        self.monitors = monitors

    # -- sets ---------------------------------------------------------------------------
    def _files(self, paths: tuple[str, ...] | list[str]) -> dict[str, str]:
        out = {}
        for path in paths:
            text = _read(self.root, path)
            if text is not None:
                out[path] = text
        return out

    def _host(self) -> tuple[dict[str, str], bool]:
        files = self._files(HOST_FILES)
        for name in list_zram(self.root):
            text = _read(self.root, f"/sys/block/{name}/mm_stat")
            if text is not None:
                files[f"/sys/block/{name}/mm_stat"] = text
        swaps = files.get("/proc/swaps")
        key: object = None
        if swaps is not None:
            try:
                key = swap_set_key(parse_swaps(swaps, "/proc/swaps"))
            except ZoomdError:
                key = swaps
        changed = key != self._swap_set  # a device came or went (not just usage)
        if changed and swaps is not None:
            try:
                self._verdicts = swap_verdicts(self.root, swaps)
            except ZoomdError:
                self._verdicts = "{}"
        self._swap_set = key
        files[SWAP_KINDS] = self._verdicts
        return files, changed

    def _static(self) -> dict[str, str]:
        files = self._files(STATIC_FILES)
        for name in list_zram(self.root):
            files.update(self._files([f"/sys/block/{name}/{f}" for f in ZRAM_STATIC]))
        if self.layout is not None and self.layout.v2 is not None:
            files.update(self._files([f"{self.layout.v2.mount_point}/cgroup.controllers"]))
        return files

    def _stalling(self, host: dict[str, str]) -> bool:
        """Memory PSI `some` moved since the last sample: record the subtree every time."""
        text = host.get("/proc/pressure/memory")
        if text is None:
            return False
        try:
            total = parse_psi(text, "/proc/pressure/memory").some.total_us
        except ZoomdError:
            return False
        moved = self._psi_some is not None and total > self._psi_some
        self._psi_some = total
        return moved

    def _group_dir(self, cgpath: str) -> str:
        assert self.layout is not None
        return self.layout.v2_dir(cgpath)

    def _v1_files(self, cgpath: str) -> dict[str, str]:
        """On hybrid hosts: the files of the v1 memory group found at the last subtree scan."""
        if self.layout is None or not self.layout.hybrid:
            return {}
        v1path = self._v1_paths.get(cgpath)
        if cgpath not in self._v1_paths and self.cgroups is not None:
            try:  # a monitor seen before any subtree scan
                v1path = self._v1_paths[cgpath] = self.cgroups.v1_memory_path(cgpath)
            except ZoomdError:
                v1path = self._v1_paths[cgpath] = None
        directory = self.layout.v1_dir("memory", v1path) if v1path not in (None, "/") \
            else None
        return self._files([f"{directory}/{f}" for f in V1_MEMORY_FILES]) if directory else {}

    def _monitors(self) -> dict[str, str]:
        files: dict[str, str] = {}
        if self.layout is None:
            return files
        for path in self.monitors:
            if path == "/":
                continue
            directory = self._group_dir(path)
            files.update(self._files([f"{directory}/{f}" for f in MONITOR_FILES]))
            files.update(self._v1_files(path))
        return files

    def _groups(self) -> list[str]:
        """Every group under the scope, the scope itself first (not the root group)."""
        assert self.cgroups is not None
        if not self.cgroups.exists(self.scope):
            return []
        found = [] if self.scope == "/" else [self.scope]
        stack = list(reversed(self._children(self.scope)))
        while stack:
            path = stack.pop()
            found.append(path)
            stack.extend(reversed(self._children(path)))
        return found

    def _children(self, cgpath: str) -> list[str]:
        """Child groups by d_type (no stat per cgroupfs file: ~60 per group)."""
        base = cgpath.rstrip("/")
        try:
            with os.scandir(self.root.join(self._group_dir(cgpath))) as entries:
                names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            names = []
        self._children_of[cgpath] = [f"{base}/{name}" for name in names]
        return self._children_of[cgpath]

    def _process(self, pid: str) -> dict[str, str]:
        files: dict[str, str] = {}
        base = f"/proc/{pid}"
        for name, trim in (("cgroup", None), ("cmdline", None), ("stat", trim_stat),
                           ("status", trim_status)):
            text = _read(self.root, f"{base}/{name}")
            if text is not None:
                files[f"{base}/{name}"] = trim(text) if trim else text
        return files

    def _subtree(self) -> dict[str, str]:
        files: dict[str, str] = {}
        if self.cgroups is None:
            return files
        pids_left = self.max_pids
        procs: dict[str, list[str]] = {}
        for path in self._groups():
            directory = self._group_dir(path)
            group = self._files([f"{directory}/{f}" for f in GROUP_FILES])
            files.update(group)
            procs[path] = group.get(f"{directory}/cgroup.procs", "").split()
            for pid in procs[path][:max(0, pids_left)]:
                files.update(self._process(pid))
                pids_left -= 1
        if self.layout is not None and self.layout.hybrid:
            for path in procs:
                self._v1_paths[path] = self._v1_path(path, procs, files)
                files.update(self._v1_files(path))
        return files

    def _v1_path(self, cgpath: str, procs: dict[str, list[str]],
                 files: dict[str, str]) -> str | None:
        """CgroupReader.v1_memory_path from what was just read: the same pids, in the
        same order (so replay asks for exactly the v1 group recorded here)."""
        pids: list[str] = []
        stack = [cgpath]
        while stack and len(pids) < MAX_PIDS_SAMPLED:
            current = stack.pop()
            pids.extend(procs.get(current, []))
            stack.extend(self._children_of.get(current, []))
        paths = []
        for pid in pids[:MAX_PIDS_SAMPLED]:
            text = files.get(f"/proc/{pid}/cgroup") or _read(self.root, f"/proc/{pid}/cgroup")
            if text is None:
                continue
            try:
                membership = parse_proc_cgroup(text, f"/proc/{pid}/cgroup")
            except ZoomdError:
                continue
            if "memory" in membership.v1:
                paths.append(membership.v1["memory"])
        return common_ancestor(paths)

    def capture(self) -> FileSets:
        """Read one sample's sets; which sets depends on the sample count and pressure."""
        host, swaps_changed = self._host()
        sets: FileSets = {"host": host, "monitors": self._monitors()}
        first = self.samples == 0
        if first or swaps_changed or self.samples % self.static_every == 0:
            sets["static"] = self._static()
        stalling = self._stalling(host)
        if first or stalling or self.samples % self.subtree_every == 0:
            sets["subtree"] = self._subtree()
        self.samples += 1
        return sets


def record_paths_exist(root: Root) -> list[str]:
    """Host files a recording needs that this root lacks (for an early, clear error)."""
    return [p for p in ("/proc/meminfo", "/proc/vmstat", "/proc/swaps")
            if not os.path.exists(root.join(p))]
