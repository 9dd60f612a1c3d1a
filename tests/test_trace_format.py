"""Trace files: diffs and keyframes, rotation, the background writer, truncated and
corrupted traces (a warning, or one line and exit 2, never a traceback)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from zoomd.trace.format import TraceError, make_header
from zoomd.trace.reader import Record, Sample, TraceReader
from zoomd.trace.tree import MaterialisedTree
from zoomd.trace.writer import BackgroundWriter, TraceFile

REPO = Path(__file__).resolve().parent.parent
RFC = REPO / "tests/fixtures/traces/rfc-brownout.jsonl.gz"


def header() -> dict:
    return make_header(page_size=4096, scope="/", started_wall=1000.0, hostname="h",
                       kernel="k")


def events(path: Path) -> list[Sample | Record]:
    return list(TraceReader(str(path)).events())


def write_three(path: Path, keyframe_every: int = 300) -> None:
    trace = TraceFile(str(path), header(), keyframe_every=keyframe_every)
    trace.sample(1.0, 101.0, {"host": {"/proc/a": "1", "/proc/b": "x"},
                              "sub": {"/g/1": "p", "/g/2": "q"}})
    trace.sample(2.0, 102.0, {"host": {"/proc/a": "2", "/proc/b": "x"}})
    trace.sample(3.0, 103.0, {"host": {"/proc/a": "2", "/proc/b": "x"}, "sub": {"/g/1": "p"}})
    trace.record(3.0, {"policy": "p", "victim": "/g/1"})
    trace.close()


@pytest.mark.parametrize("name", ["t.jsonl", "t.jsonl.gz"])
def test_only_changes_are_written_and_sets_own_their_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_three(path)
    reader = TraceReader(str(path))
    assert reader.header["format"] == "zoomd-trace" and reader.header["hostname"] == "h"
    first, second, third, record = reader.events()
    assert first.key and first.files == {"/proc/a": "1", "/proc/b": "x", "/g/1": "p",
                                         "/g/2": "q"}
    # A set not read this sample keeps its files; unchanged text is not repeated.
    assert not second.key and second.files == {"/proc/a": "2"}
    # /g/2 left the set that held it: it is gone.
    assert third.files == {"/g/2": None}
    assert isinstance(record, Record) and record.record["victim"] == "/g/1"


def test_keyframes_repeat_every_file(tmp_path: Path) -> None:
    write_three(tmp_path / "t.jsonl", keyframe_every=2)
    first, second, third, _ = events(tmp_path / "t.jsonl")
    assert first.key and not second.key and third.key
    assert third.files == {"/proc/a": "2", "/proc/b": "x", "/g/1": "p"}


def test_rotation_keeps_parts_each_readable_alone(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    (tmp_path / "r.jsonl").write_text("an older trace\n")
    trace = TraceFile(str(path), header(), max_bytes=2000, keep=2)
    for i in range(60):
        trace.sample(float(i), 100.0 + i, {"host": {"/proc/a": f"{i}\n" * 20,
                                                    "/proc/b": "same"}})
    trace.close()
    assert trace.rotations >= 3
    parts = sorted(os.listdir(tmp_path))
    assert parts == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]  # the oldest fell off
    for part in parts:
        evs = events(tmp_path / part)
        assert evs and isinstance(evs[0], Sample) and evs[0].key
        assert evs[0].files["/proc/b"] == "same"  # a part starts with everything
        assert os.path.getsize(tmp_path / part) < 2000 + 1500


def test_gzip_output_is_deterministic_and_names_no_file(tmp_path: Path) -> None:
    write_three(tmp_path / "a.jsonl.gz")
    write_three(tmp_path / "b.jsonl.gz")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


class SlowTrace:
    """A TraceFile stand-in on a disk that takes 50 ms per sample."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self.records: list[float] = []
        self.closed = False

    def sample(self, t: float, wall: float, sets: dict, dropped: int = 0) -> None:
        time.sleep(0.05)
        self.samples.append((t, dropped))

    def record(self, t: float, record: dict) -> None:
        self.records.append(t)

    def close(self) -> None:
        self.closed = True


def test_background_writer_never_blocks_and_counts_drops() -> None:
    slow = SlowTrace()
    writer = BackgroundWriter(slow, max_queue=4)  # type: ignore[arg-type]
    worst = 0.0
    for i in range(100):
        started = time.monotonic()
        writer.submit_sample(float(i), 0.0, {"host": {}})
        writer.submit_record(float(i), {"i": i})
        worst = max(worst, time.monotonic() - started)
    writer.close(timeout=10)
    assert worst < 0.01, worst  # the loop never waits for the disk
    assert writer.dropped > 50
    assert len(slow.samples) + writer.dropped == 100
    # Each written sample says how many were dropped just before it.
    assert sum(d for _, d in slow.samples) == writer.dropped - writer._pending_drops
    assert len(slow.records) == 100 and slow.closed


def test_background_writer_survives_write_errors(tmp_path: Path) -> None:
    class Failing(SlowTrace):
        def sample(self, t: float, wall: float, sets: dict, dropped: int = 0) -> None:
            raise OSError(28, "No space left on device")

    writer = BackgroundWriter(Failing())  # type: ignore[arg-type]
    for i in range(3):
        writer.submit_sample(float(i), 0.0, {})
    writer.close()
    assert writer.errors == 3 and "No space left" in (writer.last_error or "")


# -- damaged traces ------------------------------------------------------------------------
def test_truncated_last_line_is_a_warning(tmp_path: Path) -> None:
    data = gzip.decompress(RFC.read_bytes())
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(data[:len(data) - 500])
    warnings: list[str] = []
    reader = TraceReader(str(cut), warnings.append)
    evs = list(reader.events())
    assert len(evs) == 300  # 301 samples, the last one cut
    assert len(warnings) == 1 and "line 302: truncated last line skipped" in warnings[0]


