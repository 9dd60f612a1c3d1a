"""Victim choice: which descendants of a watched group may be acted on, and in what order.

Enumeration and exclusion read cgroupfs; ranking is a pure function of the
collected figures so that it can be tested on synthetic candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoomd.config.runtime import Policy
from zoomd.daemon.globs import is_ancestor_or_self, matches, relative_to
from zoomd.errors import ZoomdError
from zoomd.kernel.cgroups import MAX_PIDS_OWNED, CgroupReader, group_refaults
from zoomd.kernel.keyvalue import pick_values
from zoomd.kernel.proc_stat import read_proc_stat
from zoomd.kinds import RankKey

PREFER, NORMAL, AVOID = 0, 1, 2
PREFERENCE_NAMES = {PREFER: "prefer", NORMAL: "normal", AVOID: "avoid"}


@dataclass(slots=True)
class Candidate:
    """A group that may be acted on, with the figures rankings use."""

    path: str
    preference: int = NORMAL
    memory: int = 0
    swap: int = 0
    refaults: int | None = None  # cumulative pages
    pgscan: int | None = None
    pressure_full_us: int | None = None
    deltas: dict[str, int] = field(default_factory=dict)  # over the pending period
    swap_read: bool = False  # swap is read only when ranking or a record needs it
    # Where its figures come from: "v2" (its own files), "v1:<path>" (a v1 memory
    # cgroup holding its processes and no one else's), "procs" (its processes' own
    # RSS, swap and major faults, the refaults that can be proven), "none".
    basis: str = "none"

    def score(self, key: RankKey) -> int:
        if key == "memory":
            return self.memory
        if key == "swap":
            return self.swap
        if key == "pgscan" and "pgscan" not in self.deltas:
            return self.deltas.get("refaults", 0)  # no per-group pgscan: hybrid hosts
        return self.deltas.get(key, 0)

    def to_json(self, rank: tuple[RankKey, ...]) -> dict[str, object]:
        return {
            "path": self.path,
            "preference": PREFERENCE_NAMES[self.preference],
            "scores": {key: self.score(key) for key in rank},
            "memory_bytes": self.memory,
            "swap_bytes": self.swap,
            "basis": self.basis,
        }


@dataclass(frozen=True, slots=True)
class Exclusions:
    """What is never a candidate: protected globs and groups holding vital processes."""

    protect: tuple[str, ...]
    vital_groups: tuple[str, ...]  # PID 1's and zoomd's own v2 groups


def excluded_reason(path: str, ex: Exclusions,
                    inner: tuple[str, ...] | list[str] = ()) -> str | None:
    """Why `path` may not be acted on; acting on a group acts on all it contains."""
    if path == "/":
        return "root cgroup"
    for vital in ex.vital_groups:
        if is_ancestor_or_self(path, vital):
            return f"contains {vital} (PID 1 or zoomd)"
    if matches(path, ex.protect):
        return "protected"
    for above in ancestors(path):
        if matches(above, ex.protect):
            return f"inside protected {above}"
    for sub in inner:
        if matches(sub, ex.protect):
            return f"contains protected {sub}"
    return None


def ancestors(path: str) -> list[str]:
    """The groups above `path`, root excluded: "/a/b/c" -> ["/a", "/a/b"]."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def descendants(reader: CgroupReader, path: str,
                children_of: dict[str, list[str]] | None = None) -> list[str]:
    """Every group below `path`; `children_of` holds listings already made (the walk)."""
    known = children_of if children_of is not None else {}

    def kids(p: str) -> list[str]:
        found = known.get(p)
        return found if found is not None else reader.children(p)

    out: list[str] = []
    stack = list(kids(path))
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(kids(current))
    return out


def _oom_group(reader: CgroupReader, path: str) -> bool:
    try:
        return reader.oom_group(path)
    except ZoomdError:
        return False  # unreadable: walk on into its children, each judged on its own


def _threaded_root(reader: CgroupReader, path: str) -> bool:
    """A "domain threaded" group holds the processes of its threaded subtree: it is
    acted on as a whole (its threaded children have threads, not processes)."""
    try:
        text = reader.root.read_optional(f"{reader.layout.v2_dir(path)}/cgroup.type")
    except ZoomdError:
        return False
    return text is not None and text.strip() == "domain threaded"


def walk_candidates(reader: CgroupReader, monitor: str,
                    children_of: dict[str, list[str]] | None = None) -> list[str]:
    """Descendants of `monitor`, stopping at leaves, memory.oom.group=1 groups and the
    roots of threaded subtrees; each listing made is kept in `children_of` if given."""
    found: list[str] = []
    listed = children_of if children_of is not None else {}
    listed[monitor] = reader.children(monitor)
    stack = list(reversed(listed[monitor]))
    while stack:
        path = stack.pop()
        children = listed[path] = reader.children(path)
        if not children or _oom_group(reader, path) or _threaded_root(reader, path):
            found.append(path)
        else:
            stack.extend(reversed(children))
    return found


