"""Fault injection on the real kernel, on groups, processes and swap devices of the
test's own: swap added, removed and zram reset (and hot-removed) under a running
`zoomd run`; a threaded group killed (cgroup.kill EOPNOTSUPP); a real pid reused
during a kill; a real group removed between choosing and killing.

Swap is host-wide, so those tests hold the lab lock (zoomdlab.lab.lock) and skip when
swap they did not set up is active.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from realkernel import require_real_kernel

from zoomd.actions import kill as kill_mod
from zoomd.actions.kill import kill_cgroup
from zoomdlab.lab.sysfs import cgroup2_mount, cgroup_dir, own_cgroup

pytestmark = pytest.mark.realkernel

MiB = 1 << 20
CONFIG = """
[daemon]
interval = "100ms"
fast_interval = "100ms"
log_format = "json"
mlock = false
[systemd]
managed_oom = false
dbus = false
[[policy]]
name = "never"
monitor = "/"
[policy.all]
memory_pressure_full_above = "100%"
"""


# -- groups and children of our own --------------------------------------------------------
class Own:
    """v2 groups under zoomd-test-faults-<pid> and children; cleanup removes only these."""

    def __init__(self) -> None:
        mount = cgroup2_mount()
        assert mount is not None
        self.base = f"{cgroup_dir(mount, own_cgroup(None) or '/')}/zoomd-test-faults-{os.getpid()}"
        self.dirs: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.mkdir(self.base)

    def mkdir(self, path: str) -> str:
        os.mkdir(path)
        self.dirs.append(path)
        return path

    def start(self, group: str | None) -> subprocess.Popen[bytes]:
        """`sleep 60` in `group` (None: where we are) before it does anything."""
        argv = ["sleep", "60"] if group is None else [
            "/bin/sh", "-c", f'echo $$ > "{group}/cgroup.procs" && exec sleep 60']
        proc = subprocess.Popen(argv)
        self.procs.append(proc)
        deadline = time.monotonic() + 10
        while True:
            with open(f"/proc/{proc.pid}/comm") as f:
                if f.read().strip() == "sleep":
                    break
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        return proc

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        deadline = time.monotonic() + 10
        for d in reversed(self.dirs):
            while os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


@pytest.fixture
def own() -> Iterator[Own]:
    require_real_kernel(need_zram=False)
    state = Own()
    try:
        yield state
    finally:
        state.cleanup()


def test_threaded_group_refuses_cgroup_kill_and_is_killed_by_pidfd(own) -> None:
    domain = own.mkdir(f"{own.base}/domain")
    threaded = own.mkdir(f"{domain}/t")
    with open(f"{threaded}/cgroup.type", "w") as f:
        f.write("threaded")
    member = own.start(domain)
    with open(f"{threaded}/cgroup.procs", "w") as f:  # all its threads into t
        f.write(str(member.pid))
    bystander = own.start(None)
    outcome = kill_cgroup(threaded)
    assert outcome.ok, outcome.error
    assert outcome.method == "pidfd" and outcome.pids == (member.pid,)
    assert outcome.error == f"fell back to pidfd: {threaded}/cgroup.kill: Operation not supported"
    assert member.wait(timeout=5) == -signal.SIGKILL
    assert bystander.poll() is None


def test_real_pid_reuse_during_a_kill_spares_the_stranger(own, monkeypatch) -> None:
    # The listing the kill starts from names a member that has exited since, and whose
    # pid the kernel has handed to a process outside the group (ns_last_pid makes the
    # next fork take it). The kill must spare that process.
    victim = own.mkdir(f"{own.base}/victim")
    other = own.start(victim)
    stranger = None
    for _ in range(50):
        gone = own.start(victim)
        gone.kill()
        gone.wait()
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(gone.pid - 1))
        except OSError as exc:
            pytest.skip(f"real-kernel test skipped: cannot set ns_last_pid ({exc.strerror})")
        candidate = own.start(None)
        if candidate.pid == gone.pid:
            stranger = candidate
            break
        candidate.kill()  # another fork on the host took that pid first: try again
        candidate.wait()
    if stranger is None:
        pytest.skip("real-kernel test skipped: could not get a pid reused (busy host)")
    real_list = kill_mod.subtree_pids
    stale = [[stranger.pid, other.pid]]

    def subtree_pids(group_dir, vanished_ok=False):
        return stale.pop() if stale else real_list(group_dir, vanished_ok=vanished_ok)

    monkeypatch.setattr(kill_mod, "subtree_pids", subtree_pids)
    outcome = kill_cgroup(victim, use_cgroup_kill=False)
    assert outcome.ok, outcome.error
    assert other.wait(timeout=5) == -signal.SIGKILL
    assert stranger.poll() is None, "the process that got a member's old pid was killed"
    assert stranger.pid not in outcome.pids


def test_real_group_removed_between_choosing_and_killing(own) -> None:
    from zoomd.actions.backend import CgroupfsBackend

    victim = own.mkdir(f"{own.base}/victim")
    member = own.start(victim)
    member.kill()  # the service stops on its own, and systemd removes its group...
    member.wait()
    os.rmdir(victim)
    outcome = CgroupfsBackend().kill_cgroup(victim)  # ...just before zoomd's kill
    assert not outcome.ok and outcome.error == f"{victim}: No such file or directory"


# -- swap set changes under a running daemon -----------------------------------------------
@pytest.fixture
def swap_lab():
    require_real_kernel(need_zram=True)
    from zoomdlab.lab.lock import lab_lock

    with lab_lock():
        with open("/proc/swaps") as f:
            if len(f.read().splitlines()) > 1:
                pytest.skip("real-kernel test skipped: swap is active (another lab run?)")
        yield


class Running:
    """`zoomd run` in a subprocess, its JSON log and its sd_notify datagrams."""

    def __init__(self, tmp_path) -> None:
        self.config = tmp_path / "zoomd.toml"
        self.config.write_text(CONFIG)
        self.log_path = tmp_path / "log"
        self.sock_path = str(tmp_path / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.sock.setblocking(False)
        self.statuses: list[str] = []
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, NOTIFY_SOCKET=self.sock_path)
        self.proc = subprocess.Popen([sys.executable, "-m", "zoomd", "run", "--dry-run",
                                      "--config", str(self.config)], stderr=self.log,
                                     stdout=subprocess.DEVNULL, env=env)

    def lines(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line})
        return out

    def swap_sets(self) -> list[str]:
        return [x["devices"] for x in self.lines() if x.get("message") == "swap devices"]

    def wait_for_swap_set(self, predicate, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            sets = self.swap_sets()
            if sets and predicate(sets[-1]):
                return sets[-1]
            time.sleep(0.05)
        raise AssertionError(f"swap set not reported; log: {self.swap_sets()}")

    def drain_status(self) -> list[str]:
        while True:
            try:
                msg = self.sock.recv(4096).decode()
            except BlockingIOError:
                return self.statuses
            self.statuses += [m[7:] for m in msg.split("\n") if m.startswith("STATUS=")]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()
            self.sock.close()


def test_swap_added_removed_and_zram_reset_while_running(swap_lab, tmp_path) -> None:
    from zoomdlab.lab.swap import disk_swapfile, zram_swap

    daemon = Running(tmp_path)
    try:
        assert daemon.wait_for_swap_set(lambda s: s == "none") == "none"
        with zram_swap(64 * MiB) as zram:
            shown = daemon.wait_for_swap_set(lambda s: zram.dev_path in s)
            assert shown == f"{zram.dev_path} (zram, RAM)"
            swapfile = f"/var/tmp/zoomd-test-faults-{os.getpid()}.swap"
            with disk_swapfile(swapfile, 32 * MiB):
                shown = daemon.wait_for_swap_set(lambda s: swapfile in s)
                assert f"{zram.dev_path} (zram, RAM)" in shown
                assert f"{swapfile} (file, disk)" in shown
            assert daemon.wait_for_swap_set(lambda s: swapfile not in s) == \
                f"{zram.dev_path} (zram, RAM)"
        # swapoff and reset of zram0 while the daemon holds its mm_stat open
        assert daemon.wait_for_swap_set(lambda s: s == "none") == "none"
        # a device of our own: hot-added, set up, then reset and hot-removed
        with zram_swap(32 * MiB, hot_add=True) as added:
            daemon.wait_for_swap_set(lambda s: added.dev_path in s)
        assert daemon.wait_for_swap_set(lambda s: s == "none") == "none"
        time.sleep(0.5)  # a few more ticks after the device went away
        assert daemon.proc.poll() is None
        statuses = daemon.drain_status()
        assert any(s.endswith(f"swap: {zram.dev_path} (zram, RAM)") for s in statuses)
        assert statuses[-1].endswith("swap: none")
    finally:
        rc = daemon.stop()
    assert rc == 0
    lines = daemon.lines()
    errors = [x for x in lines if x.get("level") == "error" or "Traceback" in x["message"]]
    assert errors == []
    assert sum(x.get("message") == "swap set changed; re-reading devices" for x in lines) >= 4
