"""Effectors on the real kernel: groups and children of our own, killed, frozen and thawed.

Every group is created here (zoomd-test-actions-<pid> in v2, zoomd-test-<pid> in the v1
freezer and memory hierarchies, under the groups this test process is in) and every
process is a child started here; cleanup thaws, kills and removes only those.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from realkernel import require_real_kernel

from zoomd.actions import (
    DryRunBackend,
    freeze_cgroup,
    kill_cgroup,
    kill_process,
    thaw_cgroup,
)
from zoomdlab.lab.sysfs import cgroup1_mount, cgroup2_mount, cgroup_dir, own_cgroup

pytestmark = pytest.mark.realkernel

# Joins every cgroup.procs named in ZOOMD_PROCS, then becomes the program: the
# process is a member before it does anything.
_TRAMPOLINE = 'for f in $ZOOMD_PROCS; do echo $$ > "$f" || exit 126; done; exec "$@"'
SPINNER = ("/bin/sh", "-c", "while :; do :; done")
MiB = 1 << 20


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def events(group: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in read(f"{group}/cgroup.events").splitlines())


def cpu_ticks(pid: int) -> int:
    fields = read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


class Lab:
    """The groups and children of one test, removed and killed in `cleanup` only."""

    def __init__(self) -> None:
        self.dirs: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def mkdir(self, path: str) -> str:
        os.mkdir(path)
        self.dirs.append(path)
        return path

    def v2_victim(self) -> str:
        mount = cgroup2_mount()
        assert mount is not None
        own = cgroup_dir(mount, own_cgroup(None) or "/")
        base = self.mkdir(f"{own}/zoomd-test-actions-{os.getpid()}")
        return self.mkdir(f"{base}/victim")

    def v1_group(self, controller: str) -> str:
        mount, own = cgroup1_mount(controller), own_cgroup(controller)
        if mount is None or own is None:
            pytest.skip(f"real-kernel test skipped: no v1 {controller} hierarchy")
        return self.mkdir(f"{cgroup_dir(mount, own)}/zoomd-test-{os.getpid()}")

    def start(self, groups: Sequence[str], argv: Sequence[str] = ("sleep", "60"),
              n: int = 1) -> list[int]:
        """Start `n` copies of argv inside every group given; wait until they have exec'd."""
        env = {**os.environ, "ZOOMD_PROCS": " ".join(f"{g}/cgroup.procs" for g in groups)}
        new = [subprocess.Popen(["/bin/sh", "-c", _TRAMPOLINE, "sh", *argv], env=env,
                                stdout=subprocess.PIPE) for _ in range(n)]
        self.procs.extend(new)
        pids = [p.pid for p in new]
        comm = os.path.basename(argv[0])
        deadline = time.monotonic() + 10
        while not all(self._ready(pid, groups, comm) for pid in pids):
            assert time.monotonic() < deadline, "children did not join their groups"
            assert all(p.poll() is None for p in new), "a child failed to start"
            time.sleep(0.01)
        return pids

    @staticmethod
    def _ready(pid: int, groups: Sequence[str], comm: str) -> bool:
        if read(f"/proc/{pid}/comm").strip() != comm[:15]:
            return False
        return all(str(pid) in read(f"{g}/cgroup.procs").split() for g in groups)

    def proc(self, pid: int) -> subprocess.Popen[bytes]:
        return next(p for p in self.procs if p.pid == pid)

    def killed(self, pid: int) -> bool:
        return self.proc(pid).wait(timeout=5) == -9

    def alive(self, pid: int) -> bool:
        return self.proc(pid).poll() is None

    def cleanup(self) -> None:
        for d in self.dirs:  # thaw what we froze, so our children can die
            for name, value in (("cgroup.freeze", "0"), ("freezer.state", "THAWED")):
                if os.path.exists(f"{d}/{name}"):
                    with open(f"{d}/{name}", "w") as f:
                        f.write(value)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            if p.stdout:
                p.stdout.close()
        deadline = time.monotonic() + 10
        for d in reversed(self.dirs):
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:  # a killed task leaves its group a moment late
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


@contextmanager
def lab() -> Iterator[Lab]:
    state = Lab()
    try:
        yield state
    finally:
        state.cleanup()


def assert_empty(group: str) -> None:
    assert read(f"{group}/cgroup.procs").split() == []
    assert events(group)["populated"].strip() == "0"


def test_cgroup_kill_empties_the_group() -> None:
    require_real_kernel(need_zram=False)
    with lab() as t:
        victim = t.v2_victim()
        pids = t.start([victim], n=3)

        outcome = kill_cgroup(victim)

        assert outcome.ok, outcome.error
        assert outcome.method == "cgroup.kill" and outcome.error is None
        assert sorted(outcome.pids) == sorted(pids)
        assert outcome.seconds_to_effect is not None and 0 < outcome.seconds_to_effect < 5
        assert_empty(victim)
        assert all(t.killed(p) for p in pids)
        print(f"\ncgroup.kill: empty after {outcome.seconds_to_effect * 1000:.3f} ms")


def test_pidfd_path_empties_the_group_and_its_descendants() -> None:
    require_real_kernel(need_zram=False)
    with lab() as t:
        victim = t.v2_victim()
        leaf = t.mkdir(f"{victim}/leaf")
        pids = t.start([victim], n=3) + t.start([leaf])

        outcome = kill_cgroup(victim, use_cgroup_kill=False)

        assert outcome.ok, outcome.error
        assert outcome.method == "pidfd" and outcome.error is None
        assert sorted(outcome.pids) == sorted(pids)
        assert outcome.seconds_to_effect is not None and 0 < outcome.seconds_to_effect < 5
        assert_empty(victim)
        assert all(t.killed(p) for p in pids)
        print(f"\npidfd: empty after {outcome.seconds_to_effect * 1000:.3f} ms")


