"""The loop never blocks on an action: while a "before" hook takes its whole timeout,
the sd_notify watchdog keeps beating at its interval and another policy keeps acting
(a daemon run in-process on a captured tree, with a recording backend: nothing is
signalled)."""

from __future__ import annotations

import io
import itertools
import json
import shutil
import socket
import threading
import time

from zoomd.actions.backend import RecordingBackend
from zoomd.daemon.log import Logger
from zoomd.daemon.loop import Daemon
from zoomd.kernel.root import Root

HOOK_TIMEOUT_S = 2.0
WATCHDOG_USEC = 200_000  # pings every 0.1 s

CONFIG = f'''
[daemon]
interval = "50ms"
fast_interval = "50ms"
log_format = "json"
mlock = false
[systemd]
managed_oom = false
dbus = false
[[policy]]
name = "slow"
monitor = "/system.slice"
window = "200ms"
for = "0s"
post_action_delay = "300ms"  # shorter than the hook: the action in flight holds it back
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
[[hook]]
name = "stuck"
when = "before"
command = ["/usr/bin/sleep", "30"]
timeout = "{HOOK_TIMEOUT_S:g}s"
policies = ["slow"]
'''


class Beats:
    """Arrival times of WATCHDOG=1 on a notify socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.times: list[float] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            if data == b"WATCHDOG=1":
                self.times.append(time.monotonic())

    def close(self) -> None:
        self._stop = True
        self.thread.join(5)
        self.sock.close()


def test_watchdog_and_other_policies_go_on_while_a_before_hook_times_out(
        tree_path, tmp_path, monkeypatch) -> None:
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
                    logger=Logger("json", "debug", stream))
    started = time.monotonic()
    try:
        assert daemon.run() == 0
    finally:
        beats.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    records = [x for x in lines if "summary" in x and "result" in x]
    slow = [r for r in records if r["policy"] == "slow"]
    # The slow policy decided, waited out its hook, then acted; its record says so. It
    # did not decide again while that action was in flight (its post_action_delay is
    # shorter than the hook), only once it was over; the second is finished at exit.
    decided = [x for x in lines if x.get("message") == "action in flight"]
    assert [x["policy"] for x in decided] == ["slow", "slow"], decided
    assert len(slow) == 2, [r["policy"] for r in records]
    for record in slow:
        assert record["hooks"][0]["name"] == "stuck" and record["hooks"][0]["timed_out"]
        assert record["hooks"][0]["seconds"] >= HOOK_TIMEOUT_S - 0.05
        assert record["result"]["ok"] and record["victim"] == "/system.slice/sshd.service"
    slow_kill = [t for t, target in calls if target.endswith("/sshd.service")]
    assert len(slow_kill) == 2 and slow_kill[1] - slow_kill[0] >= HOOK_TIMEOUT_S
    # Meanwhile the other policy kept acting, every post_action_delay.
    during = [t for t, target in calls if "/user.slice/" in target and t < slow_kill[0]]
    assert len(during) >= 3, calls
    busy = [r for r in records if r["policy"] == "busy"]
    assert len(busy) >= len(during) and all(r["result"]["ok"] for r in busy)
    # ... and the watchdog kept beating at its interval (0.1 s), hook or no hook.
    interval = WATCHDOG_USEC / 2e6
    in_run = [t for t in beats.times if t >= started]
    gaps = [b - a for a, b in itertools.pairwise(in_run)]
    assert len(in_run) >= 3.0 / interval * 0.8, len(in_run)
    assert max(gaps) < interval + 0.15, max(gaps)
    assert in_run[0] < slow_kill[0] - HOOK_TIMEOUT_S + 0.5 and in_run[-1] > slow_kill[0]
