"""Exit status of the long-running commands, as zoomd(8) and --help document it: 0 when
stopped by SIGTERM (how systemd stops a service), 130 when interrupted by SIGINT
(issue 15, item 11: `run` exited 0 on SIGINT while both said 130)."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time

import pytest

from zoomd.cli import build_parser
from zoomd.cli.manpage import render

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _started(argv: list[str], ready: str, tmp_path) -> subprocess.Popen[bytes]:
    """Start `zoomd ARGV` and wait until it prints `ready` (its handlers are set)."""
    proc = subprocess.Popen([sys.executable, "-m", "zoomd", *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 30
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while ready.encode() not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            if sel.select(timeout=1):
                seen += os.read(proc.stdout.fileno(), 65536)
    return proc


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_run_exit_status_on_a_signal(signum, status, tree_path, tmp_path) -> None:
    tree = tmp_path / "tree"  # a copy: the daemon must not touch the fixture
    shutil.copytree(tree_path("cgroup2-pure"), tree)
    proc = _started(["run", "--dry-run", "--root", str(tree), "--duration", "60"],
                    "zoomd started", tmp_path)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == status, out
    assert b"zoomd stopped" in out and b"Traceback" not in out


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_record_exit_status_on_a_signal(signum, status, tree_path, tmp_path) -> None:
    trace = tmp_path / "t.jsonl"
    proc = _started(["record", "-o", str(trace), "--root", tree_path("cgroup2-pure"),
                     "--interval", "0.05", "--duration", "60"], "", tmp_path)
    deadline = time.monotonic() + 30
    while not (trace.exists() and trace.stat().st_size):  # sampling: handlers are set
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == status, out
    assert b"zoomd: recorded" in out and b"Traceback" not in out


def test_help_and_man_page_say_the_same() -> None:
    assert "130 interrupted" in build_parser().epilog
    page = render("8", build_parser())
    section = page.split(".SH SIGNALS", 1)[1].split(".SH ", 1)[0]
    assert "status 0 on SIGTERM, 130 on SIGINT" in section