def omitted(reader: CgroupReader, path: str, monitor_owner: int | None,
            cache: dict[str, bool]) -> bool:
    """user.oomd_omit set on `path` by a trusted owner (memoised for one collection)."""
    found = cache.get(path)
    if found is None:
        found = "user.oomd_omit" in reader.xattrs(path) and _trusted(reader, path,
                                                                       monitor_owner)
        cache[path] = found
    return found


OOMD_XATTRS = frozenset({"user.oomd_omit", "user.oomd_prefer", "user.oomd_avoid",
                         "trusted.oomd_prefer"})


def _trusted(reader: CgroupReader, path: str, monitor_owner: int | None) -> bool:
    """user.* xattrs count only when root (or the monitored group's owner) owns the group."""
    owner = reader.owner_uid(path)
    return owner is not None and (owner == 0 or owner == monitor_owner)


def xattr_preference(reader: CgroupReader, path: str, monitor_owner: int | None) -> int | None:
    """systemd-oomd/oomd xattrs: None means omit; otherwise a preference class."""
    names = reader.xattrs(path) & OOMD_XATTRS  # one listxattr; most groups have none
    if not names:
        return NORMAL
    trusted_owner = _trusted(reader, path, monitor_owner)
    if trusted_owner and "user.oomd_omit" in names:
        return None
    if "trusted.oomd_prefer" in names:
        return PREFER
    if trusted_owner and "user.oomd_prefer" in names:
        return PREFER
    if trusted_owner and "user.oomd_avoid" in names:
        return AVOID
    return NORMAL


def has_kernel_thread(reader: CgroupReader, path: str,
                      pids: list[int] | None = None) -> bool:
    for pid in reader.procs(path) if pids is None else pids:
        stat = read_proc_stat(reader.root, pid)
        if stat is not None and stat.kernel_thread:
            return True
    return False


def collect(reader: CgroupReader, policy: Policy, monitor: str, ex: Exclusions,
            check_kthreads: bool = True,
            leaf_monitor: bool = False) -> tuple[list[Candidate], dict[str, str]]:
    """Candidates with their current figures, and the reason each other group was skipped.

    A group that vanishes while it is read (a service stopping) is skipped as
    "vanished"; one whose files cannot be read or parsed is skipped as "unreadable",
    with the error: neither stops the others from being ranked. With `check_kthreads`
    off, groups holding a kernel thread are left in: the caller must pass its ranking
    through `drop_kernel_thread_holders` before choosing from it. With `leaf_monitor`
    (a memory domain's instance), a watched group with no children is its own
    candidate: a container's processes live in the group that has the limit.
    """
    skipped: dict[str, str] = {}
    monitor_owner = reader.owner_uid(monitor)
    omit_cache: dict[str, bool] = {}
    children_of: dict[str, list[str]] = {}
    keys = frozenset(policy.rank)
    out: list[Candidate] = []
    paths = walk_candidates(reader, monitor, children_of)
    itself = leaf_monitor and not paths and monitor != "/"
    for path in [monitor] if itself else paths:
        rel = relative_to(path, monitor)
        if not itself and not matches(rel, policy.candidates):
            continue
        try:
            found = _examine(reader, policy, path, ex, monitor_owner, omit_cache,
                             children_of, keys, check_kthreads)
        except ZoomdError as exc:
            found = f"unreadable: {exc}"
        # Gone while it was read? A group that went away reads as no memory at all
        # (memory.current absent), so only then is its directory looked for.
        maybe_gone = found.memory == 0 if isinstance(found, Candidate) else \
            found.startswith("unreadable")
        if maybe_gone and not reader.exists(path):
            found = "vanished"
        if isinstance(found, str):
            skipped[path] = found
        else:
            out.append(found)
    return out, skipped


def _examine(reader: CgroupReader, policy: Policy, path: str, ex: Exclusions,
             monitor_owner: int | None, omit_cache: dict[str, bool],
             children_of: dict[str, list[str]], keys: frozenset[RankKey],
             check_kthreads: bool = True) -> Candidate | str:
    """One group as a candidate with its figures, or why it is not one.

    Protection (a glob, or user.oomd_omit) covers a group's whole subtree: a group
    inside a protected one, or containing one, is never acted on either.
    """
    inner = descendants(reader, path, children_of)  # only oom.group groups have any
    reason = excluded_reason(path, ex, inner)
    if reason is None and any(matches(p, policy.protect)
                              for p in (path, *ancestors(path), *inner)):
        reason = "protected by policy"
    if reason is None:
        for other in (*ancestors(path), *inner):
            if omitted(reader, other, monitor_owner, omit_cache):
                where = "inside" if is_ancestor_or_self(other, path) else "contains"
                reason = f"{where} {other} (user.oomd_omit)"
                break
    pids: list[int] = []
    if reason is None:
        listed = reader.procs_or_none(path)
        if listed is None:
            return "vanished"  # its cgroup.procs went with it
        pids = listed
        if not pids and not any(reader.procs(sub) for sub in inner):
            reason = "empty"
    if reason is None and check_kthreads and has_kernel_thread(reader, path, pids):
        reason = "holds a kernel thread"
    preference = NORMAL
    if reason is None:
        found = xattr_preference(reader, path, monitor_owner)
        if found is None:
            reason = "user.oomd_omit"
        else:
            preference = found
    if reason is not None:
        return reason
    if matches(path, policy.prefer):
        preference = PREFER
    elif matches(path, policy.avoid):
        preference = AVOID
    cand = Candidate(path=path, preference=preference)
    read_figures(reader, cand, keys)
    return cand


