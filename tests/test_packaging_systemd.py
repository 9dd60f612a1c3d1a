"""packaging/systemd: every unit and drop-in passes `systemd-analyze verify`, the
sandbox's exposure score is the one README.md records, and zoomd runs under the
restrictions the unit imposes that can be reproduced without booting systemd.

The units are checked inside a scratch root (`--root`): a copy of the host's unit
directory (for sysinit.target, swap.target, systemd-oomd.service ...), the units
under test in /etc/systemd/system, and stub executables where ExecStart= points.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYSTEMD_DIR = REPO / "packaging" / "systemd"
ANALYZE = shutil.which("systemd-analyze")
HOST_UNITS = next((Path(p) for p in ("/usr/lib/systemd/system", "/lib/systemd/system")
                   if Path(p, "sysinit.target").exists()), None)

needs_analyze = pytest.mark.skipif(
    ANALYZE is None or HOST_UNITS is None,
    reason="systemd-analyze or the host's unit directory is missing "
           "(apt-get install systemd provides both without booting systemd)")


def unit_text(name: str) -> str:
    return (SYSTEMD_DIR / name).read_text()


def unit_keys(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, by key, in order (sections flattened)."""
    keys: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def make_root(tmp: Path, *, taskstats: bool = False, oomd_dropin: bool = False) -> Path:
    root = tmp / "root"
    assert HOST_UNITS is not None
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    shutil.copy(SYSTEMD_DIR / "zoomd.service", etc / "zoomd.service")
    if taskstats:
        (etc / "zoomd.service.d").mkdir()
        shutil.copy(SYSTEMD_DIR / "zoomd.service.d/taskstats.conf",
                    etc / "zoomd.service.d/taskstats.conf")
    if oomd_dropin:
        (etc / "systemd-oomd.service.d").mkdir()
        shutil.copy(SYSTEMD_DIR / "systemd-oomd.service.d/zoomd.conf",
                    etc / "systemd-oomd.service.d/zoomd.conf")
    for exe in ("usr/bin/zoomd", "bin/kill", "lib/systemd/systemd-oomd",
                "usr/lib/systemd/systemd-oomd"):
        path = root / exe
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, "--man=no", f"--root={root}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def assert_clean(result: subprocess.CompletedProcess[str], *names: str) -> None:
    # verify exits 0 on unknown keys or bad values and only warns: any line naming
    # one of our files is a failure.
    output = result.stdout + result.stderr
    ours = [line for line in output.splitlines() if any(n in line for n in names)]
    assert result.returncode == 0 and not ours, output


