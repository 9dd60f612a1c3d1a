"""systemd-oomd's prekill hooks (systemd v260): before a cgroup kill, tell every hook
socket which cgroup is about to go, wait for their answers at most
PrekillHookTimeoutSec, then kill whatever they said.

As systemd does it (src/oom/oomd-util.c, oomd_prekill_hook() and
send_prekill_message(), systemd commit 00a99cb427b0; oomd.conf(5); the interface in
man/io.systemd.oom.Prekill.xml):
- the hooks are the sockets in /run/systemd/oomd.prekill.hook/ (VARLINK_DIR_OOMD_
  PREKILL_HOOK in src/basic/constants.h): entries whose type is a socket (or unknown);
  a symlink is not followed;
- each is called, all at once, with `io.systemd.oom.Prekill.Notify` and
  {"cgroup": "<cgroup path>"}, a method call that expects a reply;
- one that cannot be connected to is stale and skipped; an error reply is logged;
  every call has the same relative timeout, PrekillHookTimeoutSec (default 0: no
  hook is called at all), so the timeout is global, not per hook; the kill follows
  as soon as all answered, or at the timeout, whatever they answered;
- nothing is called for a dry run (systemd-oomd returns before the hooks).

zoomd keeps the loop going meanwhile: a PrekillCalls is a state machine over
non-blocking sockets that the engine's action in flight polls (its descriptors wake
the loop), and its per-socket results go into the decision record's `result` as
`prekill_hooks`. The wrapper sits outside ReportingBackend, so `user.oomd_ooms` is
counted when the kill starts, after the hooks, as in oomd_cgroup_kill().
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zoomd.actions.backend import ActionBackend, Finished, PendingAction
from zoomd.actions.outcome import ActionOutcome, failed
from zoomd.systemd.varlink import VarlinkError, VarlinkStream

PREKILL_DIR = "/run/systemd/oomd.prekill.hook"
METHOD = "io.systemd.oom.Prekill.Notify"
MAX_HOOKS = 64  # sockets called per kill; more are logged and left out
MAX_REPLY = 64 << 10  # a Notify reply is "{}": a hook sending more is broken
_CONNECT_RETRY_S = 0.05  # a listener whose backlog is full (EAGAIN) is tried again


@dataclass(frozen=True, slots=True)
class PrekillResult:
    """What one hook socket did with one Notify call."""

    socket: str
    outcome: str  # "answered" | "error" | "timed-out" | "not-connectible" | "disconnected"
    seconds: float
    detail: str | None = None  # the varlink error id, or why it could not be called

    def to_json(self) -> dict[str, Any]:
        return {"socket": self.socket, "outcome": self.outcome,
                "seconds": round(self.seconds, 3), "detail": self.detail}


@dataclass(frozen=True)
class PrekilledOutcome(ActionOutcome):
    """A kill's outcome with what the prekill hooks did before it."""

    prekill: tuple[PrekillResult, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["prekill_hooks"] = [r.to_json() for r in self.prekill]
        return out


def hook_sockets(directory: str) -> tuple[list[str], int]:
    """Names of the sockets in `directory` (sorted, at most MAX_HOOKS) and how many
    more were left out. A missing directory is no hooks."""
    try:
        with os.scandir(directory) as entries:
            names = sorted(e.name for e in entries if _is_socket(e))
    except OSError:
        return [], 0
    return names[:MAX_HOOKS], max(0, len(names) - MAX_HOOKS)


def _is_socket(entry: os.DirEntry[str]) -> bool:
    try:
        return stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode)
    except OSError:
        return False


def _call(cgroup: str) -> dict[str, Any]:
    return {"method": METHOD, "parameters": {"cgroup": cgroup}}


@dataclass
class _Call:
    name: str
    path: str
    sock: socket.socket | None = None
    stream: VarlinkStream | None = None
    result: PrekillResult | None = None


