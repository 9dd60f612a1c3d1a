"""The engine on a fake cgroupfs with a recording backend: when it acts, on what, and
what it writes in dry-run (nothing)."""

from __future__ import annotations

import io
import json

import pytest
from builders import GiB, meminfo, snapshot, zram_swap
from fakecgroupfs import FakeHost

from zoomd.actions.backend import DryRunBackend, RecordingBackend
from zoomd.config.runtime import Config, plain
from zoomd.config.schema import Invalid, validate
from zoomd.daemon.engine import Engine, scoped
from zoomd.daemon.log import Logger
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root
from zoomd.model.reclaim import ModelParams, estimate

MiB = 1 << 20


def config(**policy_overrides) -> Config:
    policy = {
        "name": "stuck", "monitor": "/", "window": "2s", "for": "1s",
        "rank": ["refaults", "memory"], "post_action_delay": "10s",
        "all": {"memory_pressure_full_above": "40%"},
        "any": {"refault_rate_above": "15%", "anon_efficiency_below": "25%"},
    }
    policy.update(policy_overrides)
    return validate({"policy": [policy]})


@pytest.fixture
def lab(tmp_path) -> FakeHost:
    h = FakeHost(str(tmp_path))
    h.add("/lab", pids=[], current=530 * MiB)
    h.add("/lab/workload", pids=[200], current=512 * MiB, limit=512 * MiB, anon=500 * MiB)
    h.add("/lab/bystander", pids=[201], current=20 * MiB, limit=512 * MiB, anon=10 * MiB)
    h.add("/lab/compressible", pids=[202], current=510 * MiB, limit=512 * MiB,
          anon=500 * MiB)
    return h


def host_snapshot(t: float):
    zram = zram_swap(2 * GiB, 1 * GiB, orig=1 * GiB, mem_used=512 * MiB)
    mem = meminfo(24 * GiB, 20 * GiB, anon=2 * GiB, file=1 * GiB, swap_total=2 * GiB,
                  swap_free=1 * GiB)
    # Anon reclaim working at 50%, as in the lab.
    vm = {"pgscan_anon": int(t * 100_000), "pgsteal_anon": int(t * 50_000)}
    return snapshot(mem, (zram,), vm=vm, t=t)


class Driver:
    """Advance fake time; the workload thrashes at `full_pct` with `refault_pages_s`."""

    def __init__(self, lab: FakeHost, engine: Engine) -> None:
        self.lab, self.engine, self.t = lab, engine, 0.0
        self.full_pct = 0.0
        self.refault_pages_s = 0
        self.records: list[dict] = []

    def run(self, seconds: float, step: float = 0.25) -> list[dict]:
        new: list[dict] = []
        end = self.t + seconds
        while self.t < end - 1e-9:
            self.t += step
            lab = self.lab.groups["/lab"]
            work = self.lab.groups["/lab/workload"]
            stall = int(self.full_pct / 100 * step * 1e6)
            lab.full_us += stall
            lab.some_us += stall
            work.full_us += stall
            # memory.stat is hierarchical: the parent counts its children's refaults.
            work.refault_anon += int(self.refault_pages_s * step)
            lab.refault_anon += int(self.refault_pages_s * step)
            self.lab.write()
            snap = host_snapshot(self.t)
            est = estimate(snap, None, ModelParams())
            new.extend(r.to_json() for r in self.engine.tick(snap, est))
        self.records.extend(new)
        return new


def make_engine(lab: FakeHost, cfg: Config, backend, dry_run: bool = False):
    stream = io.StringIO()
    engine = Engine(cfg, CgroupReader(Root(lab.base)), backend, Logger("json", "debug", stream),
                    scope="/lab", dry_run=dry_run, vital_groups=("/",), page_size=4096)
    return engine, stream


def test_scoped_paths() -> None:
    assert scoped("/", "/lab") == "/lab"
    assert scoped("/user.slice", "/lab") == "/lab/user.slice"
    assert scoped("/x", "/") == "/x"


