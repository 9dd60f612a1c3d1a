"""Fault injection on fake cgroup trees: every fault is one test, and in each the daemon
keeps working (no exception escapes a tick, the other groups and policies go on).

Where a real backend acts, the fake groups list only `sleep` children this test
started, so the only processes that can ever be signalled are the test's own.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator

import pytest
from builders import GiB, meminfo, snapshot, zram_swap
from fakecgroupfs import FakeHost

from zoomd.actions import kill as kill_mod
from zoomd.actions.backend import CgroupfsBackend, RecordingBackend
from zoomd.actions.kill import kill_cgroup
from zoomd.config.runtime import Config, Policy
from zoomd.config.schema import validate
from zoomd.daemon import psitrigger
from zoomd.daemon.candidates import Exclusions, collect
from zoomd.daemon.engine import Engine
from zoomd.daemon.log import Logger
from zoomd.errors import KernelFileError
from zoomd.kernel import hotfile
from zoomd.kernel import root as root_mod
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root
from zoomd.model.reclaim import ModelParams, estimate


def validate_policy(**keys) -> Policy:
    """A policy as zoomd.toml would give it: tables as dicts, values as written."""
    return validate(keys, Policy)


MiB = 1 << 20


class Children:
    """`sleep 60` processes of this test; cleanup kills only these."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "60"])
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=5)


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.cleanup()


def policy_config(**overrides) -> Config:
    policy = {"name": "stuck", "monitor": "/", "window": "1s", "for": "0s",
              "rank": ["memory"], "post_action_delay": "1h",
              "all": {"memory_pressure_full_above": "40%"}}
    policy.update(overrides)
    return validate({"policy": [policy]})


def lab(base: str, pids: dict[str, list[int]] | None = None) -> FakeHost:
    pids = pids or {}
    h = FakeHost(base)
    h.add("/lab", pids=[])
    h.add("/lab/big", pids=pids.get("big", [300]), current=900 * MiB)
    h.add("/lab/mid", pids=pids.get("mid", [301]), current=500 * MiB)
    h.add("/lab/small", pids=pids.get("small", [302]), current=100 * MiB)
    return h


def host_snapshot(t: float):
    zram = zram_swap(2 * GiB, 1 * GiB, orig=1 * GiB, mem_used=512 * MiB)
    mem = meminfo(24 * GiB, 20 * GiB, anon=2 * GiB, file=1 * GiB, swap_total=2 * GiB,
                  swap_free=1 * GiB)
    return snapshot(mem, (zram,), vm={"pgscan_anon": int(t * 1000)}, t=t)


class Stalling:
    """Drives an engine over a fake host whose /lab stalls 60% of the time."""

    def __init__(self, h: FakeHost, engine: Engine) -> None:
        self.h, self.engine, self.t = h, engine, 0.0

    def run(self, seconds: float, step: float = 0.25) -> list[dict]:
        out = []
        end = self.t + seconds
        while self.t < end - 1e-9:
            self.t += step
            for g in self.h.groups.values():
                g.full_us += int(0.6 * step * 1e6)
                g.some_us += int(0.6 * step * 1e6)
            self.h.write()
            snap = host_snapshot(self.t)
            out += [r.to_json() for r in self.engine.tick(snap, estimate(snap, None,
                                                                          ModelParams()))]
        return out


def make_engine(h: FakeHost, backend, cfg: Config | None = None, scope: str = "/lab"):
    stream = io.StringIO()
    engine = Engine(cfg or policy_config(), CgroupReader(Root(h.base)), backend,
                    Logger("json", "debug", stream), scope=scope, vital_groups=("/",))
    return engine, stream


