#!/usr/bin/env python3
"""Container entrypoint for zoomd: a minimal systemd stand-in for one service.

    entrypoint.py [ZOOMD ARGS...]     run `zoomd ZOOMD ARGS...` (default: `zoomd run`)
    entrypoint.py --probe [SECONDS]   liveness: exit 0 if zoomd reported within SECONDS

zoomd speaks sd_notify: READY=1 once its policies are armed, then WATCHDOG=1 from
its loop every half of $WATCHDOG_USEC. Outside systemd nobody listens, so this
entrypoint binds $NOTIFY_SOCKET itself, touches $ZOOMD_STATE_DIR/alive on every
READY=1 / WATCHDOG=1, and the liveness probe (`--probe`) checks how old that file is:
a wedged loop stops the heartbeat and the kubelet restarts the container. SIGTERM,
SIGINT and SIGHUP (reload) are passed on to zoomd; the exit status is zoomd's.
Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

STATE_DIR = os.environ.get("ZOOMD_STATE_DIR", "/run/zoomd")
WATCHDOG_SECONDS = float(os.environ.get("ZOOMD_WATCHDOG_SECONDS", "20"))
ZOOMD = os.environ.get("ZOOMD_BIN", "zoomd")


def alive_path() -> str:
    return os.path.join(STATE_DIR, "alive")


def probe(max_age: float) -> int:
    try:
        age = time.time() - os.stat(alive_path()).st_mtime
    except FileNotFoundError:
        print("zoomd has not reported READY=1 yet", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"zoomd's last heartbeat was {age:.0f}s ago (limit {max_age:g}s)",
              file=sys.stderr)
        return 1
    print(f"zoomd alive: last heartbeat {age:.1f}s ago")
    return 0


def touch(path: str) -> None:
    with open(path, "a"):
        pass
    os.utime(path)


def run(args: list[str]) -> int:
    os.makedirs(STATE_DIR, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(alive_path())
    address = os.path.join(STATE_DIR, "notify")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.bind(address)
    sock.settimeout(1.0)
    # The supervisor must outlive what it supervises (as zoomd does; needs
    # CAP_SYS_RESOURCE, which the pod grants; without it, carry on).
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as handle:
        handle.write("-1000")
    env = dict(os.environ, NOTIFY_SOCKET=address,
               WATCHDOG_USEC=str(int(WATCHDOG_SECONDS * 1_000_000)))
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen([ZOOMD, *(args or ["run"])], env=env)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    while child.poll() is None:
        try:
            message = sock.recv(4096).decode(errors="replace")
        except (TimeoutError, InterruptedError):
            continue
        fields = set(message.split("\n"))
        if "READY=1" in fields or "WATCHDOG=1" in fields:
            touch(alive_path())
    sock.close()
    code = child.returncode
    return 128 - code if code < 0 else code


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"]:
        return probe(float(argv[1]) if len(argv) > 1 else 3 * WATCHDOG_SECONDS)
    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
