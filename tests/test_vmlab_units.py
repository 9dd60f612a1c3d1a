"""VM lab pieces that need no VM: parsers, action detection, the retry arithmetic,
medians, and the virtme-run command line."""

from __future__ import annotations

import dataclasses
import json

from zoomdlab.vmlab.bench import aggregate, table
from zoomdlab.vmlab.guest import parse_zones
from zoomdlab.vmlab.provision import Toolchain
from zoomdlab.vmlab.runner import VmRun, hidden_in_guest, virtme_argv
from zoomdlab.vmlab.summary import kernel_view, parse_actions, parse_time_v

ZONEINFO = """Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 1000
  pages free     3000
        boost    0
        min      100
        low      125
        high     150
        spanned  4095
        present  3998
        managed  3840
        cma      0
        protection: (0, 900, 900, 900)
      nr_free_pages 3000
      nr_zone_inactive_anon 10
      nr_zone_active_anon 20
      nr_zone_inactive_file 30
      nr_zone_active_file 40
Node 0, zone    DMA32
  pages free     12000
        boost    0
        min      11000
        low      13000
        high     15000
        spanned  258000
        present  258000
        managed  240000
        protection: (0, 0, 0, 0)
      nr_free_pages 12000
      nr_zone_inactive_anon 90000
      nr_zone_active_anon 60000
      nr_zone_inactive_file 5000
      nr_zone_active_file 3000
Node 0, zone   Normal
  pages free     0
        min      0
        low      0
        high     0
        spanned  0
        present  0
        managed  0
"""


def test_parse_zones_keeps_populated_zones_with_lru_sizes() -> None:
    zones = parse_zones(ZONEINFO)
    assert [z["zone"] for z in zones] == ["DMA", "DMA32"]
    dma32 = zones[1]
    assert (dma32["free"], dma32["min"], dma32["managed"]) == (12000, 11000, 240000)
    assert dma32["anon"] == 150000 and dma32["file"] == 8000
    assert zones[0]["protection"] == [0, 900, 900, 900]


def _kview(t: float, swap_free: int, free: int = 12000) -> dict:
    zone = {"zone": "DMA32", "free": free, "min": 11000, "managed": 240000,
            "file": 8000, "anon": 150000}
    return {"type": "kview", "t": t, "zones": [zone],
            "model": {"swap_free": swap_free, "stuck": True, "effective_available": 1 << 20,
                      "window": {"refault_rate_pct": 20.0, "memory_pressure_full_pct": 60.0,
                                 "anon_efficiency_pct": 10.0}}}


def _sample(t: float, stolen: int) -> dict:
    return {"type": "sample", "t": t, "vmstat": {"pgsteal_anon": stolen, "pgsteal_file": 0,
                                                 "pgscan_direct": stolen * 4,
                                                 "pgsteal_direct": stolen}}


def test_kernel_view_counts_anon_while_swap_is_free_and_not_after() -> None:
    records = [_kview(1.0, 1 << 30), _kview(2.0, 1 << 30), _sample(1.0, 10), _sample(2.0, 20)]
    kv = kernel_view(records, 0.0, 0.0, 10.0)
    assert kv["kernel_would_retry_frac"] == 1.0
    # (8000 + 150000 + 12000) / 11000
    assert kv["kernel_available_over_min_median"] == round(170000 / 11000, 2)
    assert kv["reclaim_progress_frac"] == 1.0
    assert kv["zoomd_model_stuck_frac"] == 1.0
    assert kv["direct_reclaim_efficiency"] == 0.25
    no_swap = kernel_view([_kview(1.0, 0, free=2000)], 0.0, 0.0, 10.0)
    assert no_swap["kernel_would_retry_frac"] == 0.0  # 8000 + 2000 < 11000: OOM is next


def test_parse_actions_reads_zoomd_records_earlyoom_and_nohang() -> None:
    record = {"victim": "/workload", "action": "kill", "monotonic": 41.5, "dry_run": False,
              "summary": "killed /workload"}
    lines = [
        "<5>killed /workload (policy stuck-memory: ...)",
        "<6>record " + json.dumps(record),
        "sending SIGTERM to process 321 uid 0 \"python\": badness 900, VmRSS 700 MiB",
        "sending SIGKILL to process 77 uid 0 \"sshd\": badness 1, VmRSS 1 MiB",
        "  PID:       321, name: python, state: R",
        "Implementing a corrective action:",
        "  Sending SIGTERM to the victim",
    ]
    records = [{"type": "daemon", "t": 40.0 + i, "line": line} for i, line in enumerate(lines)]
    actions = parse_actions(records, workload_pid=321)
    assert [(a["by"], a["on_workload"]) for a in actions] == [
        ("zoomd", True), ("earlyoom", True), ("earlyoom", False), ("nohang", True)]
    assert actions[0]["t"] == 41.5  # the decision time, not the log line's


