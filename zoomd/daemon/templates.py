"""Policy templates: one policy, one instance per matching group, as groups come and go.

A template is a policy whose `monitor` is a glob (`/system.slice/docker-*.scope`) or
that selects every memory-limited group (`select = "limited"`, at or below `monitor`).
Each instance is the template's policy on one group, named "<template>@<group>":
systemd-oomd's per-unit rules and oomd's cgroup globs, in zoomd's policy form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from zoomd.config.runtime import Policy, is_template
from zoomd.daemon.domains import MAX_GROUPS_WALKED, Discovery, Domain, discover
from zoomd.daemon.globs import compile_glob, is_ancestor_or_self, scoped
from zoomd.kernel.cgroups import CgroupReader

MAX_INSTANCES = 2_000  # all templates together: each holds a descriptor or two


@dataclass(frozen=True, slots=True)
class Instance:
    """A template applied to one group."""

    policy: Policy  # the template's, named "<template>@<group>", monitoring the group
    template: str
    domain: Domain | None


def glob_base(pattern: str) -> str:
    """The deepest group a glob lies under ("/a/b*/c" -> "/a")."""
    parts = []
    for part in pattern.strip("/").split("/"):
        if any(c in part for c in "*?"):
            break
        parts.append(part)
    return "/" + "/".join(p for p in parts if p)


def matching_groups(reader: CgroupReader, pattern: str) -> list[str]:
    """The v2 groups a glob names (walked from its literal prefix, bounded)."""
    regex = compile_glob(pattern)
    base = glob_base(pattern)
    depth = pattern.strip("/").count("/") + 1 if "**" not in pattern else None
    out: list[str] = []
    stack = [base] if reader.exists(base) else []
    walked = 0
    while stack and walked < MAX_GROUPS_WALKED:
        path = stack.pop()
        walked += 1
        if path != "/" and regex.match(path):
            out.append(path)
        if depth is None or path.strip("/").count("/") + 1 < depth or path == "/":
            stack.extend(reversed(reader.children(path)))
    return sorted(out)


def instances(templates: list[Policy], reader: CgroupReader,
              discovery: Discovery | None) -> list[Instance]:
    """Every instance the templates have now (`discovery`: when some template selects
    limited groups), in a stable order, at most MAX_INSTANCES."""
    out: list[Instance] = []
    by_path = {d.path: d for d in discovery.domains} if discovery else {}
    for template in templates:
        glob = any(c in template.monitor for c in "*?")
        if template.select == "limited":
            groups = [d.path for d in discovery.domains] if discovery else []
            if glob:
                regex = compile_glob(template.monitor)
                groups = [g for g in groups if regex.match(g)]
            else:
                groups = [g for g in groups if g != template.monitor
                          and is_ancestor_or_self(template.monitor, g)]
        else:
            groups = matching_groups(reader, template.monitor)
        for group in groups:
            policy = dataclasses.replace(template, name=f"{template.name}@{group}",
                                         monitor=group, select="")
            out.append(Instance(policy, template.name, by_path.get(group)))
            if len(out) >= MAX_INSTANCES:
                return out
    return out


def discover_for(templates: list[Policy], reader: CgroupReader) -> Discovery | None:
    """The discovery the templates need (None when none selects limited groups)."""
    if not any(t.select == "limited" for t in templates):
        return None
    return discover(reader)


def templates_of(policies: tuple[Policy, ...] | list[Policy], scope: str = "/") -> list[Policy]:
    """The templates among `policies`, re-rooted under `--scope` as `run` does."""
    return [dataclasses.replace(p, monitor=scoped(p.monitor, scope))
            for p in policies if is_template(p)]


def instances_now(templates: list[Policy], reader: CgroupReader,
                  ) -> tuple[list[Instance], Discovery | None]:
    """The templates' instances on this host now, and the discovery behind them."""
    discovery = discover_for(templates, reader)
    return instances(templates, reader, discovery), discovery
