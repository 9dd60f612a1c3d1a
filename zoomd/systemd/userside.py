"""The user side of ManagedOOM: user managers report their units' cgroups to zoomd.

systemd --user connects to /run/systemd/oom/io.systemd.ManagedOOM (systemd 252:
/run/systemd/oom/io.system.ManagedOOM, which systemd-oomd.socket provides) and calls
io.systemd.oom.ReportManagedOOMCGroups, oneway. zoomd takes the listening socket
from socket activation (LISTEN_FDS/LISTEN_PID) or binds the configured path itself.
The sender's uid comes from SO_PEERCRED: uid 0 may report any cgroup, any other uid
only cgroups under its own user-UID.slice (systemd's cg_path_get_owner_uid()); a
report naming another user's cgroup is refused with an error and logged. A message
that is not JSON ends the connection, as in sd-varlink; unknown methods are answered
org.varlink.service.MethodNotFound and the connection stays.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import socket
import stat
from typing import Any

from zoomd.daemon.log import Logger
from zoomd.systemd.managed import ManagedParametersError, ManagedPermissionError, ManagedSet
from zoomd.systemd.varlink import PeerCred, VarlinkError, VarlinkStream, peer_cred

REPORT = "io.systemd.oom.ReportManagedOOMCGroups"
SD_LISTEN_FDS_START = 3
_USER_SLICE = re.compile(r"user-([0-9]+)\.slice\Z")  # not \d: "user-١٠٠٠.slice" is no uid


def owner_uid_of_path(path: str) -> int | None:
    """The uid of the innermost leading user-UID.slice of a cgroup path, or None."""
    owner = None
    for part in path.strip("/").split("/"):
        if not part.endswith(".slice"):
            break
        match = _USER_SLICE.match(part)
        owner = int(match.group(1)) if match else owner if part == "user.slice" else None
    return owner


def listen_fds(unset: bool = True) -> list[socket.socket]:
    """Sockets passed by socket activation (sd_listen_fds), for this process only."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if unset:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    if pid != os.getpid() or count <= 0:
        return []
    out = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        with contextlib.suppress(OSError):
            os.set_inheritable(fd, False)
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                out.append(socket.socket(fileno=fd))
    return out


def bind_listener(path: str) -> socket.socket:
    """Bind and listen on `path` (mode 0666, as systemd-oomd does), replacing a stale one."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
        _open_to_everyone(path)
    except OSError:
        sock.close()
        raise
    sock.listen(16)
    return sock


def _open_to_everyone(path: str) -> None:
    """chmod 0666 the socket just bound, never what a symlink put in its place leads to:
    root's chmod by name follows one (in a directory someone else may write, that
    would make any file of the host world-writable). The name is opened without
    following it (O_PATH) and the inode it names is changed through the descriptor."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise OSError(errno.EEXIST, f"{path} was replaced after bind; not a socket")
        os.chmod(f"/proc/self/fd/{fd}", 0o666)
    finally:
        os.close(fd)


class UserListener:
    """Accepts user managers' connections and applies their reports."""

    def __init__(self, managed: ManagedSet, logger: Logger,
                 listeners: list[socket.socket]) -> None:
        self.managed = managed
        self.logger = logger
        self.listeners = listeners
        for sock in listeners:
            sock.setblocking(False)
        self.conns: dict[int, tuple[VarlinkStream, PeerCred]] = {}
        self.rejected = 0

    def fds(self) -> dict[int, int]:
        out = {s.fileno(): select.POLLIN for s in self.listeners}
        for fd, (stream, _) in self.conns.items():
            out[fd] = select.POLLIN | (select.POLLOUT if stream.wants_write else 0)
        return out

    def on_event(self, fd: int, mask: int) -> bool:
        """Handle poll events on one of our fds; True when the managed set changed."""
        for sock in self.listeners:
            if sock.fileno() == fd:
                self._accept(sock)
                return False
        entry = self.conns.get(fd)
        if entry is None:
            return False
        stream, cred = entry
        if mask & select.POLLOUT:
            stream.flush()
        if not mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
            return False
        before = self.managed.generation
        try:
            messages = stream.receive()
        except (VarlinkError, EOFError) as exc:
            if isinstance(exc, VarlinkError):
                self.logger.warning("dropping a user manager's ManagedOOM connection",
                                    uid=cred.uid, error=str(exc))
            self._close(fd)
            return self.managed.generation != before
        for message in messages:
            self._handle(stream, cred, message)
        return self.managed.generation != before

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.logger.warning("accept failed on the ManagedOOM socket", error=str(exc))
                return
            try:
                cred = peer_cred(conn)
            except OSError:
                conn.close()
                continue
            stream = VarlinkStream(conn)
            self.conns[stream.fileno()] = (stream, cred)

    def _reply(self, stream: VarlinkStream, message: dict[str, Any],
               reply: dict[str, Any]) -> None:
        if not message.get("oneway"):
            stream.send(reply)

    def _handle(self, stream: VarlinkStream, cred: PeerCred, message: dict[str, Any]) -> None:
        method = message.get("method")
        if not isinstance(method, str):
            self._reply(stream, message, {"error": "org.varlink.service.InvalidParameter",
                                          "parameters": {"parameter": "method"}})
            return
        if method == "io.systemd.service.Ping":
            self._reply(stream, message, {"parameters": {}})
            return
        if method != REPORT:
            self._reply(stream, message, {"error": "org.varlink.service.MethodNotFound",
                                          "parameters": {"method": method}})
            return
        try:
            notes = self.managed.apply(message.get("parameters"), uid=cred.uid,
                                       source=f"uid:{cred.uid}", owner_of=owner_uid_of_path)
        except ManagedParametersError as exc:
            self.logger.warning("malformed ManagedOOM report", uid=cred.uid, error=str(exc))
            self._reply(stream, message, {"error": "org.varlink.service.InvalidParameter",
                                          "parameters": {"parameter": "cgroups"}})
            return
        except ManagedPermissionError as exc:
            self.rejected += 1
            self.logger.warning("refused a ManagedOOM report", uid=cred.uid, pid=cred.pid,
                                error=str(exc))
            self._reply(stream, message, {"error": "io.systemd.System",
                                          "parameters": {"errno": 1}})
            return
        for note in notes:
            self.logger.warning("ManagedOOM report", uid=cred.uid, note=note)
        self._reply(stream, message, {"parameters": {}})

    def _close(self, fd: int) -> None:
        entry = self.conns.pop(fd, None)
        if entry is not None:
            entry[0].close()

    def close(self) -> None:
        for fd in list(self.conns):
            self._close(fd)
        for sock in self.listeners:
            with contextlib.suppress(OSError):
                sock.close()
        self.listeners = []
