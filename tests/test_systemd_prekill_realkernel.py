"""The real kernel: a kill through the systemd integration's backend stack (prekill
hooks, then user.oomd_ooms, cgroup.kill, user.oomd_kill) on a lab cgroup. The hook is
told while the group's processes are still alive; then cgroup.kill (not pidfds)
ends them, as systemd-oomd kills since systemd PR #42373."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time

import pytest
from realkernel import require_real_kernel

from zoomd.actions.backend import CgroupfsBackend
from zoomd.daemon.log import Logger
from zoomd.systemd.prekill import PrekillBackend
from zoomd.systemd.xattrs import KILL, OOMS, ReportingBackend, read_counter

pytestmark = pytest.mark.realkernel


def test_prekill_hook_then_cgroup_kill_on_a_real_cgroup(tmp_path) -> None:
    require_real_kernel(need_zram=False)
    from zoomdlab.lab.cgroups import LabCgroups
    from zoomdlab.lab.lock import lab_lock

    hooks = tmp_path / "oomd.prekill.hook"
    hooks.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(hooks / "probe.sock"))
    listener.listen(1)
    listener.settimeout(10)
    heard: list[tuple[dict, list[int]]] = []

    with lab_lock(), LabCgroups() as lab:
        group = lab.child("victim")
        procs = [lab.start(group, ["sleep", "60"]) for _ in range(3)]

        def serve() -> None:
            conn, _ = listener.accept()
            buf = b""
            while not buf.endswith(b"\0"):
                buf += conn.recv(4096)
            alive = [p.pid for p in procs if p.poll() is None]
            heard.append((json.loads(buf[:-1]), alive))
            conn.sendall(b'{"parameters":{}}\0')
            conn.close()

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        reporting = ReportingBackend(CgroupfsBackend(), lambda d: group.v2_rel)
        backend = PrekillBackend(reporting, lambda d: group.v2_rel, lambda: 5_000_000,
                                 Logger(stream=io.StringIO()), directory=str(hooks))
        started = time.monotonic()
        pending = backend.start_kill_cgroup(group.v2_path)
        while (outcome := pending.step()) is None:
            assert time.monotonic() - started < 15
            time.sleep(0.01)
        pending.close()
        server.join(5)
        listener.close()
        codes = [p.wait(timeout=5) for p in procs]
        assert heard and heard[0][0] == {"method": "io.systemd.oom.Prekill.Notify",
                                         "parameters": {"cgroup": group.v2_rel}}
        assert len(heard[0][1]) == 3  # all alive when the hook was told
        # The shells of lab.start exec'd sleep: these are the killed processes.
        assert all(code == -9 for code in codes), codes
        assert outcome.ok and outcome.method == "cgroup.kill" and outcome.error is None
        assert sorted(outcome.pids) == sorted(p.pid for p in procs)
        assert outcome.to_json()["prekill_hooks"][0]["outcome"] == "answered"
        assert read_counter(group.v2_path, OOMS) == 1
        assert read_counter(group.v2_path, KILL) == 3
        print(f"hook answered, then cgroup.kill: {outcome.seconds_to_effect:.3f}s to empty;"
              f" {os.path.basename(group.v2_path)}")