@dataclass
class PrekillCalls:
    """One kill's Notify calls to every hook, concurrently, never waiting.

    `poll()` advances them and says when every hook answered or the deadline passed;
    `results` then says what each did. Times are real (monotonic) time.
    """

    directory: str
    cgroup: str
    timeout_s: float
    clock: Callable[[], float] = time.monotonic
    calls: list[_Call] = field(default_factory=list)
    left_out: int = 0

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.deadline = self.started + self.timeout_s
        names, self.left_out = hook_sockets(self.directory)
        self.calls = [_Call(n, os.path.join(self.directory, n)) for n in names]
        for call in self.calls:
            self._connect(call)

    # -- one call ------------------------------------------------------------------
    def _end(self, call: _Call, outcome: str, detail: str | None = None) -> None:
        call.result = PrekillResult(call.name, outcome, self.clock() - self.started, detail)
        if call.stream is not None:
            call.stream.close()
        elif call.sock is not None:
            with contextlib.suppress(OSError):
                call.sock.close()
        call.sock = call.stream = None

    def _connect(self, call: _Call) -> None:
        if call.sock is None:
            try:
                call.sock = socket.socket(socket.AF_UNIX,
                                          socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            except OSError as exc:
                self._end(call, "not-connectible", exc.strerror or str(exc))
                return
            call.sock.setblocking(False)
        try:
            call.sock.connect(call.path)
        except BlockingIOError:
            return  # backlog full: tried again by poll() until the deadline
        except OSError as exc:
            if exc.errno == errno.EISCONN:
                pass
            else:
                self._end(call, "not-connectible", exc.strerror or str(exc))
                return
        call.stream = VarlinkStream(call.sock)
        call.stream.send(_call(self.cgroup))
        if call.stream.closed:
            self._end(call, "disconnected", "the hook closed the connection")

    def _read(self, call: _Call) -> None:
        assert call.stream is not None
        call.stream.flush()
        try:
            messages = call.stream.receive()
        except EOFError:
            self._end(call, "disconnected", "the hook closed the connection")
            return
        except VarlinkError as exc:
            self._end(call, "error", f"protocol: {exc}")
            return
        if not messages and len(call.stream._inbuf) > MAX_REPLY:
            self._end(call, "error", "protocol: reply too large")
            return
        for message in messages:
            error = message.get("error")
            if error is not None:
                self._end(call, "error", str(error)[:200])
            else:
                self._end(call, "answered")
            return

    # -- the batch -------------------------------------------------------------------
    @property
    def pending(self) -> list[_Call]:
        return [c for c in self.calls if c.result is None]

    def poll(self) -> bool:
        """Advance without waiting; True once every hook answered or the time is up."""
        for call in self.pending:
            if call.stream is None:
                self._connect(call)
            if call.stream is not None and call.result is None:
                self._read(call)
        if self.pending and self.clock() >= self.deadline:
            for call in self.pending:
                self._end(call, "timed-out", f"no answer within {self.timeout_s:g}s")
        return not self.pending

    def fds(self) -> list[int]:
        return [c.stream.fileno() for c in self.pending if c.stream is not None]

    def wake_in(self) -> float | None:
        pending = self.pending
        if not pending:
            return 0.0
        left = max(0.0, self.deadline - self.clock())
        if any(c.stream is None for c in pending):
            return min(left, _CONNECT_RETRY_S)
        return left

    @property
    def results(self) -> tuple[PrekillResult, ...]:
        return tuple(c.result for c in self.calls if c.result is not None)

    def close(self) -> None:
        for call in self.pending:
            self._end(call, "timed-out", "the kill was given up")


class Prekilling:
    """A PendingAction: the hooks first, then the kill `issue` starts."""

    def __init__(self, calls: PrekillCalls, issue: Callable[[], PendingAction],
                 report: Callable[[PrekillCalls], None]) -> None:
        self.calls, self.issue, self.report = calls, issue, report
        self.inner: PendingAction | None = None
        self.closed = False

    @property
    def waiting(self) -> bool:
        """Still calling the hooks: the kill is not issued yet."""
        return self.inner is None and not self.closed

    def step(self) -> ActionOutcome | None:
        if self.inner is None:
            if not self.calls.poll():
                return None
            self.report(self.calls)
            self.inner = self.issue()
        outcome = self.inner.step()
        if outcome is None:
            return None
        return PrekilledOutcome(**{f: getattr(outcome, f) for f in (
            "action", "target", "ok", "method", "pids", "seconds_to_effect",
            "memory_freed_bytes", "error")}, prekill=self.calls.results)

    def fds(self) -> list[int]:
        return self.inner.fds() if self.inner is not None else self.calls.fds()

    def wake_in(self) -> float | None:
        return self.inner.wake_in() if self.inner is not None else self.calls.wake_in()

    def close(self) -> None:
        self.closed = True
        self.calls.close()
        if self.inner is not None:
            self.inner.close()


class PrekillBackend:
    """An ActionBackend whose cgroup kills call the prekill hooks first.

    `timeout_usec()` is read at each kill (oomd.conf is reloaded on SIGHUP); with 0,
    or no hook socket, the kill starts at once as before.
    """

    def __init__(self, inner: ActionBackend, cgroup_of: Callable[[str], str],
                 timeout_usec: Callable[[], int], logger: Any,
                 directory: str = PREKILL_DIR) -> None:
        self.inner = inner
        self.cgroup_of = cgroup_of
        self.timeout_usec = timeout_usec
        self.logger = logger
        self.directory = directory
        self.queued: dict[str, Prekilling] = {}  # kills whose hooks are still running

    def start_kill_cgroup(self, procs_dir: str, **kwargs: Any) -> PendingAction:
        usec = self.timeout_usec()
        if usec <= 0:
            return self.inner.start_kill_cgroup(procs_dir, **kwargs)
        queued = self.queued.get(procs_dir)
        if queued is not None and queued.waiting:
            # As oomd_cgroup_kill_mark(): a cgroup already queued behind its hooks is
            # not queued twice (no second Notify, no second count in the xattrs).
            return Finished(failed("kill", procs_dir, "prekill",
                                   "already queued for a kill behind its prekill hooks"))
        cgroup = self.cgroup_of(procs_dir)
        calls = PrekillCalls(self.directory, cgroup, usec / 1_000_000)
        if not calls.calls:
            return self.inner.start_kill_cgroup(procs_dir, **kwargs)
        self.logger.info("calling prekill hooks", cgroup=cgroup,
                         hooks=",".join(c.name for c in calls.calls),
                         timeout=f"{usec / 1_000_000:g}s", left_out=calls.left_out or None)
        pending = Prekilling(calls, lambda: self.inner.start_kill_cgroup(procs_dir, **kwargs),
                             self._report)
        self.queued = {d: p for d, p in self.queued.items() if p.waiting}
        self.queued[procs_dir] = pending
        return pending

    def _report(self, calls: PrekillCalls) -> None:
        for result in calls.results:
            log = self.logger.info if result.outcome == "answered" else self.logger.warning
            log("prekill hook", cgroup=calls.cgroup, socket=result.socket,
                outcome=result.outcome, detail=result.detail,
                seconds=f"{result.seconds:.3f}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