def logged(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# -- a cgroup vanishes between listing and reading ---------------------------------------
@pytest.mark.parametrize("at", ["cgroup.procs", "memory.current"])
def test_candidate_vanishes_between_listing_and_reading(tmp_path, monkeypatch, at) -> None:
    # Listed a moment ago; removed (the service stopped) when its `at` file is read.
    h = lab(str(tmp_path))
    big = h.dir("/lab/big")
    real_open = root_mod._open

    def open_then_gone(path, *args, **kwargs):
        if str(path) == f"{big}/{at}":
            shutil.rmtree(big, ignore_errors=True)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(root_mod, "_open", open_then_gone)
    found, skipped = collect(CgroupReader(Root(h.base)),
                             validate_policy(name="p", all={"reclaim_activity": True}), "/lab",
                             Exclusions((), ()))
    assert skipped == {"/lab/big": "vanished"}
    assert [c.path for c in found] == ["/lab/mid", "/lab/small"]


def test_candidate_files_vanish_after_open(tmp_path, monkeypatch) -> None:
    # Reading a cgroup file after its rmdir gives ENODEV (and /proc/PID files of an
    # exited process ESRCH): absent, not an error that stops the whole tick.
    h = lab(str(tmp_path))
    gone = h.dir("/lab/mid")
    real_open = root_mod._open

    def racing_open(path, *args, **kwargs):
        if str(path).startswith(gone + "/memory."):
            shutil.rmtree(gone, ignore_errors=True)
            raise OSError(errno.ENODEV, "No such device", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(root_mod, "_open", racing_open)
    found, skipped = collect(CgroupReader(Root(h.base)),
                             validate_policy(name="p", all={"reclaim_activity": True}), "/lab",
                             Exclusions((), ()))
    assert skipped == {"/lab/mid": "vanished"}
    assert [c.path for c in found] == ["/lab/big", "/lab/small"]


# -- permission denied on one cgroup ------------------------------------------------------
def test_permission_denied_on_one_candidate_skips_only_that_one(tmp_path, monkeypatch) -> None:
    h = lab(str(tmp_path))
    denied = h.dir("/lab/big") + "/memory.current"
    real_open = root_mod._open

    def no_access(path, *args, **kwargs):
        if str(path) == denied:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(root_mod, "_open", no_access)
    backend = RecordingBackend()
    engine, _ = make_engine(h, backend)
    records = Stalling(h, engine).run(3.0)
    assert [r["victim"] for r in records] == ["/lab/mid"]
    reason = records[0]["skipped"]["/lab/big"]
    assert reason.startswith("unreadable: ") and "permission denied" in reason


def test_unreadable_monitored_group_stops_only_its_policy(tmp_path, monkeypatch) -> None:
    # Two policies: one on /lab, one on /lab/big. /lab/big is removed: its policy
    # warns (once) and waits, the other goes on acting; when the group is created again,
    # its policy watches it again.
    h = lab(str(tmp_path))
    cfg = validate({"policy": [
        {"name": "lab", "monitor": "/", "window": "1s", "for": "0s", "rank": ["memory"],
         "post_action_delay": "2s", "all": {"memory_pressure_full_above": "40%"}},
        {"name": "big", "monitor": "/big", "window": "1s", "for": "0s",
         "post_action_delay": "1h", "all": {"memory_pressure_full_above": "99%"}}]})
    real_read = hotfile.HotFile.read_bytes

    def read_bytes(self):  # as cgroupfs does: a removed group's open files give ENODEV
        if not os.path.exists(self.path):
            raise KernelFileError(self.path, "unreadable (No such device)")
        return real_read(self)

    monkeypatch.setattr(hotfile.HotFile, "read_bytes", read_bytes)
    backend = RecordingBackend()
    engine, stream = make_engine(h, backend, cfg)
    driver = Stalling(h, engine)
    driver.run(2.0)
    shutil.rmtree(h.dir("/lab/big"))
    del h.groups["/lab/big"]
    records = driver.run(8.0)
    assert records and {r["policy"] for r in records} == {"lab"}
    warnings = [x for x in logged(stream) if x.get("message") == "cannot sample monitored group"]
    assert len(warnings) == 1 and warnings[0]["policy"] == "big"
    assert not any(x.get("message") == "tick skipped" for x in logged(stream))
    h.add("/lab/big", pids=[300], current=900 * MiB)  # the service starts again
    driver.run(2.0)
    big = next(s for s in engine.states if s.policy.name == "big")
    assert big.history.latest().t == driver.t  # sampled again


# -- a cgroup vanishes between choosing and killing ---------------------------------------
def test_victim_vanishes_between_choosing_and_killing(tmp_path, children) -> None:
    kid = children.start()
    h = lab(str(tmp_path), {"big": [kid.pid]})

    class VanishingBackend(CgroupfsBackend):
        def start_kill_cgroup(self, procs_dir, **kwargs):
            shutil.rmtree(procs_dir)  # the service stopped on its own just now
            return super().start_kill_cgroup(procs_dir, **kwargs)

    engine, _stream = make_engine(h, VanishingBackend())
    records = Stalling(h, engine).run(3.0)
    assert len(records) == 1
    rec = records[0]
    assert rec["victim"] == "/lab/big" and rec["result"]["ok"] is False
    assert rec["result"]["error"] == f"{h.dir('/lab/big')}: No such file or directory"
    assert "FAILED" in rec["summary"] and "\n" not in rec["summary"]
    assert kid.poll() is None  # nothing was signalled


# -- cgroup.kill fails ----------------------------------------------------------------------
def fake_group(path, pids: list[int]) -> str:
    os.makedirs(path)
    with open(f"{path}/cgroup.procs", "w") as f:
        f.write("".join(f"{p}\n" for p in pids))
    with open(f"{path}/cgroup.kill", "w") as f:
        f.write("")
    return str(path)


def failing_cgroup_kill(monkeypatch, err: int, before=None) -> None:
    real = kill_mod.write_value

    def write_value(path, value):
        if path.endswith("/cgroup.kill"):
            if before:
                before(path)
            raise OSError(err, os.strerror(err), path)
        return real(path, value)

    monkeypatch.setattr(kill_mod, "write_value", write_value)


@pytest.mark.parametrize("err", [errno.EBUSY, errno.EOPNOTSUPP, errno.ENOENT])
def test_cgroup_kill_refused_falls_back_to_pidfd(tmp_path, children, monkeypatch, err) -> None:
    kids = [children.start(), children.start()]
    group = fake_group(tmp_path / "victim", [k.pid for k in kids])
    failing_cgroup_kill(monkeypatch, err)
    outcome = kill_cgroup(group)
    assert outcome.ok and outcome.method == "pidfd"
    assert outcome.error == f"fell back to pidfd: {group}/cgroup.kill: {os.strerror(err)}"
    assert all(k.wait(timeout=5) == -signal.SIGKILL for k in kids)


def test_a_kill_is_issued_at_once_and_finished_by_later_steps(tmp_path, children) -> None:
    """The loop's form of a kill: issuing it returns without waiting for the group to
    empty; each step() looks once; the pidfds wake the loop when the processes exit."""
    import select
    import time

    from zoomd.actions.kill import CgroupKill

    kids = [children.start(), children.start()]
    group = fake_group(tmp_path / "victim", [k.pid for k in kids])  # cgroup.kill: a no-op
    started = time.monotonic()
    kill = CgroupKill(group)
    assert time.monotonic() - started < kill_mod.STRAGGLER_GRACE_S  # nothing waited for
    assert kill.step() is None and len(kill.fds()) == 2 and kill.wake_in() is not None
    steps = 0
    while (outcome := kill.step()) is None:
        steps += 1
        assert time.monotonic() - started < 5
        poller = select.poll()
        for fd in kill.fds():
            poller.register(fd, select.POLLIN)
        poller.poll(max(1, int((kill.wake_in() or 0) * 1000)))
    kill.close()
    assert steps >= 1 and outcome.ok and outcome.method == "cgroup.kill"
    assert "SIGKILLed again by pidfd" in (outcome.error or "")  # the no-op cgroup.kill
    assert all(k.wait(timeout=5) == -signal.SIGKILL for k in kids)


def test_cgroup_kill_enoent_because_the_group_is_gone(tmp_path, children, monkeypatch) -> None:
    kid = children.start()
    group = fake_group(tmp_path / "victim", [kid.pid])
    failing_cgroup_kill(monkeypatch, errno.ENOENT, before=lambda _: shutil.rmtree(group))
    outcome = kill_cgroup(group)
    assert not outcome.ok and outcome.method == "cgroup.kill"
    assert outcome.error == f"{group}/cgroup.kill: No such file or directory"
    assert kid.poll() is None  # the group's processes had left it: nothing to kill


def test_threaded_group_is_killed_through_its_threads(tmp_path, children, monkeypatch) -> None:
    # A threaded group refuses both cgroup.kill and reading cgroup.procs (EOPNOTSUPP);
    # its processes are found through cgroup.threads.
    from zoomd.actions import cgroupfs

    kid = children.start()
    group = fake_group(tmp_path / "threaded", [])
    with open(f"{group}/cgroup.threads", "w") as f:
        f.write(f"{kid.pid}\n")
    real_read = cgroupfs.read_text

    def read_text(path):
        if path == f"{group}/cgroup.procs":
            raise OSError(errno.EOPNOTSUPP, "Operation not supported", path)
        return real_read(path)

    monkeypatch.setattr(cgroupfs, "read_text", read_text)
    failing_cgroup_kill(monkeypatch, errno.EOPNOTSUPP)
    outcome = kill_cgroup(group)
    assert outcome.ok and outcome.method == "pidfd" and outcome.pids == (kid.pid,)
    assert "Operation not supported" in outcome.error
    assert kid.wait(timeout=5) == -signal.SIGKILL


def test_threaded_subtree_is_a_candidate_as_a_whole(tmp_path) -> None:
    h = lab(str(tmp_path))
    h.add("/lab/big/worker", pids=[])
    with open(h.dir("/lab/big") + "/cgroup.type", "w") as f:
        f.write("domain threaded\n")
    found, _ = collect(CgroupReader(Root(h.base)),
                       validate_policy(name="p", all={"reclaim_activity": True}), "/lab",
                       Exclusions((), ()))
    assert "/lab/big" in [c.path for c in found]


# -- a PID exits and is reused during a kill -----------------------------------------------
def test_pid_reused_during_a_kill_is_not_signalled(tmp_path, children, monkeypatch) -> None:
    member, other = children.start(), children.start()
    group = fake_group(tmp_path / "victim", [member.pid, other.pid])
    os.remove(f"{group}/cgroup.kill")  # the pidfd path, where pids are read then opened
    stranger = children.start()
    real_open = kill_mod.open_pidfd

    def open_pidfd(pid):
        if pid == member.pid and member.poll() is None:
            # Between reading cgroup.procs and opening the pidfd, the member exits (and
            # so leaves the group) and its pid is handed to a process outside it.
            member.kill()
            member.wait()
            with open(f"{group}/cgroup.procs", "w") as f:
                f.write(f"{other.pid}\n")
            return os.pidfd_open(stranger.pid)
        return real_open(pid)

    monkeypatch.setattr(kill_mod, "open_pidfd", open_pidfd)
    outcome = kill_cgroup(group)
    assert outcome.ok, outcome.error
    assert other.wait(timeout=5) == -signal.SIGKILL
    assert stranger.poll() is None, "a process outside the group was killed"
    assert stranger.pid not in outcome.pids


# -- xattrs unsupported ---------------------------------------------------------------------
def test_xattrs_unsupported(tmp_path, monkeypatch) -> None:
    h = lab(str(tmp_path))

    def no_xattrs(path, name, *args, **kwargs):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported", path)

    monkeypatch.setattr(os, "getxattr", no_xattrs)
    backend = RecordingBackend()
    engine, _ = make_engine(h, backend)
    records = Stalling(h, engine).run(3.0)
    assert [r["victim"] for r in records] == ["/lab/big"]
    assert all(c["preference"] == "normal" for c in records[0]["candidates"])


# -- PSI triggers refused -> polling --------------------------------------------------------
def test_psi_trigger_refused_means_polling(monkeypatch, tmp_path) -> None:
    # On the live host (reading the real /proc, acting on nothing: dry-run, a policy
    # that cannot hold, no mlock), the kernel refuses both trigger windows.
    from zoomd.daemon.loop import Daemon

    if not os.path.exists("/proc/pressure/memory"):
        pytest.skip("no PSI on this kernel")
    attempts = []

    def refuse(fd, data):
        attempts.append(data)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(psitrigger.os, "write", refuse)
    cfg = tmp_path / "z.toml"
    cfg.write_text('[daemon]\ninterval = "50ms"\nfast_interval = "50ms"\nmlock = false\n'
                   'oom_score_adj = 0\n[systemd]\nmanaged_oom = false\ndbus = false\n'
                   '[[policy]]\nname = "p"\n[policy.all]\n'
                   'memory_pressure_full_above = "100%"\n')  # never holds
    stream = io.StringIO()
    daemon = Daemon(str(cfg), root=Root("/"), dry_run=True, duration=0.6,
                    logger=Logger("json", "debug", stream))
    ticks = []
    real_tick = daemon.tick
    daemon.tick = lambda: ticks.append(1) or real_tick()  # type: ignore[method-assign]
    assert daemon.run() == 0
    assert attempts == [b"some 100000 1000000\0", b"some 200000 2000000\0"]
    lines = logged(stream)
    refused = [x for x in lines if x.get("message") == "PSI trigger unavailable, polling instead"]
    assert len(refused) == 1 and "Invalid argument" in refused[0]["error"]
    assert daemon.triggers == []
    assert len(ticks) >= 5  # it went on polling every interval
    assert not any(x.get("level") == "error" for x in lines)


def test_daemon_on_a_captured_tree_writes_nothing_into_it(tree_path, tmp_path) -> None:
    # It used to arm PSI triggers there: "some 100000 1000000\0" written over the tree's
    # /proc/pressure/memory, which every later read then refused.
    from zoomd.daemon.loop import Daemon

    tree = tmp_path / "tree"
    shutil.copytree(tree_path("cgroup2-pure"), tree)
    before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    cfg = tmp_path / "z.toml"
    cfg.write_text('[daemon]\ninterval = "50ms"\n[systemd]\nmanaged_oom = false\n'
                   'dbus = false\n[[policy]]\nname = "p"\n[policy.all]\n'
                   'memory_pressure_full_above = "99%"\n')
    stream = io.StringIO()
    daemon = Daemon(str(cfg), root=Root(str(tree)), dry_run=True, duration=0.3,
                    logger=Logger("json", "debug", stream))
    daemon._reload = True  # a SIGHUP re-arms the triggers too
    assert daemon.run() == 0
    after = {p: p.read_bytes() for p in before}
    assert after == before
    assert not any(x.get("level") == "error" for x in logged(stream))


# -- SIGHUP with a broken configuration ------------------------------------------------------
def test_sighup_with_broken_configurations_keeps_the_running_one(tmp_path) -> None:
    """One daemon, reloaded with each broken configuration in turn: every reload fails
    with one line naming the file, the daemon keeps its policies and its watchdog, and a
    good configuration is then taken."""
    import socket
    import sys
    import time

    good = ('[daemon]\ninterval = "100ms"\nlog_format = "json"\nmlock = false\n'
            '[systemd]\nmanaged_oom = false\ndbus = false\n'
            '[[policy]]\nname = "{name}"\n[policy.all]\nmemory_pressure_full_above = "100%"\n')
    config = tmp_path / "zoomd.toml"
    dropins = tmp_path / "zoomd.toml.d"
    config.write_text(good.format(name="first"))

    def unknown_key():
        config.write_text(good.format(name="x").replace("mlock", "mlokc"))

    def no_condition():
        config.write_text(good.format(name="x").split("[policy.all]")[0])

    def nan_interval():
        config.write_text(good.format(name="x").replace('"100ms"', "nan"))

    def removed():
        config.unlink()

    def directory():
        config.mkdir()

    def broken_drop_in():
        config.rmdir()
        config.write_text(good.format(name="x"))
        dropins.mkdir()
        (dropins / "10-bad.toml").write_text("[[policy]]\nname = 5\n")

    def unsafe():
        (dropins / "10-bad.toml").unlink()
        os.chmod(config, 0o666)

    breakers = [unknown_key, no_condition, nan_interval, removed, directory, broken_drop_in]
    if os.geteuid() == 0:
        breakers.append(unsafe)
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(10)
    log_path = tmp_path / "log"
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="200000")

    def failures() -> list[dict]:
        return [x for x in logged(io.StringIO(log_path.read_text()))
                if x.get("message") == "reload failed, keeping the running configuration"]

    def wait(predicate) -> None:
        deadline = time.monotonic() + 10
        while not predicate():
            assert time.monotonic() < deadline and proc.poll() is None, log_path.read_text()
            time.sleep(0.02)

    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "zoomd", "run", "--dry-run",
                                 "--config", str(config)], stderr=log,
                                stdout=subprocess.DEVNULL, env=env)
        try:
            assert sock.recv(4096).decode().startswith("READY=1")
            for n, breaker in enumerate(breakers, 1):
                breaker()
                proc.send_signal(signal.SIGHUP)
                wait(lambda n=n: len(failures()) == n)
                error = failures()[-1]["error"]
                assert "\n" not in error and str(tmp_path) in error, error
                # still alive and still telling systemd so
                assert b"WATCHDOG=1" in {sock.recv(4096) for _ in range(3)}
            os.chmod(config, 0o644)
            config.write_text(good.format(name="second"))
            proc.send_signal(signal.SIGHUP)
            wait(lambda: "configuration reloaded" in log_path.read_text())
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            sock.close()
    text = log_path.read_text()
    assert "Traceback" not in text and '"zoomd stopped"' in text
    messages = [failure["error"] for failure in failures()]
    assert "mlokc: unknown key" in messages[0]
    assert "at least one condition" in messages[1]
    assert "finite" in messages[2]
    assert "no such file" in messages[3] and "is a directory" in messages[4]
    assert "10-bad.toml" in messages[5]
    if os.geteuid() == 0:
        assert "refusing an unsafe configuration" in messages[6]


def test_a_notify_socket_whose_reader_lags_never_blocks_the_loop(tmp_path) -> None:
    """A unix datagram queue holds net.unix.max_dgram_qlen (10) messages: a reader that
    does not keep up must cost pings, never a blocked sendto (the loop would stop)."""
    import socket
    import time

    from zoomd.daemon.sdnotify import Notifier

    path = str(tmp_path / "notify.sock")
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.bind(path)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    started = time.monotonic()
    sent = [notifier.send("WATCHDOG=1") for _ in range(200)]
    assert time.monotonic() - started < 2.0
    assert sent[0] is True and sent[-1] is False  # the queue filled: later pings dropped
    assert reader.recv(64) == b"WATCHDOG=1"
    notifier.close()
    reader.close()
