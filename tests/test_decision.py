"""Decisions are one frozen type with one JSON form: it reads back to the same
decision, the engine stamps it with the wall clock it was given (and reads none of
its own), the before-hooks see the record the action finishes, and each policy's
verdict is judged once per tick, by the engine, for metrics and replay to read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import test_engine
from test_engine import Driver, config, make_engine

from zoomd.actions.backend import RecordingBackend
from zoomd.daemon.decision import Decision
from zoomd.daemon.triggers import conditions_hold
from zoomd.trace.replay import Replayer, load_specs

REPO = Path(__file__).resolve().parent.parent
TRACES = sorted((REPO / "tests/fixtures/traces").glob("*.jsonl.gz"))
CONFIGS = [str(REPO / "zoomd/data/zoomd.toml"),
           *sorted(str(p) for p in (REPO / "policies").glob("*.toml")),
           *sorted(str(p) for p in (REPO / "tests/lab_configs").glob("*.toml"))]


@pytest.fixture(scope="module")
def replayed() -> list[Decision]:
    specs = load_specs(CONFIGS)
    return [d for trace in TRACES for run in Replayer(str(trace), specs).run().runs
            for d in run.decisions]


def test_every_replayed_decision_reads_back_from_its_json(replayed) -> None:
    assert {d.kind for d in replayed} >= {"policy"} and len(replayed) > 30
    for decision in replayed:
        shown = decision.to_json()
        assert Decision.from_json(shown) == decision
        assert list(Decision.from_json(shown).to_json()) == list(shown)  # key order kept


def test_unknown_keys_pass_through_in_order() -> None:
    record = {"time": 1.5, "policy": "p", "action": "thaw", "dry_run": False, "victim": "/g",
              "reason": "clear", "result": {"action": "thaw", "target": "/g", "ok": True,
                                            "method": "cgroup.freeze", "pids": [1],
                                            "seconds_to_effect": None,
                                            "memory_freed_bytes": None, "error": None,
                                            "prekill_hooks": [{"socket": "s"}]},
              "summary": "thawed /g", "prekill": {"hooks": 1}}
    decision = Decision.from_json(record)
    assert decision.kind == "thaw" and decision.extra == (("prekill", {"hooks": 1}),)
    assert decision.result_extra == (("prekill_hooks", [{"socket": "s"}]),)
    assert decision.to_json() == record and list(decision.to_json()) == list(record)


@pytest.fixture
def lab(tmp_path):
    return test_engine.lab.__wrapped__(tmp_path)  # test_engine's fake host


def thrash(lab, engine) -> list[dict]:
    d = Driver(lab, engine)
    assert d.run(5.0) == []
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    return d.run(6.0)


def test_the_record_carries_the_injected_wall_clock(lab) -> None:
    engine, _ = make_engine(lab, config(), RecordingBackend())
    engine.wall_clock = lambda: 1234.5
    records = thrash(lab, engine)
    assert [r["time"] for r in records] == [1234.5]
    assert engine.records[0].time == 1234.5 and engine.records[0].outcome.ok


def test_before_hooks_see_the_record_the_action_finishes(lab) -> None:
    engine, _ = make_engine(lab, config(), RecordingBackend())
    seen: list[Decision] = []
    start_before = engine.hooks.start_before
    engine.hooks.hooks = (object(),)  # any hook configured: the runner is asked

    def spy(record: Decision):
        seen.append(record)
        engine.hooks.hooks = ()  # nothing to run
        return start_before(record)

    engine.hooks.start_before = spy  # type: ignore[method-assign]
    records = thrash(lab, engine) + [r.to_json() for r in engine.finish_in_flight()]
    assert len(seen) == 1 and seen[0].outcome.method == "pending"
    final = engine.records[-1]
    assert records[-1] == final.to_json()
    assert dataclasses.replace(final, outcome=seen[0].outcome, time=seen[0].time,
                               summary=seen[0].summary) == dataclasses.replace(seen[0],
                                                                               hooks=())


def test_each_policy_verdict_is_judged_once_per_tick_by_the_engine(lab) -> None:
    engine, _ = make_engine(lab, config(), RecordingBackend())
    d = Driver(lab, engine)
    d.run(0.25)
    assert [s.verdict.state for s in engine.states] == ["no-evidence"]
    d.run(5.0)
    assert [s.verdict.state for s in engine.states] == ["clear"]
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    state = engine.states[0]
    for _ in range(12):  # the window fills with the stall; `for` not yet over
        if d.run(0.25) or state.verdict.holds:
            break
    assert state.verdict.state == "holds" and d.records == []
    assert conditions_hold(state.policy.all, state.policy.any, state.last_figures) == (
        True, dict(state.verdict.all), dict(state.verdict.any))
