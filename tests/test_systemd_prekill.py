"""systemd v260's prekill hooks: the Notify call on the wire, answers, errors, stale
sockets and timeouts, the kill after them, and a hook that never answers not holding
the daemon's loop (real unix socket servers in threads)."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import os
import shutil
import socket
import threading
import time

import pytest

from zoomd.actions.backend import RecordingBackend
from zoomd.daemon.log import Logger
from zoomd.daemon.loop import Daemon
from zoomd.kernel.root import Root
from zoomd.systemd.oomdconf import OomdConf, parse_text
from zoomd.systemd.prekill import METHOD, PrekillBackend, PrekillCalls, hook_sockets

# What systemd-oomd v260 sends (sd_varlink_invoke() of io.systemd.oom.Prekill.Notify
# with {"cgroup": ctx->path}, src/oom/oomd-util.c) and what a hook built on sd-varlink
# answers (sd_varlink_reply(link, NULL)): JSON without whitespace, NUL-terminated.
RECORDED_V260_CALL = (b'{"method":"io.systemd.oom.Prekill.Notify",'
                      b'"parameters":{"cgroup":"/system.slice/hog.service"}}\0')
RECORDED_V260_REPLY = b'{"parameters":{}}\0'
RECORDED_V260_ERROR = b'{"error":"io.systemd.System","parameters":{"errno":5}}\0'


class Hook:
    """A hook socket served by a thread: `answer(message) -> bytes | None` (None: never
    answer, keep the connection open)."""

    def __init__(self, path: str, answer) -> None:  # type: ignore[no-untyped-def]
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.answer = answer
        self.received: list[bytes] = []
        self.held: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            data = b""
            conn.settimeout(2)
            with_error = False
            while not data.endswith(b"\0"):
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    with_error = True
                    break
                if not chunk:
                    break
                data += chunk
            self.received.append(data)
            reply = None if with_error else self.answer(json.loads(data[:-1] or b"{}"))
            if reply is None:
                self.held.append(conn)  # never answers; closed at the end
            else:
                conn.sendall(reply)
                conn.close()

    def close(self) -> None:
        self._stop = True
        self.thread.join(5)
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def hookdir(tmp_path):
    directory = tmp_path / "oomd.prekill.hook"
    directory.mkdir()
    hooks: list[Hook] = []

    def add(name: str, answer) -> Hook:  # type: ignore[no-untyped-def]
        hook = Hook(str(directory / name), answer)
        hooks.append(hook)
        return hook

    yield directory, add
    for hook in hooks:
        hook.close()


def drive(calls: PrekillCalls, limit: float = 10.0) -> float:
    """Poll as the loop does (sleeping on its descriptors / wake time); seconds taken."""
    import select

    started = time.monotonic()
    while not calls.poll():
        assert time.monotonic() - started < limit
        poller = select.poll()
        for fd in calls.fds():
            poller.register(fd, select.POLLIN)
        wake = calls.wake_in()
        poller.poll(max(1, int((wake or 0) * 1000)))
    return time.monotonic() - started


def test_notify_is_sent_in_systemds_wire_format_and_an_answer_ends_the_wait(hookdir) -> None:
    directory, add = hookdir
    hook = add("dump.sock", lambda _m: RECORDED_V260_REPLY)
    calls = PrekillCalls(str(directory), "/system.slice/hog.service", 5.0)
    took = drive(calls)
    assert hook.received == [RECORDED_V260_CALL]
    assert json.loads(RECORDED_V260_CALL[:-1])["method"] == METHOD
    (result,) = calls.results
    assert (result.socket, result.outcome, result.detail) == ("dump.sock", "answered", None)
    assert took < 2.0  # as soon as all answered, not at the timeout


def test_errors_stale_sockets_and_timeouts_each_say_what_happened(hookdir) -> None:
    directory, add = hookdir
    add("a-error.sock", lambda _m: RECORDED_V260_ERROR)
    add("b-silent.sock", lambda _m: None)
    add("c-hangup.sock", lambda _m: b"")  # closes without a reply
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(directory / "d-stale.sock"))
    stale.close()  # a socket file nobody listens on: systemd skips it as stale
    (directory / "e-not-a-socket").write_text("")
    os.symlink(str(directory / "a-error.sock"), str(directory / "f-link.sock"))
    calls = PrekillCalls(str(directory), "/system.slice/hog.service", 1.0)
    took = drive(calls)
    outcomes = {r.socket: (r.outcome, r.detail) for r in calls.results}
    assert set(outcomes) == {"a-error.sock", "b-silent.sock", "c-hangup.sock",
                             "d-stale.sock"}  # not the plain file, not the symlink
    assert outcomes["a-error.sock"] == ("error", "io.systemd.System")
    assert outcomes["b-silent.sock"][0] == "timed-out"
    assert outcomes["c-hangup.sock"][0] == "disconnected"
    assert outcomes["d-stale.sock"][0] == "not-connectible"
    assert 0.95 <= took < 2.0  # one global deadline, not one per hook


def test_missing_directory_is_no_hooks(tmp_path) -> None:
    assert hook_sockets(str(tmp_path / "absent")) == ([], 0)


def test_prekill_timeout_is_read_from_oomd_conf() -> None:
    assert OomdConf().prekill_timeout_usec == 0  # systemd's default: no hooks
    conf = parse_text("[OOM]\nPrekillHookTimeoutSec=5s\n", "a", OomdConf())
    assert conf.prekill_timeout_usec == 5_000_000 and not conf.warnings
    conf = parse_text("[OOM]\nPrekillHookTimeoutSec=1min 15s\n", "a", conf)
    assert conf.prekill_timeout_usec == 75_000_000
    kept = parse_text("[OOM]\nPrekillHookTimeoutSec=soon\n", "b", conf)
    assert kept.prekill_timeout_usec == 75_000_000
    assert kept.warnings and kept.warnings[0].startswith("b:2: PrekillHookTimeoutSec=soon")
    capped = parse_text("[OOM]\nPrekillHookTimeoutSec=infinity\n", "c", OomdConf())
    assert capped.prekill_timeout_usec == 120_000_000 and "using 120s" in capped.warnings[0]
    off = parse_text("[OOM]\nPrekillHookTimeoutSec=0\n", "d", conf)
    assert off.prekill_timeout_usec == 0


def test_the_kill_waits_for_the_hooks_then_goes_ahead_and_the_record_says(
        hookdir, tmp_path) -> None:
    directory, add = hookdir
    add("ok.sock", lambda _m: RECORDED_V260_REPLY)
    add("stuck.sock", lambda _m: None)
    group = tmp_path / "cg" / "hog.service"
    group.mkdir(parents=True)
    inner = RecordingBackend()
    lines = io.StringIO()
    backend = PrekillBackend(inner, lambda d: "/" + os.path.relpath(d, tmp_path / "cg"),
                             lambda: 1_000_000, Logger("json", "debug", lines),
                             directory=str(directory))
    pending = backend.start_kill_cgroup(str(group), usage_file=None)
    assert inner.calls == []  # nothing killed while the hooks have time
    started = time.monotonic()
    while (outcome := pending.step()) is None:
        assert time.monotonic() - started < 5
        time.sleep(0.02)
    assert time.monotonic() - started >= 0.9
    assert [c.target for c in inner.calls] == [str(group)]
    assert outcome.ok
    hooks = outcome.to_json()["prekill_hooks"]
    assert [(h["socket"], h["outcome"]) for h in hooks] == [("ok.sock", "answered"),
                                                            ("stuck.sock", "timed-out")]
    logged = [json.loads(x) for x in lines.getvalue().splitlines()]
    assert any(x.get("message") == "calling prekill hooks"
               and x.get("cgroup") == "/hog.service" for x in logged)


def test_no_timeout_or_no_socket_kills_at_once(hookdir, tmp_path) -> None:
    directory, add = hookdir
    inner = RecordingBackend()
    logger = Logger(stream=io.StringIO())
    off = PrekillBackend(inner, str, lambda: 0, logger, directory=str(directory))
    add("h.sock", lambda _m: None)
    assert off.start_kill_cgroup("/x").step() is not None  # timeout 0: hooks not called
    empty = tmp_path / "empty"
    empty.mkdir()
    none = PrekillBackend(inner, str, lambda: 5_000_000, logger, directory=str(empty))
    assert none.start_kill_cgroup("/y").step() is not None
    assert [c.target for c in inner.calls] == ["/x", "/y"]


# -- the daemon's loop: a hook taking its whole timeout holds nothing -----------------

HOOK_TIMEOUT_S = 2.0
WATCHDOG_USEC = 200_000

CONFIG = '''
[daemon]
interval = "50ms"
fast_interval = "50ms"
log_format = "json"
mlock = false
[[policy]]
name = "slow"
monitor = "/system.slice"
window = "200ms"
for = "0s"
post_action_delay = "300ms"
[policy.all]
effective_available_below = "100%"
[[policy]]
name = "busy"
monitor = "/user.slice"
window = "200ms"
for = "0s"
post_action_delay = "300ms"
[policy.all]
effective_available_below = "100%"
'''


def test_a_hook_that_never_answers_does_not_hold_the_loop(
        tree_path, tmp_path, hookdir, monkeypatch) -> None:
    from test_loop_inflight import Beats

    directory, add = hookdir
    # Answers at once for the user's groups, never for system.slice's.
    hook = add("hook.sock", lambda m: None if m["parameters"]["cgroup"].startswith(
        "/system.slice/") else RECORDED_V260_REPLY)
    tree = tmp_path / "tree"
    shutil.copytree(tree_path("cgroup2-pure"), tree)
    cfg = tmp_path / "zoomd.toml"
    cfg.write_text(CONFIG)
    beats = Beats(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    stream = io.StringIO()
    backend = RecordingBackend()
    calls: list[tuple[float, str]] = []
    backend.outcomes["kill"] = lambda call: (
        calls.append((time.monotonic(), call.target)),
        RecordingBackend()._answer(call))[1]
    daemon = Daemon(str(cfg), root=Root(str(tree)), backend=backend, duration=3.5,
                    logger=Logger("json", "debug", stream),
                    systemd={"managed_oom": True, "system_socket": str(tmp_path / "none"),
                             "user_socket": "", "oomd_conf": False, "dbus": False})
    (integration,) = [e for e in daemon.extensions if hasattr(e, "managed")]
    integration.conf = dataclasses.replace(integration.conf,
                                           prekill_timeout_usec=int(HOOK_TIMEOUT_S * 1e6))
    integration.backend.directory = str(directory)
    started = time.monotonic()
    try:
        assert daemon.run() == 0
    finally:
        beats.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    records = [x for x in lines if "summary" in x and "result" in x]
    slow = [r for r in records if r["policy"] == "slow"]
    assert slow, [r["policy"] for r in records]
    for record in slow:
        (hooked,) = record["result"]["prekill_hooks"]
        assert hooked["socket"] == "hook.sock" and hooked["outcome"] == "timed-out"
        assert hooked["seconds"] >= HOOK_TIMEOUT_S - 0.05
    slow_kill = [t for t, target in calls if "/system.slice/" in target]
    assert slow_kill and slow_kill[0] - started >= HOOK_TIMEOUT_S
    # Meanwhile the other policy kept deciding and killing (its hook answers at once).
    during = [t for t, target in calls if "/user.slice/" in target and t < slow_kill[0]]
    assert len(during) >= 3, calls
    busy = [r for r in records if r["policy"] == "busy"]
    assert all(r["result"]["prekill_hooks"][0]["outcome"] == "answered" for r in busy)
    sent = [json.loads(m[:-1]) for m in hook.received]
    assert {m["method"] for m in sent} == {METHOD}
    # ... and the watchdog kept beating at its interval.
    interval = WATCHDOG_USEC / 2e6
    in_run = [t for t in beats.times if t >= started]
    gaps = [b - a for a, b in itertools.pairwise(in_run)]
    assert len(in_run) >= 3.0 / interval * 0.8, len(in_run)
    assert max(gaps) < interval + 0.15, max(gaps)



def test_hooks_run_before_the_cgroup_kill_write_and_the_xattrs(hookdir, tmp_path) -> None:
    """The integration's stack over the real effectors: hooks, then user.oomd_ooms and
    the write of cgroup.kill (as systemd-oomd since PR #42373), then user.oomd_kill."""
    import subprocess

    from zoomd.actions.backend import CgroupfsBackend
    from zoomd.systemd.xattrs import KILL, OOMS, ReportingBackend, read_counter

    directory, add = hookdir
    group = tmp_path / "cg" / "hog.service"
    group.mkdir(parents=True)
    (group / "cgroup.kill").write_text("")
    child = subprocess.Popen(["sleep", "60"])
    (group / "cgroup.procs").write_text(f"{child.pid}\n")
    try:
        os.setxattr(str(group), "user.zoomd_test", b"1")
    except OSError:
        pytest.skip("no user xattrs on the test filesystem")
    seen_at_notify: list[tuple[str, int]] = []

    def answer(_message):  # type: ignore[no-untyped-def]
        seen_at_notify.append(((group / "cgroup.kill").read_text(),
                               read_counter(str(group), OOMS)))
        return RECORDED_V260_REPLY

    add("h.sock", answer)
    reporting = ReportingBackend(CgroupfsBackend(), lambda d: "/hog.service")
    backend = PrekillBackend(reporting, lambda d: "/hog.service", lambda: 2_000_000,
                             Logger(stream=io.StringIO()), directory=str(directory))
    try:
        pending = backend.start_kill_cgroup(str(group), timeout_s=1.0)
        started = time.monotonic()
        while (outcome := pending.step()) is None:
            assert time.monotonic() - started < 10
            time.sleep(0.02)
        pending.close()
        assert child.wait(timeout=5) == -9  # the fake cgroup.kill did nothing: pidfd did
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert seen_at_notify == [("", 0)]  # the hook heard first
    assert (group / "cgroup.kill").read_text() == "1"
    assert outcome.method == "cgroup.kill" and child.pid in outcome.pids
    assert read_counter(str(group), OOMS) == 1 and read_counter(str(group), KILL) == 1
    assert outcome.to_json()["prekill_hooks"][0]["outcome"] == "answered"


def test_an_answer_before_a_reset_still_counts(tmp_path) -> None:
    """A hook that answers and closes without reading the call: the kernel resets the
    connection (ECONNRESET) after delivering the answer, which is kept (found by
    tests/test_fuzz_systemd_protocol.py)."""
    directory = tmp_path / "hooks"
    directory.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(directory / "rude.sock"))
    listener.listen(1)
    try:
        calls = PrekillCalls(str(directory), "/x.service", 2.0)
        conn, _ = listener.accept()
        conn.sendall(RECORDED_V260_REPLY)
        conn.close()  # the call is still unread
        drive(calls)
    finally:
        listener.close()
    assert [(r.outcome, r.detail) for r in calls.results] == [("answered", None)]


