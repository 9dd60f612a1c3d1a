"""Kernel readers and the reclaim model on captured and hand-made trees of several kernels.

Figures come from tests/fixtures/trees/README.md; expectations are computed by hand
from them here, not by calling the code under test twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from zoomd.host import HostReader
from zoomd.kernel.cgroups import CgroupReader, detect_layout
from zoomd.kernel.root import Root
from zoomd.kernel.zoneinfo import read_min_free_bytes
from zoomd.model.reclaim import ModelParams, estimate

KiB = 1024

KINDS = {
    "zram-only-6.18": ([("/dev/zram0", "zram", True)], True),
    "old-kernel-4.19-zram": ([("/dev/zram0", "zram", True)], True),
    "old-kernel-5.4-zram": ([("/dev/zram0", "zram", True)], True),
    "disk-partition-and-file": ([("/dev/vda2", "partition", False),
                                 ("/swapfile", "file", False)], False),
    "zram-and-disk-mixed": ([("/dev/zram0", "zram", True), ("/dev/sda3", "partition", False)],
                            False),
    "zswap-disk": ([("/dev/nvme0n1p3", "partition", False)], False),
    "no-swap": ([], False),
    "escaped-names": ([("/dev/zram0", "zram", True),
                       ("/var/swap files/swap\tone", "file", False)], False),
    "zram-writeback": ([("/dev/zram0", "zram-writeback", True)], True),
    "loop-on-tmpfs": ([("/dev/loop0", "loop", True), ("/dev/loop1", "loop", False)], False),
    "ramdisk-and-dm": ([("/dev/ram0", "ramdisk", True), ("/dev/mapper/vg-swap", "dm", False)],
                       False),
    "rfc-brownout": ([("/dev/zram0", "zram", True)], True),
    "cgroup2-pure": ([("/dev/zram0", "zram", True)], True),
    "hybrid-v1-memory": ([("/dev/zram0", "zram", True)], True),
}


def sample(tree: str):
    reader = HostReader(Root(tree), page_size=4096)
    try:
        return reader.sample()
    finally:
        reader.close()


@pytest.mark.parametrize("name", sorted(KINDS))
def test_swap_device_kinds(tree_path, name) -> None:
    devices, all_ram = KINDS[name]
    snap = sample(tree_path(name))
    got = [(s.entry.path, s.kind.kind, s.kind.ram_backed) for s in snap.swaps]
    assert got == devices
    assert snap.all_ram_backed is all_ram


def test_zswap_flag(tree_path) -> None:
    assert sample(tree_path("zswap-disk")).zswap_enabled is True
    assert sample(tree_path("zram-and-disk-mixed")).zswap_enabled is False
    snap = sample(tree_path("zswap-disk"))
    assert snap.meminfo.get("Zswap") > 0 and snap.meminfo.get("Zswapped") > 0


def test_real_capture_zram_figures(tree_path) -> None:
    snap = sample(tree_path("zram-only-6.18"))
    (zram,) = snap.zram
    mm = zram.mm_stat
    assert (mm.orig_data_size, mm.compr_data_size, mm.mem_used_total) == (
        368939008, 109500828, 111763456)
    assert (mm.huge_pages, mm.huge_pages_since) == (22271, 99068)
    assert mm.compression_ratio == pytest.approx(368939008 / 111763456)
    assert snap.meminfo.total == 24684096 * KiB
    assert snap.meminfo.anon_lru == (3640 + 264612) * KiB
    assert snap.meminfo.file_lru == (96384 + 90392) * KiB
    (swap,) = snap.swaps
    assert (swap.entry.size_bytes, swap.entry.used_bytes, swap.entry.priority) == (
        4194300 * KiB, 360308 * KiB, 100)
    assert snap.min_free_bytes == 16926 * 4096
    assert snap.psi_memory.some.avg10 == 38.72 and snap.psi_memory.full.avg10 == 38.60
    assert snap.vmstat.pgscan_anon == 12854752 and snap.vmstat.pgsteal_anon == 6351152


def test_old_kernels_lack_split_counters_and_columns(tree_path) -> None:
    snap = sample(tree_path("old-kernel-4.19-zram"))
    assert snap.vmstat.pgscan_anon is None
    assert snap.vmstat.refault_anon is None
    assert snap.vmstat.refault_file is not None  # the single workingset_refault
    assert snap.zram[0].mm_stat.huge_pages is None
    assert snap.psi_cpu is not None and snap.psi_cpu.full is None  # no full line is fine
    snap = sample(tree_path("old-kernel-5.4-zram"))
    assert snap.vmstat.pgscan_anon is None
    assert snap.zram[0].mm_stat.huge_pages is not None
    assert snap.zram[0].mm_stat.huge_pages_since is None


def test_mixed_host_model_by_hand(tree_path) -> None:
    tree = tree_path("zram-and-disk-mixed")
    snap = sample(tree)
    anon = (3600000 + 5600000) * KiB
    file = (1520000 + 1680000) * KiB
    zram_free = (8388604 - 1843204) * KiB
    disk_free = 16777212 * KiB
    ratio = 1752301568 / 531726336
    min_free = read_min_free_bytes(Root(tree), 4096)
    free_above_min = max(0, 480000 * KiB - min_free)
    expect = {
        "kernel": anon,
        "ram-backed": min(anon, disk_free),
        # zram (priority 100) first: all its free slots, each freeing 1 - 1/ratio; the
        # rest of anon goes to disk and counts fully.
        "compression": int(zram_free * (1 - 1 / ratio) + (anon - zram_free)),
    }
    for mode, anon_expected in expect.items():
        est = estimate(snap, None, ModelParams(anon=mode))
        assert est.anon_reclaimable == pytest.approx(anon_expected, abs=4096), mode
        assert est.effective_available == pytest.approx(
            free_above_min + file + anon_expected, abs=4096)
    assert estimate(snap, None, ModelParams()).kernel_reclaimable == file + anon


def test_rfc_brownout_kernel_retries_while_zoomd_sees_little(tree_path) -> None:
    snap = sample(tree_path("rfc-brownout"))
    kernel = estimate(snap, None, ModelParams(anon="kernel"))
    ram = estimate(snap, None, ModelParams(anon="ram-backed"))
    assert kernel.kernel_would_retry
    assert ram.anon_reclaimable == 0
    # The kernel believes several times more is reclaimable than the file LRU zoomd keeps.
    assert kernel.kernel_reclaimable > 10 * ram.file_reclaimable


def test_cgroup2_pure_layout_and_memory(tree_path) -> None:
    root = Root(tree_path("cgroup2-pure"))
    layout = detect_layout(root)
    assert layout.memory_on_v2 and not layout.hybrid
    reader = CgroupReader(root, layout)
    assert reader.children("/user.slice") == ["/user.slice/user-1000.slice"]
    mem = reader.memory("/user.slice")
    assert mem.source == "v2" and mem.current == 3252682752 and mem.limit is None
    assert mem.anon is not None and mem.get("workingset_refault_anon") is not None
    assert reader.pressure("/user.slice").full is not None


def test_hybrid_layout_finds_v1_memory_through_processes(tree_path) -> None:
    root = Root(tree_path("hybrid-v1-memory"))
    layout = detect_layout(root)
    assert layout.hybrid and not layout.memory_on_v2
    assert layout.v2.mount_point == "/sys/fs/cgroup/unified"
    reader = CgroupReader(root, layout)
    assert reader.procs("/lab") == [4242, 4243]
    assert reader.v1_memory_path("/lab") == "/lab-mem"
    mem = reader.memory("/lab")
    assert mem.source == "v1:/lab-mem"
    assert (mem.current, mem.limit) == (268369920, 268435456)
    assert (mem.anon, mem.file, mem.swap) == (266895360, 4096, 368955392)
    assert mem.get("workingset_refault_anon") == 461071


def run_status(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoomd", "status", *args],
                          capture_output=True, text=True, check=False, timeout=60)


def test_status_json_public_interface(tree_path) -> None:
    proc = run_status("--json", "--sample", "0", "--root", tree_path("zram-only-6.18"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key in ("avg10", "avg60", "avg300", "total"):
        assert key in data["psi"]["memory"]["some"] and key in data["psi"]["memory"]["full"]
    assert data["memory"]["total_bytes"] == 24684096 * KiB
    dev = data["swap"]["devices"][0]
    assert {"path", "kind", "ram_backed", "size_bytes", "used_bytes", "priority"} <= set(dev)
    assert data["swap"]["all_ram_backed"] is True
    z = data["zram"][0]
    assert {"name", "orig_data_size", "compr_data_size", "mem_used_total", "mem_limit",
            "compression_ratio"} <= set(z)
    rec = data["reclaim"]
    assert rec["mode"] == "auto"
    assert rec["anon_efficiency_pct"] is None  # no window: no evidence
    for key in ("kernel_reclaimable_bytes", "anon_reclaimable_bytes",
                "file_reclaimable_bytes", "effective_available_bytes"):
        assert isinstance(rec[key], int)


def test_status_human_output(tree_path) -> None:
    proc = run_status("--sample", "0", "--root", tree_path("escaped-names"))
    assert proc.returncode == 0
    assert "/var/swap files/swap\tone: file (disk)" in proc.stdout
    assert "all RAM-backed: no" in proc.stdout


def test_malformed_tree_one_line_per_problem_exit_2(tree_path) -> None:
    tree = tree_path("malformed")
    proc = run_status("--json", "--sample", "0", "--root", tree)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[:3] == [
        f"zoomd: {tree}/proc/vmstat: field 'pgscan_anon': expected an integer, got '12x4'",
        f"zoomd: {tree}/proc/pressure/memory: field 'some.total': missing",
        f"zoomd: {tree}/sys/block/zram0/mm_stat: expected at least 5 columns, got 3",
    ]


def test_missing_root_is_a_clear_error(tmp_path) -> None:
    proc = run_status("--root", str(tmp_path / "nothing"), "--sample", "0")
    assert proc.returncode == 2
    assert "meminfo: missing" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_tree_has_a_readme_entry(tree_path) -> None:
    with open(os.path.join(os.path.dirname(tree_path("no-swap")), "README.md")) as f:
        readme = f.read()
    for name in KINDS:
        assert f"`{name}`" in readme


def test_fixture_trees_have_no_symlink_loops(tree_path) -> None:
    # A loop (sysfs holders <-> slaves) makes setuptools walk the source tree forever.
    base = os.path.dirname(tree_path("no-swap"))
    base_depth = base.count("/")
    for dirpath, dirnames, _ in os.walk(base, followlinks=True):
        assert dirpath.count("/") - base_depth < 25, f"symlink loop at {dirpath}"
        if dirpath.count("/") - base_depth >= 24:
            dirnames.clear()
