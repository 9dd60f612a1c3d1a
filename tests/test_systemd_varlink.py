"""ManagedOOM varlink on the wire: a fake PID 1 and fake user managers written here from
the protocol (NUL-terminated JSON; SubscribeManagedOOMCGroups with "more"; oneway
ReportManagedOOMCGroups), against zoomd's subscriber and listener."""

from __future__ import annotations

import io
import json
import os
import socket

import pytest

from zoomd.daemon.log import Logger
from zoomd.systemd.managed import PRESSURE, SWAP, ManagedSet
from zoomd.systemd.pid1 import SUBSCRIBE, Pid1Client
from zoomd.systemd.userside import (
    REPORT,
    UserListener,
    bind_listener,
    listen_fds,
    owner_uid_of_path,
)
from zoomd.systemd.values import permyriad_to_uint32_scale

USER = "/user.slice/user-1000.slice/user@1000.service"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def read_message(conn: socket.socket) -> dict:
    buf = b""
    while not buf.endswith(b"\0"):
        chunk = conn.recv(65536)
        assert chunk, "peer closed"
        buf += chunk
    return json.loads(buf[:-1])


def send(conn: socket.socket, message: dict | bytes) -> None:
    conn.sendall(message if isinstance(message, bytes) else json.dumps(message).encode() + b"\0")


def element(path: str, prop: str = PRESSURE, mode: str = "kill", **extra) -> dict:
    return {"mode": mode, "path": path, "property": prop, **extra}


class FakePid1:
    """PID 1's side of the subscription, one connection at a time."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.conn: socket.socket | None = None

    def accept_subscription(self) -> dict:
        self.conn, _ = self.sock.accept()
        request = read_message(self.conn)
        assert request == {"method": SUBSCRIBE, "parameters": {}, "more": True}
        return request

    def reply(self, cgroups: list, continues: bool = True) -> None:
        assert self.conn is not None
        send(self.conn, {"parameters": {"cgroups": cgroups}, "continues": continues})

    def hang_up(self) -> None:
        assert self.conn is not None
        self.conn.close()
        self.conn = None


@pytest.fixture
def logs() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def pid1(tmp_path, logs):
    path = str(tmp_path / "io.systemd.ManagedOOM")
    fake = FakePid1(path)
    clock = Clock()
    client = Pid1Client(ManagedSet(), Logger(stream=logs), (path,), clock=clock)
    yield fake, client, clock
    client.close()
    fake.sock.close()


def pump(client: Pid1Client) -> bool:
    """Let the client read everything PID 1 sent."""
    import select

    fd = client.fileno()
    assert fd is not None
    select.select([fd], [], [], 2.0)
    return client.on_readable()


def test_subscribe_initial_snapshot_and_updates(pid1) -> None:
    fake, client, _ = pid1
    client.maintain()
    fake.accept_subscription()
    fake.reply([element(USER, limit=permyriad_to_uint32_scale(5000)),
                element("", SWAP)])
    assert pump(client)
    entries = client.managed.entries
    assert entries[(PRESSURE, USER)].limit == 5000
    assert entries[(PRESSURE, USER)].duration_usec is None  # oomd.conf's default
    assert (SWAP, "/") in entries  # "" is the root slice
    # An update: a new limit and a duration (ManagedOOMMemoryPressureDurationSec=).
    fake.reply([element(USER, limit=permyriad_to_uint32_scale(8000), duration=5_000_000)])
    assert pump(client)
    assert entries[(PRESSURE, USER)].limit == 8000
    assert entries[(PRESSURE, USER)].duration_usec == 5_000_000


def test_mode_auto_removes_a_cgroup(pid1) -> None:
    fake, client, _ = pid1
    client.maintain()
    fake.accept_subscription()
    fake.reply([element(USER), element("/system.slice/a.service")])
    pump(client)
    fake.reply([element(USER, mode="auto")])
    assert pump(client)
    assert [e.path for e in client.managed.pressure()] == ["/system.slice/a.service"]


def test_malformed_elements_are_skipped_and_the_rest_applied(pid1, logs) -> None:
    fake, client, _ = pid1
    client.maintain()
    fake.accept_subscription()
    fake.reply([5, element(USER, mode="maybe"), {"mode": "kill", "path": 3},
                element(USER, limit=-1), element(USER, limit="50%"),
                element("/system.slice/b.service")])
    pump(client)
    assert [e.path for e in client.managed.pressure()] == ["/system.slice/b.service"]
    assert "malformed" in logs.getvalue()
    # Parameters that are not {"cgroups": [...]}: ignored, link kept.
    send(fake.conn, {"parameters": {"nope": 1}, "continues": True})
    pump(client)
    assert client.connected
    assert "malformed ManagedOOM update" in logs.getvalue()


def test_broken_json_drops_the_link_and_reconnect_takes_a_fresh_snapshot(pid1) -> None:
    fake, client, clock = pid1
    client.maintain()
    fake.accept_subscription()
    fake.reply([element(USER), element("/system.slice/old.service")])
    pump(client)
    send(fake.conn, b"{not json\0")
    pump(client)
    assert not client.connected
    client.maintain()  # too early: 1 s back-off
    assert not client.connected
    clock.t += 1.0
    client.maintain()
    assert client.connected and client.connects == 2
    fake.accept_subscription()
    fake.reply([element(USER)])  # old.service stopped while zoomd was away
    pump(client)
    assert [e.path for e in client.managed.pressure()] == [USER]


def test_hang_up_and_refusal_back_off(pid1, logs) -> None:
    fake, client, clock = pid1
    client.maintain()
    fake.accept_subscription()
    fake.hang_up()
    pump(client)
    assert not client.connected
    clock.t += 1.0
    client.maintain()
    fake.accept_subscription()
    send(fake.conn, {"error": "org.varlink.service.PermissionDenied"})
    pump(client)
    assert not client.connected
    assert "only from systemd-oomd.service" in logs.getvalue()
    first = client.next_attempt - clock.t
    clock.t = client.next_attempt
    client.maintain()
    fake.accept_subscription()
    send(fake.conn, {"error": "org.varlink.service.PermissionDenied"})
    pump(client)
    assert client.next_attempt - clock.t > first  # backing off
    # Refused every time (zoomd.service outside systemd-oomd.service, seen on a real
    # systemd 252): never "subscribed", and the refusal is said once.
    assert "subscribed to PID 1" not in logs.getvalue()
    assert logs.getvalue().count("only from systemd-oomd.service") == 1


def test_subscribed_is_logged_once_pid1_answers(pid1, logs) -> None:
    fake, client, _clock = pid1
    client.maintain()
    assert "subscribed to PID 1" not in logs.getvalue()
    fake.accept_subscription()
    fake.reply([element(USER)])
    pump(client)
    assert "subscribed to PID 1's ManagedOOM cgroups" in logs.getvalue()


def test_tries_the_systemd_252_socket_path(tmp_path) -> None:
    old = str(tmp_path / "io.system.ManagedOOM")
    fake = FakePid1(old)
    client = Pid1Client(ManagedSet(), Logger(stream=io.StringIO()),
                        (str(tmp_path / "io.systemd.ManagedOOM"), old))
    client.maintain()
    assert client.path == old
    fake.accept_subscription()
    client.close()
    fake.sock.close()


# -- the user side ------------------------------------------------------------------------
class FakeUserManager:
    """systemd --user's side: connect, then oneway reports."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)

    def report(self, cgroups: list, oneway: bool = True) -> None:
        message = {"method": REPORT, "parameters": {"cgroups": cgroups}}
        if oneway:
            message["oneway"] = True
        send(self.sock, message)


