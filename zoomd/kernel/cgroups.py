"""cgroupfs, v2 and hybrid: where groups live and what memory they hold.

Paths given to and returned by this module are cgroup paths relative to the v2
hierarchy ("/", "/user.slice/..."). On a pure v2 host memory figures come from the
group itself; on a hybrid host (memory controller on v1) they come from the v1
memory cgroup that the group's processes belong to.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from zoomd.errors import KernelFileError
from zoomd.kernel import tap
from zoomd.kernel.keyvalue import (
    is_decimal,
    kernel_fields,
    parse_name_values,
    parse_uint,
    pick_values,
)
from zoomd.kernel.mountinfo import Mount, read_mountinfo
from zoomd.kernel.proc_cgroup import read_proc_cgroup
from zoomd.kernel.psi import Psi, parse_psi
from zoomd.kernel.root import Root

UNLIMITED_V1 = 1 << 62  # v1 prints PAGE_COUNTER_MAX * page size for "no limit"
MAX_PIDS_SAMPLED = 64
# Processes looked at to prove that a v1 memory cgroup holds a v2 group's processes and
# no one else's (its figures are then the group's own); beyond this, nothing is proven.
MAX_PIDS_OWNED = 4096


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """Where each hierarchy is mounted (kernel paths) and who holds memory."""

    v2: Mount | None
    v1: dict[str, Mount]  # controller -> mount
    memory_on_v2: bool

    @property
    def hybrid(self) -> bool:
        return not self.memory_on_v2 and "memory" in self.v1

    def v2_dir(self, cgpath: str) -> str:
        if self.v2 is None:
            raise KernelFileError("/proc/self/mountinfo", "no cgroup2 mount")
        return _under(self.v2, cgpath)

    def v1_dir(self, controller: str, cgpath: str) -> str | None:
        mount = self.v1.get(controller)
        return None if mount is None else _under(mount, cgpath)


def common_ancestor(paths: list[str]) -> str | None:
    """The deepest cgroup path containing all of `paths` (None for no paths)."""
    common: list[str] | None = None
    for path in paths:
        parts = [p for p in path.split("/") if p]
        if common is None:
            common = parts
            continue
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return None if common is None else "/" + "/".join(common)


def _under(mount: Mount, cgpath: str) -> str:
    """Map a hierarchy path to its directory, minding a mount of a sub-tree."""
    rel = cgpath
    if mount.root not in ("/", "") and (cgpath + "/").startswith(mount.root.rstrip("/") + "/"):
        rel = cgpath[len(mount.root.rstrip("/")):]
    rel = rel.strip("/")
    return mount.mount_point if not rel else f"{mount.mount_point.rstrip('/')}/{rel}"


def detect_layout(root: Root) -> CgroupLayout:
    v2: Mount | None = None
    v1: dict[str, Mount] = {}
    for mount in read_mountinfo(root):
        if mount.fstype == "cgroup2":
            if v2 is None:
                v2 = mount
        elif mount.fstype == "cgroup":
            for option in mount.super_options:
                if option in ("rw", "ro") or option.startswith("release_agent"):
                    continue
                v1.setdefault(option, mount)
    memory_on_v2 = False
    if v2 is not None:
        controllers = root.read_optional(f"{v2.mount_point}/cgroup.controllers")
        memory_on_v2 = controllers is not None and "memory" in controllers.split()
    return CgroupLayout(v2, v1, memory_on_v2)


@dataclass(frozen=True, slots=True)
class CgroupMemory:
    """Memory figures of a group, normalised across v1 and v2 (bytes; None = unknown)."""

    source: str  # "v2", "v1:<path>" or "procs"
    current: int | None
    limit: int | None  # None: no limit
    swap: int | None
    anon: int | None
    file: int | None
    stat: dict[str, int] = field(default_factory=dict)  # normalised memory.stat names

    def get(self, name: str) -> int | None:
        return self.stat.get(name)

    @property
    def refaults(self) -> int | None:
        return group_refaults(self.stat)


def group_refaults(stat: dict[str, int]) -> int | None:
    """A group's refaults from its (normalised) memory.stat: anon plus file, None when
    it has neither."""
    anon = stat.get("workingset_refault_anon")
    file = stat.get("workingset_refault_file")
    if anon is None and file is None:
        return None
    return (anon or 0) + (file or 0)


# v1 hierarchical memory.stat names -> the v2 names used everywhere in zoomd.
_V1_STAT_NAMES = {
    "total_rss": "anon",
    "total_cache": "file",
    "total_swap": "swap",
    "total_inactive_anon": "inactive_anon",
    "total_active_anon": "active_anon",
    "total_inactive_file": "inactive_file",
    "total_active_file": "active_file",
    "total_workingset_refault_anon": "workingset_refault_anon",
    "total_workingset_refault_file": "workingset_refault_file",
    "total_pgmajfault": "pgmajfault",
    "total_pgfault": "pgfault",
    "total_pgpgout": "pgpgout",
}


TextOf = Callable[[str], "str | None"]  # kernel path -> text, None when absent


def _int_of(text_of: TextOf, root: Root, path: str, name: str) -> int | None:
    text = text_of(path)
    if text is None:
        return None
    value = text.strip(" \t\n")
    if value == "max":
        return None
    if is_decimal(value):
        return int(value)  # what the kernel prints; the path is joined only for an error
    return parse_uint(root.join(path), name, value)


def _read_int_file(root: Root, path: str, name: str) -> int | None:
    return _int_of(root.read_optional, root, path, name)


def _child_groups(directory: str, cgpath: str) -> list[str]:
    """The child groups of the group at `directory` (its path: `cgpath`), sorted."""
    names: list[str] = []
    try:
        # cgroupfs (kernfs), tmpfs and ext4 count a directory's subdirectories in its
        # link count: 2 means none, and one stat() spares listing ~20 files.
        if os.stat(directory).st_nlink != 2:
            # d_type from getdents: no stat() per file of the group.
            with os.scandir(directory) as entries:
                names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        names = []
    if tap.ACTIVE is not None:  # a trace is written: it forgets the groups gone
        tap.ACTIVE.listing(directory, names, dirs_only=True)
    base = cgpath.rstrip("/")
    return [f"{base}/{name}" for name in sorted(names)]


class CgroupReader:
    """Reads groups of one host; cheap to create, holds no files open."""

    def __init__(self, root: Root, layout: CgroupLayout | None = None) -> None:
        self.root = root
        self.layout = layout or detect_layout(root)

    # -- tree -----------------------------------------------------------------------
    def exists(self, cgpath: str) -> bool:
        return self.root.exists(self.layout.v2_dir(cgpath))

    def children(self, cgpath: str) -> list[str]:
        """Child groups, sorted; none when the group vanished or cannot be listed."""
        return _child_groups(self.root.join(self.layout.v2_dir(cgpath)), cgpath)

    def procs(self, cgpath: str) -> list[int]:
        """PIDs directly in a group (empty if it vanished)."""
        return self.procs_or_none(cgpath) or []

    def procs_or_none(self, cgpath: str) -> list[int] | None:
        """PIDs directly in a group; None when the group is not there (any more)."""
        text = self.root.read_optional(f"{self.layout.v2_dir(cgpath)}/cgroup.procs")
        if text is None:
            return None
        path = self.root.join(f"{self.layout.v2_dir(cgpath)}/cgroup.procs")
        return [parse_uint(path, "pid", p) for p in kernel_fields(text.replace("\n", " "))]

    def subtree_procs(self, cgpath: str, limit: int | None = None) -> list[int]:
        pids: list[int] = []
        stack = [cgpath]
        while stack:
            current = stack.pop()
            pids.extend(self.procs(current))
            if limit is not None and len(pids) >= limit:
                return pids[:limit]
            stack.extend(self.children(current))
        return pids

    def pressure(self, cgpath: str) -> Psi | None:
        path = f"{self.layout.v2_dir(cgpath)}/memory.pressure"
        text = self.root.read_optional(path)
        return None if text is None else parse_psi(text, self.root.join(path))

    def oom_group(self, cgpath: str) -> bool:
        value = _read_int_file(self.root, f"{self.layout.v2_dir(cgpath)}/memory.oom.group",
                               "memory.oom.group")
        return bool(value)

    def events(self, cgpath: str) -> dict[str, int]:
        path = f"{self.layout.v2_dir(cgpath)}/cgroup.events"
        text = self.root.read_optional(path)
        return {} if text is None else parse_name_values(text, self.root.join(path))

    # -- memory ---------------------------------------------------------------------
    def memory(self, cgpath: str) -> CgroupMemory | None:
        """Memory figures of a group; None when the group has none we can find."""
        if self.layout.memory_on_v2:
            return self.memory_v2(cgpath)
        v1path = self.owned_v1_memory_path(cgpath)
        if v1path is not None:
            return self.memory_v1(v1path)
        return self._memory_procs(cgpath)

    def memory_v2(self, cgpath: str, text_of: TextOf | None = None,
                  fields: tuple[str, ...] | None = None,
                  with_swap: bool = True) -> CgroupMemory | None:
        """v2 memory figures; `text_of` lets the daemon read through kept-open files;
        `fields`: only these memory.stat fields (the monitor needs 5 of ~60);
        `with_swap` off: memory.swap.current not read (a sample has no use for it)."""
        text_of = text_of or self.root.read_optional
        directory = self.layout.v2_dir(cgpath)
        stat_text = text_of(f"{directory}/memory.stat")
        if stat_text is None:
            return None
        stat_path = self.root.join(f"{directory}/memory.stat")
        stat = parse_name_values(stat_text, stat_path) if fields is None else \
            pick_values(stat_text, stat_path, fields)
        swap = _int_of(text_of, self.root, f"{directory}/memory.swap.current",
                       "memory.swap.current") if with_swap else None
        if swap is not None:
            stat.setdefault("swap", swap)
        return CgroupMemory(
            source="v2",
            current=_int_of(text_of, self.root, f"{directory}/memory.current",
                            "memory.current"),
            limit=_int_of(text_of, self.root, f"{directory}/memory.max", "memory.max"),
            swap=swap,
            anon=stat.get("anon"),
            file=stat.get("file"),
            stat=stat,
        )

    def v1_memory_path(self, cgpath: str) -> str | None:
        """The v1 memory cgroup shared by a v2 group's processes (their common ancestor)."""
        if "memory" not in self.layout.v1:
            return None
        paths = []
        for pid in self.subtree_procs(cgpath, limit=MAX_PIDS_SAMPLED):
            membership = read_proc_cgroup(self.root, pid)
            if membership is not None and "memory" in membership.v1:
                paths.append(membership.v1["memory"])
        return common_ancestor(paths)

    def owned_v1_memory_path(self, cgpath: str) -> str | None:
        """The v1 memory cgroup whose figures are the v2 group's own, or None.

        A v1 group's figures are hierarchical totals of every process in it: they are
        the v2 group's only when every process of the v1 subtree is one of the v2
        group's (a bystander whose processes sit in an ancestor of another group's
        memory cgroup must not be credited with that group's refaults). A captured tree
        without v1 cgroup.procs (traces from before they were recorded) is taken as
        the daemon took it then.
        """
        if "memory" not in self.layout.v1:
            return None
        members = self.subtree_procs(cgpath, limit=MAX_PIDS_OWNED + 1)
        if not members or len(members) > MAX_PIDS_OWNED:
            return None
        paths = []
        for pid in members:
            membership = read_proc_cgroup(self.root, pid)
            if membership is not None and "memory" in membership.v1:
                paths.append(membership.v1["memory"])
        v1path = common_ancestor(paths)
        if v1path is None or v1path == "/":
            return None
        inside = self.v1_subtree_procs(v1path, MAX_PIDS_OWNED + 1)
        if inside is None:
            return v1path  # no v1 cgroup.procs in this (captured) tree
        own = set(members)
        return v1path if len(inside) <= MAX_PIDS_OWNED and set(inside) <= own else None

    def v1_children(self, v1path: str) -> list[str]:
        """Child v1 memory cgroups, sorted (none when it vanished)."""
        directory = self.layout.v1_dir("memory", v1path)
        return [] if directory is None else _child_groups(self.root.join(directory), v1path)

    def v1_procs(self, v1path: str) -> list[int] | None:
        """PIDs directly in a v1 memory cgroup; None when its cgroup.procs is absent."""
        directory = self.layout.v1_dir("memory", v1path)
        if directory is None:
            return None
        text = self.root.read_optional(f"{directory}/cgroup.procs")
        if text is None:
            return None
        path = self.root.join(f"{directory}/cgroup.procs")
        return [parse_uint(path, "pid", p) for p in kernel_fields(text.replace("\n", " "))]

    def v1_subtree_procs(self, v1path: str, limit: int) -> list[int] | None:
        """PIDs of a v1 memory cgroup and its descendants (at most `limit`); None when
        the tree holds no cgroup.procs to read."""
        pids: list[int] = []
        stack = [v1path]
        seen_file = False
        while stack:
            current = stack.pop()
            found = self.v1_procs(current)
            if found is not None:
                seen_file = True
                pids.extend(found)
                if len(pids) >= limit:
                    return pids[:limit]
            stack.extend(self.v1_children(current))
        return pids if seen_file else None

    def v1_memory_limit(self, v1path: str) -> int | None:
        """The tighter of a v1 memory cgroup's limit and memsw limit (None: unlimited)."""
        directory = self.layout.v1_dir("memory", v1path)
        if directory is None:
            return None
        found = []
        for name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
            value = _read_int_file(self.root, f"{directory}/{name}", name)
            if value is not None and value < UNLIMITED_V1:
                found.append(value)
        return min(found) if found else None

    def v2_memory_limit(self, cgpath: str) -> int | None:
        """The tighter of memory.max and memory.high (None: neither is set)."""
        directory = self.layout.v2_dir(cgpath)
        found = []
        for name in ("memory.max", "memory.high"):
            value = _read_int_file(self.root, f"{directory}/{name}", name)
            if value is not None:
                found.append(value)
        return min(found) if found else None

    def memory_v1(self, v1path: str, text_of: TextOf | None = None,
                  fields: tuple[str, ...] | None = None) -> CgroupMemory | None:
        """Figures of a v1 memory cgroup (hierarchical totals, renamed to v2's names);
        `fields`: only these (v2 names) from memory.stat."""
        text_of = text_of or self.root.read_optional
        directory = self.layout.v1_dir("memory", v1path)
        if directory is None:
            return None
        stat_path = f"{directory}/memory.stat"
        stat_text = text_of(stat_path)
        if stat_text is None:
            return None
        if fields is None:
            raw = parse_name_values(stat_text, self.root.join(stat_path))
        else:
            raw = pick_values(stat_text, self.root.join(stat_path), tuple(
                old for old, new in _V1_STAT_NAMES.items() if new in fields))
        stat = {new: raw[old] for old, new in _V1_STAT_NAMES.items() if old in raw}
        usage = _int_of(text_of, self.root, f"{directory}/memory.usage_in_bytes",
                        "memory.usage_in_bytes")
        limit = _int_of(text_of, self.root, f"{directory}/memory.limit_in_bytes",
                        "memory.limit_in_bytes")
        if limit is not None and limit >= UNLIMITED_V1:
            limit = None
        return CgroupMemory(
            source=f"v1:{v1path}",
            current=usage,
            limit=limit,
            swap=stat.get("swap"),
            anon=stat.get("anon"),
            file=stat.get("file"),
            stat=stat,
        )

    def _memory_procs(self, cgpath: str) -> CgroupMemory | None:
        """Last resort on hybrid hosts: sum the members' RSS and swap from /proc."""
        rss = swap = 0
        seen = False
        for pid in self.subtree_procs(cgpath, limit=MAX_PIDS_OWNED):
            text = self.root.read_optional(f"/proc/{pid}/status")
            if text is None:
                continue
            for line in text.splitlines():
                if line.startswith(("VmRSS:", "VmSwap:")):
                    parts = line.split()
                    if len(parts) >= 2:
                        kib = parse_uint(self.root.join(f"/proc/{pid}/status"),
                                         parts[0].rstrip(":"), parts[1])
                        if line.startswith("VmRSS:"):
                            rss += kib * 1024
                        else:
                            swap += kib * 1024
                        seen = True
        if not seen:
            return None
        return CgroupMemory("procs", rss, None, swap, None, None, {"swap": swap})

    def xattrs(self, cgpath: str) -> frozenset[str]:
        """Names of the group directory's extended attributes (one listxattr; empty when
        unsupported; trusted.* are listed only to CAP_SYS_ADMIN, as getxattr needs)."""
        try:
            return frozenset(os.listxattr(self.root.join(self.layout.v2_dir(cgpath))))
        except OSError:
            return frozenset()

    def int_file(self, cgpath: str, name: str) -> int | None:
        """A one-number file of the group's v2 directory (memory.current...); None when
        absent or "max"."""
        return _read_int_file(self.root, f"{self.layout.v2_dir(cgpath)}/{name}", name)

    def owner_uid(self, cgpath: str) -> int | None:
        try:
            return os.stat(self.root.join(self.layout.v2_dir(cgpath))).st_uid
        except OSError:
            return None
