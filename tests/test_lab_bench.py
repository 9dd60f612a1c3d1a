"""benchmarks/lab_bench.py: reading actions out of daemon logs, the table's cells, configs."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(os.path.dirname(HERE), "benchmarks", "lab_bench.py")
_spec = importlib.util.spec_from_file_location("lab_bench", PATH)
assert _spec and _spec.loader
bench = importlib.util.module_from_spec(_spec)
sys.modules["lab_bench"] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)


def _daemon(t: float, line: str) -> dict:
    return {"type": "daemon", "t": t, "line": line}


def test_zoomd_record_uses_decision_time_and_victim() -> None:
    record = {"monotonic": 105.0, "action": "kill", "dry_run": False,
              "victim": "/zoomd-lab-1/workload",
              "reclaim": {"effective_available_bytes": 1 << 30}}
    got = bench.daemon_actions(
        [_daemon(105.4, "<6>record " + json.dumps(record))], 100.0, "thrash")
    assert got == [{"t": 5.0, "target": "thrash", "what": "kill", "dry": False,
                    "effective_available_bytes": 1 << 30}]


def test_earlyoom_lines_and_dry_run() -> None:
    line = 'sending SIGTERM to process 7 uid 0 "zlab-workload": badness 993, VmRSS 516 MiB'
    got = bench.daemon_actions([_daemon(12.0, line)], 10.0, "compressible")
    assert got == [{"t": 2.0, "target": "compressible", "what": "SIGTERM", "dry": False}]
    by = 'sending SIGKILL to process 9 uid 0 "zlab-bystander": badness 300, VmRSS 18 MiB'
    assert bench.daemon_actions([_daemon(11.0, by)], 10.0, "thrash")[0]["target"] == "bystander"


def test_nohang_action_timed_at_its_announcement_and_counted_once() -> None:
    recs = [
        _daemon(20.0, "  Sending SIGTERM to the victim"),
        _daemon(20.1, "OK; total response time: 3ms"),
        _daemon(20.1, "[ OK ] Sending SIGTERM to zlab-workload: 1"),
    ]
    got = bench.daemon_actions(recs, 10.0, "thrash")
    assert got == [{"t": 10.0, "target": "thrash", "what": "SIGTERM", "dry": False}]


def test_fmt_median_spread_and_never() -> None:
    assert bench._fmt([3.0, 1.0, 2.0], " s") == "2.0 s (1.0 s–3.0 s)"
    assert bench._fmt(["never", 1.0, 2.0], " s") == "2.0 s (1.0 s–never) [never in 1/3]"
    assert bench._fmt(["never"] * 3, " s") == "never"
    assert bench._fmt([], " s") == "-"


def test_time_v_report(tmp_path) -> None:
    f = tmp_path / "daemon.time"
    f.write_text("\tUser time (seconds): 0.41\n\tSystem time (seconds): 0.19\n"
                 "\tMaximum resident set size (kbytes): 34488\n")
    assert bench.parse_time_v(str(f)) == {"cpu_s": 0.6, "max_rss_mib": 33.7}
    assert bench.parse_time_v(str(tmp_path / "missing")) is None


def test_sdoomd_estimate_needs_avg10_above_60_for_30_s() -> None:
    samples, total = [], 0
    for i in range(0, 800):  # 80 s at 10 Hz, full 100% from t=10 s
        t = i / 10
        if t >= 10:
            total += 100_000
        samples.append({"t": t, "psi": {"workload": {"full_total": total}}})
    when = bench.sdoomd_estimate(samples, 0.0, "workload")
    assert when is not None and 40 <= when <= 50  # avg10 crosses 60% ~10 s in, +30 s
    assert bench.sdoomd_estimate(samples[:400], 0.0, "workload") is None


def test_peers_are_told_to_prefer_only_the_workload() -> None:
    for cfg in bench.CONFIGS:
        if cfg.peer == "earlyoom":
            argv = shlex.split(cfg.daemon)
            assert argv[argv.index("--prefer") + 1] == f"^{bench.WORKLOAD_COMM}$"
            assert "zlab-bystander" in argv[argv.index("--avoid") + 1]


def test_nohang_configs_keep_everything_but_the_workload_ineligible(tmp_path) -> None:
    if not os.path.exists(bench.NOHANG_CONF):
        import pytest

        pytest.skip(f"{bench.NOHANG_CONF} missing (Debian's nohang is not installed)")
    bench.write_nohang_configs(str(tmp_path))
    psi = (tmp_path / "nohang-psi-zram.conf").read_text()
    assert "\npsi_checking_enabled = True" in psi
    assert "\npsi_path = @V2ABS@/memory.pressure" in psi
    for name in ("nohang-default.conf", "nohang-psi-zram.conf"):
        text = (tmp_path / name).read_text()
        assert f"@BADNESS_ADJ_RE_NAME -5000 /// ^(?!{bench.WORKLOAD_COMM}$)" in text
