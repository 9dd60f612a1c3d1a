"""`zoomd status` on the live kernel: zram swap is seen as RAM-backed, a disk swap file not.

Needs root and zram; takes the lab lock so no other run shares zram0 or the swap set;
restores swap and zram afterwards, also on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from realkernel import require_real_kernel

pytestmark = pytest.mark.realkernel

MiB = 1 << 20


def status_json(*extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "zoomd", "status", "--json", *extra],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_zram_then_disk_swap_file_live(tmp_path_factory) -> None:
    require_real_kernel()
    from zoomdlab.lab.lock import lab_lock
    from zoomdlab.lab.swap import disk_swapfile, zram_swap

    swapdir = "/var/tmp"
    with lab_lock(), zram_swap(256 * MiB) as zram:
        data = status_json("--sample", "0.2")
        devices = {d["path"]: d for d in data["swap"]["devices"]}
        dev = devices[zram.dev_path]
        assert dev["kind"] == "zram"
        assert dev["ram_backed"] is True
        assert dev["size_bytes"] > 250 * MiB
        # Only zram was added; any swap left by a killed run elsewhere must not count.
        assert data["swap"]["all_ram_backed"] is all(
            d["ram_backed"] for d in data["swap"]["devices"])
        names = [z["name"] for z in data["zram"]]
        assert zram.name in names
        # All swap is zram: the ram-backed model counts no anon at all.
        if data["swap"]["all_ram_backed"]:
            assert data["reclaim"]["anon_reclaimable_by_mode"]["ram-backed"] == 0
        path = os.path.join(swapdir, f"zoomd-test-status-{os.getpid()}.swap")
        with disk_swapfile(path, 64 * MiB, priority=5):
            data = status_json("--sample", "0")
            devices = {d["path"]: d for d in data["swap"]["devices"]}
            assert devices[path]["kind"] == "file"
            assert devices[path]["ram_backed"] is False
            assert devices[zram.dev_path]["ram_backed"] is True
            assert data["swap"]["all_ram_backed"] is False
        assert not os.path.exists(path)
    with open("/proc/swaps") as swaps:
        assert zram.dev_path not in swaps.read()
