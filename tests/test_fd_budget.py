"""The descriptor budget: watched groups keep files open only up to it, and past it are
read open-read-close, with the same figures. Without it a daemon started with systemd's
soft RLIMIT_NOFILE of 1,024 went blind (every read EMFILE) at ~250 watched groups."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from builders import GiB, meminfo, snapshot
from fakecgroupfs import FakeHost
from realkernel import require_real_kernel

from zoomd.daemon.monitor import open_monitor
from zoomd.kernel import hotfile
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.hotfile import FdBudget, HotFileCache, budget_for
from zoomd.kernel.root import Root
from zoomd.model.reclaim import ModelParams, estimate


def test_budget_leaves_a_reserve() -> None:
    assert budget_for(1024) == 768
    assert budget_for(524288) == 393216
    assert budget_for(200) == 0  # below the reserve: nothing kept open, all still read


def test_cache_past_its_budget_reads_fresh_text_and_releases_on_close(tmp_path: Path) -> None:
    budget = FdBudget(2)
    cache = HotFileCache(budget)
    files = [tmp_path / f"f{i}" for i in range(4)]
    for i, f in enumerate(files):
        f.write_text(f"v{i}\n")
    assert [cache.text(str(f)) for f in files] == ["v0\n", "v1\n", "v2\n", "v3\n"]
    assert len(cache) == 2 and budget.held == 2 and budget.refused == 2
    for i, f in enumerate(files):
        f.write_text(f"w{i}\n")
    # Kept-open and read-once files alike show the current content.
    assert [cache.text(str(f)) for f in files] == ["w0\n", "w1\n", "w2\n", "w3\n"]
    files[3].unlink()
    assert cache.text(str(files[3])) is None
    cache.close()
    assert budget.held == 0 and len(cache) == 0


def test_a_vanished_kept_open_file_gives_its_descriptor_back(tmp_path: Path,
                                                             monkeypatch) -> None:
    budget = FdBudget(1)
    cache = HotFileCache(budget)
    path = tmp_path / "f"
    path.write_text("x\n")
    assert cache.text(str(path)) == "x\n" and budget.held == 1

    def gone(self) -> bytes:
        from zoomd.errors import KernelFileError
        raise KernelFileError(self.path, "unreadable (No such device)")

    monkeypatch.setattr(hotfile.HotFile, "read_bytes", gone)
    path.unlink()
    assert cache.text(str(path)) is None
    assert budget.held == 0


def test_monitors_past_the_budget_sample_the_same_figures(tmp_path: Path,
                                                          monkeypatch) -> None:
    host = FakeHost(str(tmp_path))
    for i in range(30):
        host.add(f"/g{i}", pids=[100 + i], current=(100 + i) << 20, limit=1 << 30,
                 anon=50 << 20, file=20 << 20, refault_anon=i, refault_file=2 * i,
                 pgscan=7 * i, full_us=1000 * i,
                 some_us=1000 * i)
    reader = CgroupReader(Root(host.base))
    mem = meminfo(24 * GiB, 20 * GiB, anon=2 * GiB, file=1 * GiB)
    snap = snapshot(mem, vm={"pgscan_anon": 1}, t=1.0)
    est = estimate(snap, None, ModelParams())

    def samples(budget: FdBudget) -> list:
        monitors = [open_monitor(f"/g{i}", reader, budget=budget) for i in range(30)]
        try:
            return [m.sample(snap, est) for m in monitors]
        finally:
            for m in monitors:
                m.close()

    roomy = samples(FdBudget(10_000))
    tight = FdBudget(7)  # a pressure file and memory files for two groups, no more
    assert samples(tight) == roomy
    assert tight.refused > 0 and tight.held == 0
    assert [s.psi_full_us for s in roomy] == [1000 * i for i in range(30)]


# -- the daemon process, on real v2 groups of the test's own ---------------------------
def _limits(soft: int, hard: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


@pytest.fixture
def own_groups():
    """300 empty v2 groups under one of the test's own, removed afterwards."""
    require_real_kernel(need_zram=False)
    from zoomdlab.lab.sysfs import cgroup2_mount

    mount = cgroup2_mount()
    assert mount is not None
    rel = f"/zoomd-fdtest-{os.getpid()}"
    base = mount.point + rel
    made = [base]
    os.mkdir(base)
    try:
        for i in range(300):
            os.mkdir(f"{base}/g{i}")
            made.append(f"{base}/g{i}")
        yield rel
    finally:
        for path in reversed(made):
            os.rmdir(path)


def _config(tmp_path: Path, groups: int) -> str:
    parts = ['[daemon]\ninterval = "200ms"\nlog_format = "json"\n']
    for i in range(groups):
        parts.append(f'[[policy]]\nname = "g{i}"\nmonitor = "/g{i}"\n'
                     '[policy.all]\nmemory_pressure_full_above = "99%"\n')
    path = tmp_path / "z.toml"
    path.write_text("".join(parts))
    return str(path)


def _run(config: str, scope: str, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zoomd", "run", "--dry-run", "--config",
                           config, "--scope", scope, "--duration", "3"],
                          capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=_limits(soft, hard))


@pytest.mark.realkernel
@pytest.mark.parametrize(("soft", "hard", "over_budget"), [
    (512, 512, True),    # budget 256 for 300 pressure files and 300 triggers
    (256, 4096, False),  # the daemon raises its soft limit to the hard one
])
def test_daemon_keeps_ticking_within_its_descriptor_limit(tmp_path: Path, own_groups: str,
                                                           soft: int, hard: int,
                                                           over_budget: bool) -> None:
    proc = _run(_config(tmp_path, 300), own_groups, soft, hard)
    print(proc.stderr[-2000:])
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr
    assert "tick skipped" not in proc.stderr
    assert f'"fd_limit": {hard}' in proc.stderr
    assert ("the rest polled" in proc.stderr) == over_budget
    assert proc.stderr.count("PSI trigger") <= 2  # one line, not one per group


def test_a_cache_dropped_without_close_gives_its_descriptors_back(tmp_path: Path) -> None:
    import gc

    budget = FdBudget(5)
    path = tmp_path / "f"
    path.write_text("x\n")
    for _ in range(7):
        cache = HotFileCache(budget)
        assert cache.text(str(path)) == "x\n"
        del cache
    gc.collect()
    assert budget.held == 0 and budget.refused == 0
