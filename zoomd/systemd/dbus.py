"""org.freedesktop.oom1 on the system bus, as systemd-oomd offers it (src/oom/oomd-manager-bus.c).

Object /org/freedesktop/oom1, interface org.freedesktop.oom1.Manager: method
DumpByFileDescriptor() -> h (a sealed memfd holding the text `oomctl dump` prints)
and signal Killed(s cgroup, s reason), reason "memory-pressure" or "memory-used".

Built on jeepney (pure Python, no dependencies, blocking I/O that fits zoomd's poll
loop, file-descriptor passing): an optional extra, `pip install 'zoomd[dbus]'`.
Without it, or without a system bus, zoomd runs and says once that oomctl will not
see it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from typing import Any

from zoomd.daemon.log import Logger

BUS_NAME = "org.freedesktop.oom1"
OBJECT_PATH = "/org/freedesktop/oom1"
INTERFACE = "org.freedesktop.oom1.Manager"
RETRY_S = 30.0
INTROSPECTION = f"""<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
 <interface name="{INTERFACE}">
  <method name="DumpByFileDescriptor"><arg type="h" name="fd" direction="out"/></method>
  <signal name="Killed"><arg type="s" name="cgroup"/><arg type="s" name="reason"/></signal>
 </interface>
 <interface name="org.freedesktop.DBus.Peer">
  <method name="Ping"/>
  <method name="GetMachineId"><arg type="s" name="machine_uuid" direction="out"/></method>
 </interface>
 <interface name="org.freedesktop.DBus.Introspectable">
  <method name="Introspect"><arg name="xml_data" type="s" direction="out"/></method>
 </interface>
 <interface name="org.freedesktop.DBus.Properties">
  <method name="GetAll"><arg name="interface" direction="in" type="s"/>
   <arg name="props" direction="out" type="a{{sv}}"/></method>
 </interface>
</node>
"""


def available() -> bool:
    """True when the optional jeepney package is installed."""
    try:
        import jeepney  # noqa: F401
    except ImportError:
        return False
    return True


def data_fd(text: str) -> int:
    """A read-only view of `text`: a sealed memfd (systemd's acquire_data_fd)."""
    fd = os.memfd_create("zoomd-dump", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        data = text.encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                        | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    except OSError:
        os.close(fd)
        raise
    return fd


class Oom1Service:
    """Owns org.freedesktop.oom1 and answers on it; the daemon polls `fileno()`."""

    def __init__(self, dump: Callable[[], str], logger: Logger, bus: str = "SYSTEM",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dump = dump
        self.logger = logger
        self.bus = bus
        self.clock = clock
        self.conn: Any = None
        self.next_attempt = 0.0
        self.owner = False
        self.signals_sent = 0
        self._complained = False

    def fileno(self) -> int | None:
        return None if self.conn is None else self.conn.sock.fileno()

    def maintain(self) -> None:
        """Connect and request the name when not connected and the retry time has come."""
        if self.conn is not None or self.clock() < self.next_attempt:
            return
        try:
            from jeepney import DBusAddress, new_method_call
            from jeepney.io.blocking import open_dbus_connection
        except ImportError:
            self._complain("jeepney is not installed (pip install 'zoomd[dbus]'): "
                           "org.freedesktop.oom1 is not offered, oomctl will not see zoomd")
            self.next_attempt = float("inf")
            return
        try:
            conn = open_dbus_connection(self.bus, enable_fds=True, auth_timeout=2.0)
            bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                              interface="org.freedesktop.DBus")
            reply = conn.send_and_get_reply(
                new_method_call(bus, "RequestName", "su", (BUS_NAME, 0)), timeout=5.0)
        except Exception as exc:  # any bus failure: retry later
            self._complain(f"cannot offer {BUS_NAME} on the system bus; retrying",
                           error=f"{type(exc).__name__}: {exc}")
            self.next_attempt = self.clock() + RETRY_S
            return
        code = reply.body[0] if reply.body else None
        if code not in (1, 4):
            self.logger.warning(f"{BUS_NAME} is owned by another process; queued for it",
                                result=code)
        self.owner = code in (1, 4)
        self.conn = conn
        self._complained = False
        self.logger.info(f"offering {BUS_NAME} on the D-Bus system bus", result=code)

    def _complain(self, message: str, **fields: Any) -> None:
        if not self._complained:
            self.logger.warning(message, **fields)
            self._complained = True

    def on_readable(self) -> None:
        """Answer every method call that has arrived."""
        if self.conn is None:
            return
        while True:
            try:
                msg = self.conn.receive(timeout=0)
            except TimeoutError:
                return
            except (OSError, ValueError, RuntimeError) as exc:
                self._lost(exc)
                return
            self._dispatch(msg)

    def _lost(self, exc: BaseException) -> None:
        self.logger.warning("lost the D-Bus system bus; reconnecting", error=str(exc))
        with contextlib.suppress(Exception):
            self.conn.close()
        self.conn = None
        self.owner = False
        self.next_attempt = self.clock() + 1.0

    def _dispatch(self, msg: Any) -> None:
        from jeepney import HeaderFields, MessageFlag, MessageType, new_error, new_method_return

        if msg.header.message_type is MessageType.signal:
            fields = msg.header.fields
            if fields.get(HeaderFields.member) == "NameAcquired" and msg.body \
                    and msg.body[0] == BUS_NAME:
                self.owner = True
            return
        if msg.header.message_type is not MessageType.method_call:
            return
        fields = msg.header.fields
        iface = fields.get(HeaderFields.interface)
        member = fields.get(HeaderFields.member)
        path = fields.get(HeaderFields.path)
        reply: Any = None
        fd: int | None = None
        try:
            if path != OBJECT_PATH:
                reply = new_error(msg, "org.freedesktop.DBus.Error.UnknownObject", "s",
                                  (f"Unknown object '{path}'.",))
            elif member == "DumpByFileDescriptor" and iface in (INTERFACE, None):
                fd = data_fd(self.dump())
                reply = new_method_return(msg, "h", (fd,))
            elif member == "Introspect" and iface in ("org.freedesktop.DBus.Introspectable",
                                                      None):
                reply = new_method_return(msg, "s", (INTROSPECTION,))
            elif member == "Ping" and iface in ("org.freedesktop.DBus.Peer", None):
                reply = new_method_return(msg)
            elif member == "GetAll" and iface == "org.freedesktop.DBus.Properties":
                reply = new_method_return(msg, "a{sv}", ({},))
            else:
                reply = new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", "s",
                                  (f"Unknown method {iface}.{member}",))
        except Exception as exc:  # never let a caller crash the daemon
            reply = new_error(msg, "org.freedesktop.DBus.Error.Failed", "s", (str(exc),))
        try:
            if not msg.header.flags & MessageFlag.no_reply_expected:
                self.conn.send(reply)
        except OSError as exc:
            self._lost(exc)
        finally:
            if fd is not None:
                os.close(fd)

    def emit_killed(self, cgroup: str, reason: str) -> None:
        """Signal Killed(cgroup, reason), as systemd-oomd does after each kill."""
        if self.conn is None:
            return
        from jeepney import DBusAddress, new_signal

        emitter = DBusAddress(OBJECT_PATH, interface=INTERFACE)
        try:
            self.conn.send(new_signal(emitter, "Killed", "ss", (cgroup, reason)))
            self.signals_sent += 1
        except OSError as exc:
            self._lost(exc)

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
