"""A watched group on a hybrid host whose processes have no v1 memory group of their
own: each tick reads its pressure file, not its whole subtree and every process's
/proc status (it did, for figures no sample uses)."""

from __future__ import annotations

import shutil

from builders import GiB, meminfo, snapshot

from zoomd.daemon.monitor import open_monitor
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root
from zoomd.model.reclaim import ModelParams, estimate


def test_hybrid_group_without_v1_memory_group_is_cheap_and_unchanged(tree_path, tmp_path,
                                                                     monkeypatch) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(tree_path("hybrid-v1-memory"), tree)
    for pid in (4242, 4243):  # both processes in the v1 memory root
        path = tree / f"proc/{pid}/cgroup"
        path.write_text(path.read_text().replace("4:memory:/lab-mem", "4:memory:/"))
    reader = CgroupReader(Root(str(tree)))
    walks = []
    real_walk = reader.subtree_procs
    monkeypatch.setattr(reader, "subtree_procs",
                        lambda *a, **k: walks.append(a) or real_walk(*a, **k))
    monitor = open_monitor("/lab", reader)
    mem = meminfo(24 * GiB, 20 * GiB, anon=2 * GiB, file=1 * GiB)
    samples = []
    for t in range(60):
        snap = snapshot(mem, vm={"pgscan_anon": t}, t=float(t))
        samples.append(monitor.sample(snap, estimate(snap, None, ModelParams())))
    assert len(walks) <= 7  # the v1 path is looked up every 10 s, not every tick
    last = samples[-1]
    assert last.refaults is None and last.memory_basis == 24 * GiB
    assert last.psi_full_us is not None
    monitor.close()


def test_sampling_only_the_fields_used_gives_the_same_samples(tmp_path, monkeypatch) -> None:
    from fakecgroupfs import FakeHost

    from zoomd.daemon import monitor as monitor_mod

    host = FakeHost(str(tmp_path))
    host.add("/g", pids=[5], current=800 << 20, limit=1 << 30, anon=500 << 20,
             file=200 << 20, refault_anon=1234, refault_file=55, pgscan=999, full_us=77,
             some_us=77)
    mem = meminfo(24 * GiB, 20 * GiB, anon=2 * GiB, file=1 * GiB)
    snap = snapshot(mem, vm={"pgscan_anon": 1}, t=1.0)
    est = estimate(snap, None, ModelParams())
    reader = CgroupReader(Root(host.base))
    picked = open_monitor("/g", reader).sample(snap, est)
    monkeypatch.setattr(monitor_mod, "SAMPLED_FIELDS", None)  # the whole memory.stat
    full = open_monitor("/g", reader).sample(snap, est)
    assert picked == full
    assert picked.refaults == 1234 + 55 and picked.pgscan == 999
