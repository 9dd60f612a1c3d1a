"""zoomdlab.vmlab.sysvm without booting anything: the guest script is standalone, the
units it starts nest where the scenarios expect, the kernel command line asks for
pure cgroup v2, and the host reads the guest's serial output."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from zoomdlab.vmlab import sysguest, sysvm


def test_guest_script_uses_the_standard_library_only() -> None:
    tree = ast.parse(Path(sysguest.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    names.discard("__future__")
    assert names <= set(sys.stdlib_module_names), names - set(sys.stdlib_module_names)


def test_every_default_scenario_exists_in_the_guest() -> None:
    for variant, names in sysvm.DEFAULT_SCENARIOS.items():
        assert variant in sysvm.VARIANTS
        for name in names:
            assert name in sysguest.SCENARIOS, name
    for name in sysvm.EXTRA_SCENARIOS:
        assert name in sysguest.SCENARIOS, name


def test_workload_units_nest_as_the_scenarios_expect() -> None:
    units = sysvm.WORKLOAD_UNITS
    slices = {Path(p).name for p in units if p.endswith(".slice")}
    # A dash nests a slice inside another: only zsvm.slice is managed.
    assert slices == {"zsvm.slice", "zplain.slice", "zswap.slice"}
    assert "ManagedOOMMemoryPressure=kill" in units["/etc/systemd/system/zsvm.slice"]
    assert "ManagedOOM" not in units["/etc/systemd/system/zplain.slice"]
    for path, text in units.items():
        if path.endswith(".service"):
            assert "ExecStart=/usr/bin/python3 /usr/local/lib/zoomd-sysvm/scenario.py --" in text
    assert "ManagedOOM" not in units["/etc/systemd/system/zsvm-outside.service"]


def test_kernel_command_line_is_pure_cgroup_v2(tmp_path) -> None:
    tools = sysvm.SysToolchain(str(tmp_path), "base.tar", "vmlinuz", "kroot", "6.1.0-x",
                               "initrd", "linux-image-x 1", "bookworm")
    run = sysvm.SysVmRun(["replace"], str(tmp_path / "out"), "zoomd.deb")
    argv = sysvm.qemu_argv(run, tools, "root.ext4", str(tmp_path))
    cmdline = argv[argv.index("-append") + 1]
    assert "systemd.unified_cgroup_hierarchy=1" in cmdline.split()
    assert "systemd.wants=zoomd-sysvm.service" in cmdline.split()
    assert "-no-reboot" in argv and argv[argv.index("-accel") + 1] == "tcg"
    assert sum(a == "-serial" for a in argv) == 3


def test_results_are_read_line_by_line(tmp_path) -> None:
    p = tmp_path / "results.jsonl"
    p.write_text('noise\n{"scenario": "replace", "ok": true}\n{"broken": \n'
                 '{"kind": "done", "failed": 0}\n')
    assert sysvm.read_results(str(p)) == [{"scenario": "replace", "ok": True},
                                          {"kind": "done", "failed": 0}]
    assert sysvm.read_results(str(tmp_path / "absent")) == []


def test_passed_needs_every_scenario_ok() -> None:
    s = {"run": {"scenarios": ["a", "b"]}, "timed_out": False,
         "results": {"a": {"ok": True}, "b": {"ok": True}}}
    assert sysvm.passed(s)
    s["results"]["b"]["ok"] = False
    assert not sysvm.passed(s)
    s["results"].pop("b")
    assert not sysvm.passed(s)


def test_kill_lines_of_every_rule_are_parsed() -> None:
    policy = ("[ 52.1] zoomd-sysvm zoomd[157]: killed /zsvm.slice/zsvm-thrash.service "
              "(policy systemd-pressure:/zsvm.slice: memory_pressure_full_avg10_above; full 40%)")
    swap = ("[ 188.4] zoomd-sysvm zoomd[193]: killed /zswap.slice/zsvm-swaphog.service "
            "(ManagedOOMSwap=kill, zram-aware: memory available 107 MiB)")
    m = sysguest.KILLED.search(policy)
    assert m and m.group(1) == "/zsvm.slice/zsvm-thrash.service"
    assert m.group(2) == "systemd-pressure:/zsvm.slice"
    m = sysguest.KILLED.search(swap)
    assert m and m.group(1) == "/zswap.slice/zsvm-swaphog.service" and m.group(2) is None
