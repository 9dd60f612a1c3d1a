"""The trace as a tap: it holds the bytes each reader got, never a re-read, and a
recorded decision replays to the same record."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from fakecgroupfs import FakeHost
from samedecisions import assert_same_decisions

from zoomd.daemon.log import Logger
from zoomd.daemon.loop import Daemon
from zoomd.kernel import tap
from zoomd.kernel.hotfile import HotFile
from zoomd.kernel.root import Root
from zoomd.kernel.tap import TapTake
from zoomd.trace.reader import Record, Sample, TraceReader
from zoomd.trace.replay import Replayer, load_specs
from zoomd.trace.tapped import PROC_KEEP_TICKS, TapState

TREES = Path(__file__).resolve().parent / "fixtures" / "trees"
MiB = 1 << 20

CONFIG = """
[daemon]
psi_triggers = false
mlock = false
[systemd]
managed_oom = false
dbus = false
[[policy]]
name = "stuck"
monitor = "/lab"
window = "400ms"
for = "0s"
post_action_delay = "30s"
rank = ["memory"]
[policy.all]
memory_pressure_full_above = "40%"
"""

@pytest.fixture(autouse=True)
def no_tap_left():
    yield
    tap.stop()


def test_the_tap_keeps_the_first_read_of_a_tick_and_costs_nothing_off(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    meminfo = tmp_path / "proc" / "meminfo"
    meminfo.write_text("MemFree: 1 kB\n")
    root = Root(str(tmp_path))
    assert tap.ACTIVE is None  # nothing recording: the readers report to no one
    root.read_text("/proc/meminfo")
    file_tap = tap.start(str(tmp_path))
    hot = HotFile(root.join("/proc/meminfo"))
    try:
        file_tap.begin()
        assert hot.read() == "MemFree: 1 kB\n"
        meminfo.write_text("MemFree: 2 kB\n")  # changed after the sampler read it
        assert root.read_text("/proc/meminfo") == "MemFree: 2 kB\n"
        assert root.read_optional("/proc/gone") is None
        take = file_tap.take()
    finally:
        hot.close()
    assert take.reads == {"/proc/meminfo": "MemFree: 1 kB\n", "/proc/gone": None}
    assert take.reread_changed == 1 and take.rereads == {"/proc/meminfo": ["MemFree: 2 kB\n"]}
    assert file_tap.take().reads == {}  # taken: the next tick starts empty


def test_the_tap_is_bounded_per_tick(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x" * 100)
    (tmp_path / "b").write_text("y" * 100)
    file_tap = tap.start(str(tmp_path), max_bytes=150)
    root = Root(str(tmp_path))
    file_tap.begin()
    root.read_text("/a")
    root.read_text("/b")
    take = file_tap.take()
    assert list(take.reads) == ["/a"] and take.over_budget == 1


def test_state_forgets_what_a_listing_or_a_read_shows_gone() -> None:
    state = TapState()
    first = state.apply(TapTake({"/g/a/memory.stat": "1", "/g/b/memory.stat": "2",
                                 "/g/cgroup.procs": "", "/proc/7/stat": "7 (x) S"}))
    assert set(first) == {"/g/a/memory.stat", "/g/b/memory.stat", "/g/cgroup.procs",
                          "/proc/7/stat"}
    # A listing of groups (directories only) without b: b goes, the group's own file stays.
    gone = state.apply(TapTake({}, [("/g", frozenset({"a"}), True)]))
    assert gone == {"/g/b/memory.stat": None}
    assert state.apply(TapTake({"/proc/7/stat": None})) == {"/proc/7/stat": None}
    assert set(state.files) == {"/g/a/memory.stat", "/g/cgroup.procs"}
    # A process's files go once unread for PROC_KEEP_TICKS ticks (or up to twice as
    # many); others stay.
    for _ in range(PROC_KEEP_TICKS - 3):
        assert state.apply(TapTake({})) == {}
    state.apply(TapTake({"/proc/8/status": "Name: y"}))
    for _ in range(2 * PROC_KEEP_TICKS):  # looked for every PROC_KEEP_TICKS ticks
        state.apply(TapTake({}))
    assert "/proc/8/status" not in state.files and "/g/cgroup.procs" in state.files
    # A full listing (files too) of /g without a: all of a goes.
    assert state.apply(TapTake({}, [("/g", frozenset({"cgroup.procs"}), False)])) == \
        {"/g/a/memory.stat": None}


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    base = tmp_path / "host"
    shutil.copytree(TREES / "cgroup2-pure" / "proc", base / "proc", symlinks=True)
    shutil.copytree(TREES / "cgroup2-pure" / "sys", base / "sys", symlinks=True)
    shutil.rmtree(base / "sys" / "fs" / "cgroup")
    lab = FakeHost(str(base))
    lab.add("/lab", pids=[], current=600 * MiB)
    lab.add("/lab/work", pids=[4242], current=500 * MiB, anon=480 * MiB)
    lab.add("/lab/small", pids=[4243], current=20 * MiB, anon=10 * MiB)
    return lab


def test_the_trace_holds_what_the_sampler_read_and_replays_to_the_same_record(
        tmp_path: Path, host: FakeHost) -> None:
    config = tmp_path / "z.toml"
    config.write_text(CONFIG)
    trace = tmp_path / "run.jsonl"
    meminfo = Path(host.base) / "proc" / "meminfo"
    sampled = meminfo.read_text()
    later = sampled.replace("MemFree:", "MemFree: 1", 1)  # what a second reader would see
    daemon = Daemon(str(config), root=Root(host.base), dry_run=True, record=str(trace),
                    logger=Logger("json", "error", io.StringIO()))
    sample = daemon.host.sample

    def sample_then_change(now: float | None = None) -> Any:
        meminfo.write_text(sampled)
        snap = sample(now)
        meminfo.write_text(later)  # changed between the sampler's read and the trace's
        return snap

    daemon.host.sample = sample_then_change  # type: ignore[method-assign]
    try:
        for _ in range(10):
            host.groups["/lab"].full_us += 80_000  # 80% of each 100 ms
            host.groups["/lab"].some_us += 90_000
            host.write()
            daemon.tick()
            time.sleep(0.1)
    finally:
        daemon.shutdown()
    assert tap.ACTIVE is None  # closed with the trace
    events = list(TraceReader(str(trace)).events())
    samples = [e for e in events if isinstance(e, Sample)]
    assert len(samples) == 10
    texts = [s.files["/proc/meminfo"] for s in samples if "/proc/meminfo" in s.files]
    assert texts == [sampled]  # the first sample's, and never the later text
    assert "@swap_kinds" in samples[0].files  # the sampler's own verdicts
    live = [e.record for e in events if isinstance(e, Record)]
    assert [r["victim"] for r in live] == ["/lab/work"]
    # Records come after their tick's sample, stamped alike.
    at = next(i for i, e in enumerate(events) if isinstance(e, Record))
    assert isinstance(events[at - 1], Sample) and events[at - 1].t == events[at].t
    result = Replayer(str(trace), load_specs([str(config)])).run()
    assert not result.warnings and result.skipped_samples == 0
    assert_same_decisions(live, result.runs[0].decisions, host.base)


def test_no_tap_without_a_trace(tmp_path: Path, host: FakeHost) -> None:
    config = tmp_path / "z.toml"
    config.write_text(CONFIG)
    daemon = Daemon(str(config), root=Root(host.base), dry_run=True,
                    logger=Logger("json", "error", io.StringIO()))
    try:
        daemon.tick()
        assert daemon.tap is None and tap.ACTIVE is None
    finally:
        daemon.shutdown()


def test_a_rotated_part_replays_on_its_own(tmp_path: Path, host: FakeHost) -> None:
    """Files read once (the zones' watermarks, mountinfo at start-up) stay in the trace
    until the host shows them gone: a later part's keyframe still holds them."""
    from zoomd.daemon import observers

    config = tmp_path / "z.toml"
    config.write_text(CONFIG.replace("40%", "99%"))
    trace = tmp_path / "run.jsonl"
    daemon = Daemon(str(config), root=Root(host.base), dry_run=True, record=str(trace),
                    logger=Logger("json", "error", io.StringIO()))
    recorder = next(o for o in daemon.observers
                    if isinstance(o, observers.TraceObserver)).recorder
    recorder.writer.trace.max_bytes = 4096  # rotate after a sample or two
    try:
        for _ in range(6):
            host.groups["/lab"].some_us += 1000
            host.write()
            daemon.tick()
    finally:
        daemon.shutdown()
    assert recorder.writer.trace.rotations >= 2
    part = f"{trace}.1"  # a later part than the first, on its own
    first = next(e for e in TraceReader(part).events() if isinstance(e, Sample))
    assert first.key and "/proc/zoneinfo" in first.files
    result = Replayer(part, load_specs([str(config)])).run()
    assert result.skipped_samples == 0 and not result.warnings


def test_a_file_read_again_with_other_text_replays_in_the_same_order(tmp_path: Path) -> None:
    """The tree holds a file's first read of the tick; a later read that saw other text
    is served to the replayed readers in turn (the sampler's, then the re-read's)."""
    from types import SimpleNamespace

    from zoomd.trace.recorder import TapRecorder
    from zoomd.trace.replay import served
    from zoomd.trace.tree import MaterialisedTree

    base = tmp_path / "host"
    (base / "proc").mkdir(parents=True)
    meminfo = base / "proc" / "meminfo"
    meminfo.write_text("A\n")
    root = Root(str(base))
    file_tap = tap.start(str(base))
    recorder = TapRecorder(str(tmp_path / "t.jsonl"), file_tap, scope="/", page_size=4096)
    with HotFile(root.join("/proc/meminfo")) as hot:
        file_tap.begin()
        assert hot.read() == "A\n"
        meminfo.write_text("B\n")
        assert root.read_text("/proc/meminfo") == "B\n"
        assert hot.read() == "B\n"
        recorder.tick(SimpleNamespace(swaps=(), monotonic=1.0), [])  # type: ignore[arg-type]
    recorder.close()
    tap.stop(file_tap)
    sample = next(e for e in TraceReader(str(tmp_path / "t.jsonl")).events()
                  if isinstance(e, Sample))
    assert sample.files["/proc/meminfo"] == "A\n"
    assert sample.rereads == {"/proc/meminfo": ["B\n", "B\n"]}
    with MaterialisedTree() as tree, served(tree) as server:
        tree.apply(sample)
        server.start(sample.rereads)
        with HotFile(tree.root.join("/proc/meminfo")) as hot:
            reads = [hot.read(), tree.root.read_text("/proc/meminfo"), hot.read(), hot.read()]
    assert reads == ["A\n", "B\n", "B\n", "A\n"]  # past the recorded reads: the tree's
    assert tap.ACTIVE is None  # replay leaves no tap behind


def test_a_refused_trace_leaves_no_tap(tmp_path: Path, host: FakeHost) -> None:
    from zoomd.errors import ZoomdError

    config = tmp_path / "z.toml"
    config.write_text(CONFIG)
    with pytest.raises(ZoomdError, match="not a regular file"):
        Daemon(str(config), root=Root(host.base), dry_run=True, record=str(tmp_path),
               logger=Logger("json", "error", io.StringIO()))
    assert tap.ACTIVE is None
