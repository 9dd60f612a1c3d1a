"""The lab's pure parts without a kernel: parsers, size units, brownout arithmetic, --daemon."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from zoomd.kernel.swaps import unescape_octal
from zoomdlab.lab.scenario import daemon_argv
from zoomdlab.lab.summary import brownout, summarize
from zoomdlab.lab.timeline import parse_keyed, parse_mm_stat, parse_psi, parse_swaps
from zoomdlab.lab.workloads import parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4096", 4096), ("512M", 512 << 20), ("1.25G", 1280 << 20), ("2GiB", 2 << 30), ("64k", 65536)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parsers_by_field_name() -> None:
    psi = "some avg10=1.00 avg60=0.50 avg300=0.10 total=1234\nfull avg10=0.0 total=99\n"
    assert parse_psi(psi) == {"some": 1234, "full": 99}
    vmstat = "pgscan_anon 10\nnew_field 3\npgsteal_anon 4\n"
    assert parse_keyed(vmstat, ("pgscan_anon", "pgsteal_anon")) == {
        "pgscan_anon": 10,
        "pgsteal_anon": 4,
    }
    assert parse_mm_stat("100 50 8192 0 8192 2 0\n") == {
        "orig_data_size": 100,
        "compr_data_size": 50,
        "mem_used_total": 8192,
        "mem_limit": 0,
        "mem_used_max": 8192,
        "same_pages": 2,
        "pages_compacted": 0,
    }
    swaps = (
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/dev/zram0                              partition\t4194300\t\t12\t\t100\n"
        "/var/tmp/a\\040b.swap file\t1024\t0\t-2\n"
    )
    assert parse_swaps(swaps) == {
        "/dev/zram0": {"size_kib": 4194300, "used_kib": 12, "priority": 100},
        "/var/tmp/a b.swap": {"size_kib": 1024, "used_kib": 0, "priority": -2},
    }
    assert unescape_octal(r"a\011b\134c") == "a\tb\\c"


def test_brownout_never_ended_and_ended() -> None:
    rising = [(0.0, 0.0), (1.0, 12.0), (2.0, 50.0), (3.0, 60.0)]
    assert brownout(rising)["brownout_s"] == "never"
    assert brownout(rising)["brownout_onset_s"] == 1.0
    ended = [*rising, (4.0, 5.0), (5.0, 30.0), (6.0, 2.0), (7.0, 0.0)]
    result = brownout(ended)
    assert result["brownout_s"] == 5.0  # onset at 1 s, last drop under 10% at 6 s
    assert result["brownout_above_threshold_s"] == 4.0
    assert brownout([(0.0, 0.0), (1.0, 9.9)])["brownout_s"] == 0.0


def _sample(tick: int, full_1s: float, usage: int) -> dict[str, Any]:
    t = tick / 10
    return {
        "type": "sample",
        "t": t,
        "wall": 1000 + t,
        "psi": {"workload": {"full_1s": full_1s, "full_pct": full_1s}},
        "mem": {"workload": {"usage": usage, "oom_kill": 0}},
        "vmstat": {"pgscan_anon": tick * 100, "pgsteal_anon": tick * 25, "oom_kill": 0},
        "zram": {"mem_used_total": 0 if t > 3 else 1000,
                 "orig_data_size": 0 if t > 3.2 else 2000},
    }


def test_summarize_a_killed_run(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [
        {"type": "run_start", "t": 0.0, "scenario": "thrash", "workload_name": "thrash"}
    ]
    records += [_sample(t, 40.0 if 5 <= t <= 30 else 0.0, 100) for t in range(0, 50)]
    records.insert(
        33, {"type": "exit", "t": 3.05, "workload": "thrash", "returncode": -9, "by": "x"}
    )
    records.append({"type": "run_end", "t": 5.0})
    path = tmp_path / "timeline.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"torn')
    s = summarize(str(path))
    assert s["brownout_onset_s"] == 0.5
    assert s["brownout_s"] == 2.6
    assert s["anon_reclaim_efficiency"] == 0.25
    assert s["workload_killed"] and s["workload_killed_by"] == "x"
    assert s["onset_to_kill_s"] == 2.55
    assert s["kill_to_zram_released_s"] == 0.25  # data gone at t=3.3, kill at 3.05
    assert s["kill_to_zram_pool_released_s"] == 0.05  # pool back at t=3.1


def test_daemon_argv_substitutes_after_splitting() -> None:
    lab: Any = SimpleNamespace(
        v2_rel="/zoomd-lab-1", v2_path="/sys/fs/cgroup/x y/zoomd-lab-1", v1_path=None
    )
    argv = daemon_argv("zoomd daemon --cgroup {v2} --root '{v2abs}' --log {out}/d", lab, "t", "o")
    assert argv == [
        "zoomd",
        "daemon",
        "--cgroup",
        "/zoomd-lab-1",
        "--root",
        "/sys/fs/cgroup/x y/zoomd-lab-1",
        "--log",
        "o/d",
    ]
