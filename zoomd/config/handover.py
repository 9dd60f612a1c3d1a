"""Load zoomd.toml for the daemon without pydantic in the daemon's process.

The daemon runs zoomd.config.handover as a short-lived, isolated child (`python -I`,
the daemon's own zoomd; zoomd/isolated.py): the child reads and validates the
configuration with pydantic, exactly as `zoomd check` does, and hands back the
plain dataclasses of zoomd/config/runtime.py (pickled over a pipe between the
daemon and its own child). Pydantic and its validators (~18 MiB resident) live and
die with the child. The child's errors come back as the same one-line ConfigError,
naming the file and the key.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import subprocess
import sys
import time
from collections.abc import Callable

from zoomd.config import runtime
from zoomd.errors import ConfigError, ZoomdError
from zoomd.isolated import child_env, module_argv

CHILD_TIMEOUT_S = 60.0  # a host deep in reclaim can take a while to start Python


def _child_argv(path: str | None, drop_ins: bool, secure: bool) -> list[str]:
    """Isolated (zoomd/isolated.py): the daemon runs as root and must not import a
    zoomd or pydantic that happens to sit in its working directory."""
    args: list[str] = []
    if path is not None:
        args += ["--config", path]
    if not drop_ins:
        args.append("--no-drop-ins")
    if secure:
        args.append("--secure")
    return module_argv("zoomd.config.handover", *args)


def _answer(returncode: int | None, stdout: bytes,
            stderr: bytes) -> tuple[runtime.Config, list[str]]:
    if returncode != 0 or not stdout:
        last = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ZoomdError(f"configuration: the validating child failed "
                         f"(exit {returncode}): {last[0]}")
    try:
        answer = pickle.loads(stdout)
    except Exception as exc:
        raise ZoomdError(f"configuration: unreadable answer from the validating child: "
                         f"{exc}") from None
    return _unpack(answer)


def load_runtime_config(path: str | None = None, drop_ins: bool = True,
                        secure: bool = False) -> tuple[runtime.Config, list[str]]:
    """Validate in a child interpreter and wait; returns the plain configuration and
    its files (start-up; a reload uses PendingLoad without waiting)."""
    pending = PendingLoad(path, drop_ins, secure)
    pending.wait()
    return pending.result()


class PendingLoad:
    """A validating child running beside the daemon's loop (SIGHUP): the loop keeps
    ticking while it starts, which on a host deep in reclaim can take seconds.

    The loop polls `fds()` with the rest, calls `on_readable()` when they are ready
    and `result()` once `done`.
    """

    def __init__(self, path: str | None, drop_ins: bool = True, secure: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self._out: dict[int, bytearray] = {}
        self._open: set[int] = set()
        self.error: ZoomdError | None = None
        try:  # child_env: no NOTIFY_SOCKET or LISTEN_* (never notify, never listen)
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                _child_argv(path, drop_ins, secure), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
        except OSError as exc:
            self.proc, self.error = None, ZoomdError(
                f"configuration: cannot run the validating child: {exc}")
            return
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._stdout_fd, self._stderr_fd = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        for fd in (self._stdout_fd, self._stderr_fd):
            os.set_blocking(fd, False)
            self._out[fd] = bytearray()
            self._open.add(fd)

    def fds(self) -> list[int]:
        return sorted(self._open)

    def on_readable(self) -> None:
        for fd in list(self._open):
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError:
                    chunk = b""
                if not chunk:
                    self._open.discard(fd)
                    break
                self._out[fd] += chunk

    @property
    def done(self) -> bool:
        if self.proc is None:
            return True
        self.on_readable()
        if not self._open:
            return True
        if self._clock() - self.started > CHILD_TIMEOUT_S:
            self.proc.kill()
            self.error = ZoomdError(f"configuration: the validating child took more than "
                                    f"{CHILD_TIMEOUT_S:.0f} s; killed")
            self._open.clear()
            return True
        return False

    def wait(self) -> None:
        """Block until the child is done (or has overrun CHILD_TIMEOUT_S)."""
        while not self.done:
            poller = select.poll()  # not select(): the daemon's descriptors may pass 1,024
            for fd in self.fds():
                poller.register(fd, select.POLLIN)
            poller.poll(1000)

    def cancel(self) -> None:
        """Kill and reap the child (the daemon is stopping)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.error = self.error or ZoomdError("configuration: reload cancelled")
        self._open.clear()
        with contextlib.suppress(ZoomdError):
            self.result()

    def result(self) -> tuple[runtime.Config, list[str]]:
        """The configuration, or the ZoomdError saying why not (the child is reaped)."""
        returncode: int | None = None
        if self.proc is not None:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
            try:
                returncode = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                returncode = self.proc.wait()
        if self.error is not None:
            raise self.error
        return _answer(returncode, bytes(self._out[self._stdout_fd]),
                       bytes(self._out[self._stderr_fd]))


def _unpack(answer: object) -> tuple[runtime.Config, list[str]]:
    if isinstance(answer, tuple) and len(answer) >= 2:
        kind = answer[0]
        if kind == "ok" and len(answer) == 3 and isinstance(answer[1], runtime.Config):
            return answer[1], list(answer[2])
        if kind == "config-error" and len(answer) == 4:
            raise ConfigError(*answer[1:])
        if kind == "error":
            raise ZoomdError(str(answer[1]))
    raise ZoomdError("configuration: unexpected answer from the validating child")


def _child(argv: list[str]) -> int:
    """Validate and write the pickled answer to stdout."""
    import argparse

    from zoomd.config.load import load_config

    parser = argparse.ArgumentParser(prog="python -m zoomd.config.handover")
    parser.add_argument("--config", default=None)
    parser.add_argument("--no-drop-ins", action="store_true")
    parser.add_argument("--secure", action="store_true")
    args = parser.parse_args(argv)
    answer: tuple[object, ...]
    try:
        # --secure is the daemon's (run, reload): what cannot run here is refused too.
        config, files = load_config(args.config, drop_ins=not args.no_drop_ins,
                                    secure=args.secure, on_host=args.secure)
        answer = ("ok", config, files)
    except ConfigError as exc:
        answer = ("config-error", exc.path, exc.key, exc.reason)
    except ZoomdError as exc:
        answer = ("error", str(exc))
    sys.stdout.buffer.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
