"""The brownout lab end to end on the real kernel: zoomd run against real thrashing.

Each test runs one lab scenario (zram swap, a v2 group and a v1 memory cgroup of the
lab's own, bounded workloads) with `zoomd run --scope <lab subtree>` as the daemon,
then reads the lab's summary and the daemon's records. Needs root, PSI and zram;
skips with the reason printed elsewhere.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from realkernel import require_real_kernel

pytestmark = pytest.mark.realkernel

HERE = os.path.dirname(os.path.abspath(__file__))
ZOOMD = f"{sys.executable} -m zoomd run --scope {{v2}}"
DURATION = 20.0
KILL_BOUND_S = 12.0  # from the stall's onset (first second with PSI full >= 10%)


def run(tmp_path, scenario: str, daemon_args: str = "") -> tuple[dict, list[dict], str]:
    require_real_kernel()
    from zoomdlab.lab.scenario import ScenarioConfig, run_scenario

    out = str(tmp_path / scenario)
    cfg = ScenarioConfig(scenario=scenario, duration=DURATION, out=out,
                         daemon=f"{ZOOMD} {daemon_args}".strip())
    summary = run_scenario(cfg)
    with open(os.path.join(out, "daemon.log")) as f:
        log = f.read()
    records = []
    for line in log.splitlines():
        if line.startswith("<6>record "):
            records.append(json.loads(line[len("<6>record "):]))
        elif line.startswith("{"):
            entry = json.loads(line)
            if entry.get("level") == "notice" and "victim" in entry:
                records.append(entry)  # records, not log lines such as "action in flight"
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=1))
    print(log)
    return summary, records, log


def _bystander_untouched(summary: dict, records: list[dict]) -> None:
    assert summary["exits"]["bystander"]["by"] == "exited (duration reached)"
    assert not any(r["victim"].endswith("/bystander") for r in records)


def test_default_config_kills_thrash_and_spares_bystander(tmp_path) -> None:
    summary, records, _ = run(tmp_path, "thrash")
    assert summary["workload_killed"] is True
    kills = [r for r in records if r["action"] == "kill" and not r["dry_run"]]
    assert len(kills) == 1
    assert kills[0]["victim"].endswith("/workload")
    assert kills[0]["result"]["ok"] is True
    assert summary["onset_to_kill_s"] is not None
    assert summary["onset_to_kill_s"] <= KILL_BOUND_S
    _bystander_untouched(summary, records)
    # The killed workload's zram slots were released.
    assert summary["kill_to_zram_released_s"] is not None


def test_freeze_policy_freezes_then_thaws(tmp_path) -> None:
    config = os.path.join(HERE, "lab_configs", "freeze.toml")
    summary, records, _ = run(tmp_path, "thrash", f"--config {config}")
    actions = [(r["action"], r["victim"].rsplit("/", 1)[-1], r["result"]["ok"])
               for r in records]
    assert ("freeze", "workload", True) in actions
    assert ("thaw", "workload", True) in actions
    first_freeze = actions.index(("freeze", "workload", True))
    assert ("thaw", "workload", True) in actions[first_freeze:]
    _bystander_untouched(summary, records)


def test_compressible_runs_its_course_untouched(tmp_path) -> None:
    summary, records, _ = run(tmp_path, "compressible")
    assert records == []
    assert summary["workload_killed"] is False
    assert summary["exits"]["compressible"]["by"] == "exited (duration reached)"
    assert summary["workloads"]["compressible"]["phase"] == "done"


def test_mixed_swap_all_ram_backed_rule_stays_silent(tmp_path) -> None:
    config = os.path.join(HERE, "lab_configs", "mixed.toml")
    summary, records, _ = run(tmp_path, "mixed", f"--config {config}")
    assert not any(r["policy"] == "all-ram-backed" for r in records)
    acted = [r for r in records if r["policy"] == "efficiency"]
    assert acted and acted[0]["victim"].endswith("/workload")
    assert acted[0]["reclaim"]["all_swap_ram_backed"] is False
    assert summary["workload_killed"] is True


def test_dry_run_records_would_kill_and_kills_nothing(tmp_path) -> None:
    summary, records, log = run(tmp_path, "thrash", "--dry-run")
    assert records, log
    assert all(r["dry_run"] for r in records)
    assert records[0]["summary"].startswith("would kill ")
    assert records[0]["victim"].endswith("/workload")
    assert summary["workload_killed"] is False
    assert summary["exits"]["thrash"]["by"] == "exited (duration reached)"
