"""The system side of ManagedOOM: subscribe to PID 1 and keep the subscription alive.

zoomd calls io.systemd.ManagedOOM.SubscribeManagedOOMCGroups with "more": true on
PID 1's socket (/run/systemd/io.systemd.ManagedOOM; systemd 252 and older listen on
/run/systemd/io.system.ManagedOOM, with the same method name). The first reply is
every cgroup marked =kill; each later reply ("continues": true) is an update. PID 1
answers org.varlink.service.PermissionDenied unless the caller runs in
systemd-oomd.service. When the link drops zoomd reconnects (after 1 s, then backing
off to 30 s while PID 1 keeps refusing) and takes PID 1's new first reply as the
whole truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from zoomd.daemon.log import Logger
from zoomd.systemd.managed import ManagedParametersError, ManagedSet
from zoomd.systemd.varlink import VarlinkError, VarlinkStream, connect

SYSTEM_SOCKETS = ("/run/systemd/io.systemd.ManagedOOM", "/run/systemd/io.system.ManagedOOM")
SUBSCRIBE = "io.systemd.ManagedOOM.SubscribeManagedOOMCGroups"
RETRY_S = 1.0
MAX_RETRY_S = 30.0


class Pid1Client:
    """Non-blocking subscriber; the daemon polls `fileno()` and calls `on_readable()`."""

    def __init__(self, managed: ManagedSet, logger: Logger, paths: tuple[str, ...] = SYSTEM_SOCKETS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.managed = managed
        self.logger = logger
        self.paths = paths
        self.clock = clock
        self.stream: VarlinkStream | None = None
        self.path: str | None = None
        self.next_attempt = 0.0
        self.retry = RETRY_S
        self.got_snapshot = False
        self.connects = 0
        self._last_complaint: str | None = None

    def fileno(self) -> int | None:
        return None if self.stream is None or self.stream.closed else self.stream.fileno()

    @property
    def connected(self) -> bool:
        return self.fileno() is not None

    def _complain(self, message: str, **fields: Any) -> None:
        """Say a failure once, not every retry."""
        if message != self._last_complaint:
            self.logger.warning(message, **fields)
            self._last_complaint = message

    def maintain(self) -> None:
        """Connect and subscribe when not connected and the retry time has come."""
        if self.connected or self.clock() < self.next_attempt:
            return
        errors = []
        for path in self.paths:
            try:
                sock = connect(path)
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror or exc}")
                continue
            self.stream = VarlinkStream(sock)
            self.path = path
            self.got_snapshot = False
            self.connects += 1
            self.stream.send({"method": SUBSCRIBE, "parameters": {}, "more": True})
            # "subscribed" is said once PID 1 answers with its snapshot: it refuses a
            # subscriber outside systemd-oomd.service only after the connect.
            return
        self._complain("cannot reach PID 1's ManagedOOM socket; retrying",
                       errors="; ".join(errors))
        self._schedule(backoff=True)

    def _schedule(self, backoff: bool) -> None:
        self.next_attempt = self.clock() + self.retry
        self.retry = min(MAX_RETRY_S, self.retry * 2) if backoff else RETRY_S

    def _drop(self, why: str, backoff: bool = False) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = None
        self._complain(f"ManagedOOM link to PID 1 dropped: {why}; reconnecting")
        self._schedule(backoff)

    def on_readable(self) -> bool:
        """Read PID 1's replies; True when the managed set changed."""
        if self.stream is None:
            return False
        before = self.managed.generation
        try:
            messages = self.stream.receive()
        except VarlinkError as exc:
            self._drop(f"protocol error: {exc}")
            return self.managed.generation != before
        except EOFError:
            self._drop("PID 1 closed the connection")
            return self.managed.generation != before
        for message in messages:
            if not self._handle(message):
                break
        return self.managed.generation != before

    def _handle(self, message: dict[str, Any]) -> bool:
        error = message.get("error")
        if error is not None:
            hint = ""
            if error == "org.varlink.service.PermissionDenied":
                hint = " (PID 1 accepts a subscriber only from systemd-oomd.service)"
            self._drop(f"PID 1 answered {error}{hint}", backoff=True)
            return False
        parameters = message.get("parameters")
        try:
            if not self.got_snapshot:
                notes = self.managed.replace_source("system", parameters)
                self.got_snapshot = True
                self.logger.info("subscribed to PID 1's ManagedOOM cgroups", socket=self.path)
            else:
                notes = self.managed.apply(parameters, uid=0, source="system")
        except ManagedParametersError as exc:
            self.logger.warning("ignoring a malformed ManagedOOM update from PID 1",
                                error=str(exc))
            notes = []
        for note in notes:
            self.logger.warning("ManagedOOM update from PID 1", note=note)
        self.retry = RETRY_S
        self._last_complaint = None
        if not message.get("continues"):
            self._drop("PID 1 ended the subscription")
            return False
        return True

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
