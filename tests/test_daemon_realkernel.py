"""`zoomd run` acting on real cgroups: freeze, thaw on shutdown, protect, dry-run, kill.

The trigger here is one that holds without any memory pressure (no swap is active in
these tests, so "all swap RAM-backed = false" holds), so that what is tested is the
daemon's choice and action on the real cgroupfs, not the workload.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from realkernel import require_real_kernel

pytestmark = pytest.mark.realkernel

CONFIG = """
[daemon]
interval = "200ms"
log_format = "json"
[[policy]]
name = "always"
monitor = "/"
window = "400ms"
for = "200ms"
action = "{action}"
rank = ["memory"]
protect = ["/**/protected"]
post_action_delay = "1min"
thaw_after = "1h"
[policy.all]
all_swap_ram_backed = false
"""


def events(path: str) -> dict[str, str]:
    with open(f"{path}/cgroup.events") as f:
        return dict(line.split() for line in f if line.strip())


@pytest.fixture
def lab():
    require_real_kernel(need_zram=False)
    from zoomdlab.lab.cgroups import LabCgroups
    from zoomdlab.lab.lock import lab_lock

    with lab_lock():
        # Other lab runs turn swap on while they hold the lock; ours needs none.
        with open("/proc/swaps") as f:
            if len(f.read().splitlines()) > 1:
                pytest.skip("real-kernel test skipped: swap is active outside any lab run")
        with LabCgroups() as cg:
            for name in ("victim", "protected"):
                cg.child(name)
                for _ in range(2):
                    cg.start(name, ["sleep", "60"])
            yield cg


def run_daemon(tmp_path, cg, action: str, *extra: str) -> tuple[subprocess.Popen, str]:
    config = tmp_path / "z.toml"
    config.write_text(CONFIG.format(action=action))
    log = tmp_path / "daemon.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "zoomd", "run", "--config",
                                 str(config), "--scope", cg.v2_rel, *extra],
                                stderr=stderr, stdout=subprocess.DEVNULL)
    return proc, str(log)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_freeze_victim_spare_protected_thaw_on_shutdown(tmp_path, lab) -> None:
    victim, protected = lab.children["victim"], lab.children["protected"]
    proc, log = run_daemon(tmp_path, lab, "freeze")
    try:
        assert wait_for(lambda: events(victim.v2_path)["frozen"] == "1"), read(log)
        time.sleep(1.0)
        assert events(protected.v2_path)["frozen"] == "0"
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert events(victim.v2_path)["frozen"] == "0"  # thawed on shutdown
    text = read(log)
    assert '"thawed on exit"' in text and "Traceback" not in text


def test_kill_victim_never_protected(tmp_path, lab) -> None:
    victim, protected = lab.children["victim"], lab.children["protected"]
    proc, log = run_daemon(tmp_path, lab, "kill")
    try:
        assert wait_for(lambda: events(victim.v2_path)["populated"] == "0"), read(log)
        time.sleep(1.0)
        assert len(lab.pids(protected)) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert '"method": "cgroup.kill"' in read(log)


def test_dry_run_writes_nothing(tmp_path, lab) -> None:
    victim = lab.children["victim"]
    files = ("cgroup.freeze", "cgroup.kill")
    before = {f: os.stat(f"{victim.v2_path}/{f}").st_mtime_ns for f in files}
    proc, log = run_daemon(tmp_path, lab, "kill", "--dry-run")
    try:
        assert wait_for(lambda: "would kill" in read(log)), read(log)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert len(lab.pids(victim)) == 2
    assert events(victim.v2_path)["frozen"] == "0"
    assert {f: os.stat(f"{victim.v2_path}/{f}").st_mtime_ns for f in files} == before
