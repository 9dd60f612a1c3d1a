"""The reclaim model on synthetic snapshots with hand-computed expectations."""

from __future__ import annotations

import pytest
from builders import GiB, MiB, disk_swap, meminfo, snapshot, zram_swap

from zoomd.kernel.vmstat import VmStat
from zoomd.model.reclaim import (
    ModelParams,
    ReclaimWindow,
    efficiency_pct,
    estimate,
    reclaim_window,
)


def window(anon_scanned: int, anon_stolen: int, file_scanned: int = 0,
           file_stolen: int = 0) -> ReclaimWindow:
    return ReclaimWindow(300.0, anon_scanned, anon_stolen, file_scanned, file_stolen, None, None)


def test_seed_numbers_from_the_rfc_thread() -> None:
    # anon: 52M pages reclaimed / 244M scanned; file: 33M / 42M (the thread's trace).
    assert efficiency_pct(244_000_000, 52_000_000, 256) == pytest.approx(21.311, abs=0.001)
    assert efficiency_pct(42_000_000, 33_000_000, 256) == pytest.approx(78.571, abs=0.001)


def test_too_few_scans_is_no_evidence() -> None:
    assert efficiency_pct(100, 10, 256) is None
    assert efficiency_pct(None, 10, 256) is None


def _rfc_host():
    # 377 GiB RAM, 377 GiB zram 10% used, anon 300 GiB, file 20 GiB, free 100 MiB.
    zram = zram_swap(377 * GiB, 37 * GiB, orig=37 * GiB, mem_used=int(37 * GiB / 2.5))
    mem = meminfo(377 * GiB, 100 * MiB, anon=300 * GiB, file=20 * GiB,
                  swap_total=377 * GiB, swap_free=340 * GiB)
    return snapshot(mem, (zram,), min_free=68 * MiB)


def test_kernel_mode_counts_all_anon_while_slots_are_free() -> None:
    est = estimate(_rfc_host(), None, ModelParams(anon="kernel"))
    assert est.kernel_reclaimable == 320 * GiB
    assert est.anon_reclaimable == 300 * GiB
    assert est.kernel_would_retry


def test_ram_backed_mode_counts_no_anon_on_zram_only_host() -> None:
    est = estimate(_rfc_host(), None, ModelParams(anon="ram-backed"))
    assert est.anon_reclaimable == 0
    # free above min (100-68 MiB) + file 20 GiB
    assert est.effective_available == 32 * MiB + 20 * GiB


def test_efficiency_mode_with_the_rfc_ratio_drops_anon() -> None:
    w = window(244_000_000, 52_000_000, 42_000_000, 33_000_000)
    est = estimate(_rfc_host(), w, ModelParams(anon="efficiency", min_anon_efficiency=30))
    assert est.anon_efficiency_pct == pytest.approx(21.311, abs=0.001)
    assert est.file_efficiency_pct == pytest.approx(78.571, abs=0.001)
    assert est.anon_reclaimable == 0
    # With a working reclaim (50%) the same mode keeps the kernel's figure.
    ok = estimate(_rfc_host(), window(1000, 500), ModelParams(anon="efficiency"))
    assert ok.anon_reclaimable == 300 * GiB
    # No evidence: the kernel's figure, not a guess.
    none = estimate(_rfc_host(), window(10, 1), ModelParams(anon="efficiency"))
    assert none.anon_efficiency_pct is None
    assert none.anon_reclaimable == 300 * GiB


def test_compression_mode_nets_out_the_pool_cost() -> None:
    # ratio 2.5 (orig / mem_used_total): each page moved frees 1 - 1/2.5 = 0.6 of a page.
    est = estimate(_rfc_host(), None, ModelParams(anon="compression"))
    # Bounded by anon (300 GiB), free slots (340 GiB) and headroom*ratio
    # ((377 - 14.8) GiB * 2.5, far more): moved = 300 GiB, freed = 180 GiB.
    assert est.anon_reclaimable == pytest.approx(180 * GiB, rel=1e-6)


