"""The host-wide brownout in a VM (zoomdlab.vmlab): zoomd's default configuration ends
global-thrash, and leaves global-compressible alone.

Each test boots a Debian kernel under qemu (software emulation) for about a minute
of guest time (up to 100 s), under the lab lock. They skip, saying why, where qemu, busybox, kmod
or /usr/bin/time are missing (.ci/run installs them) or where the kernel package and
virtme-ng cannot be fetched; they never pass without having run the VM.
"""

from __future__ import annotations

import os
import shutil

import pytest

from zoomdlab.vmlab.provision import (
    Toolchain,
    VmLabError,
    default_cache_dir,
    missing_host_tools,
    provision,
)
from zoomdlab.vmlab.runner import VmRun, run_vm

pytestmark = pytest.mark.realkernel

# The goal is a brownout under 10 s of guest time. It does not hold: the first
# ~20 s of global-thrash's brownout is a one-pass fill into zram that the kernel's
# counters cannot tell from global-compressible's (benchmarks/results/vmlab/FINDINGS.md);
# zoomd acts once the pages start coming back (sustained-thrash), 22-40 s after onset
# in the runs there. The bound asserts that it is ended well within the run.
THRASH_BOUND_S = 60.0
THRASH_RUN_S = 100.0
COMPRESSIBLE_RUN_S = 100.0  # long enough for its fill and the return of its hot set


@pytest.fixture(scope="module")
def tools() -> Toolchain:
    if os.geteuid() != 0:
        pytest.skip("VM lab skipped: not root (the lab lock and the guest's setup need it)")
    missing = missing_host_tools()
    if missing:
        pytest.skip(f"VM lab skipped: missing on the host: {missing}")
    cache = default_cache_dir()
    fresh = not os.path.exists(cache)
    try:
        yield provision(cache, apt=False)
    except VmLabError as exc:
        pytest.skip(f"VM lab skipped: cannot provision the kernel or virtme-ng: {exc}")
    finally:
        if fresh and cache.startswith("/var/tmp/"):
            shutil.rmtree(cache, ignore_errors=True)  # leave nothing behind in /var/tmp


def _run(tools: Toolchain, tmp_path, scenario: str, duration: float) -> dict:
    summary = run_vm(VmRun(scenario, "zoomd", duration, str(tmp_path / scenario),
                           timeout=duration + 300), tools)
    assert "error" not in summary, (summary, _tail(tmp_path / scenario))
    assert not summary["vm"]["timed_out"], summary["vm"]
    return summary


def _tail(path) -> str:
    out = []
    for name in ("guest.log", "daemon.log", "console.log"):
        p = path / name
        if p.exists():
            out.append(f"--- {name}\n" + "\n".join(p.read_text().splitlines()[-15:]))
    return "\n".join(out)


# Under software emulation on a loaded machine the guest can be too slow to thrash at
# all: its first pass over the working set never ends, and what looks like a brownout
# is zram compressing at a few MB/s (anon reclaim ~99% efficient, almost nothing
# coming back): a fill, which the default rightly leaves alone. Thrash means pages
# come back: at least this many over the run (80 MiB; the runs that thrash bring
# back 100k+ pages).
MIN_THRASH_REFAULTS = 20_000


def _skip_unless_it_thrashed(s: dict) -> None:
    refaults = s["vmstat_delta"].get("workingset_refault_anon", 0)
    if not s["workload_killed"] and refaults < MIN_THRASH_REFAULTS:
        pytest.skip(f"VM lab: the guest did not thrash ({refaults} pages came back, "
                    f"workload {s['workloads']}): too slow under emulation here")


def test_default_config_ends_global_thrash(tools: Toolchain, tmp_path) -> None:
    s = _run(tools, tmp_path, "global-thrash", THRASH_RUN_S)
    assert s["brownout_onset_s"] is not None, "no brownout: the scenario did not reproduce"
    _skip_unless_it_thrashed(s)
    assert s["workload_killed"], (s["kernel_view"], s["actions"])
    assert [a["on_workload"] for a in s["actions"]][:1] == [True], s["actions"]
    assert s["false_actions"] == 0, s["actions"]
    assert s["oom_kill_delta"] == 0  # zoomd, not the kernel, ended it
    assert isinstance(s["brownout_s"], float) and s["brownout_s"] <= THRASH_BOUND_S, s
    assert s["action_to_memory_returned_s"] is not None


def test_default_config_ends_thrash_in_the_root_cgroup_beside_a_small_group(
        tools: Toolchain, tmp_path) -> None:
    """Pure v2, no systemd: the thrashing process sits in the root cgroup, a small
    group (the lab's bystander) beside it. The shipped default kills the process, on
    its own figures, and never the group (which it used to kill first)."""
    s = _run(tools, tmp_path, "global-thrash-root", THRASH_RUN_S)
    assert s["brownout_onset_s"] is not None, "no brownout: the scenario did not reproduce"
    _skip_unless_it_thrashed(s)
    assert s["workload_killed"], (s["kernel_view"], s["actions"])
    assert s["actions"][0]["action"] == "kill-process", s["actions"]
    assert s["actions"][0]["on_workload"], s["actions"]
    assert s["false_actions"] == 0, s["actions"]
    assert s["bystander_killed"] is False, s
    assert s["oom_kill_delta"] == 0


def test_default_config_leaves_global_compressible_alone(tools: Toolchain, tmp_path) -> None:
    s = _run(tools, tmp_path, "global-compressible", COMPRESSIBLE_RUN_S)
    assert s["brownout_onset_s"] is not None, "no memory pressure: the scenario did not run"
    assert s["actions"] == [], s["actions"]
    assert s["false_actions"] == 0
    assert not s["workload_killed"], s["exits"]
    assert s["workloads"]["compressible"]["iter"] > 0, s["workloads"]  # it made progress