def test_kill_process_kills_one_member() -> None:
    require_real_kernel(need_zram=False)
    with lab() as t:
        victim = t.v2_victim()
        first, *others = t.start([victim], n=3)

        outcome = kill_process(first)

        assert outcome.ok and outcome.pids == (first,), outcome.error
        assert t.killed(first) and all(t.alive(p) for p in others)
        assert sorted(int(p) for p in read(f"{victim}/cgroup.procs").split()) == sorted(others)


def test_protected_member_stops_the_kill() -> None:
    require_real_kernel(need_zram=False)
    with lab() as t:
        victim = t.v2_victim()
        pids = t.start([victim], n=3)

        outcome = kill_cgroup(victim, protected_pids=frozenset({pids[2]}))

        assert not outcome.ok and f"pid {pids[2]} is protected" in (outcome.error or "")
        assert all(t.alive(p) for p in pids)


@pytest.mark.parametrize("use_cgroup_kill", [True, False], ids=["cgroup.kill", "pidfd"])
def test_memory_freed_is_measured(use_cgroup_kill: bool) -> None:
    require_real_kernel(need_zram=False)
    with lab() as t:
        victim = t.v2_victim()
        v2_memory = "memory" in read(f"{victim}/cgroup.controllers").split()
        memory_group = victim if v2_memory else t.v1_group("memory")
        usage_file = (f"{victim}/memory.current" if v2_memory
                      else f"{memory_group}/memory.usage_in_bytes")
        hog = ("import sys, time; b = b'\\x01' * (64 << 20); "
               "print('ready', flush=True); time.sleep(60)")
        groups = [victim] if v2_memory else [victim, memory_group]
        (pid,) = t.start(groups, (sys.executable, "-c", hog))
        assert t.proc(pid).stdout is not None
        assert t.proc(pid).stdout.readline().strip() == b"ready"
        assert int(read(usage_file)) >= 64 * MiB

        outcome = kill_cgroup(victim, usage_file=usage_file, use_cgroup_kill=use_cgroup_kill)

        assert outcome.ok, outcome.error
        assert outcome.memory_freed_bytes is not None
        assert outcome.memory_freed_bytes >= 60 * MiB
        assert t.killed(pid)
        print(f"\n{outcome.method}: {outcome.memory_freed_bytes / MiB:.1f} MiB freed, "
              f"empty after {(outcome.seconds_to_effect or 0) * 1000:.3f} ms")


def test_freeze_and_thaw_v2() -> None:
    require_real_kernel(need_zram=False)
    with lab() as t:
        victim = t.v2_victim()
        sleepers = t.start([victim], n=3)
        (spinner,) = t.start([victim], SPINNER)

        frozen = freeze_cgroup(victim, None)

        assert frozen.ok and frozen.method == "cgroup.freeze", frozen.error
        assert sorted(frozen.pids) == sorted([*sleepers, spinner])
        assert events(victim)["frozen"].strip() == "1"
        ticks = cpu_ticks(spinner)
        time.sleep(0.3)
        assert cpu_ticks(spinner) == ticks, "a frozen process ran"

        thawed = thaw_cgroup(victim, None)

        assert thawed.ok and thawed.method == "cgroup.freeze", thawed.error
        assert events(victim)["frozen"].strip() == "0"
        time.sleep(0.3)
        assert cpu_ticks(spinner) > ticks, "a thawed process did not run"
        assert all(t.alive(p) for p in [*sleepers, spinner])


def test_freeze_and_thaw_v1_freezer() -> None:
    require_real_kernel(need_zram=False)
    with lab() as t:
        group = t.v1_group("freezer")
        sleepers = t.start([group], n=3)
        (spinner,) = t.start([group], SPINNER)

        frozen = freeze_cgroup(None, group)

        assert frozen.ok and frozen.method == "freezer.state", frozen.error
        assert read(f"{group}/freezer.state").strip() == "FROZEN"
        ticks = cpu_ticks(spinner)
        time.sleep(0.3)
        assert cpu_ticks(spinner) == ticks, "a frozen process ran"

        thawed = thaw_cgroup(None, group)

        assert thawed.ok and thawed.method == "freezer.state", thawed.error
        assert read(f"{group}/freezer.state").strip() == "THAWED"
        time.sleep(0.3)
        assert cpu_ticks(spinner) > ticks, "a thawed process did not run"
        assert all(t.alive(p) for p in [*sleepers, spinner])


def test_dry_run_leaves_everything_alone() -> None:
    require_real_kernel(need_zram=False)
    with lab() as t:
        victim = t.v2_victim()
        pids = t.start([victim], n=3)
        backend = DryRunBackend()

        outcomes = [
            backend.kill_cgroup(victim),
            backend.kill_cgroup(victim, use_cgroup_kill=False),
            backend.kill_process(pids[0]),
            backend.freeze_cgroup(victim, None),
        ]
        time.sleep(0.2)

        assert all(o.ok and o.method == "dry-run" for o in outcomes), outcomes
        assert sorted(outcomes[0].pids) == sorted(pids)
        assert all(t.alive(p) for p in pids)
        assert events(victim)["frozen"].strip() == "0"
        assert events(victim)["populated"].strip() == "1"
        assert read(f"{victim}/cgroup.freeze").strip() == "0"