def test_compression_bounded_by_pool_limit() -> None:
    # mem_limit 2 GiB, pool uses 1 GiB: 1 GiB headroom * ratio 3 = 3 GiB movable.
    zram = zram_swap(16 * GiB, 3 * GiB, orig=3 * GiB, mem_used=1 * GiB, mem_limit=2 * GiB)
    mem = meminfo(8 * GiB, 0, anon=6 * GiB, file=0, swap_total=16 * GiB, swap_free=13 * GiB)
    est = estimate(snapshot(mem, (zram,), min_free=0), None, ModelParams(anon="compression"))
    assert est.anon_reclaimable == pytest.approx(3 * GiB * (1 - 1 / 3), rel=1e-6)


def test_compression_assumed_ratio_for_empty_device() -> None:
    zram = zram_swap(4 * GiB, 0, orig=0, mem_used=0)
    mem = meminfo(8 * GiB, 0, anon=1 * GiB, file=0, swap_total=4 * GiB, swap_free=4 * GiB)
    est = estimate(snapshot(mem, (zram,), min_free=0), None,
                   ModelParams(anon="compression", assumed_compression_ratio=4.0))
    assert est.anon_reclaimable == int(GiB * 0.75)


def test_mixed_host_disk_slots_count_fully() -> None:
    zram = zram_swap(4 * GiB, 4 * GiB, orig=4 * GiB, mem_used=2 * GiB)  # zram full
    disk = disk_swap(2 * GiB, 512 * MiB)
    mem = meminfo(8 * GiB, 0, anon=3 * GiB, file=0, swap_total=6 * GiB,
                  swap_free=int(1.5 * GiB))
    snap = snapshot(mem, (zram, disk), min_free=0)
    assert not snap.all_ram_backed
    rb = estimate(snap, None, ModelParams(anon="ram-backed"))
    assert rb.anon_reclaimable == int(1.5 * GiB)
    comp = estimate(snap, None, ModelParams(anon="compression"))
    assert comp.anon_reclaimable == int(1.5 * GiB)


def test_auto_is_compression_gated_by_efficiency() -> None:
    snap = _rfc_host()
    good = estimate(snap, window(10_000, 5_000), ModelParams(anon="auto"))
    assert good.anon_reclaimable == pytest.approx(180 * GiB, rel=1e-6)
    bad = estimate(snap, window(244_000, 52_000), ModelParams(anon="auto"))
    assert bad.anon_reclaimable == 0
    assert bad.anon_by_mode["kernel"] == 300 * GiB


def test_no_swap_means_no_anon_in_any_mode() -> None:
    mem = meminfo(8 * GiB, 1 * GiB, anon=4 * GiB, file=1 * GiB)
    snap = snapshot(mem, (), min_free=100 * MiB)
    for mode in ("kernel", "ram-backed", "efficiency", "compression", "auto"):
        est = estimate(snap, None, ModelParams(anon=mode))
        assert est.anon_reclaimable == 0
        assert est.effective_available == 924 * MiB + 1 * GiB
    assert not snap.all_ram_backed


def test_reclaim_window_from_vmstat_readings() -> None:
    before = VmStat({"pgscan_anon": 100, "pgsteal_anon": 10, "pgscan_file": 50,
                     "pgsteal_file": 40, "workingset_refault_anon": 5,
                     "workingset_refault_file": 7})
    after = VmStat({"pgscan_anon": 1100, "pgsteal_anon": 210, "pgscan_file": 150,
                    "pgsteal_file": 120, "workingset_refault_anon": 15,
                    "workingset_refault_file": 9})
    w = reclaim_window(before, after, 2.0)
    assert (w.anon_scanned, w.anon_stolen, w.file_scanned, w.file_stolen) == (1000, 200, 100, 80)
    assert (w.anon_refaults, w.file_refaults) == (10, 2)


def test_old_kernel_without_split_counters_gives_no_efficiency() -> None:
    before = VmStat({"pgscan_kswapd": 100, "pgscan_direct": 0, "workingset_refault": 3})
    after = VmStat({"pgscan_kswapd": 5000, "pgscan_direct": 10, "workingset_refault": 9})
    w = reclaim_window(before, after, 1.0)
    assert w.anon_scanned is None and w.anon_refaults is None
    assert w.file_refaults == 6
    est = estimate(_rfc_host(), w, ModelParams(anon="auto"))
    assert est.anon_efficiency_pct is None