def test_truncated_gzip_is_a_warning(tmp_path: Path) -> None:
    raw = RFC.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(raw[:len(raw) // 2])
    warnings: list[str] = []
    evs = list(TraceReader(str(cut), warnings.append).events())
    assert 10 < len(evs) < 301
    assert any("gzip stream ends early" in w for w in warnings)


def test_killed_writer_leaves_a_readable_trace(tmp_path: Path) -> None:
    """A writer killed with SIGKILL: what was flushed is read, the rest is a warning."""
    path = tmp_path / "killed.jsonl.gz"
    code = (
        "import sys, time\n"
        "from zoomd.trace.format import make_header\n"
        "from zoomd.trace.writer import TraceFile\n"
        f"t = TraceFile({str(path)!r}, make_header(page_size=4096, scope='/', "
        "started_wall=0))\n"
        "i = 0\n"
        "while True:\n"
        "    t.sample(float(i), 0.0, {'host': {'/proc/a': str(i) * 500}})\n"
        "    i += 1\n"
        "    if i == 50:\n"
        "        t._flush(); print('ready', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait()
    warnings: list[str] = []
    evs = list(TraceReader(str(path), warnings.append).events())
    assert len(evs) >= 50 and warnings


def test_corrupted_line_is_one_error(tmp_path: Path) -> None:
    data = gzip.decompress(RFC.read_bytes()).split(b"\n")
    data[40] = data[40][:100] + b"\x00garbage" + data[40][120:]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(data))
    with pytest.raises(TraceError, match=r"bad.jsonl: line 41: corrupted \(not JSON"):
        list(TraceReader(str(bad)).events())


def test_corrupted_gzip_is_one_error(tmp_path: Path) -> None:
    raw = bytearray(RFC.read_bytes())
    raw[5000:5040] = b"\xff" * 40
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(TraceError, match=r"bad.jsonl.gz: .*corrupted"):
        list(TraceReader(str(bad)).events())


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"hello\n", "not a zoomd trace"),
    (b'{"format": "other"}\n', "not a zoomd trace"),
    (b'{"format": "zoomd-trace", "version": 9, "page_size": 4096, "scope": "/"}\n',
     "version 9 is newer"),
    (b'{"format": "zoomd-trace", "version": 1, "scope": "/"}\n', "page_size"),
    (b'{"format": "zoomd-trace", "version": 1, "page_size": 4096, "scope": "/"}\n'
     b'{"t": "soon", "files": {}}\n{"t": 1, "files": {}}\n', "line 2: corrupted"),
])
def test_not_a_trace(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    with pytest.raises(TraceError, match=message):
        list(TraceReader(str(path)).events())


def test_tree_refuses_paths_outside_itself(tmp_path: Path) -> None:
    with MaterialisedTree("evil.jsonl") as tree:
        for path in ("/proc/../../../etc/x", "relative/x", "/"):
            with pytest.raises(TraceError, match="unsafe file path"):
                tree.apply(Sample(0.0, 0.0, {path: "boom"}))
        tree.apply(Sample(0.0, 0.0, {"/sys/fs/cgroup/a/cgroup.procs": "1\n"}))
        assert os.path.exists(f"{tree.base}/sys/fs/cgroup/a/cgroup.procs")
        tree.apply(Sample(1.0, 0.0, {"/sys/fs/cgroup/a/cgroup.procs": None}))
        assert not os.path.exists(f"{tree.base}/sys/fs/cgroup/a")  # empty groups go too
        base = tree.base
    assert not os.path.exists(base)


def test_tree_rewrites_in_place_for_open_readers() -> None:
    with MaterialisedTree() as tree:
        tree.apply(Sample(0.0, 0.0, {"/proc/meminfo": "one\n"}))
        fd = os.open(f"{tree.base}/proc/meminfo", os.O_RDONLY)
        try:
            tree.apply(Sample(1.0, 0.0, {"/proc/meminfo": "two, longer\n"}))
            assert os.pread(fd, 100, 0) == b"two, longer\n"
        finally:
            os.close(fd)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zoomd", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_cli_corrupted_trace_exits_2_with_one_line(tmp_path: Path) -> None:
    data = gzip.decompress(RFC.read_bytes()).split(b"\n")
    data[7] = b'{"t": 1, "files": '
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(data))
    proc = run_cli("replay", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"zoomd: {bad}: line 8: corrupted (not JSON: Expecting " \
                                  "value)"
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_cli_truncated_trace_warns_and_replays(tmp_path: Path) -> None:
    data = gzip.decompress(RFC.read_bytes())
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(data[:-300])
    proc = run_cli("replay", str(cut), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "zoomd: warning:" in proc.stderr and "truncated last line" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["traces"][0]["samples"] == 300
    assert "truncated last line" in report["traces"][0]["warnings"][0]


def test_cli_missing_trace_and_bad_config(tmp_path: Path) -> None:
    proc = run_cli("replay", str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2 and proc.stderr.startswith("zoomd: ") and \
        "cannot open" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[[policy]]\nname = 'x'\nfor = 'soon'\n")
    proc = run_cli("replay", str(RFC), "--config", str(bad))
    assert proc.returncode == 2 and "bad.toml" in proc.stderr and "Traceback" not in \
        proc.stderr


def test_threads_do_not_outlive_close(tmp_path: Path) -> None:
    before = threading.active_count()
    writer = BackgroundWriter(TraceFile(str(tmp_path / "t.jsonl"), header()))
    writer.submit_sample(1.0, 1.0, {"host": {"/proc/a": "1"}})
    writer.close()
    assert threading.active_count() == before
    assert len(events(tmp_path / "t.jsonl")) == 1
