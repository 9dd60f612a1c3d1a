"""The daemon's two ports for integrations (the systemd one): what an integration may
use of the daemon, and what the loop calls on an integration.

An integration never reaches into the loop: it reads the running engine (replaced on
reload), puts its own backend around the daemon's (for this engine and every later
one) and adds or removes policies through the engine, whose generation tells the loop
to re-arm its PSI triggers.
"""

from __future__ import annotations

from typing import Protocol

from zoomd.actions.backend import ActionBackend
from zoomd.config.runtime import Config
from zoomd.daemon.decision import Decision
from zoomd.daemon.engine import Engine
from zoomd.daemon.log import Logger
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root
from zoomd.model.reclaim import ReclaimEstimate
from zoomd.model.snapshot import HostSnapshot


class DaemonPort(Protocol):
    """What an integration uses of the daemon (zoomd.daemon.loop.Daemon is one)."""

    root: Root
    cgroups: CgroupReader
    logger: Logger
    config: Config
    backend: ActionBackend  # what the engines act through (see install_backend)
    engine: Engine  # the running one: replaced on reload, read it afresh

    def install_backend(self, backend: ActionBackend) -> None:
        """Act through `backend` from now on, this engine and those after a reload."""
        ...


class Extension(Protocol):
    """What the loop calls on an integration."""

    def fds(self) -> dict[int, int]:
        """Descriptors to wake on (fd -> poll mask)."""
        ...

    def on_event(self, fd: int, mask: int) -> None: ...

    def before_tick(self) -> None: ...

    def after_tick(self, host: HostSnapshot, estimate: ReclaimEstimate) -> list[Decision]:
        """Decisions of the integration's own rules, made through the engine."""
        ...

    def on_reload(self) -> None:
        """The engine was replaced (daemon.engine is the new one)."""
        ...

    def close(self) -> None: ...