def serve(listener: UserListener, rounds: int = 4) -> None:
    import select

    for _ in range(rounds):
        fds = listener.fds()
        ready, _, _ = select.select(list(fds), [], [], 0.2)
        for fd in ready:
            listener.on_event(fd, select.POLLIN)


@pytest.fixture
def user_side(tmp_path):
    path = str(tmp_path / "oom" / "io.systemd.ManagedOOM")
    logs = io.StringIO()
    listener = UserListener(ManagedSet(), Logger(stream=logs), [bind_listener(path)])
    yield path, listener, logs
    listener.close()


def test_owner_uid_comes_from_the_user_slice() -> None:
    assert owner_uid_of_path(USER) == 1000
    assert owner_uid_of_path(USER + "/app.slice/x.service") == 1000
    assert owner_uid_of_path("/user.slice/user-1000.slice/session-2.scope") == 1000
    assert owner_uid_of_path("/system.slice/foo.service") is None
    assert owner_uid_of_path("/user.slice") is None
    assert owner_uid_of_path("/") is None


def test_user_manager_report_as_root(user_side) -> None:
    path, listener, _ = user_side
    assert oct(os.stat(path).st_mode & 0o777) == "0o666"
    um = FakeUserManager(path)
    um.report([element(USER + "/app.slice/build.service", limit=0)])
    serve(listener)
    entry = listener.managed.entries[(PRESSURE, USER + "/app.slice/build.service")]
    assert entry.source == f"uid:{os.getuid()}" and entry.limit is None
    um.report([element(USER + "/app.slice/build.service", mode="auto")])
    serve(listener)
    assert not listener.managed.entries


def test_peer_uid_must_own_the_cgroup(user_side) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to connect as another uid")
    _, listener, logs = user_side
    # A socket the unprivileged child can reach (pytest's tmp_path is root-only).
    import tempfile

    public = tempfile.mkdtemp(prefix="zoomd-varlink-", dir="/tmp")
    os.chmod(public, 0o755)
    path = os.path.join(public, "io.systemd.ManagedOOM")
    listener.listeners.append(bind_listener(path))
    listener.listeners[-1].setblocking(False)
    pid = os.fork()
    if pid == 0:  # a user manager of uid 1000 reporting its own and another user's cgroup
        try:
            os.setgid(1000)
            os.setuid(1000)
            um = FakeUserManager(path)
            um.report([element(USER + "/app.slice/mine.service")])
            um.report([element("/user.slice/user-1001.slice/user@1001.service"),
                       element(USER + "/app.slice/after.service")], oneway=False)
            reply = read_message(um.sock)
            os._exit(0 if reply.get("error") == "io.systemd.System" else 3)
        except BaseException:
            os._exit(4)
    serve(listener, rounds=20)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    paths = [e.path for e in listener.managed.pressure()]
    assert paths == [USER + "/app.slice/mine.service"]  # the rest of the bad report ignored
    assert listener.rejected == 1
    assert "owned by uid 1001, not by the sender's uid 1000" in logs.getvalue()
    os.unlink(path)
    os.rmdir(public)


