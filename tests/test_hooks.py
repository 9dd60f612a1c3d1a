"""Hooks get the documented environment; a slow "before" hook cannot hold up an action."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from types import SimpleNamespace

from zoomd.actions.outcome import ActionOutcome
from zoomd.daemon.decision import Decision, ReclaimFigures
from zoomd.daemon.hooks import HookRunner, hook_environment
from zoomd.daemon.triggers import Verdict, WindowFigures

FIGURES = WindowFigures(5.0, 55.5, None, None, 40.0, None, None, None, None, False)
RECORD = Decision(
    "policy", 0.0, "stuck-memory", "kill", False, "/lab/workload",
    ActionOutcome("kill", "/lab/workload", True, "cgroup.kill", (), None, None, None), "",
    monitor="/lab", verdict=Verdict(FIGURES, {}, {}),
    reclaim=ReclaimFigures("auto", 0, 0, 0, 123, 48.0, False))


def hook(command, when="before", timeout=5.0, dry_run=False, policies=(), actions=(),
         name="h"):
    return SimpleNamespace(name=name, when=when, command=tuple(command), timeout=timeout,
                           dry_run=dry_run, policies=tuple(policies), actions=tuple(actions))


def dump_env(path) -> list[str]:
    code = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
            "if k.startswith('ZOOMD_')}, open(sys.argv[1], 'w'))")
    return [sys.executable, "-c", code, str(path)]


def test_before_hook_receives_documented_environment(tmp_path) -> None:
    out = tmp_path / "env.json"
    runs = HookRunner((hook(dump_env(out)),)).before(RECORD)
    assert runs[0].returncode == 0 and not runs[0].timed_out
    env = json.loads(out.read_text())
    assert env["ZOOMD_PHASE"] == "before"
    assert env["ZOOMD_POLICY"] == "stuck-memory"
    assert env["ZOOMD_ACTION"] == "kill"
    assert env["ZOOMD_CGROUP"] == "/lab/workload"
    assert env["ZOOMD_DRY_RUN"] == "0"
    assert env["ZOOMD_PRESSURE_FULL_PCT"] == "55.5"
    assert env["ZOOMD_EFFECTIVE_AVAILABLE_BYTES"] == "123"
    assert "ZOOMD_RESULT" not in env


def test_after_hook_gets_result_and_does_not_block(tmp_path) -> None:
    out = tmp_path / "env.json"
    runner = HookRunner((hook(dump_env(out), when="after"),))
    started = time.monotonic()
    runs = runner.after(RECORD)
    assert time.monotonic() - started < 1.0
    assert runs[0].returncode is None
    runner.close()
    env = json.loads(out.read_text())
    assert env["ZOOMD_PHASE"] == "after" and env["ZOOMD_RESULT"] == "ok"


def test_slow_before_hook_is_cut_at_its_timeout() -> None:
    runner = HookRunner((hook(["sleep", "30"], timeout=0.5),))
    started = time.monotonic()
    runs = runner.before(RECORD)
    elapsed = time.monotonic() - started
    assert runs[0].timed_out and runs[0].returncode is None
    assert elapsed < 3.0
    runner.close()


def test_hooks_skip_dry_run_unless_asked(tmp_path) -> None:
    out = tmp_path / "ran"
    command = ["touch", str(out)]
    dry = dataclasses.replace(RECORD, dry_run=True)
    HookRunner((hook(command),)).before(dry)
    assert not out.exists()
    HookRunner((hook(command, dry_run=True),)).before(dry)
    assert out.exists()


def test_hooks_filtered_by_policy_and_action(tmp_path) -> None:
    out = tmp_path / "ran"
    command = ["touch", str(out)]
    HookRunner((hook(command, policies=["other-*"]),)).before(RECORD)
    HookRunner((hook(command, actions=["freeze"]),)).before(RECORD)
    assert not out.exists()
    HookRunner((hook(command, policies=["stuck-*"], actions=["kill"]),)).before(RECORD)
    assert out.exists()


def test_missing_hook_binary_is_reported_not_raised() -> None:
    runs = HookRunner((hook(["/nonexistent/zoomd-hook"]),)).before(RECORD)
    assert runs[0].error and "/nonexistent/zoomd-hook" in runs[0].error


def test_environment_for_failed_result() -> None:
    failed = ActionOutcome("kill", "/lab/workload", False, "cgroup.kill", (), None, None, "gone")
    env = hook_environment(dataclasses.replace(RECORD, outcome=failed), "after")
    assert env["ZOOMD_RESULT"] == "failed" and env["ZOOMD_ERROR"] == "gone"


def test_desktop_notification_hook_ignores_non_user_groups() -> None:
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "packaging", "hooks", "zoomd-notify-desktop")
    import subprocess

    proc = subprocess.run([script], env={"ZOOMD_CGROUP": "/system.slice/x.service",
                                         "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == ""


def test_hooks_get_the_soft_descriptor_limit_zoomd_was_started_with(tmp_path,
                                                                    monkeypatch) -> None:
    """zoomd raises its own soft RLIMIT_NOFILE; a hook (which may select() or close
    every descriptor up to the limit) runs under the one zoomd was started with."""
    from zoomd.daemon import hooks as hooks_mod

    out = tmp_path / "limit"
    code = ("import resource, sys; open(sys.argv[1], 'w').write("
            "' '.join(map(str, resource.getrlimit(resource.RLIMIT_NOFILE))))")
    hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[1]
    monkeypatch.setattr(hooks_mod, "started_soft_limit", lambda: 321)
    runs = HookRunner((hook([sys.executable, "-c", code, str(out)]),)).before(RECORD)
    assert runs[0].returncode == 0, runs
    assert out.read_text() == f"321 {hard}"
    # A command found on PATH, and one that is not there, behave as when run directly.
    runs = HookRunner((hook(["true"]),)).before(RECORD)
    assert runs[0].returncode == 0 and runs[0].error is None
    runs = HookRunner((hook(["zoomd-no-such-hook"]),)).before(RECORD)
    assert runs[0].error and "zoomd-no-such-hook" in runs[0].error
    runs = HookRunner((hook(["/nonexistent/zoomd-hook"]),)).before(RECORD)
    assert runs[0].error and "/nonexistent/zoomd-hook" in runs[0].error
