"""org.freedesktop.oom1 on a private dbus-daemon (Debian's dbus-daemon package), read by
the real `oomctl` (Debian's systemd-oomd package) and by a jeepney bus client."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
import time

import pytest
from fakecgroupfs import FakeHost

from zoomd.daemon.log import Logger
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.meminfo import parse_meminfo
from zoomd.kernel.root import Root
from zoomd.systemd.dump import Dumper, DumpState
from zoomd.systemd.managed import PRESSURE, SWAP, ManagedCgroup
from zoomd.systemd.oomdconf import OomdConf

jeepney = pytest.importorskip("jeepney", reason="jeepney not installed (pip install '.[dbus]')")

MiB = 1 << 20
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""
MEMINFO = ("MemTotal: 16384000 kB\nMemFree: 1000000 kB\nMemAvailable: 2048000 kB\n"
           "Active(anon): 9000000 kB\nInactive(anon): 1000000 kB\nActive(file): 500000 kB\n"
           "Inactive(file): 500000 kB\nSwapTotal: 8192000 kB\nSwapFree: 6144000 kB\n")


@pytest.fixture
def bus_daemon(tmp_path):
    """A private system bus: (address, the dbus-daemon process, for tests that kill it)."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.skip("dbus-daemon not installed (apt-get install dbus-daemon)")
    socket_path = tmp_path / "system_bus_socket"
    config = tmp_path / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket=socket_path))
    proc = subprocess.Popen([daemon, f"--config-file={config}", "--nofork", "--nopidfile"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        if socket_path.exists():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"dbus-daemon did not start: {proc.stderr.read().decode()}")
    yield f"unix:path={socket_path}", proc
    proc.terminate()
    proc.wait(timeout=5)


@pytest.fixture
def bus(bus_daemon) -> str:
    return bus_daemon[0]


@pytest.fixture
def host(tmp_path) -> FakeHost:
    h = FakeHost(str(tmp_path / "root"))
    h.add("/user.slice", current=900 * MiB)
    h.add("/user.slice/user-1000.slice/user@1000.service", pids=[300], current=800 * MiB,
          swap=64 * MiB, pgscan=4242)
    return h


def dump_for(host: FakeHost, style: str) -> str:
    reader = CgroupReader(Root(host.base))
    state = DumpState(False, OomdConf(pressure_duration_usec=20_000_000),
                      [ManagedCgroup("/", SWAP)],
                      [ManagedCgroup("/user.slice/user-1000.slice/user@1000.service", PRESSURE,
                                     5000)])
    return Dumper(reader, style).render(state, parse_meminfo(MEMINFO, "meminfo"))


class Served:
    """The service answering in a thread, as the daemon's poll loop would."""

    def __init__(self, service) -> None:
        self.service = service
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        import select

        while not self.stop:
            fd = self.service.fileno()
            if fd is None:
                return
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                self.service.on_readable()


@pytest.fixture
def service(bus, host):
    from zoomd.systemd.dbus import Oom1Service

    svc = Oom1Service(lambda: dump_for(host, "current"), Logger(stream=io.StringIO()), bus=bus)
    svc.maintain()
    assert svc.conn is not None and svc.owner
    served = Served(svc)
    served.thread.start()
    yield svc
    served.stop = True
    served.thread.join(timeout=5)
    svc.close()


def test_real_oomctl_prints_zoomds_dump(bus, host, service) -> None:
    oomctl = shutil.which("oomctl")
    if oomctl is None:
        pytest.skip("oomctl not installed (apt-get install systemd-oomd)")
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus, SYSTEMD_PAGER="", SYSTEMD_COLORS="0")
    result = subprocess.run([oomctl, "--no-pager", "dump"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    expected = dump_for(host, "current")
    assert result.stdout == expected
    lines = result.stdout.splitlines()
    assert lines[:8] == [
        "Dry Run: no",
        "Swap Used Limit: 90.00%",
        "Default Memory Pressure Limit: 60.00%",
        "Default Memory Pressure Duration: 20s",
        "System Context:",
        "\tMemory: Used: 13.6G, Total: 15.6G",
        "\tSwap: Used: 1.9G, Total: 7.8G",
        "Swap Monitored CGroups:",
    ]
    assert "\tPath: /\n\t\tSwap Usage: (see System Context)\n" in result.stdout
    assert "\t\tMemory Pressure Limit: 50.00%\n\t\tMemory Pressure Duration: 20s\n" \
        in result.stdout
    assert "\t\tCurrent Memory Usage: 800.0M\n" in result.stdout
    assert "\t\tPgscan: 4242\n" in result.stdout


def test_v252_layout(host) -> None:
    text = dump_for(host, "v252")
    assert "\tMemory: Used: 13.6G Total: 15.6G\n" in text
    assert "Memory Pressure Duration: 20s\n\t\tPressure" not in text
    assert "\t\tPressure: Avg10: 0.00 Avg60: 0.00 Avg300: 0.00 Total: 0\n" in text


def test_killed_signal_reaches_a_bus_client(bus, service) -> None:
    from jeepney import DBusAddress, MatchRule, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    with open_dbus_connection(bus) as client:
        rule = MatchRule(type="signal", interface="org.freedesktop.oom1.Manager",
                         member="Killed", path="/org/freedesktop/oom1")
        dbus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                           interface="org.freedesktop.DBus")
        client.send_and_get_reply(new_method_call(dbus, "AddMatch", "s", (rule.serialise(),)))
        with client.filter(rule) as queue:
            service.emit_killed("/user.slice/user-1000.slice/user@1000.service/app.slice/"
                                "build.service", "memory-pressure")
            signal = client.recv_until_filtered(queue, timeout=5)
        assert signal.body == ("/user.slice/user-1000.slice/user@1000.service/app.slice/"
                               "build.service", "memory-pressure")
        # Introspection and an unknown method, as sd-bus callers see them.
        oom1 = DBusAddress("/org/freedesktop/oom1", bus_name="org.freedesktop.oom1")
        xml = client.send_and_get_reply(new_method_call(
            DBusAddress("/org/freedesktop/oom1", bus_name="org.freedesktop.oom1",
                        interface="org.freedesktop.DBus.Introspectable"), "Introspect"),
            timeout=5).body[0]
        assert '<signal name="Killed">' in xml
        reply = client.send_and_get_reply(new_method_call(
            DBusAddress(oom1.object_path, bus_name=oom1.bus_name,
                        interface="org.freedesktop.oom1.Manager"), "Frob"), timeout=5)
        assert reply.header.fields[jeepney.HeaderFields.error_name] \
            == "org.freedesktop.DBus.Error.UnknownMethod"


def test_without_a_bus_zoomd_says_so_once(tmp_path) -> None:
    from zoomd.systemd.dbus import Oom1Service

    logs = io.StringIO()
    clock = [0.0]
    svc = Oom1Service(lambda: "", Logger(stream=logs), bus=f"unix:path={tmp_path}/none",
                      clock=lambda: clock[0])
    svc.maintain()
    clock[0] += 60
    svc.maintain()
    assert svc.conn is None
    assert logs.getvalue().count("cannot offer org.freedesktop.oom1") == 1


# -- the bus going away (fault injection) ---------------------------------------------------
TREES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "trees")
LOOP_CONFIG = """
[daemon]
interval = "50ms"
fast_interval = "50ms"
mlock = false
oom_score_adj = 0
[systemd]
managed_oom = false
dbus = true
oomd_conf = false
[[policy]]
name = "never"
[policy.all]
memory_pressure_full_above = "100%"
"""