def test_unknown_method_answered_bad_json_drops(user_side) -> None:
    path, listener, _ = user_side
    um = FakeUserManager(path)
    send(um.sock, {"method": "io.systemd.oom.Frobnicate", "parameters": {}})
    serve(listener)
    assert read_message(um.sock) == {"error": "org.varlink.service.MethodNotFound",
                                     "parameters": {"method": "io.systemd.oom.Frobnicate"}}
    send(um.sock, {"method": REPORT, "parameters": {"cgroup": []}})
    serve(listener)
    assert read_message(um.sock)["error"] == "org.varlink.service.InvalidParameter"
    assert len(listener.conns) == 1  # still connected
    send(um.sock, b"[1, 2]\0")
    serve(listener)
    assert listener.conns == {}
    assert um.sock.recv(10) == b""  # zoomd hung up


def test_socket_activation(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "activated")
    sock = bind_listener(path)
    # Pretend systemd passed it as fd 3 (dup2 over whatever 3 is for this test).
    saved = os.dup(3)
    try:
        os.dup2(sock.fileno(), 3)
        monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
        monkeypatch.setenv("LISTEN_FDS", "1")
        found = listen_fds()
        assert len(found) == 1 and "LISTEN_FDS" not in os.environ
        listener = UserListener(ManagedSet(), Logger(stream=io.StringIO()), found)
        FakeUserManager(path).report([element(USER)])
        serve(listener)
        assert (PRESSURE, USER) in listener.managed.entries
        listener.listeners.clear()  # fd 3 is restored below, not closed here
        listener.close()
    finally:
        os.dup2(saved, 3)
        os.close(saved)
        sock.close()
    monkeypatch.setenv("LISTEN_PID", "1")
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert listen_fds() == []  # not for this process


def test_peer_disconnecting_mid_message_applies_nothing_of_it(pid1, logs) -> None:
    """Fault injection: PID 1 writes an update and half of the next one, then dies. The
    whole update is applied, nothing of the half; the link is dropped once, and the
    reconnect's first reply replaces the set."""
    fake, client, clock = pid1
    client.maintain()
    fake.accept_subscription()
    fake.reply([element(USER), element("/system.slice/old.service")])
    pump(client)
    whole = json.dumps({"parameters": {"cgroups": [element("/system.slice/whole.service")]},
                        "continues": True}).encode() + b"\0"
    half = json.dumps({"parameters": {"cgroups": [
        element(USER, mode="auto"), element("/system.slice/half.service",
                                            limit=permyriad_to_uint32_scale(100))]},
        "continues": True}).encode()
    assert fake.conn is not None
    send(fake.conn, whole + half[:len(half) // 2])
    fake.hang_up()
    for _ in range(3):  # the complete message, then the hang-up
        if client.connected:
            pump(client)
    assert not client.connected
    assert [e.path for e in client.managed.pressure()] == [
        "/system.slice/old.service", "/system.slice/whole.service", USER]
    assert logs.getvalue().count("ManagedOOM link to PID 1 dropped") == 1
    clock.t += 1.0
    client.maintain()
    assert client.connected and client.connects == 2
    fake.accept_subscription()
    fake.reply([element("/system.slice/fresh.service")])
    pump(client)
    assert [e.path for e in client.managed.pressure()] == ["/system.slice/fresh.service"]
    assert "half.service" not in logs.getvalue()


def test_bound_socket_is_opened_to_everyone_never_a_symlinks_target(tmp_path,
                                                                    monkeypatch) -> None:
    """Someone who may write the socket's directory swaps the fresh socket for a symlink
    between bind and chmod: root's chmod by name made the link's target 0666."""
    import stat

    from zoomd.systemd import userside

    victim = tmp_path / "secret"
    victim.write_text("s\n")
    victim.chmod(0o600)
    path = str(tmp_path / "user.sock")

    class Swapped(socket.socket):
        def bind(self, address) -> None:
            super().bind(address)
            os.unlink(address)
            os.symlink(victim, address)

    monkeypatch.setattr(userside.socket, "socket", Swapped)
    with pytest.raises(OSError, match="replaced after bind"):
        bind_listener(path)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    monkeypatch.undo()
    sock = bind_listener(path + "2")  # an honest bind is still 0666
    try:
        assert stat.S_IMODE(os.stat(path + "2").st_mode) == 0o666
    finally:
        sock.close()
