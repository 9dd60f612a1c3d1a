"""Hooks: operator commands run before or after an action (argv lists, never a shell).

A "before" hook gets `timeout` to finish; after that the action goes ahead anyway
(as oomd's prekill hooks do): a hung hook must not keep a host browned out. Neither
kind holds up the loop: "before" hooks run as a BeforeHooks batch (one after another)
that the loop polls, waking on each hook's pidfd or its deadline, while the watchdog
and the other policies go on; "after" hooks are started and reaped later. Hooks do
not run for dry-run decisions unless the hook says `dry_run = true`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import subprocess
import sys
import time
from typing import Any

from zoomd.daemon.decision import Decision, HookRun
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


def hook_environment(record: Decision, phase: str) -> dict[str, str]:
    """The documented ZOOMD_* variables a hook receives (figures as the record's JSON
    shows them: rounded as there)."""
    figures = record.verdict.figures if record.verdict is not None else None
    trigger = figures.to_json() if figures is not None else {}
    reclaim = record.reclaim

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    env = {
        "ZOOMD_PHASE": phase,
        "ZOOMD_POLICY": record.policy,
        "ZOOMD_ACTION": record.action,
        "ZOOMD_CGROUP": record.victim,
        "ZOOMD_MONITOR": text(record.monitor),
        "ZOOMD_DRY_RUN": "1" if record.dry_run else "0",
        "ZOOMD_REASON": text(record.reason),
        "ZOOMD_PRESSURE_FULL_PCT": text(trigger.get("memory_pressure_full_pct")),
        "ZOOMD_REFAULT_RATE_PCT": text(trigger.get("refault_rate_pct")),
        "ZOOMD_ANON_EFFICIENCY_PCT": text(reclaim.anon_efficiency_pct if reclaim else None),
        "ZOOMD_EFFECTIVE_AVAILABLE_BYTES": text(reclaim.effective_available
                                                if reclaim else None),
        "ZOOMD_MEMORY_BYTES": text(record.victim_memory),
    }
    if phase == "after":
        env["ZOOMD_RESULT"] = "ok" if record.outcome.ok else "failed"
        env["ZOOMD_ERROR"] = text(record.outcome.error)
    return env


class BeforeHooks:
    """The "before" hooks of one decision, run one after another without blocking.

    `poll()` advances them (a hook that exited gives its returncode; one past its
    timeout is killed and left to the runner to reap) and says when all are done.
    Timeouts are real time, whatever clock drives the engine.
    """

    def __init__(self, runner: HookRunner, hooks: list[Any], env: dict[str, str]) -> None:
        self.runner = runner
        self.env = env
        self.todo = list(hooks)
        self.runs: list[HookRun] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._hook: Any = None
        self._started = 0.0
        self._deadline = 0.0
        self._start_next()

    @property
    def done(self) -> bool:
        return self._proc is None and not self.todo

    def _start_next(self) -> None:
        while self._proc is None and self.todo:
            hook = self.todo.pop(0)
            try:
                proc = self.runner._spawn(hook, self.env)
            except OSError as exc:
                self.runs.append(HookRun(hook.name, "before", None, 0.0, False,
                                         f"{hook.command[0]}: {exc.strerror or exc}"))
                continue
            self._proc, self._hook = proc, hook
            self._started = time.monotonic()
            self._deadline = self._started + hook.timeout
            try:
                self._pidfd = os.pidfd_open(proc.pid)
            except OSError:
                self._pidfd = None  # e.g. EMFILE: the loop wakes on its slice instead

    def _end(self, code: int | None, timed_out: bool) -> None:
        assert self._proc is not None
        self.runs.append(HookRun(self._hook.name, "before", code,
                                 time.monotonic() - self._started, timed_out, None))
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
        self._proc = self._pidfd = self._hook = None

    def poll(self) -> bool:
        """Advance without waiting; True once every hook has finished or timed out."""
        while self._proc is not None:
            now = time.monotonic()
            code = self._proc.poll()
            if code is not None:
                self._end(code, False)
            elif now >= self._deadline:
                self._proc.kill()
                self.runner._running.append((self._hook.name, self._proc))
                self._end(None, True)
            else:
                return False
            self._start_next()
        return True

    def fds(self) -> list[int]:
        """Descriptors that turn readable when the running hook exits."""
        return [self._pidfd] if self._pidfd is not None else []

    def wake_in(self) -> float | None:
        """Seconds until the running hook's deadline (None: nothing running); without
        a pidfd to wake on its exit, a short slice."""
        if self._proc is None:
            return None
        left = max(0.0, self._deadline - time.monotonic())
        return left if self._pidfd is not None else min(left, 0.05)

    def wait(self) -> list[HookRun]:
        """Block until done (tests and shutdown; the loop never calls this)."""
        while not self.poll():
            wake = self.wake_in()
            poller = select.poll()
            for fd in self.fds():
                poller.register(fd, select.POLLIN)
            poller.poll(max(1, int((wake or 0.0) * 1000)))
        return self.runs

    def cancel(self) -> None:
        """Kill a hook still running (it is reaped by the runner)."""
        if self._proc is not None:
            self._proc.kill()
            self.runner._running.append((self._hook.name, self._proc))
            self._end(None, True)
        self.todo.clear()


class HookRunner:
    """Runs the configured hooks; keeps "after" hooks until they exit."""

    def __init__(self, hooks: tuple[Any, ...]) -> None:
        self.hooks = hooks
        self._running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def _selected(self, when: str, record: Decision) -> list[Any]:
        out = []
        for hook in self.hooks:
            if hook.when != when:
                continue
            if record.dry_run and not hook.dry_run:
                continue
            if hook.actions and record.action not in hook.actions:
                continue
            policy = record.policy
            if hook.policies and not any(compile_glob(p).match(policy) for p in hook.policies):
                continue
            out.append(hook)
        return out

    def _spawn(self, hook: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
        # Absolute PATH entries only: an empty or relative one would look the program
        # up in the daemon's working directory; and the hook runs in /, not there.
        full_env = {"PATH": safe_path(os.environ.get("PATH")), **env}
        return subprocess.Popen(hook_argv(hook.command, full_env["PATH"]), env=full_env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True,
                                start_new_session=True, cwd="/")

    def start_before(self, record: Decision) -> BeforeHooks:
        """Start the "before" hooks that apply to `record`; poll the batch for the rest."""
        return BeforeHooks(self, self._selected("before", record),
                           hook_environment(record, "before"))

    def before(self, record: Decision) -> list[HookRun]:
        """Run "before" hooks, each waited for at most its timeout (blocking)."""
        return self.start_before(record).wait()

    def after(self, record: Decision) -> list[HookRun]:
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
