"""Taskstats for policies: the memory stall of the groups an operator protects (the
bystander's suffering) and of the candidates, sampled only for policies that ask.

pyroute2 is imported only when [taskstats] is enabled; without delay accounting the
figures are None ("no evidence"), never zeros.
"""

from __future__ import annotations

import time
from typing import Any

from zoomd.config.runtime import Policy
from zoomd.daemon.globs import matches
from zoomd.kernel.cgroups import CgroupReader

REFRESH_S = 10.0


def uses_protected_stall(policy: Policy) -> bool:
    return (policy.all.protected_stall_above is not None
            or policy.any.protected_stall_above is not None)


class PolicyStalls:
    """Two StallSamplers (a sampler forgets the tasks of groups it was not asked about,
    so protected groups, sampled every tick, and candidates, sampled when a policy is
    pending, each keep their own); remembers which groups each policy protects."""

    def __init__(self, protected: Any, candidates: Any, reader: CgroupReader) -> None:
        self.protected = protected
        self.candidates = candidates
        self.reader = reader
        self._protected: dict[str, tuple[float, list[str]]] = {}

    def protected_groups(self, policy: Policy, monitor: str) -> list[str]:
        """Groups under `monitor` that match the policy's protect globs (cached 10 s)."""
        now = time.monotonic()
        cached = self._protected.get(policy.name)
        if cached is not None and now - cached[0] < REFRESH_S:
            return cached[1]
        found: list[str] = []
        stack = [monitor]
        while stack:
            path = stack.pop()
            for child in self.reader.children(path):
                if matches(child, policy.protect):
                    found.append(child)
                else:
                    stack.append(child)
        self._protected[policy.name] = (now, found)
        return found

    def memory_pct(self, groups: list[str], sampler: Any = None) -> dict[str, dict[str, Any]]:
        """Each group's memory stall (% of time over the sampler's window) and its kind."""
        if not groups:
            return {}
        sample = (sampler or self.candidates).sample(groups)
        out: dict[str, dict[str, Any]] = {}
        for path, group in sample.groups.items():
            if group.rated == 0:
                continue  # first sight of these tasks: no rate yet
            out[path] = {"memory_pct": round(100.0 * group.figures.memory, 2),
                         "kind": group.figures.kind, "complete": group.complete}
        return out

    def protected_stall_pct(self, policy: Policy, monitor: str) -> tuple[float | None, dict]:
        figures = self.memory_pct(self.protected_groups(policy, monitor), self.protected)
        if not figures:
            return None, {}
        return max(f["memory_pct"] for f in figures.values()), figures


def open_policy_stalls(config: Any, reader: CgroupReader, logger: Any,
                       root: Any) -> tuple[PolicyStalls | None, Any]:
    """PolicyStalls and the delay-accounting switch to restore on exit, or (None, None)."""
    section = config.taskstats
    if not section.enabled:
        return None, None
    from zoomd.errors import ZoomdError
    from zoomd.kernel.delayacct import DelayAccounting
    from zoomd.kernel.taskstats_netlink import TaskstatsClient
    from zoomd.stallsampler import StallSampler

    try:
        switch = DelayAccounting(root, section.enable_delay_accounting).__enter__()
        if not switch.state.on:
            logger.warning("delay accounting is off (kernel.task_delayacct=0): stall "
                           "conditions have no evidence; set [taskstats] "
                           "enable_delay_accounting = true")
        client = TaskstatsClient()
        half = max(1, section.task_budget // 2)
        stalls = PolicyStalls(StallSampler(client, reader, half),
                              StallSampler(client, reader, half), reader)
    except (ZoomdError, OSError) as exc:
        logger.warning("taskstats unavailable: stall conditions have no evidence",
                       error=str(exc))
        return None, None
    return stalls, switch
