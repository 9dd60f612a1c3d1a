"""The real kernel: a cgroup announced by a fake PID 1 over varlink as
ManagedOOMMemoryPressure=kill (limit 20%, duration 2 s) thrashes through zram in the
lab; zoomd, subscribed to that socket, kills the thrashing child and marks it with
user.oomd_ooms / user.oomd_kill as systemd-oomd would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from realkernel import require_real_kernel

from zoomd.systemd.values import permyriad_to_uint32_scale

pytestmark = pytest.mark.realkernel

CONFIG = """
[daemon]
interval = "250ms"
fast_interval = "250ms"
log_format = "json"
[systemd]
mode = "strict"
dbus = false
oomd_conf = false
"""
LIMIT = 512 << 20


class FakePid1(threading.Thread):
    """Answers one subscription with the lab group, then holds the link open."""

    def __init__(self, path: str, cgroup: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(30)
        self.cgroup = cgroup
        self.request: dict | None = None
        self.conn: socket.socket | None = None

    def run(self) -> None:
        conn, _ = self.sock.accept()
        self.conn = conn
        buf = b""
        while not buf.endswith(b"\0"):
            buf += conn.recv(4096)
        self.request = json.loads(buf[:-1])
        reply = {"parameters": {"cgroups": [{
            "mode": "kill", "path": self.cgroup, "property": "ManagedOOMMemoryPressure",
            "limit": permyriad_to_uint32_scale(2000), "duration": 2_000_000}]},
            "continues": True}
        conn.sendall(json.dumps(reply).encode() + b"\0")


def xattr(path: str, name: str) -> str | None:
    try:
        return os.getxattr(path, name).decode()
    except OSError:
        return None


def test_managed_cgroup_thrashing_in_the_lab_is_killed_and_marked(tmp_path) -> None:
    require_real_kernel()
    from zoomdlab.lab.cgroups import LabCgroups
    from zoomdlab.lab.lock import lab_lock
    from zoomdlab.lab.swap import zram_swap

    config = tmp_path / "zoomd.toml"
    config.write_text(CONFIG)
    sock_path = str(tmp_path / "io.systemd.ManagedOOM")
    log_path = tmp_path / "daemon.log"
    with lab_lock(), zram_swap(2 << 30), LabCgroups() as lab:
        workload = lab.child("workload", LIMIT)
        pid1 = FakePid1(sock_path, lab.v2_rel)
        pid1.start()
        with open(log_path, "w") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "zoomd", "run", "--config", str(config),
                 "--managed-oom-socket", sock_path, "--duration", "90"],
                stderr=log, stdout=subprocess.DEVNULL)
        try:
            pid1.join(timeout=30)
            assert pid1.request == {"method": "io.systemd.ManagedOOM.SubscribeManagedOOMCGroups",
                                    "parameters": {}, "more": True}
            started = time.monotonic()
            thrash = lab.start(workload, [sys.executable, "-m", "zoomdlab.lab.workload", "thrash",
                                          "--size", str(int(LIMIT * 2.5)), "--duration", "60"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rc = thrash.wait(timeout=75)
            elapsed = time.monotonic() - started
        finally:
            daemon.terminate()
            daemon.wait(timeout=20)
            if pid1.conn is not None:
                pid1.conn.close()
            pid1.sock.close()
        text = log_path.read_text()
        print(text)
        records = [r for r in (json.loads(line) for line in text.splitlines()
                               if line.startswith("{")) if r.get("level") == "notice"
                   and "victim" in r]  # records, not log lines such as "action in flight"
        kills = [r for r in records if r["action"] == "kill" and not r["dry_run"]]
        assert rc == -9, f"thrash exited {rc} after {elapsed:.1f}s, not killed"
        assert kills and kills[0]["policy"] == f"systemd-pressure:{lab.v2_rel}"
        assert kills[0]["victim"] == workload.v2_rel
        assert kills[0]["result"]["ok"] is True
        assert elapsed < 60
        print(f"killed {elapsed:.1f}s after the thrash started; "
              f"record: {json.dumps(kills[0]['trigger']['figures'])}")
        # What PID 1 reads to log the kill and set Result=oom-kill.
        assert xattr(workload.v2_path, "user.oomd_ooms") == "1"
        killed = xattr(workload.v2_path, "user.oomd_kill")
        assert killed is not None and int(killed) >= 1
        assert '"guarding a ManagedOOM cgroup"' in text
