"""Victim choice: which descendants of a watched group may be acted on, and in what order.

Enumeration and exclusion read cgroupfs; ranking is a pure function of the
collected figures so that it can be tested on synthetic candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoomd.config.schema import Policy
from zoomd.daemon.globs import is_ancestor_or_self, matches, relative_to
from zoomd.errors import ZoomdError
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.keyvalue import is_decimal

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

    def score(self, key: str) -> int:
        if key == "memory":
            return self.memory
        if key == "swap":
            return self.swap
        if key == "pgscan" and "pgscan" not in self.deltas:
            return self.deltas.get("refaults", 0)  # no per-group pgscan: hybrid hosts
        return self.deltas.get(key, 0)

    def to_json(self, rank: tuple[str, ...]) -> dict[str, object]:
        return {
            "path": self.path,
            "preference": PREFERENCE_NAMES[self.preference],
            "scores": {key: self.score(key) for key in rank},
            "memory_bytes": self.memory,
            "swap_bytes": self.swap,
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


def descendants(reader: CgroupReader, path: str) -> list[str]:
    out: list[str] = []
    stack = reader.children(path)
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(reader.children(current))
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


def walk_candidates(reader: CgroupReader, monitor: str) -> list[str]:
    """Descendants of `monitor`, stopping at leaves, memory.oom.group=1 groups and the
    roots of threaded subtrees."""
    found: list[str] = []
    stack = list(reversed(reader.children(monitor)))
    while stack:
        path = stack.pop()
        children = reader.children(path)
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
        owner = reader.owner_uid(path)
        trusted_owner = owner is not None and (owner == 0 or owner == monitor_owner)
        found = trusted_owner and reader.xattr(path, "user.oomd_omit") is not None
        cache[path] = found
    return found


def xattr_preference(reader: CgroupReader, path: str, monitor_owner: int | None) -> int | None:
    """systemd-oomd/oomd xattrs: None means omit; otherwise a preference class."""
    owner = reader.owner_uid(path)
    trusted_owner = owner is not None and (owner == 0 or owner == monitor_owner)
    if trusted_owner and reader.xattr(path, "user.oomd_omit") is not None:
        return None
    if reader.xattr(path, "trusted.oomd_prefer") is not None:
        return PREFER
    if trusted_owner and reader.xattr(path, "user.oomd_prefer") is not None:
        return PREFER
    if trusted_owner and reader.xattr(path, "user.oomd_avoid") is not None:
        return AVOID
    return NORMAL


def has_kernel_thread(reader: CgroupReader, path: str) -> bool:
    for pid in reader.procs(path):
        text = reader.root.read_optional(f"/proc/{pid}/stat")
        if text is None:
            continue
        fields = text.rsplit(")", 1)[-1].split()
        # fields[0] is the state (3rd field); flags is the 9th field overall.
        if len(fields) > 6 and is_decimal(fields[6]) and int(fields[6]) & 0x00200000:
            return True
    return False


def collect(reader: CgroupReader, policy: Policy, monitor: str, ex: Exclusions,
            host_pgscan: int | None) -> tuple[list[Candidate], dict[str, str]]:
    """Candidates with their current figures, and the reason each other group was skipped.

    A group that vanishes while it is read (a service stopping) is skipped as
    "vanished"; one whose files cannot be read or parsed is skipped as "unreadable",
    with the error: neither stops the others from being ranked.
    """
    skipped: dict[str, str] = {}
    monitor_owner = reader.owner_uid(monitor)
    omit_cache: dict[str, bool] = {}
    out: list[Candidate] = []
    for path in walk_candidates(reader, monitor):
        rel = relative_to(path, monitor)
        if not matches(rel, policy.candidates):
            continue
        try:
            found = _examine(reader, policy, path, ex, monitor_owner, omit_cache)
        except ZoomdError as exc:
            found = f"unreadable: {exc}"
        if (isinstance(found, Candidate) or found.startswith("unreadable")) \
                and not reader.exists(path):
            found = "vanished"  # went away while it was being read
        if isinstance(found, str):
            skipped[path] = found
        else:
            out.append(found)
    return out, skipped


def _examine(reader: CgroupReader, policy: Policy, path: str, ex: Exclusions,
             monitor_owner: int | None, omit_cache: dict[str, bool]) -> Candidate | str:
    """One group as a candidate with its figures, or why it is not one.

    Protection (a glob, or user.oomd_omit) covers a group's whole subtree: a group
    inside a protected one, or containing one, is never acted on either.
    """
    inner = descendants(reader, path)  # non-empty only for memory.oom.group groups
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
    if reason is None and not reader.subtree_procs(path, limit=1):
        reason = "empty"
    if reason is None and has_kernel_thread(reader, path):
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
    memory = reader.memory(path)
    if memory is not None:
        cand.memory = memory.current or 0
        cand.swap = memory.swap or 0
        ra = memory.get("workingset_refault_anon")
        rf = memory.get("workingset_refault_file")
        if ra is not None or rf is not None:
            cand.refaults = (ra or 0) + (rf or 0)
        cand.pgscan = memory.get("pgscan")
    psi = reader.pressure(path)
    if psi is not None and psi.full is not None:
        cand.pressure_full_us = psi.full.total_us
    return cand


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


def rank(candidates: list[Candidate], keys: tuple[str, ...]) -> list[Candidate]:
    """Preferred first, then by each key (largest first), then by path (deterministic)."""
    return sorted(
        candidates,
        key=lambda c: (c.preference, *(-c.score(k) for k in keys), c.path),
    )
