"""The brownout lab on the live kernel: swap and cgroups come and go cleanly, and the
thrash workload really browns out under zram while compressible keeps going.

Needs root, PSI, zram and cgroupfs (skips with the reason otherwise). Every test holds
the lab lock and is bounded by an alarm; all four together take about a minute.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from realkernel import require_real_kernel

pytestmark = pytest.mark.realkernel

MiB = 1 << 20


@contextmanager
def bounded(seconds: int) -> Iterator[None]:
    """Fail the test (through the lab's teardown, which defers SIGALRM) if it runs too long."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"test exceeded its {seconds} s bound")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _swaps() -> list[str]:
    with open("/proc/swaps") as f:
        return f.read().splitlines()


def _initstate(name: str) -> str:
    with open(f"/sys/block/{name}/initstate") as f:
        return f.read().strip()


def test_zram_swap_sets_up_and_tears_down() -> None:
    require_real_kernel()
    from zoomdlab.lab.lock import lab_lock
    from zoomdlab.lab.swap import active_swaps, disk_swapfile, zram_swap

    with lab_lock(), bounded(60):
        before = _swaps()
        with zram_swap(128 * MiB, algorithm="lzo-rle", priority=100) as z:
            assert z.dev_path in active_swaps()
            assert _initstate(z.name) == "1"
            with open(f"{z.sysfs}/comp_algorithm") as f:
                assert "[lzo-rle]" in f.read()
            # A second device comes from hot_add and is removed again afterwards.
            with zram_swap(64 * MiB, hot_add=True) as z2:
                assert z2.hot_added and z2.name != z.name
                assert z2.dev_path in active_swaps()
            assert not os.path.exists(z2.sysfs)
            path = f"/var/tmp/zoomd-lab-test-{os.getpid()}.swap"
            with disk_swapfile(path, 64 * MiB) as sf:
                assert sf.path in active_swaps()
                assert os.stat(path).st_mode & 0o777 == 0o600
            assert not os.path.exists(path)
        # Teardown also runs when the block raises.
        with pytest.raises(RuntimeError), zram_swap(64 * MiB) as z3:
            raise RuntimeError("boom")
        after = _swaps()
        assert after == before
        if not z.hot_added:
            assert _initstate(z.name) == "0"
        if not z3.hot_added:
            assert _initstate(z3.name) == "0"


def test_lab_cgroups_create_start_and_remove() -> None:
    require_real_kernel(need_zram=False)
    from zoomdlab.lab.cgroups import LabCgroups
    from zoomdlab.lab.lock import lab_lock

    with lab_lock(), bounded(60):
        with LabCgroups() as lab:
            work = lab.child("workload", memory_limit=64 * MiB)
            lab.child("bystander")
            proc = lab.start(work, ["sleep", "60"])
            deadline = time.monotonic() + 5
            while proc.pid not in lab.pids(work) and time.monotonic() < deadline:
                time.sleep(0.02)
            with open(f"/proc/{proc.pid}/cgroup") as f:
                lines = f.read().splitlines()
            v2 = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
            assert v2 == work.v2_rel
            if lab.memory_mode == "v1":
                assert work.v1_path is not None
                memory = next(line for line in lines if ":memory:" in line).split(":", 2)[2]
                assert work.v1_path.endswith(memory)
                with open(f"{work.v1_path}/memory.limit_in_bytes") as f:
                    assert int(f.read()) == 64 * MiB
                with open(f"{work.v1_path}/cgroup.procs") as f:
                    assert str(proc.pid) in f.read().split()
            elif lab.memory_mode == "v2":
                with open(f"{work.v2_path}/memory.max") as f:
                    assert int(f.read()) == 64 * MiB
            assert lab.populated(work)
            made = [lab.v2_path, work.v2_path, lab.v1_path, work.v1_path]
        assert proc.wait(timeout=5) == -signal.SIGKILL
        for path in made:
            assert path is None or not os.path.exists(path)
        # A failure inside the block still removes everything.
        with pytest.raises(RuntimeError), LabCgroups() as lab2:
            p2 = lab2.start(lab2.child("x"), ["sleep", "60"])
            raise RuntimeError("boom")
        assert p2.wait(timeout=5) == -signal.SIGKILL
        assert not os.path.exists(lab2.v2_path)


def _run(tmp_path: Path, **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run a scenario under the lab lock and an alarm; its summary and timeline records."""
    from zoomdlab.lab.lock import lab_lock
    from zoomdlab.lab.scenario import ScenarioConfig, run_scenario
    from zoomdlab.lab.timeline import read_timeline

    cfg = ScenarioConfig(out=str(tmp_path), zram=1 << 30, limit=256 * MiB, **kwargs)
    with lab_lock(), bounded(int(cfg.duration) + 60):
        summary = run_scenario(cfg, take_lock=False)
    return summary, list(read_timeline(os.path.join(str(tmp_path), "timeline.jsonl")))


def test_thrash_browns_out_without_oom_kill(tmp_path: Path) -> None:
    require_real_kernel()
    summary, records = _run(tmp_path, scenario="thrash", duration=25, size=640 * MiB)
    samples = [r for r in records if r["type"] == "sample" and "full_pct" in r["psi"]["workload"]]
    t_end = samples[-1]["t"]
    last10 = [s["psi"]["workload"]["full_pct"] for s in samples if s["t"] >= t_end - 10]
    full_last10 = statistics.fmean(last10)
    assert full_last10 >= 20, f"workload memory PSI full over the last 10 s: {full_last10:.1f}%"
    assert summary["brownout_onset_s"] is not None
    # Alive to the end: it exited by itself at --duration, not killed by anyone.
    assert summary["exits"]["thrash"]["returncode"] == 0, summary["exits"]
    assert not summary["workload_killed"]
    oom = [s["mem"]["workload"]["oom_kill"] for s in samples if "oom_kill" in s["mem"]["workload"]]
    assert oom[-1] == oom[0]
    assert summary["bystander"]["count"] > 0
    assert summary["vmstat_delta"]["pswpout"] > 0


def test_compressible_keeps_making_progress(tmp_path: Path) -> None:
    require_real_kernel()
    summary, records = _run(
        tmp_path, scenario="compressible", duration=20, size=640 * MiB, hot=64 * MiB
    )
    progress = [
        r
        for r in records
        if r["type"] == "progress" and r.get("workload") == "compressible" and r["phase"] == "run"
    ]
    assert progress, "no progress lines after the fill"
    # Every 2 s window after the fill shows new iterations.
    t0, t1 = progress[0]["t"], progress[-1]["t"]
    assert t1 - t0 >= 8, "the fill took most of the run"
    t = t0
    while t + 2 <= t1:
        window = [r["iter"] for r in progress if t <= r["t"] <= t + 2]
        assert window and window[-1] > window[0], f"no progress in [{t - t0:.1f}, +2] s"
        t += 2
    assert summary["exits"]["compressible"]["returncode"] == 0
    assert not summary["workload_killed"]
    assert summary["zram_peak"]["orig_data_size"] > 256 * MiB  # it did go to swap


def test_no_lab_leftovers() -> None:
    """After the lab tests: none of our cgroups remain (swap state is checked per test)."""
    require_real_kernel(need_zram=False)
    from zoomdlab.lab.sysfs import cgroup1_mount, cgroup2_mount, cgroup_dir, own_cgroup

    v2 = cgroup2_mount()
    assert v2 is not None
    mine = f"zoomd-lab-{os.getpid()}"
    assert not os.path.exists(os.path.join(cgroup_dir(v2, own_cgroup(None) or "/"), mine))
    v1 = cgroup1_mount("memory")
    own = own_cgroup("memory")
    if v1 and own:
        assert not os.path.exists(os.path.join(cgroup_dir(v1, own), mine))