def test_thrashing_workload_is_killed_after_window_and_for(lab) -> None:
    backend = RecordingBackend()
    engine, stream = make_engine(lab, config(), backend)
    d = Driver(lab, engine)
    assert d.run(5.0) == []  # calm
    d.full_pct = 60.0
    d.refault_pages_s = 40_000  # 156 MiB/s of a 512 MiB group: ~30%/s
    records = d.run(6.0)
    assert len(records) == 1
    rec = records[0]
    assert rec["victim"] == "/lab/workload"
    assert rec["action"] == "kill" and rec["dry_run"] is False
    assert rec["trigger"]["all"] == {"memory_pressure_full_above": True}
    assert rec["trigger"]["any"]["refault_rate_above"] is True
    assert rec["candidates"][0]["path"] == "/lab/workload"
    assert {c["path"] for c in rec["candidates"]} == {
        "/lab/workload", "/lab/bystander", "/lab/compressible"}
    # Acted between window+for (3 s) and that plus two ticks after the stall began.
    fired_at = rec["monotonic"] - 5.0
    assert 2.0 <= fired_at <= 3.75, fired_at
    assert [c[0] for c in backend.calls] == ["kill_cgroup"]
    assert backend.calls[0][1].endswith("/sys/fs/cgroup/lab/workload")
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert any(x.get("victim") == "/lab/workload" for x in lines)


def test_post_action_delay_holds_back_a_second_action(lab) -> None:
    backend = RecordingBackend()
    engine, _ = make_engine(lab, config(), backend)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    d.run(9.0)
    assert len(backend.calls) == 1  # the fake kill removed nothing; 10 s delay holds
    d.run(6.0)
    assert len(backend.calls) == 2


def test_pressure_without_thrashing_is_left_alone(lab) -> None:
    # The compressible case: stalls while filling, but no refaults and anon reclaim works.
    backend = RecordingBackend()
    engine, _ = make_engine(lab, config(), backend)
    d = Driver(lab, engine)
    d.full_pct = 60.0
    d.refault_pages_s = 500
    assert d.run(20.0) == []
    assert backend.calls == []


def test_dry_run_records_would_kill_and_calls_nothing(lab) -> None:
    backend = RecordingBackend()
    engine, _ = make_engine(lab, config(), backend, dry_run=True)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    records = d.run(6.0)
    assert len(records) == 1
    assert records[0]["dry_run"] is True
    assert records[0]["summary"].startswith("would kill /lab/workload")
    assert records[0]["result"]["method"] == "dry-run"
    assert backend.calls == []


def test_per_policy_dry_run(lab) -> None:
    backend = RecordingBackend()
    engine, _ = make_engine(lab, config(dry_run=True), backend)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    assert d.run(6.0)[0]["dry_run"] is True
    assert backend.calls == []


def test_protected_group_is_never_chosen(lab) -> None:
    backend = RecordingBackend()
    cfg = config(protect=["/lab/workload"])
    engine, _ = make_engine(lab, cfg, backend)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    records = d.run(6.0)
    assert records and records[0]["victim"] != "/lab/workload"
    assert records[0]["skipped"]["/lab/workload"] == "protected by policy"


def test_a_group_holding_a_kernel_thread_is_never_chosen(lab) -> None:
    """Ranking clears kernel threads only at the head of the ranking it uses: the
    top-ranked group holding one is skipped, the next one chosen."""
    lab.kernel_threads.add(200)
    backend = RecordingBackend()
    engine, _ = make_engine(lab, config(), backend)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    records = d.run(6.0)
    assert records and records[0]["victim"] != "/lab/workload"
    assert records[0]["skipped"]["/lab/workload"] == "holds a kernel thread"
    assert "/lab/workload" not in {c["path"] for c in records[0]["candidates"]}
    assert all(not call[1].endswith("/lab/workload") for call in backend.calls)


def test_an_unreadable_head_candidate_is_skipped_not_fatal(lab, monkeypatch) -> None:
    """A top-ranked group whose processes cannot be checked for kernel threads is
    skipped as unreadable and the next one chosen, as collect() skips one it cannot
    read (found in review: the error escaped and the policy never acted)."""
    from zoomd.errors import KernelFileError

    real = Root.read_optional

    def read_optional(self, path):
        if path == "/proc/200/stat":
            raise KernelFileError(self.join(path), "permission denied")
        return real(self, path)

    monkeypatch.setattr(Root, "read_optional", read_optional)
    backend = RecordingBackend()
    engine, _ = make_engine(lab, config(), backend)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    records = d.run(6.0)
    assert records and records[0]["victim"] == "/lab/compressible"
    assert records[0]["skipped"]["/lab/workload"].startswith("unreadable: ")


