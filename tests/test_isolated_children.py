"""Children zoomd starts run zoomd's own code, never what sits in the working directory.

The daemon runs as root: `python -m zoomd.config.handover` started from a directory
holding a zoomd/ (or pydantic/) package ran that package as root (issue 15, item 1).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
from types import SimpleNamespace

import pytest

from zoomd import isolated
from zoomd.actions.outcome import ActionOutcome
from zoomd.config.handover import load_runtime_config
from zoomd.daemon.decision import Decision
from zoomd.daemon.hooks import HookRunner

DECISION = Decision("policy", 0.0, "p", "kill", False, "/g",
                    ActionOutcome("kill", "/g", False, "pending", (), None, None, None), "")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=["zoomd", "pydantic"])
def hostile_cwd(request, tmp_path, monkeypatch):
    """A working directory holding a package that, imported, writes a marker file."""
    d = tmp_path / "D"
    (d / request.param).mkdir(parents=True)
    marker = tmp_path / "PWN"
    (d / request.param / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    monkeypatch.chdir(d)
    return SimpleNamespace(dir=d, marker=marker)


def test_the_validating_child_ignores_the_working_directory(hostile_cwd) -> None:
    config, files = load_runtime_config(None)
    assert config.policy and files
    assert not hostile_cwd.marker.exists()


def test_zoomd_run_from_a_hostile_directory_runs_none_of_it(hostile_cwd, tree_path,
                                                            tmp_path) -> None:
    """The issue's recipe, with zoomd started as its console script is (not -m)."""
    launcher = tmp_path / "bin" / "zoomd"
    launcher.parent.mkdir()
    launcher.write_text(f"import sys\nsys.path.insert(0, {REPO!r})\n"
                        "from zoomd.cli import main\nsys.exit(main())\n")
    tree = tmp_path / "tree"  # a copy: the daemon must not touch the fixture
    shutil.copytree(tree_path("cgroup2-pure"), tree)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(launcher), "run", "--dry-run", "--root",
                           str(tree), "--duration", "0.2"], capture_output=True, text=True,
                          timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "validating child failed" not in proc.stderr
    assert not hostile_cwd.marker.exists()


def test_a_reload_ignores_the_working_directory(hostile_cwd, tree_path, tmp_path) -> None:
    from zoomd.daemon.log import Logger
    from zoomd.daemon.loop import Daemon
    from zoomd.kernel.root import Root

    tree = tmp_path / "tree"
    shutil.copytree(tree_path("cgroup2-pure"), tree)
    stream = io.StringIO()
    daemon = Daemon(None, root=Root(str(tree)), dry_run=True,
                    logger=Logger("json", "debug", stream))
    try:
        daemon._reload_config()
        assert "configuration reloaded" in stream.getvalue(), stream.getvalue()
    finally:
        daemon.shutdown()
    assert not hostile_cwd.marker.exists()


def test_child_argv_is_isolated_and_puts_zoomd_first(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), "", "rel", *sys.path])
    argv = isolated.module_argv("zoomd.config.handover", "--secure")
    assert argv[:3] == [sys.executable, "-I", "-c"] and argv[-2:] == [
        "zoomd.config.handover", "--secure"]
    path = __import__("json").loads(argv[4])
    assert path[0] == REPO
    assert str(tmp_path) not in path and "" not in path and "rel" not in path


def test_child_env_keeps_the_locale_only(monkeypatch) -> None:
    for name, value in [("PYTHONPATH", "/x"), ("PYTHONSTARTUP", "/x"), ("LD_PRELOAD", "/x"),
                        ("NOTIFY_SOCKET", "/run/n"), ("LISTEN_FDS", "1"),
                        ("LANG", "C.UTF-8"), ("LC_ALL", "C.UTF-8"), ("PATH", ".:/usr/bin::")]:
        monkeypatch.setenv(name, value)
    env = isolated.child_env()
    assert env == {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin"}
    assert isolated.safe_path("") == isolated.safe_path(":.") == isolated.DEFAULT_PATH


def test_a_hook_is_never_looked_up_in_the_working_directory(tmp_path, monkeypatch) -> None:
    """An empty PATH entry (`PATH=/usr/bin:`) is the working directory to execvp."""
    marker = tmp_path / "PWN"
    program = tmp_path / "zoomd-hook"
    program.write_text(f"#!/bin/sh\necho x > {marker}\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin:")
    runner = HookRunner((SimpleNamespace(name="h", when="before", command=("zoomd-hook",),
                                         timeout=5.0, dry_run=False, policies=(),
                                         actions=()),))
    runs = runner.before(DECISION)
    assert runs[0].error is not None and "zoomd-hook" in runs[0].error
    assert not marker.exists()


def test_a_hook_runs_in_root_with_only_absolute_path_entries(tmp_path, monkeypatch) -> None:
    """A hook script's own relative names and PATH lookups never reach the daemon's
    working directory."""
    out = tmp_path / "seen.json"
    code = ("import json, os, sys; json.dump([os.getcwd(), os.environ['PATH']], "
            "open(sys.argv[1], 'w'))")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", ".:/usr/bin::/bin:")
    runner = HookRunner((SimpleNamespace(name="h", when="before",
                                         command=(sys.executable, "-c", code, str(out)),
                                         timeout=10.0, dry_run=False, policies=(),
                                         actions=()),))
    runs = runner.before(DECISION)
    assert runs[0].returncode == 0, runs
    assert __import__("json").loads(out.read_text()) == ["/", "/usr/bin:/bin"]
