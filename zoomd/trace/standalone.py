"""What `zoomd record` reads each sample, through the daemon's own readers.

`zoomd record` has no engine to tap, so it calls the readers an engine would: the
host sampler, a monitor per watched group (with its v1 memory group on hybrid
hosts), and, every `subtree_every` samples and every sample while memory stalls,
each group under the scope as a candidate (its figures for every rank key, whether
it is one, its largest process). The tap (zoomd/kernel/tap.py) keeps what they read:
no list of files here, no second parser, so a replay of any configuration over the
scope reads the bytes these readers got.
"""

from __future__ import annotations

from zoomd.config.runtime import Policy
from zoomd.daemon import candidates
from zoomd.daemon.hostmodel import HostModel, ModelParams
from zoomd.daemon.monitor import GroupMonitor, open_monitor
from zoomd.daemon.processes import choose_process
from zoomd.errors import ZoomdError
from zoomd.host import HostReader
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.hotfile import FdBudget, process_budget
from zoomd.kernel.root import Root
from zoomd.kinds import RANK_KEYS
from zoomd.model.snapshot import HostSnapshot

DEFAULT_SUBTREE_EVERY = 5
# Every key a configuration may rank by but "stalls" (taskstats: netlink, no file).
RECORDED_KEYS = tuple(k for k in RANK_KEYS if k != "stalls")


class RecordSampler:
    """One sample's reads for `zoomd record`; the tap, installed by the caller, keeps them."""

    def __init__(self, root: Root, *, scope: str = "/", monitors: tuple[str, ...] = ("/",),
                 subtree_every: int = DEFAULT_SUBTREE_EVERY, page_size: int | None = None,
                 budget: FdBudget | None = None) -> None:
        self.scope = "/" + scope.strip("/") if scope not in ("", "/") else "/"
        self.subtree_every = max(1, subtree_every)
        self.host = HostReader(root, page_size)
        self.model = HostModel(ModelParams())
        self.cgroups: CgroupReader | None
        try:
            self.cgroups = CgroupReader(root)
            if self.cgroups.layout.v2 is None:
                self.cgroups = None
        except ZoomdError:
            self.cgroups = None  # no cgroup2: the host's files only
        self._budget = budget or process_budget()
        self.monitors: list[GroupMonitor] = []
        for path in monitors:
            if path == "/" or self.cgroups is None:
                continue  # the host's own figures: the host sampler reads them
            try:
                self.monitors.append(open_monitor(path, self.cgroups, budget=self._budget))
            except ZoomdError:
                continue  # not there (yet): the trace simply lacks it, as the host does
        self._wide = Policy(name="record", monitor=self.scope, rank=RECORDED_KEYS)
        self._psi_some: int | None = None
        self.samples = 0

    def _stalling(self, snap: HostSnapshot) -> bool:
        """Memory PSI `some` moved since the last sample: read the subtree every time."""
        total = snap.psi_memory.some.total_us if snap.psi_memory is not None else None
        moved = total is not None and self._psi_some is not None and total > self._psi_some
        self._psi_some = total
        return moved

    def _subtree(self) -> None:
        """Every group under the scope as the readers see it, and as a candidate."""
        reader = self.cgroups
        if reader is None or not reader.exists(self.scope):
            return
        groups = ([] if self.scope == "/" else [self.scope]) + \
            candidates.descendants(reader, self.scope)
        for path in groups:
            try:
                reader.memory(path)
                reader.pressure(path)
                reader.oom_group(path)
                reader.procs(path)
            except ZoomdError:
                continue  # unreadable or gone: the trace holds what was there
        found, _ = candidates.collect(reader, self._wide, self.scope,
                                      candidates.Exclusions((), ()), leaf_monitor=True)
        for cand in found:
            try:
                choose_process(reader, cand.path, None)
            except ZoomdError:
                continue

    def sample(self, now: float) -> HostSnapshot:
        """Read one sample (the caller's tap keeps it); the host's snapshot."""
        snap = self.host.sample(now=now)
        estimate = self.model.update(snap)
        for monitor in self.monitors:
            try:
                monitor.sample(snap, estimate)
            except ZoomdError:
                continue
        stalling = self._stalling(snap)
        if self.samples == 0 or stalling or self.samples % self.subtree_every == 0:
            self._subtree()
        self.samples += 1
        return snap

    def close(self) -> None:
        for monitor in self.monitors:
            monitor.close()
        self.host.close()
