"""Hostile paths for the recorder and hostile traces for replay (issue 15, items 8-9).

Recording: `record -o X` / `run --record X` writes only a regular file or a new name;
a directory, a symlink (to anything), a FIFO, a device or a socket is refused at
start-up with one line and exit 2, and left as it was (rotation used to rename a
directory to DIR.1). Replay: a trace with no samples, or one whose paths no kernel
could have written (NUL, over-long, a file under a file), is one line naming the file
and line; a fleet report skips such a trace and says so.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from zoomd.errors import ZoomdError
from zoomd.trace.format import make_header
from zoomd.trace.writer import BackgroundWriter, TraceFile, check_trace_path

REPO = Path(__file__).resolve().parent.parent
TREE = REPO / "tests/fixtures/trees/cgroup2-pure"
THRASH = REPO / "tests/fixtures/traces/lab-thrash.jsonl.gz"


def zoomd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "zoomd", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout, env=env)


def header() -> dict:
    return make_header(page_size=4096, scope="/", started_wall=1.0, hostname="h", kernel="k")


def _directory(p: Path) -> None:
    p.mkdir()
    (p / "keep-me").write_text("log\n")


def _link_to_directory(p: Path) -> None:
    (p.parent / "real-dir").mkdir()
    p.symlink_to(p.parent / "real-dir")


def _link_to_file(p: Path) -> None:
    (p.parent / "victim").write_text("precious\n")
    p.symlink_to(p.parent / "victim")


def _dangling_link(p: Path) -> None:
    p.symlink_to(p.parent / "created-through-the-link")


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _socket(p: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(p))
    sock.close()


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "directory": (_directory, "is a directory"),
    "symlink-to-directory": (_link_to_directory, "is a symlink"),
    "symlink-to-file": (_link_to_file, "is a symlink"),
    "dangling-symlink": (_dangling_link, "is a symlink"),
    "fifo": (_fifo, "is a FIFO"),
    "socket": (_socket, "is a socket"),
}


def _state(tmp: Path) -> list[tuple[str, bool, bool]]:
    return sorted((str(p.relative_to(tmp)), p.is_symlink(), p.is_dir())
                  for p in tmp.rglob("*"))


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_trace_path_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    make, what = HOSTILE[kind]
    out = tmp_path / "trace"
    make(out)
    before = _state(tmp_path)
    with pytest.raises(ZoomdError, match=f"trace: {what}.*refused"):
        TraceFile(str(out), header())
    assert _state(tmp_path) == before  # nothing renamed, nothing created


def test_a_device_is_refused() -> None:
    with pytest.raises(ZoomdError, match="/dev/null: is a character device"):
        check_trace_path("/dev/null")


def test_a_rotated_part_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text("old\n")
    (tmp_path / "t.jsonl.2").mkdir()
    with pytest.raises(ZoomdError, match=r"t.jsonl.2: is a directory \(a rotated part"):
        TraceFile(str(tmp_path / "t.jsonl"), header(), keep=3)
    assert (tmp_path / "t.jsonl").read_text() == "old\n"
    # Parts past `keep` are never touched, so they are not looked at either.
    TraceFile(str(tmp_path / "t.jsonl"), header(), keep=1).close()
    assert (tmp_path / "t.jsonl.1").read_text() == "old\n"


def test_regular_file_and_new_path_are_written(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text("old\n")
    TraceFile(str(tmp_path / "t.jsonl"), header()).close()
    TraceFile(str(tmp_path / "new.jsonl"), header()).close()
    assert (tmp_path / "t.jsonl.1").read_text() == "old\n"
    assert json.loads((tmp_path / "new.jsonl").read_text())["format"] == "zoomd-trace"


def test_rotation_onto_a_directory_is_an_oserror_and_recovers(tmp_path: Path) -> None:
    """A part that became a directory after start-up: rotation refuses (an OSError, what
    the writer thread counts as a write error), renames nothing, and goes on once the
    directory is gone, the new part starting with its header and a keyframe."""
    path = tmp_path / "r.jsonl"
    trace = TraceFile(str(path), header(), max_bytes=300, keep=2)
    (tmp_path / "r.jsonl.1").mkdir()
    with pytest.raises(OSError, match=r"r.jsonl.1: is a directory"):
        for i in range(4):
            trace.sample(float(i), float(i), {"host": {"/proc/a": f"{i}" * 400}})
    with pytest.raises(OSError, match="is a directory"):
        trace.sample(5.0, 5.0, {"host": {"/proc/a": "still"}})
    assert (tmp_path / "r.jsonl.1").is_dir()
    (tmp_path / "r.jsonl.1").rmdir()
    trace.sample(6.0, 6.0, {"host": {"/proc/a": "after"}})
    trace.close()
    head, first = (json.loads(x) for x in path.read_text().splitlines()[:2])
    assert head["format"] == "zoomd-trace" and first["key"] is True
    assert first["files"] == {"/proc/a": "after"}


def test_writer_thread_counts_a_refused_rotation(tmp_path: Path) -> None:
    writer = BackgroundWriter(TraceFile(str(tmp_path / "r.jsonl"), header(), max_bytes=300))
    (tmp_path / "r.jsonl.1").mkdir()
    for i in range(3):
        writer.submit_sample(float(i), float(i), {"host": {"/proc/a": f"{i}" * 400}})
    writer.close()
    assert writer.errors >= 1 and "is a directory" in (writer.last_error or "")
    assert (tmp_path / "r.jsonl.1").is_dir()


@pytest.mark.parametrize("kind", ["directory", "symlink-to-directory", "fifo"])
@pytest.mark.parametrize("command", ["record", "run"])
def test_cli_refuses_at_start_up_with_one_line(tmp_path: Path, kind: str,
                                               command: str) -> None:
    make, what = HOSTILE[kind]
    out = tmp_path / "out"
    make(out)
    before = _state(tmp_path)
    if command == "record":
        args = ["record", "-o", str(out), "--duration", "0", "--root", str(TREE)]
    else:
        args = ["run", "--dry-run", "--duration", "0", "--record", str(out), "--root",
                str(TREE)]
    proc = zoomd(*args, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and f"{out}: {what}" in proc.stderr, proc.stderr
    assert _state(tmp_path) == before


# -- replay -----------------------------------------------------------------------------
def _thrash_lines() -> list[bytes]:
    return gzip.decompress(THRASH.read_bytes()).rstrip(b"\n").split(b"\n")


def _with_line(tmp: Path, name: str, files: dict[str, str | None]) -> Path:
    lines = _thrash_lines()
    extra = json.dumps({"t": lines and json.loads(lines[2])["t"] + 1e-4, "wall": 1.0,
                        "files": files}).encode()
    path = tmp / name
    path.write_bytes(b"\n".join([*lines[:3], extra, *lines[3:]]) + b"\n")
    return path


def _zero(tmp: Path) -> Path:
    path = tmp / "zero.jsonl"
    TraceFile(str(path), header()).close()  # what `record --duration 0` leaves
    return path


BAD_PATHS = {
    "nul": ({"/proc/a\x00b": "x"}, "NUL"),
    "long-name": ({"/proc/" + "a" * 300: "x"}, "longer than"),
    "long-path": ({"/proc/" + "/".join(["a" * 200] * 30): "x"}, "longer than"),
    "file-under-a-file": ({"/proc/meminfo/x": "x"}, "under a file"),
    "file-over-a-directory": ({"/proc/sys": "x"}, "a directory"),
}


@pytest.mark.parametrize("case", sorted(BAD_PATHS))
def test_replay_of_an_impossible_path_is_one_line(tmp_path: Path, case: str) -> None:
    files, what = BAD_PATHS[case]
    trace = _with_line(tmp_path, f"{case}.jsonl", files)
    proc = zoomd("replay", str(trace))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"zoomd: {trace}: line 4: ") and what in proc.stderr
    assert len(proc.stderr) < 400  # the path is shown shortened


def test_replay_of_a_zero_length_recording_is_one_line(tmp_path: Path) -> None:
    trace = _zero(tmp_path)
    for extra in ([], ["--json"]):
        proc = zoomd("replay", *extra, str(trace))
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr == f"zoomd: {trace}: line 1: no samples after the header " \
                              "(a recording of zero length?)\n"


def test_fleet_report_skips_a_bad_trace_and_says_so(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    _zero(fleet)
    _with_line(fleet, "nul.jsonl", {"/proc/a\x00b": "x"})
    (fleet / "b.jsonl.gz").write_bytes(THRASH.read_bytes())
    (fleet / "c.jsonl.gz").write_bytes(THRASH.read_bytes())
    proc = zoomd("replay", "--json", str(fleet))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert [t["trace"] for t in report["traces"]] == ["b", "c"]
    assert report["fleet"]["configs"]["zoomd"]["traces"] == 2
    skipped = {os.path.basename(s["path"]): s["error"] for s in report["skipped_traces"]}
    assert sorted(skipped) == ["nul.jsonl", "zero.jsonl"]
    assert "line 1: no samples" in skipped["zero.jsonl"]
    assert "line 4:" in skipped["nul.jsonl"]
    assert proc.stderr.count("trace skipped") == 2 and "Traceback" not in proc.stderr
    text = zoomd("replay", str(fleet))
    assert text.returncode == 0
    assert "fleet: 2 traces" in text.stdout and "2 traces skipped" in text.stdout
    assert "skipped: " in text.stdout and "zero.jsonl" in text.stdout


def test_fleet_of_bad_traces_only_is_exit_2(tmp_path: Path) -> None:
    _zero(tmp_path)
    _with_line(tmp_path, "nul.jsonl", {"/proc/a\x00b": "x"})
    proc = zoomd("replay", str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1] == "zoomd: no trace could be replayed " \
                                                   "(2 skipped)"
