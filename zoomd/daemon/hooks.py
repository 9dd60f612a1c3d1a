"""Hooks: operator commands run before or after an action (argv lists, never a shell).

A "before" hook gets `timeout` to finish; after that the action goes ahead anyway
(as oomd's prekill hooks do): a hung hook must not keep a host browned out. "after"
hooks are started and reaped later, so they never hold up the loop. Hooks do not
run for dry-run decisions unless the hook says `dry_run = true`.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zoomd.daemon.globs import compile_glob
from zoomd.isolated import safe_path
from zoomd.kernel.hotfile import started_soft_limit

# Puts RLIMIT_NOFILE's soft limit back to what zoomd was started with, then execs the
# hook (argv: soft limit, program path, the hook's own argv). subprocess has no rlimit
# option and preexec_fn is unsafe with threads (the trace writer is one); an isolated
# interpreter without site starts in a few milliseconds.
_WITH_SOFT_NOFILE = (
    "import os, resource, sys\n"
    "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), hard))\n"
    "os.execv(sys.argv[2], sys.argv[3:])\n"
)


def hook_argv(command: tuple[str, ...] | list[str], path: str) -> list[str]:
    """The argv to spawn: the hook's own, or the hook under the soft descriptor limit
    zoomd was started with when zoomd raised its own (see kernel/hotfile.py)."""
    argv = list(command)
    soft = started_soft_limit()
    if soft is None:
        return argv
    program = shutil.which(argv[0], path=path) if "/" not in argv[0] else argv[0]
    if program is None or not os.access(program, os.X_OK):
        # Reported as spawning it directly would be: the record names the command.
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
    return [sys.executable, "-I", "-S", "-c", _WITH_SOFT_NOFILE, str(soft), program, *argv]


@dataclass(frozen=True, slots=True)
class HookRun:
    """What running one hook gave: for the decision record."""

    name: str
    when: str
    returncode: int | None  # None: still running (after) or killed at the timeout
    seconds: float
    timed_out: bool
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "when": self.when, "returncode": self.returncode,
                "seconds": round(self.seconds, 3), "timed_out": self.timed_out,
                "error": self.error}


def hook_environment(record: Mapping[str, Any], phase: str) -> dict[str, str]:
    """The documented ZOOMD_* variables a hook receives."""
    trigger = record.get("trigger", {}).get("figures", {})
    reclaim = record.get("reclaim", {})
    result = record.get("result") or {}

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    env = {
        "ZOOMD_PHASE": phase,
        "ZOOMD_POLICY": text(record.get("policy")),
        "ZOOMD_ACTION": text(record.get("action")),
        "ZOOMD_CGROUP": text(record.get("victim")),
        "ZOOMD_MONITOR": text(record.get("monitor")),
        "ZOOMD_DRY_RUN": "1" if record.get("dry_run") else "0",
        "ZOOMD_REASON": text(record.get("reason")),
        "ZOOMD_PRESSURE_FULL_PCT": text(trigger.get("memory_pressure_full_pct")),
        "ZOOMD_REFAULT_RATE_PCT": text(trigger.get("refault_rate_pct")),
        "ZOOMD_ANON_EFFICIENCY_PCT": text(reclaim.get("anon_efficiency_pct")),
        "ZOOMD_EFFECTIVE_AVAILABLE_BYTES": text(reclaim.get("effective_available_bytes")),
        "ZOOMD_MEMORY_BYTES": text(record.get("victim_memory_bytes")),
    }
    if phase == "after":
        env["ZOOMD_RESULT"] = "ok" if result.get("ok") else "failed"
        env["ZOOMD_ERROR"] = text(result.get("error"))
    return env


class HookRunner:
    """Runs the configured hooks; keeps "after" hooks until they exit."""

    def __init__(self, hooks: tuple[Any, ...]) -> None:
        self.hooks = hooks
        self._running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def _selected(self, when: str, record: Mapping[str, Any]) -> list[Any]:
        out = []
        for hook in self.hooks:
            if hook.when != when:
                continue
            if record.get("dry_run") and not hook.dry_run:
                continue
            if hook.actions and record.get("action") not in hook.actions:
                continue
            policy = str(record.get("policy", ""))
            if hook.policies and not any(compile_glob(p).match(policy) for p in hook.policies):
                continue
            out.append(hook)
        return out

    def _spawn(self, hook: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
        # Absolute PATH entries only: an empty or relative one would look the program
        # up in the daemon's working directory.
        full_env = {"PATH": safe_path(os.environ.get("PATH")), **env}
        return subprocess.Popen(hook_argv(hook.command, full_env["PATH"]), env=full_env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True,
                                start_new_session=True)

    def before(self, record: Mapping[str, Any]) -> list[HookRun]:
        """Run "before" hooks, each waited for at most its timeout."""
        runs = []
        env = hook_environment(record, "before")
        for hook in self._selected("before", record):
            started = time.monotonic()
            try:
                proc = self._spawn(hook, env)
            except OSError as exc:
                runs.append(HookRun(hook.name, "before", None, 0.0, False,
                                    f"{hook.command[0]}: {exc.strerror or exc}"))
                continue
            try:
                code: int | None = proc.wait(timeout=hook.timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                proc.kill()
                self._running.append((hook.name, proc))
                code, timed_out = None, True
            runs.append(HookRun(hook.name, "before", code, time.monotonic() - started,
                                timed_out, None))
        return runs

    def after(self, record: Mapping[str, Any]) -> list[HookRun]:
        """Start "after" hooks without waiting for them."""
        runs = []
        env = hook_environment(record, "after")
        for hook in self._selected("after", record):
            try:
                self._running.append((hook.name, self._spawn(hook, env)))
                runs.append(HookRun(hook.name, "after", None, 0.0, False, None))
            except OSError as exc:
                runs.append(HookRun(hook.name, "after", None, 0.0, False,
                                    f"{hook.command[0]}: {exc.strerror or exc}"))
        self.reap()
        return runs

    def reap(self) -> None:
        """Collect hooks that finished (no zombies left behind)."""
        self._running = [(n, p) for n, p in self._running if p.poll() is None]

    def close(self, grace: float = 2.0) -> None:
        deadline = time.monotonic() + grace
        for _, proc in self._running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._running.clear()
