"""Managed cgroups turned into policies, the swap rule (strict vs zram-aware) and the
kill counters, on synthetic snapshots and a fake cgroupfs."""

from __future__ import annotations

import io
import os

import pytest
from builders import GiB, meminfo, snapshot, zram_swap
from fakecgroupfs import FakeHost

from zoomd.actions.backend import RecordingBackend
from zoomd.actions.outcome import ActionOutcome
from zoomd.config.runtime import Config, SystemdSection
from zoomd.daemon.engine import Engine
from zoomd.daemon.log import Logger
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root
from zoomd.model.reclaim import ModelParams, estimate
from zoomd.systemd.managed import PRESSURE, SWAP, ManagedCgroup, pressure_policies
from zoomd.systemd.oomdconf import OomdConf
from zoomd.systemd.swaprule import SwapGuard, swap_figures
from zoomd.systemd.xattrs import ReportingBackend, read_counter

MiB = 1 << 20
USER = "/user.slice/user-1000.slice/user@1000.service"


def test_pressure_policy_strict_and_zram_aware() -> None:
    conf = OomdConf(pressure_limit=6000, pressure_duration_usec=20_000_000)
    entry = ManagedCgroup(USER, PRESSURE, limit=5000)
    strict = pressure_policies(entry, conf, SystemdSection(mode="strict"))
    assert [p.name for p in strict] == [f"systemd-pressure:{USER}"]
    rule = strict[0]
    assert (rule.monitor, rule.for_, rule.window, rule.rank) == (USER, 20.0, 20.0,
                                                                ("pgscan", "memory"))
    assert rule.all.memory_pressure_full_avg10_above == 50.0
    assert rule.all.reclaim_activity is True and rule.post_action_delay == 15.0
    aware = pressure_policies(ManagedCgroup(USER, PRESSURE, duration_usec=45_000_000), conf,
                              SystemdSection())
    assert [p.name for p in aware] == [f"systemd-pressure:{USER}", f"systemd-zram:{USER}"]
    assert aware[0].all.memory_pressure_full_avg10_above == 60.0  # oomd.conf's default
    assert aware[0].window == 30.0  # reclaim activity: within the last 30 s at most
    zram = aware[1]
    assert zram.for_ == 45.0 and zram.all.memory_pressure_full_above == 40.0
    assert zram.any.refault_rate_above == 15.0


