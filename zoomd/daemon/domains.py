"""Memory domains: the groups with a memory limit of their own, found as they come and go.

The host is one domain; every cgroup with a limit is another, judged against its own
capacity (a 512 MiB container thrashes long before the host notices). On a pure v2
host a domain is a group with `memory.max` or `memory.high` set. On a hybrid host
the limit sits on a v1 memory cgroup, and the group zoomd watches and acts on is the
v2 group holding exactly that cgroup's processes: the deepest v2 group containing
them all, provided it holds no process from outside it (else acting on it would hit
others, and its pressure would not be the domain's). What cannot be anchored so is
reported as unguarded, with the reason, never guessed at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from zoomd.errors import ZoomdError
from zoomd.kernel.cgroups import MAX_PIDS_OWNED, CgroupReader, common_ancestor
from zoomd.kernel.proc_cgroup import read_proc_cgroup

# Groups looked at per discovery, and domains kept: a bound on the cost of a host with
# tens of thousands of groups (benchmarks/discovery.py measures 1,000 and 10,000).
MAX_GROUPS_WALKED = 50_000
MAX_DOMAINS = 2_000


@dataclass(frozen=True, slots=True)
class Domain:
    """A memory-limited group: its v2 path (watched, acted on) and its limit."""

    path: str
    limit: int
    source: str  # "v2" or "v1:<path>" (where the limit and the figures come from)
    v1_path: str | None = None


@dataclass(slots=True)
class Discovery:
    """One discovery: the domains found, and each limited group that is not one, why."""

    domains: list[Domain] = field(default_factory=list)
    unguarded: dict[str, str] = field(default_factory=dict)
    truncated: bool = False
    walked: int = 0  # groups looked at: what the discovery cost


def discover(reader: CgroupReader, under: str = "/") -> Discovery:
    """The memory domains at or below `under` ("/" itself is the host, never one here)."""
    found = Discovery()
    if reader.layout.memory_on_v2:
        _discover_v2(reader, under, found)
    elif "memory" in reader.layout.v1:
        _discover_v1(reader, under, found)
    found.domains = tightest(found.domains)
    if len(found.domains) > MAX_DOMAINS:
        found.domains = found.domains[:MAX_DOMAINS]
        found.truncated = True
    return found


def _walk(start: list[str], children: Callable[[str], list[str]],
          found: Discovery) -> Iterator[str]:
    """Every group below the `start` ones, depth first, at most MAX_GROUPS_WALKED
    (beyond, `found.truncated` says so)."""
    stack = list(reversed(start))
    while stack:
        path = stack.pop()
        found.walked += 1
        if found.walked > MAX_GROUPS_WALKED:
            found.truncated = True
            return
        yield path
        stack.extend(reversed(children(path)))


def _discover_v2(reader: CgroupReader, under: str, found: Discovery) -> None:
    start = [under] if under != "/" else reader.children("/")
    for path in _walk(start, reader.children, found):
        try:
            limit = reader.v2_memory_limit(path)
        except ZoomdError as exc:
            found.unguarded[path] = f"unreadable limit: {exc}"
            continue
        if limit is not None:
            found.domains.append(Domain(path, limit, "v2"))


def _v2_path_of(reader: CgroupReader, pid: int) -> str | None:
    try:
        membership = read_proc_cgroup(reader.root, pid)
    except ZoomdError:
        return None
    return None if membership is None else membership.v2


def _discover_v1(reader: CgroupReader, under: str, found: Discovery) -> None:
    """Hybrid: limited v1 memory cgroups, each anchored at the v2 group of its processes."""
    for v1path in _walk(reader.v1_children("/"), reader.v1_children, found):
        try:
            limit = reader.v1_memory_limit(v1path)
        except ZoomdError as exc:
            found.unguarded[f"v1:{v1path}"] = f"unreadable limit: {exc}"
            continue
        if limit is None:
            continue
        reason = _anchor(reader, v1path, limit, under, found)
        if reason is not None:
            found.unguarded[f"v1:{v1path}"] = reason


def _anchor(reader: CgroupReader, v1path: str, limit: int, under: str,
            found: Discovery) -> str | None:
    """Add the domain of a limited v1 cgroup, or say why there is none."""
    pids = reader.v1_subtree_procs(v1path, MAX_PIDS_OWNED + 1)
    if pids is None:
        return "no cgroup.procs"
    if not pids:
        return None  # nothing in it to guard (yet): not worth a line
    if len(pids) > MAX_PIDS_OWNED:
        return f"more than {MAX_PIDS_OWNED} processes"
    v2_paths = [p for p in (_v2_path_of(reader, pid) for pid in pids) if p is not None]
    anchor = common_ancestor(v2_paths)
    if anchor is None:
        return "its processes are in no v2 group"
    if anchor == "/":
        return "its processes share the v2 root cgroup with the rest of the host"
    if not (anchor == under or under == "/" or anchor.startswith(under.rstrip("/") + "/")):
        return None  # outside the scope looked at
    inside = set(pids)
    outsiders = [pid for pid in reader.subtree_procs(anchor, limit=MAX_PIDS_OWNED + 1)
                 if pid not in inside]
    if outsiders:
        return (f"its v2 group {anchor} also holds processes outside it "
                f"(pid {outsiders[0]}): acting on it would hit them")
    found.domains.append(Domain(anchor, limit, f"v1:{v1path}", v1path))
    return None


def tightest(domains: list[Domain]) -> list[Domain]:
    """One domain per v2 group: where several v1 limits anchor at the same group, the
    tightest one is the group's capacity."""
    best: dict[str, Domain] = {}
    for domain in domains:
        held = best.get(domain.path)
        if held is None or domain.limit < held.limit:
            best[domain.path] = domain
    return [best[path] for path in sorted(best)]