def test_a_cgroup_queued_behind_its_hooks_is_not_queued_twice(hookdir) -> None:
    directory, add = hookdir
    hook = add("slow.sock", lambda _m: None)
    inner = RecordingBackend()
    backend = PrekillBackend(inner, lambda d: d, lambda: 300_000,
                             Logger(stream=io.StringIO()), directory=str(directory))
    first = backend.start_kill_cgroup("/sys/fs/cgroup/a.service")
    second = backend.start_kill_cgroup("/sys/fs/cgroup/a.service")
    other = backend.start_kill_cgroup("/sys/fs/cgroup/b.service")
    refused = second.step()
    assert refused is not None and not refused.ok and "already queued" in refused.error
    started = time.monotonic()
    while first.step() is None or other.step() is None:
        assert time.monotonic() - started < 5
        time.sleep(0.02)
    assert sorted(c.target for c in inner.calls) == ["/sys/fs/cgroup/a.service",
                                                     "/sys/fs/cgroup/b.service"]
    time.sleep(0.1)
    assert len(hook.received) == 2  # one Notify per cgroup
    third = backend.start_kill_cgroup("/sys/fs/cgroup/a.service")  # over: queued again
    assert isinstance(third, type(first))
    third.close()  # given up (shutdown): no longer holds the cgroup
    fourth = backend.start_kill_cgroup("/sys/fs/cgroup/a.service")
    assert isinstance(fourth, type(first))
    fourth.close()