def test_dry_run_records_are_not_actions() -> None:
    record = {"victim": "/workload", "action": "kill", "dry_run": True}
    records = [{"type": "daemon", "t": 1.0, "line": "<6>record " + json.dumps(record)}]
    assert parse_actions(records, None) == []


def test_parse_time_v(tmp_path) -> None:
    path = tmp_path / "daemon.time"
    path.write_text(
        '\tCommand being timed: "zoomd run"\n\tUser time (seconds): 4.80\n'
        "\tSystem time (seconds): 3.20\n\tElapsed (wall clock) time (h:mm:ss or m:ss): 0:40.00\n"
        "\tMaximum resident set size (kbytes): 27760\n")
    got = parse_time_v(str(path))
    assert got == {"cpu_user_s": 4.8, "cpu_system_s": 3.2, "cpu_s": 8.0, "wall_s": 40.0,
                   "cpu_pct": 20.0, "max_rss_kib": 27760}
    assert parse_time_v(str(tmp_path / "missing")) is None


def test_aggregate_counts_an_open_brownout_as_longest() -> None:
    runs = [{"brownout_s": "never", "brownout_open_at_end_s": 90.0},
            {"brownout_s": "never", "brownout_open_at_end_s": 80.0},
            {"brownout_s": 3.0, "onset_to_action_s": 2.0, "workload_killed": True}]
    a = aggregate(runs)
    assert a["brownout_s_median"] == "never" and a["brownout_never_runs"] == 2
    assert a["brownout_open_at_end_s_median"] == 85.0
    assert a["workload_killed_runs"] == 1
    text = table({"global-thrash": {"kernel": a}})
    assert "never (open 85.0 s at end)" in text and "| 1/3 |" in text


def test_virtme_argv_follows_the_recipe_and_passes_hidden_caches(tmp_path) -> None:
    tools = Toolchain("/work/x/.vmlab", "/work/x/.vmlab/venv/bin/python",
                      "/work/x/.vmlab/venv/bin/virtme-run", "/k/vmlinuz", "/k", "6.1.0-1-amd64",
                      "linux-image-6.1.0-1-amd64", "6.1-1")
    argv = virtme_argv(VmRun("global-thrash", "zoomd", 30, str(tmp_path)), tools, "/s", None)
    for flag in ("--force-9p", "--disable-kvm", "--show-boot-console"):
        assert flag in argv
    assert argv[argv.index("--memory") + 1] == "1G" and "--rodir" not in argv
    assert argv[argv.index("--rwdir") + 1] == "/s=/s"
    assert "-m zoomdlab.vmlab.guest /s/spec.json" in argv[-1]
    assert hidden_in_guest("/var/tmp/zoomd-vmlab") and not hidden_in_guest("/work/x/.vmlab")
    hidden = dataclasses.replace(tools, cache="/var/tmp/c")
    argv = virtme_argv(VmRun("global-mixed", "kernel", 30, str(tmp_path)), hidden, "/var/tmp/s",
                       "/var/tmp/s/swap.img")
    assert argv[argv.index("--rodir") + 1] == "/var/tmp/c=/var/tmp/c"
    assert argv[argv.index("--blk-disk") + 1] == "swap=/var/tmp/s/swap.img"


def test_vm_lock_waits_for_the_holder_and_times_out(tmp_path) -> None:
    import fcntl
    import os

    import pytest

    from zoomdlab.vmlab.runner import vm_lock

    path = str(tmp_path / "lab.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with pytest.raises(TimeoutError), vm_lock(path, timeout=0.3):
        pass
    os.close(fd)
    with vm_lock(path, timeout=1.0):
        pass


def test_a_sigterm_the_workload_obeys_counts_as_the_daemon_ending_it(tmp_path) -> None:
    from zoomdlab.vmlab.summary import summarize_vm

    recs = [{"type": "run_start", "t": 0.0, "scenario": "global-thrash",
             "workload_name": "thrash", "workload_group": "host", "daemon": "nohang"},
            {"type": "workload_start", "t": 0.0, "pid": 124}]
    for i in range(40):
        t = i * 0.5
        recs.append({"type": "sample", "t": t, "psi": {"host": {
            "full_1s": 50.0 if 5 <= t < 15 else 0.0, "full_pct": 0.0}}, "vmstat": {},
            "mem": {}, "swaps": {}})
    recs += [{"type": "daemon", "t": 12.0, "line": "  PID:       124, name: python3"},
             {"type": "daemon", "t": 12.1, "line": "  Sending SIGTERM to the victim"},
             {"type": "exit", "t": 15.0, "workload": "thrash", "returncode": 0,
              "by": "exited (duration reached)"},
             {"type": "run_end", "t": 19.5}]
    (tmp_path / "timeline.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    s = summarize_vm(str(tmp_path))
    assert s["workload_killed"] is True and s["brownout_s"] == 10.0
    assert s["onset_to_action_s"] == 7.1 and s["false_actions"] == 0