def test_bus_going_away_is_logged_once_and_the_loop_keeps_running(tmp_path, bus_daemon,
                                                                   monkeypatch) -> None:
    """dbus-daemon is SIGKILLed under a running daemon loop that offers oom1: the loss is
    logged once, every later reconnect attempt fails quietly after one complaint, and
    the loop goes on ticking to its end with no exception and no error logged."""
    import itertools
    import json
    import signal

    from zoomd.daemon.loop import Daemon
    from zoomd.kernel.root import Root

    address, proc = bus_daemon
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
    base = tmp_path / "host"
    for part in ("proc", "sys"):
        shutil.copytree(os.path.join(TREES, "cgroup2-pure", part), base / part, symlinks=True)
    config = tmp_path / "zoomd.toml"
    config.write_text(LOOP_CONFIG)
    logs = io.StringIO()
    daemon = Daemon(str(config), root=Root(str(base)), dry_run=True, duration=3.0,
                    logger=Logger("json", "debug", logs))
    integration = daemon.extensions[0]
    ticks: list[float] = []
    real_tick = daemon.tick
    daemon.tick = lambda: ticks.append(time.monotonic()) or real_tick()  # type: ignore[method-assign]
    killed: list[float] = []

    def kill_the_bus() -> None:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and not (integration.bus and integration.bus.owner):
            time.sleep(0.02)
        # Retry at every wake-up from now on (the clock jumps 100 s per look), so that
        # "once" is tested against many failed reconnects, not one.
        integration.bus.clock = itertools.count(0.0, 100.0).__next__
        proc.kill()
        proc.wait(timeout=5)
        killed.append(time.monotonic())

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    killer = threading.Thread(target=kill_the_bus, daemon=True)
    killer.start()
    try:
        assert daemon.run() == 0
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        killer.join(timeout=5)
    assert killed, "the service never owned org.freedesktop.oom1"
    after = [t for t in ticks if t > killed[0]]
    assert len(after) >= 10, (len(ticks), len(after))  # 50 ms ticks for over a second
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    messages = [x["message"] for x in lines]
    assert "offering org.freedesktop.oom1 on the D-Bus system bus" in messages
    assert messages.count("lost the D-Bus system bus; reconnecting") == 1
    assert messages.count("cannot offer org.freedesktop.oom1 on the system bus; retrying") \
        == 1
    assert not [x for x in lines if x["level"] == "error"]


def test_killed_signal_after_the_bus_died_is_dropped(bus_daemon) -> None:
    """The bus dies between a kill and its Killed signal: the signal is dropped, the
    loss logged once, and reading the dead connection afterwards does nothing."""
    from zoomd.systemd.dbus import Oom1Service

    address, proc = bus_daemon
    logs = io.StringIO()
    svc = Oom1Service(lambda: "", Logger(stream=logs), bus=address)
    svc.maintain()
    assert svc.conn is not None
    proc.kill()
    proc.wait(timeout=5)
    for _ in range(3):
        svc.emit_killed("/user.slice/x.service", "memory-pressure")
        svc.on_readable()
    assert svc.conn is None and svc.signals_sent == 0
    assert logs.getvalue().count("lost the D-Bus system bus") == 1