def test_freeze_then_thaw_when_clear(lab) -> None:
    backend = RecordingBackend()
    cfg = config(action="freeze", thaw_after="3s")
    engine, _ = make_engine(lab, cfg, backend)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    d.run(6.0)
    assert [c[0] for c in backend.calls] == ["freeze_cgroup"]
    assert engine.busy
    d.full_pct, d.refault_pages_s = 0.0, 0
    d.run(8.0)
    assert [c[0] for c in backend.calls] == ["freeze_cgroup", "thaw_cgroup"]
    assert not engine.busy


def test_freeze_escalates_to_kill(lab) -> None:
    backend = RecordingBackend()
    cfg = config(action="freeze", kill_after_frozen="4s", post_action_delay="30s")
    engine, _ = make_engine(lab, cfg, backend)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    d.run(10.0)
    assert [c[0] for c in backend.calls] == ["freeze_cgroup", "kill_cgroup"]


def test_thaw_all_on_shutdown(lab) -> None:
    backend = RecordingBackend()
    engine, _ = make_engine(lab, config(action="freeze"), backend)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    d.run(6.0)
    outcomes = engine.thaw_all()
    assert len(outcomes) == 1
    assert [c[0] for c in backend.calls] == ["freeze_cgroup", "thaw_cgroup"]


def test_dry_run_backend_writes_nothing(lab, tmp_path) -> None:
    import os

    before = {}
    for dirpath, _, files in os.walk(lab.base):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                before[p] = (os.stat(p).st_mtime_ns, f.read())
    dry = DryRunBackend()
    dry.kill_cgroup(f"{lab.base}/sys/fs/cgroup/lab/workload")
    dry.freeze_cgroup(f"{lab.base}/sys/fs/cgroup/lab/workload", None)
    dry.thaw_cgroup(f"{lab.base}/sys/fs/cgroup/lab/workload", None)
    for p, (mtime, data) in before.items():
        with open(p, "rb") as f:
            assert (os.stat(p).st_mtime_ns, f.read()) == (mtime, data), p


def test_kill_process_mode_kills_the_largest_process_only(lab) -> None:
    lab.groups["/lab/workload"].pids = [200, 210]
    lab.proc_groups[210] = "/lab/workload"
    lab.write()
    backend = RecordingBackend()
    engine, _ = make_engine(lab, config(action="kill-process"), backend)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    records = d.run(6.0)
    assert records and records[0]["action"] == "kill-process"
    assert [(c[0], c[1]) for c in backend.calls] == [("kill_process", "pid:210")]


def test_hooks_run_around_the_action(lab, tmp_path) -> None:
    import sys

    out_before, out_after = tmp_path / "before.json", tmp_path / "after.json"
    code = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
            "if k.startswith('ZOOMD_')}, open(sys.argv[1], 'w'))")
    cfg = validate({
        **plain(config()),
        "hook": [
            {"name": "pre", "when": "before", "command": [sys.executable, "-c", code,
                                                          str(out_before)]},
            {"name": "post", "when": "after", "command": [sys.executable, "-c", code,
                                                          str(out_after)]},
        ],
    })
    backend = RecordingBackend()
    engine, _ = make_engine(lab, cfg, backend)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    # The record is made once the before hook has exited: in a tick, or at the latest
    # when what is in flight is finished.
    records = d.run(6.0) + [r.to_json() for r in engine.finish_in_flight()]
    engine.close()
    assert [h["name"] for h in records[0]["hooks"]] == ["pre", "post"]
    before = json.loads(out_before.read_text())
    after = json.loads(out_after.read_text())
    assert before["ZOOMD_CGROUP"] == after["ZOOMD_CGROUP"] == "/lab/workload"
    assert after["ZOOMD_RESULT"] == "ok"
    assert int(before["ZOOMD_MEMORY_BYTES"]) == 512 * MiB


