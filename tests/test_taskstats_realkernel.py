"""Delay accounting on the live kernel: a child of ours that thrashes through zram shows
growing memory delays, a sleeping one does not, and the sysctl is put back."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time

import pytest
from realkernel import require_real_kernel

from zoomd.kernel.delayacct import SYSCTL, DelayAccounting
from zoomd.kernel.root import Root
from zoomd.kernel.taskstats import MEMORY_KINDS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 64 << 20
WORKING_SET = "160M"
THRASH_SECONDS = 12.0
DEADLINE_SECONDS = 15.0


def _sysctl() -> str:
    with open(SYSCTL) as f:
        return f.read().strip()


def _memory_ns(stats) -> int:
    return sum(stats.delays[k].total_ns for k in MEMORY_KINDS if k in stats.delays)


@pytest.mark.realkernel
def test_thrashing_child_stalls_sleeping_child_does_not_and_switch_restores() -> None:
    require_real_kernel(need_zram=False)
    if not (os.path.exists("/sys/class/zram-control") or os.path.exists("/sys/block/zram0")):
        pytest.skip("real-kernel test skipped: no zram (modprobe zram)")
    if not os.path.exists(SYSCTL):
        pytest.skip("real-kernel test skipped: no kernel.task_delayacct (kernel < 5.14)")
    from zoomd.kernel.cgroups import CgroupReader
    from zoomd.kernel.taskstats_netlink import TaskstatsClient
    from zoomd.stallsampler import StallSampler
    from zoomdlab.lab.cgroups import LabCgroups
    from zoomdlab.lab.lock import lab_lock
    from zoomdlab.lab.swap import zram_swap

    with lab_lock():
        before = _sysctl()
        with DelayAccounting(Root(), enable=True) as switch:
            assert _sysctl() == "1"
            assert switch.changed == (before == "0")
            with zram_swap(512 << 20), LabCgroups(name=f"zoomd-ts-{os.getpid()}") as lab, \
                    TaskstatsClient() as client:
                if lab.memory_mode == "none":
                    pytest.skip("real-kernel test skipped: no memory controller for a limit")
                thrash = lab.child("thrash", memory_limit=LIMIT)
                sleep = lab.child("sleep")
                lab.start(thrash, [sys.executable, "-m", "zoomdlab.lab.workload", "thrash",
                                   "--size", WORKING_SET, "--duration", str(THRASH_SECONDS)],
                          cwd=REPO, stdout=subprocess.DEVNULL)
                lab.start(sleep, [sys.executable, "-c", "import time; time.sleep(30)"])
                deadline = time.monotonic() + DEADLINE_SECONDS
                while not (lab.pids(thrash) and lab.pids(sleep)):
                    assert time.monotonic() < deadline, "children did not start"
                    time.sleep(0.05)
                thrasher, sleeper = lab.pids(thrash)[0], lab.pids(sleep)[0]
                sampler = StallSampler(client, CgroupReader(Root()), rotate=False)
                groups = [thrash.v2_rel, sleep.v2_rel]
                series: list[tuple[float, object, object]] = []
                window = None
                while time.monotonic() < deadline - 1.0 and len(series) < 10:
                    first = sampler.sample(groups)
                    a, b = client.tgid(thrasher), client.tgid(sleeper)
                    if a is None or b is None:
                        break
                    series.append((time.monotonic(), a, b))
                    time.sleep(1.0)
                    window = (first, sampler.sample(groups))
        after = _sysctl()

    assert after == before, "kernel.task_delayacct not restored"
    assert len(series) >= 4, f"only {len(series)} samples before the deadline"
    thrash_ns = [_memory_ns(a) for _, a, _ in series]
    sleep_ns = [_memory_ns(b) for _, _, b in series]
    grew = sum(1 for x, y in itertools.pairwise(thrash_ns) if y > x)
    last = series[-1][1]
    print(f"\nthrasher memory delay (s) per sample: {[round(n / 1e9, 3) for n in thrash_ns]}"
          f"\nthrasher at the end: " + ", ".join(
              f"{k} {last.delays[k].count}x {last.delays[k].total_ns / 1e9:.3f}s"
              for k in MEMORY_KINDS if k in last.delays) +
          f"\nsleeper memory delay (s) per sample: {[round(n / 1e9, 3) for n in sleep_ns]}")
    assert grew >= len(thrash_ns) // 2, f"thrasher delays did not keep growing: {thrash_ns}"
    assert thrash_ns[-1] - thrash_ns[0] > 0.5e9, f"thrasher stalled too little: {thrash_ns}"
    assert last.delays["swapin"].count > series[0][1].delays["swapin"].count
    assert len(set(sleep_ns)) == 1, f"the sleeper's memory delays moved: {sleep_ns}"

    assert window is not None
    rated = window[1].groups
    print(f"sampler rates over the last window: thrash "
          f"{rated[groups[0]].figures.memory:.3f} s/s ({rated[groups[0]].figures.kind}), "
          f"sleep {rated[groups[1]].figures.memory:.3f} s/s")
    assert rated[groups[1]].figures.memory == 0.0
    assert rated[groups[1]].rated == 1
