"""`zoomd status --stalls`: JSON and text from fake samples; refusals; the off state."""

from __future__ import annotations

import pytest
from fakecgroupfs import FakeHost
from test_stalls import FakeSource

from zoomd.cli import main
from zoomd.cli.status_stalls import collect, render_text, stalls_json
from zoomd.errors import ZoomdError
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root
from zoomd.stallsampler import StallSampler

ACCT = {"on": True, "switch": True, "switched_on_for_window": False,
        "describe": "delay accounting is on"}


def _data(tmp_path, top: int = 10, budget: int = 16) -> dict:
    host = FakeHost(str(tmp_path))
    host.add("/app.slice", pids=[10, 11])
    host.add("/db.slice", pids=[20])
    clock = [50.0]
    source = FakeSource(clock)
    source.per_s = {10: {"freepages": 0.6, "swapin": 0.1}, 11: {"thrashing": 0.2},
                    20: {"swapin": 0.05, "thrashing": 0.05}, 1: {"cpu": 0.5}}
    root = Root(host.base)
    reader = CgroupReader(root)
    sampler = StallSampler(source, reader, budget, rotate=False, clock=lambda: clock[0])
    first = sampler.sample(["/"])
    clock[0] += 2.0
    second = sampler.sample(["/"])
    return stalls_json(root, reader, first, second, 2.0, top, ACCT)


def test_processes_and_cgroups_ranked_by_memory_stall(tmp_path) -> None:
    data = _data(tmp_path)
    assert [p["pid"] for p in data["processes"]] == [10, 11, 20]  # pid 1: cpu only
    top = data["processes"][0]
    assert top["kind"] == "freepages" and top["memory"] == pytest.approx(0.7)
    assert top["cgroup"] == "/app.slice" and top["comm"] == ""
    assert data["processes"][2]["memory"] == pytest.approx(0.05)  # not 0.1: no double count
    assert data["processes"][2]["memory_sum"] == pytest.approx(0.1)
    groups = data["cgroups"]
    assert [g["cgroup"] for g in groups] == ["/app.slice", "/db.slice"]
    assert groups[0]["memory"] == pytest.approx(0.9) and groups[0]["processes_rated"] == 2
    assert data["coverage"]["processes_rated"] == data["coverage"]["processes_listed"] == 4


def test_top_limits_both_lists(tmp_path) -> None:
    data = _data(tmp_path, top=1)
    assert len(data["processes"]) == 1 and len(data["cgroups"]) == 1


def test_text_shows_kind_rates_and_coverage(tmp_path) -> None:
    text = render_text(_data(tmp_path))
    assert "4 of 4 processes rated" in text
    lines = text.splitlines()
    row = next(line for line in lines if line.split()[:1] == ["10"])
    assert "freepages" in row and "/app.slice" in row and "0.700" in row


def test_partial_coverage_is_said(tmp_path) -> None:
    text = render_text(_data(tmp_path, budget=2))
    assert "budget of 2 queries reached" in text


def test_off_is_said_not_shown_as_zeros() -> None:
    data = {"available": False, "reason": "delay accounting is off",
            "delayacct": dict(ACCT, on=False)}
    text = render_text(data)
    assert text.startswith("stalls   delay accounting is off")
    assert "--enable-delayacct" in text


def test_refuses_a_captured_tree_and_an_empty_window(tmp_path) -> None:
    with pytest.raises(ZoomdError, match="captured tree"):
        collect(Root(str(tmp_path)), 1.0, 10, False)
    with pytest.raises(ZoomdError, match="window above 0"):
        collect(Root("/"), 0.0, 10, False)


def test_cli_reports_the_refusal_in_one_line(tmp_path, capsys) -> None:
    assert main(["status", "--stalls", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoomd: status --stalls asks the running kernel")
    assert err.count("\n") == 1
