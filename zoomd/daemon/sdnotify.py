"""systemd notification without libsystemd: READY=1, STATUS=, WATCHDOG=1 on NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket

from zoomd.kernel.keyvalue import is_decimal


class Notifier:
    """Sends datagrams to $NOTIFY_SOCKET when it is set; silent otherwise."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID")
        ours = pid is None or pid == str(os.getpid())
        # isascii: "²".isdigit() is True and int("²") raises.
        valid = is_decimal(usec) and int(usec) > 0
        self.watchdog_interval = int(usec) / 2e6 if valid and ours else None
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, message: str) -> bool:
        if self._sock is None or not self.address:
            return False
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            # Never wait: a datagram socket whose reader lags (its queue holds only
            # net.unix.max_dgram_qlen, 10 by default) would block sendto, and with it
            # the loop, in the middle of a brownout. A ping that cannot go now is
            # dropped; the next one follows at half the watchdog interval.
            self._sock.sendto(message.encode(), socket.MSG_DONTWAIT, address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