_STAT_FOR_RANKING = ("workingset_refault_anon", "workingset_refault_file", "pgscan")


def read_figures(reader: CgroupReader, cand: Candidate, keys: frozenset[RankKey]) -> None:
    """What ranking by `keys` needs, and no more: on v2, memory.current always (the
    "memory" figure every record shows), three fields of memory.stat for refaults or
    pgscan, memory.swap.current for swap, memory.pressure for pressure. Elsewhere (v1
    memory, /proc sums) all the group's figures at once, as they come together."""
    path = cand.path
    if reader.layout.memory_on_v2:
        cand.basis = "v2"
        cand.memory = reader.int_file(path, "memory.current") or 0
        if "refaults" in keys or "pgscan" in keys:
            stat_path = f"{reader.layout.v2_dir(path)}/memory.stat"
            text = reader.root.read_optional(stat_path)
            if text is not None:
                stat = pick_values(text, reader.root.join(stat_path), _STAT_FOR_RANKING)
                refaults = group_refaults(stat)
                if refaults is not None:
                    cand.refaults = refaults
                cand.pgscan = stat.get("pgscan")
        if "swap" in keys:
            cand.swap = reader.int_file(path, "memory.swap.current") or 0
            cand.swap_read = True
    else:
        memory = reader.memory(path)
        if memory is not None:
            cand.basis = memory.source
            cand.memory = memory.current or 0
            cand.swap = memory.swap or 0
            if memory.refaults is not None:
                cand.refaults = memory.refaults
            elif memory.source == "procs" and ("refaults" in keys or "pgscan" in keys):
                cand.refaults = subtree_major_faults(reader, path)
            cand.pgscan = memory.get("pgscan")
        cand.swap_read = True
    if "pressure" in keys:
        psi = reader.pressure(path)
        if psi is not None and psi.full is not None:
            cand.pressure_full_us = psi.full.total_us


def subtree_major_faults(reader: CgroupReader, path: str) -> int | None:
    """The major faults of a group's processes (/proc/PID/stat): its own refault
    figure where no memory cgroup holds its processes alone (a hybrid host's group
    sharing a v1 memory cgroup), comparable with a single process's; None when no
    process could be read."""
    total: int | None = None
    for pid in reader.subtree_procs(path, limit=MAX_PIDS_OWNED):
        stat = read_proc_stat(reader.root, pid)
        if stat is not None and stat.majflt is not None:
            total = (total or 0) + stat.majflt
    return total


def fill_record_figures(reader: CgroupReader, cands: list[Candidate]) -> None:
    """The figures a record shows that ranking did not need (swap), for those it shows."""
    for cand in cands:
        if not cand.swap_read:
            try:
                cand.swap = reader.int_file(cand.path, "memory.swap.current") or 0
            except ZoomdError:
                cand.swap = 0
            cand.swap_read = True


def apply_deltas(current: list[Candidate], baseline: dict[str, Candidate]) -> None:
    """Fill each candidate's deltas from its reading at the start of the pending period."""
    for cand in current:
        base = baseline.get(cand.path)
        for key, now, then in (
            ("refaults", cand.refaults, base.refaults if base else None),
            ("pgscan", cand.pgscan, base.pgscan if base else None),
            ("pressure", cand.pressure_full_us, base.pressure_full_us if base else None),
        ):
            if now is not None and then is not None and now >= then:
                cand.deltas[key] = now - then


def drop_kernel_thread_holders(reader: CgroupReader, ranked: list[Candidate],
                               skipped: dict[str, str], verify: int) -> list[Candidate]:
    """`ranked` with the groups holding a kernel thread taken out of its first `verify`
    places (into `skipped`), checking only as far down as that takes.

    A policy that fires chooses ranked[0] and shows the first ten: reading
    /proc/PID/stat of every process of a thousand candidates to clear groups it will
    never touch was a fifth of the ranking's time. (The effector checks every process
    again through its pidfd before signalling: this only keeps the choice right.)
    """
    out: list[Candidate] = []
    for i, cand in enumerate(ranked):
        if len(out) >= verify:
            out.extend(ranked[i:])
            break
        try:
            holds = has_kernel_thread(reader, cand.path)
        except ZoomdError as exc:  # as collect() skips a group it cannot read
            skipped[cand.path] = f"unreadable: {exc}"
            continue
        if holds:
            skipped[cand.path] = "holds a kernel thread"
        else:
            out.append(cand)
    return out


def rank(candidates: list[Candidate], keys: tuple[RankKey, ...]) -> list[Candidate]:
    """Preferred first, then by each key (largest first), then by path (deterministic)."""
    return sorted(
        candidates,
        key=lambda c: (c.preference, *(-c.score(k) for k in keys), c.path),
    )