@needs_analyze
def test_zoomd_service_verifies(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    assert_clean(analyze(root, "verify", "zoomd.service"), "zoomd.service")


@needs_analyze
def test_taskstats_dropin_verifies(tmp_path: Path) -> None:
    root = make_root(tmp_path, taskstats=True)
    assert_clean(analyze(root, "verify", "zoomd.service"), "zoomd.service", "taskstats.conf")


@needs_analyze
def test_systemd_oomd_dropin_verifies(tmp_path: Path) -> None:
    root = make_root(tmp_path, oomd_dropin=True)
    if not (root / "usr/lib/systemd/system/systemd-oomd.service").exists():
        pytest.skip("systemd-oomd.service is not installed (apt-get install systemd-oomd)")
    result = analyze(root, "verify", "systemd-oomd.service")
    assert_clean(result, "systemd-oomd.service", "zoomd.conf")


@needs_analyze
def test_verify_catches_a_bad_key(tmp_path: Path) -> None:
    """The check above would notice a mistake: an unknown key is reported."""
    root = make_root(tmp_path)
    unit = root / "etc/systemd/system/zoomd.service"
    unit.write_text(unit.read_text().replace("[Service]\n", "[Service]\nWatchDogSec=1\n"))
    result = analyze(root, "verify", "zoomd.service")
    assert "WatchDogSec" in result.stdout + result.stderr


def exposure(root: Path, unit: str = "zoomd.service") -> tuple[float, str]:
    result = analyze(root, "security", "--offline=yes", unit)
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", output)
    assert match, output
    return float(match.group(1)), output


@needs_analyze
def test_exposure_score_matches_readme(tmp_path: Path) -> None:
    score, output = exposure(make_root(tmp_path))
    assert score <= 2.0, output
    readme = (REPO / "README.md").read_text()
    recorded = re.search(r"exposure level[^0-9]*([0-9]+\.[0-9])", readme)
    assert recorded, "README.md records no `systemd-analyze security` exposure level"
    assert float(recorded.group(1)) == score, (
        f"README.md says {recorded.group(1)}, systemd-analyze says {score}")


@needs_analyze
def test_taskstats_dropin_adds_only_netlink_and_net_admin(tmp_path: Path) -> None:
    _, base = exposure(make_root(tmp_path / "a"))
    _, with_taskstats = exposure(make_root(tmp_path / "b", taskstats=True))
    assert "✓ RestrictAddressFamilies=~AF_NETLINK" in base
    assert "✗ RestrictAddressFamilies=~AF_NETLINK" in with_taskstats
    assert "✓ CapabilityBoundingSet=~CAP_NET_ADMIN" in base
    assert "✗ CapabilityBoundingSet=~CAP_NET_ADMIN" in with_taskstats
    assert "✗ RestrictAddressFamilies=~AF_(INET|INET6)" not in with_taskstats


def test_unit_has_what_the_daemon_relies_on() -> None:
    keys = unit_keys(unit_text("zoomd.service"))
    assert keys["Type"] == ["notify"]
    assert keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert keys["WatchdogSec"] and keys["OOMScoreAdjust"] == ["-1000"]
    assert keys["MemoryMin"] and keys["MemoryLow"]
    assert set(keys["CapabilityBoundingSet"][0].split()) == {
        "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_IPC_LOCK", "CAP_SYS_RESOURCE"}
    assert keys["RestrictAddressFamilies"] == ["AF_UNIX"]
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert keys[key] in (["strict"], ["yes"]), key
    assert set(keys["ReadWritePaths"]) == {"/sys/fs/cgroup", "-/proc/sys/kernel/task_delayacct"}
    assert "ProtectControlGroups" not in keys  # zoomd writes cgroup.kill / cgroup.freeze
    assert "swap.target" in keys["After"]
    conflicts = {c for line in keys["Conflicts"] for c in line.split()}
    assert {"systemd-oomd.service", "earlyoom.service", "nohang.service",
            "nohang-desktop.service"} <= conflicts
    assert any("@system-service" in f for f in keys["SystemCallFilter"])

    taskstats = unit_keys(unit_text("zoomd.service.d/taskstats.conf"))
    assert taskstats["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert taskstats["RestrictAddressFamilies"] == ["AF_NETLINK"]

    oomd = unit_keys(unit_text("systemd-oomd.service.d/zoomd.conf"))
    assert oomd["ExecStart"] == ["", "/usr/bin/zoomd run"]  # reset, then zoomd
    assert "zoomd.service" in oomd["Conflicts"][0].split()


PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1

MDWE_CHILD = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    print("unsupported"); sys.exit(0)
from zoomd.cli import main
from zoomd.config.load import load_config
from zoomd.daemon.selfprotect import lock_memory
load_config(None)
err = lock_memory()
print("mlock:", err)
sys.exit(main(["status", "--sample", "0", "--json"]))
"""


def test_runs_under_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes: Python, ctypes (mlockall) and pydantic-core must not
    need writable+executable memory. PR_SET_MDWE enforces the same rule in-process."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) < 0:
        pytest.skip("kernel has no PR_SET_MDWE (Linux >= 6.3): cannot reproduce "
                    "MemoryDenyWriteExecute= without systemd")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", MDWE_CHILD], capture_output=True,
                            text=True, timeout=60, env=env, check=False)
    if result.stdout.startswith("unsupported"):
        pytest.skip("PR_SET_MDWE refused")
    # status may exit 2 on a host without PSI; a crash (signal, traceback) is the failure.
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
