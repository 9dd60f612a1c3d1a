"""The daemon process: start-up, sd_notify, SIGHUP reload (bad config kept out), SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

POLICY = """
[daemon]
interval = "200ms"
log_format = "json"
[[policy]]
name = "{name}"
monitor = "/"
[policy.all]
memory_pressure_full_above = "99%"
"""


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()


def start(config: str, env_extra: dict[str, str], log) -> subprocess.Popen:
    env = dict(os.environ, **env_extra)
    return subprocess.Popen([sys.executable, "-m", "zoomd", "run", "--dry-run", "--config",
                             config], stderr=log, stdout=subprocess.DEVNULL, env=env)


def test_ready_watchdog_reload_and_clean_exit(tmp_path, notify_socket) -> None:
    path, sock = notify_socket
    config = write(tmp_path / "z.toml", POLICY.format(name="first"))
    log_path = tmp_path / "log"
    with open(log_path, "w") as log:
        proc = start(config, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}, log)
        try:
            ready = sock.recv(4096).decode()
            assert ready.startswith("READY=1\nSTATUS=watching: first (dry-run)")
            assert sock.recv(4096) == b"WATCHDOG=1"
            # A broken configuration on SIGHUP is reported and the old one kept.
            write(tmp_path / "z.toml", "[daemon\n")
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload failed" in log_path.read_text())
            assert proc.poll() is None
            write(tmp_path / "z.toml", POLICY.format(name="second"))
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "configuration reloaded" in log_path.read_text())
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log_path.read_text()
    assert "not valid TOML" in text
    assert "zoomd stopped" in text
    assert "Traceback" not in text


def test_bad_config_at_start_exits_2_without_traceback(tmp_path) -> None:
    config = write(tmp_path / "z.toml", POLICY.format(name="x").replace("99%", "lots"))
    proc = subprocess.run([sys.executable, "-m", "zoomd", "run", "--dry-run", "--config",
                           config, "--duration", "1"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 2
    assert "policy[0](x).all.memory_pressure_full_above" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_monitored_cgroup_is_reported(tmp_path) -> None:
    config = write(tmp_path / "z.toml", POLICY.format(name="x").replace(
        'monitor = "/"', 'monitor = "/no-such-group-here"'))
    proc = subprocess.run([sys.executable, "-m", "zoomd", "run", "--dry-run", "--config",
                           config, "--duration", "1"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 2
    assert "no-such-group-here: monitored cgroup does not exist" in proc.stderr


def test_duration_run_ticks_and_stops(tmp_path) -> None:
    config = write(tmp_path / "z.toml", POLICY.format(name="x"))
    start_t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "zoomd", "run", "--dry-run", "--config",
                           config, "--duration", "1.5"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start_t < 15
    assert '"zoomd stopped"' in proc.stderr