def test_hook_command_must_be_an_argv_list() -> None:
    with pytest.raises(Invalid, match="argv list"):
        validate({"hook": [{"name": "x", "command": "logger hi"}]})
    with pytest.raises(Invalid, match="absolute path"):
        validate({"hook": [{"name": "x", "command": ["logger", "hi"]}]})


class FakeDelays:
    """A taskstats source: each pid's freepages delay grows at `rates[pid]` s/s."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.rates: dict[int, float] = {}

    def tgid(self, tgid: int):
        from zoomd.kernel.taskstats import Delay, TaskStats

        total = int(self.rates.get(tgid, 0.0) * self.clock() * 1e9)
        return TaskStats(16, None, tgid, "", {"freepages": Delay(1, total)})


def test_protected_stall_condition_and_stall_ranking(lab) -> None:
    from zoomd.daemon.policy_stalls import PolicyStalls
    from zoomd.stallsampler import StallSampler

    cfg = config(protect=["/lab/bystander"], rank=["stalls"],
                 any={"protected_stall_above": "20%"})
    backend = RecordingBackend()
    engine, _ = make_engine(lab, cfg, backend)
    d = Driver(lab, engine)
    delays = FakeDelays(lambda: d.t)
    reader = CgroupReader(Root(lab.base))
    engine.stalls = PolicyStalls(StallSampler(delays, reader, 16, clock=lambda: d.t),
                                 StallSampler(delays, reader, 16, clock=lambda: d.t), reader)
    delays.rates = {201: 0.05, 200: 0.9, 202: 0.1}  # bystander barely stalls
    d.full_pct = 60.0
    assert d.run(6.0) == []
    delays.rates[201] = 0.5  # the bystander now loses half its time to memory stalls
    records = d.run(6.0)
    assert records, "the protected group's stall should have fired the policy"
    rec = records[0]
    assert rec["trigger"]["any"] == {"protected_stall_above": True}
    assert rec["trigger"]["figures"]["protected_stall_pct"] == pytest.approx(50.0, abs=1.0)
    assert rec["victim"] == "/lab/workload"  # the candidate stalling most
    assert rec["stalls"]["/lab/workload"]["kind"] == "freepages"


def test_stall_condition_without_taskstats_is_no_evidence(lab) -> None:
    cfg = config(protect=["/lab/bystander"], any={"protected_stall_above": "1%"})
    engine, _ = make_engine(lab, cfg, RecordingBackend())
    d = Driver(lab, engine)
    d.full_pct = 60.0
    assert d.run(8.0) == []


def test_an_action_quiets_the_other_policies_on_the_same_group(lab) -> None:
    # The shipped default has a fast and a slow rule on "/": when the fast one kills,
    # the slow one's 10 s window still holds the stall it ended and must not pick a
    # second victim for it. A policy on another group goes on.
    fast = {"name": "fast", "monitor": "/", "window": "2s", "for": "1s",
            "post_action_delay": "10s", "all": {"memory_pressure_full_above": "40%"},
            "any": {"refault_rate_above": "15%"}}
    slow = {"name": "slow", "monitor": "/", "window": "10s", "for": "3s",
            "post_action_delay": "10s",
            "all": {"memory_pressure_full_above": "40%", "refault_rate_above": "2%"}}
    other = {"name": "other", "monitor": "/workload", "window": "2s", "for": "30s",
             "all": {"memory_pressure_full_above": "40%"}}
    cfg = validate({"policy": [fast, slow, other]})
    backend = RecordingBackend()
    engine, _ = make_engine(lab, cfg, backend)
    d = Driver(lab, engine)
    d.full_pct, d.refault_pages_s = 60.0, 40_000
    records = d.run(9.0)
    by_policy = [r["policy"] for r in records]
    assert by_policy.count("fast") == 1 and "slow" not in by_policy, by_policy
    quiet = {s.policy.name: s.quiet_until for s in engine.states}
    assert quiet["slow"] == quiet["fast"] > 0 and quiet["other"] == 0  # its own group
    d.run(6.0)  # past the 10 s delay the stall (never ended here) is acted on again
    assert [r["policy"] for r in d.records].count("fast") + \
        [r["policy"] for r in d.records].count("slow") == 2