def zram_host(used: int, mem_free: int, *, file: int = 200 * MiB, anon: int = 6 * GiB):
    """8 GiB RAM, a 4 GiB zram swap holding `used` at a ratio of 3."""
    swap = zram_swap(4 * GiB, used, orig=used, mem_used=used // 3)
    mem = meminfo(8 * GiB, mem_free, anon=anon, file=file, swap_total=4 * GiB,
                  swap_free=4 * GiB - used)
    return snapshot(mem, (swap,))


def test_strict_swap_rule_is_fooled_by_free_zram_slots() -> None:
    # RAM is gone but zram is only a tenth full: SwapFree says 90% free.
    host = zram_host(used=400 * MiB, mem_free=60 * MiB, file=40 * MiB)
    params = ModelParams()
    est = estimate(host, None, params)
    strict = swap_figures(host, est, 9000, "strict")
    assert strict.mem_available < strict.mem_threshold
    assert not strict.holds  # swap looks free
    # Anon reclaim failing (efficiency gate): the free slots give nothing back.
    from zoomd.model.reclaim import ReclaimWindow

    failing = estimate(host, ReclaimWindow(5.0, 100_000, 10_000, 1000, 900, 0, 0), params)
    aware = swap_figures(host, failing, 9000, "zram-aware")
    assert aware.swap_free == 0 and aware.holds


def test_zram_aware_counts_what_filling_zram_gives_back() -> None:
    host = zram_host(used=400 * MiB, mem_free=4 * GiB)
    params = ModelParams()
    est = estimate(host, None, params)
    aware = swap_figures(host, est, 9000, "zram-aware")
    # anon compresses 3:1: each page moved frees 2/3 of a page, bounded by the free slots
    assert aware.swap_free == pytest.approx((4 * GiB - 400 * MiB) * 2 / 3, rel=0.01)
    assert not aware.holds


@pytest.fixture
def fake(tmp_path) -> FakeHost:
    h = FakeHost(str(tmp_path))
    h.add("/user.slice", current=3 * GiB)
    h.add(f"{USER}", current=3 * GiB)
    h.add(f"{USER}/big.service", pids=[200], current=1 * GiB, swap=900 * MiB)
    h.add(f"{USER}/small.service", pids=[201], current=1 * GiB, swap=100 * MiB)
    return h


def test_swap_guard_kills_the_largest_swap_user(fake) -> None:
    reader = CgroupReader(Root(fake.base))
    backend = RecordingBackend()
    engine = Engine(Config(), reader, backend, Logger(stream=io.StringIO()))
    host = zram_host(used=3900 * MiB, mem_free=60 * MiB, file=40 * MiB)
    params = ModelParams()
    est = estimate(host, None, params)
    guard = SwapGuard()
    entries = [ManagedCgroup(USER, SWAP)]
    record = guard.tick(engine, host, est, entries, 9000, "strict")
    assert record is not None and record.victim == f"{USER}/big.service"
    assert record.reason == "memory-used"
    assert [c.target.endswith("big.service") for c in backend.calls] == [True]
    assert guard.tick(engine, host, est, entries, 9000, "strict") is None  # quiet


def test_zram_aware_swap_rule_ranks_by_memory_when_nobody_has_swapped(tmp_path) -> None:
    """Seen in the systemd VM: pages that do not compress filled RAM at 40 MB/s while
    zram stayed nearly empty (SwapFree ~1020 of 1024 MB) and the guest stalled for a
    minute. No candidate held 5% of SwapTotal, so the rule (zram-aware, holding) chose
    nobody and the kernel's OOM killer ended it. zram-aware mode ranks by memory then;
    strict mode keeps systemd-oomd's eligibility."""
    h = FakeHost(str(tmp_path))
    h.add("/user.slice", current=7 * GiB)
    h.add(f"{USER}", current=7 * GiB)
    h.add(f"{USER}/hog.service", pids=[300], current=6 * GiB, swap=4 * MiB)
    h.add(f"{USER}/calm.service", pids=[301], current=200 * MiB, swap=1 * MiB)
    reader = CgroupReader(Root(h.base))
    backend = RecordingBackend()
    engine = Engine(Config(), reader, backend, Logger(stream=io.StringIO()))
    host = zram_host(used=5 * MiB, mem_free=30 * MiB, file=20 * MiB)
    from zoomd.model.reclaim import ReclaimWindow

    failing = estimate(host, ReclaimWindow(5.0, 100_000, 10_000, 1000, 900, 0, 0),
                       ModelParams())
    entries = [ManagedCgroup(USER, SWAP)]
    assert SwapGuard().tick(engine, host, failing, entries, 9000, "strict") is None
    guard = SwapGuard()
    record = guard.tick(engine, host, failing, entries, 9000, "zram-aware")
    assert guard.last is not None and guard.last.holds
    assert record is not None and record.victim == f"{USER}/hog.service"
    assert record.ranked_by == ("memory", "swap")


def test_swap_onset_burst_does_not_fool_the_zram_aware_swap_rule(fake) -> None:
    """Swap onset: for 2 s the kernel's anon scans mostly rotate referenced pages, so
    the 5 s window reads ~6% anon efficiency, but the sustained gate (failing only after
    efficiency_sustain, 5 s) stays open: filling zram still gives RAM back and the rule
    must not kill. Once the failure has lasted 5 s, it kills."""
    from zoomd.daemon.hostmodel import HostModel

    reader = CgroupReader(Root(fake.base))
    backend = RecordingBackend()
    engine = Engine(Config(), reader, backend, Logger(stream=io.StringIO()))
    model = HostModel(ModelParams())
    guard = SwapGuard()
    entries = [ManagedCgroup(USER, SWAP)]
    used = 1400 * MiB  # 648 MiB of zram slots free at 3:1: filling them frees 432 MiB
    swap = zram_swap(2 * GiB, used, orig=used, mem_used=used // 3)
    mem = meminfo(8 * GiB, 100 * MiB, anon=6 * GiB, file=100 * MiB, swap_total=2 * GiB,
                  swap_free=2 * GiB - used)
    scanned = stolen = 0
    records = []
    for t in range(0, 17):
        burst = t > 10  # from t=10 on: 1M pages scanned per second, nothing stolen
        scanned += 1_000_000 if burst else 100_000
        stolen += 0 if burst else 50_000
        host = snapshot(mem, (swap,), vm={"pgscan_anon": scanned, "pgsteal_anon": stolen},
                        t=float(t))
        est = model.update(host)
        record = guard.tick(engine, host, est, entries, 9000, "zram-aware")
        if t == 12:
            assert est.anon_efficiency_pct is not None and est.anon_efficiency_pct < 10
            assert guard.last is not None and guard.last.swap_free > guard.last.swap_threshold
        if record is not None:
            records.append((t, record))
    assert [t for t, _ in records] == [15]  # failing since t=10, sustained 5 s at t=15
    assert records[0][1].victim == f"{USER}/big.service"


def test_swap_guard_acts_through_the_engines_action_path(fake) -> None:
    """The swap rule's kill goes through the engine like a policy's: in flight until
    the group is empty (the rule neither waits nor decides again meanwhile), recorded
    by a later engine tick, and reported to systemd with its own reason."""
    from zoomd.actions.backend import RecordingBackend as Inner

    class Slow(Inner):
        """Kills that finish on their second look."""

        def start_kill_cgroup(self, procs_dir, **kwargs):
            outcome = self.kill_cgroup(procs_dir, **kwargs)
            looks = []

            class Pending:
                def step(self):
                    looks.append(1)
                    return outcome if len(looks) >= 2 else None

                def fds(self):
                    return []

                def wake_in(self):
                    return 0.01

                def close(self):
                    pass

            return Pending()

    inner = Slow()
    backend = ReportingBackend(inner, lambda d: "/" + d.split("/sys/fs/cgroup/", 1)[1])
    heard = []
    backend.listeners.append(lambda cg, reason, _o: heard.append((cg, reason)))
    reader = CgroupReader(Root(fake.base))
    engine = Engine(Config(), reader, backend, Logger(stream=io.StringIO()))
    host = zram_host(used=3900 * MiB, mem_free=60 * MiB, file=40 * MiB)
    est = estimate(host, None, ModelParams())
    guard = SwapGuard()
    entries = [ManagedCgroup(USER, SWAP)]
    assert guard.tick(engine, host, est, entries, 9000, "strict") is None  # in flight
    assert engine.in_flight(guard) and heard == []
    guard.quiet_until = 0.0  # even past its delay: not while its kill is in flight
    assert guard.tick(engine, host, est, entries, 9000, "strict") is None
    assert len(inner.calls) == 1
    records = engine.tick(host, est)
    assert [r.victim for r in records] == [f"{USER}/big.service"]
    assert records[0].reason == "memory-used" and records[0].outcome.ok
    assert list(engine.records) == records and not engine.in_flight(guard)
    assert heard == [(f"{USER}/big.service", "memory-used")]


def test_reporting_backend_counts_like_systemd_oomd(tmp_path) -> None:
    group = tmp_path / "victim"
    group.mkdir()
    try:
        os.setxattr(group, "user.zoomd_probe", b"1")
    except OSError:
        pytest.skip("no user xattrs on this file system")

    class Inner:
        def kill_cgroup(self, procs_dir: str, **_kw) -> ActionOutcome:
            return ActionOutcome("kill", procs_dir, True, "cgroup.kill", (11, 12), 0.1, None,
                                 None)

    heard = []
    backend = ReportingBackend(Inner(), lambda d: "/x/victim")  # type: ignore[arg-type]
    backend.listeners.append(lambda cg, reason, _o: heard.append((cg, reason)))
    for _ in range(2):
        backend.kill_cgroup(str(group))
    assert read_counter(str(group), "user.oomd_ooms") == 2
    assert read_counter(str(group), "user.oomd_kill") == 4
    assert heard == [("/x/victim", "memory-pressure")] * 2 and backend.errors == []
