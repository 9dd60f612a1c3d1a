"""zoomd as systemd-oomd: ties oomd.conf, the ManagedOOM links, the swap rule, the kill
counters and org.freedesktop.oom1 to the daemon's loop.

The daemon calls, in its loop: `fds()` and `on_event()` for the sockets, and
`after_tick()` with each host snapshot; `on_reload()` after SIGHUP swaps the engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import select
from typing import Any

from zoomd.actions.outcome import ActionOutcome
from zoomd.config.runtime import SystemdSection
from zoomd.daemon.decision import Decision
from zoomd.daemon.ports import DaemonPort
from zoomd.errors import ZoomdError
from zoomd.model.reclaim import ReclaimEstimate
from zoomd.model.snapshot import HostSnapshot
from zoomd.systemd import dbus
from zoomd.systemd.dump import Dumper, DumpState
from zoomd.systemd.managed import PRESSURE_PREFIX, ZRAM_PREFIX, ManagedSet, pressure_policies
from zoomd.systemd.oomdconf import OomdConf, load_oomd_conf
from zoomd.systemd.oomrules import OomRule, load_rules
from zoomd.systemd.pid1 import SYSTEM_SOCKETS, Pid1Client
from zoomd.systemd.prekill import PrekillBackend
from zoomd.systemd.rules import RulesGuard
from zoomd.systemd.swaprule import SwapGuard
from zoomd.systemd.userside import UserListener, bind_listener, listen_fds
from zoomd.systemd.xattrs import ReportingBackend


def _cgroup_of(reader: Any, directory: str) -> str:
    """Kernel directory of a v2 group -> its cgroup path."""
    base = reader.root.join(reader.layout.v2_dir("/")).rstrip("/")
    rest = directory[len(base):] if directory.startswith(base) else directory
    return "/" + rest.strip("/") if rest.strip("/") else "/"


class SystemdIntegration:
    """One per daemon; survives configuration reloads."""

    def __init__(self, daemon: DaemonPort, overrides: dict[str, Any] | None = None) -> None:
        self.daemon = daemon
        self.overrides = overrides or {}
        self.logger = daemon.logger
        self.managed = ManagedSet()
        self.swap_guard = SwapGuard()
        self.rules_guard = RulesGuard(self.logger)
        self.rules: dict[str, OomRule] = {}
        self.managed.known_rule = lambda name: name in self.rules
        self.conf = OomdConf()
        self.applied_generation = -1
        self.section = self._section()
        self._load_conf()
        reader = daemon.cgroups
        self.reporting = ReportingBackend(daemon.backend, lambda d: _cgroup_of(reader, d))
        self.reporting.listeners.append(self._on_kill)
        # Outside the reporting: the hooks run first, then user.oomd_ooms and the kill.
        self.backend = PrekillBackend(self.reporting, lambda d: _cgroup_of(reader, d),
                                      lambda: self.conf.prekill_timeout_usec, self.logger)
        daemon.install_backend(self.backend)
        self.dumper = Dumper(reader, self.section.dump_format)
        self.pid1: Pid1Client | None = None
        self.user: UserListener | None = None
        self.bus: dbus.Oom1Service | None = None
        self._start_links()

    # -- configuration --------------------------------------------------------------
    def _section(self) -> SystemdSection:
        section = self.daemon.config.systemd
        return dataclasses.replace(section, **self.overrides) if self.overrides else section

    def _load_conf(self) -> None:
        self.conf = load_oomd_conf() if self.section.oomd_conf else OomdConf()
        for warning in self.conf.warnings:
            self.logger.warning(f"oomd.conf: {warning}")
        self.rules, warnings = load_rules() if self.section.oomd_conf else ({}, ())
        for warning in warnings:
            self.logger.warning(f"oomrule: {warning}")
        if self.rules:
            self.logger.info("OOM rulesets", rules=",".join(sorted(self.rules)))
        self.rules_guard.reset()

    def _start_links(self) -> None:
        section = self.section
        if section.managed_oom and self.pid1 is None:
            paths = (section.system_socket,) if section.system_socket else SYSTEM_SOCKETS
            self.pid1 = Pid1Client(self.managed, self.logger, paths)
        if section.managed_oom and self.user is None:
            sockets = listen_fds()
            if not sockets and section.user_socket:
                try:
                    sockets = [bind_listener(section.user_socket)]
                except OSError as exc:
                    self.logger.warning("cannot listen for user managers",
                                        socket=section.user_socket, error=str(exc))
            if sockets:
                self.user = UserListener(self.managed, self.logger, sockets)
                self.logger.info("listening for user managers' ManagedOOM reports",
                                 sockets=len(sockets))
        if section.dbus and self.bus is None:
            self.bus = dbus.Oom1Service(self.dump_text, self.logger)

    def on_reload(self) -> None:
        """The engine was replaced: reapply oomd.conf and the managed policies."""
        self.section = self._section()
        self._load_conf()
        self.dumper.style = self.section.dump_format
        self.applied_generation = -1
        self._start_links()
        self._sync_policies()

    # -- managed cgroups -> policies -------------------------------------------------
    def _sync_policies(self) -> None:
        if self.applied_generation == self.managed.generation:
            return
        engine = self.daemon.engine
        wanted = {}
        for entry in self.managed.pressure():
            if not engine.reader.exists(entry.path):
                self.logger.info("managed cgroup is gone; no longer guarded", path=entry.path)
                self.managed.drop(entry.path)
                continue
            for policy in pressure_policies(entry, self.conf, self.section):
                wanted[policy.name] = policy
        current = {s.policy.name: s.policy for s in engine.states
                   if s.policy.name.startswith((PRESSURE_PREFIX, ZRAM_PREFIX))}
        for name, policy in current.items():
            if wanted.get(name) != policy:
                engine.remove_policy(name)
        for name, policy in wanted.items():
            if current.get(name) != policy:
                try:
                    # systemd-oomd counts a monitored leaf unit as its own candidate.
                    engine.add_policy(policy, leaf_is_candidate=True)
                except ZoomdError as exc:
                    self.logger.warning("cannot guard managed cgroup", policy=name,
                                        error=str(exc))
                    continue
                self.logger.info("guarding a ManagedOOM cgroup", policy=name,
                                 limit=f"{policy.all.memory_pressure_full_avg10_above}%"
                                 if name.startswith(PRESSURE_PREFIX) else None,
                                 duration=f"{policy.for_:g}s")
        self.applied_generation = self.managed.generation
        # The engine's generation moved with its policies: the loop re-arms its PSI
        # triggers before this tick's engine step (and after a reload).

    # -- the loop's hooks --------------------------------------------------------------
    def fds(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for client in (self.pid1, self.bus):
            if client is not None:
                client.maintain()
                fd = client.fileno()
                if fd is not None:
                    out[fd] = select.POLLIN
        if self.user is not None:
            out.update(self.user.fds())
        return out

    def on_event(self, fd: int, mask: int) -> None:
        if self.pid1 is not None and fd == self.pid1.fileno():
            self.pid1.on_readable()
        elif self.bus is not None and fd == self.bus.fileno():
            self.bus.on_readable()
        elif self.user is not None:
            self.user.on_event(fd, mask)

    def before_tick(self) -> None:
        self._sync_policies()

    def after_tick(self, host: HostSnapshot, estimate: ReclaimEstimate) -> list[Decision]:
        self._meminfo = host.meminfo
        engine = self.daemon.engine
        record = self.swap_guard.tick(engine, host, estimate, self.managed.swap(),
                                      self.conf.swap_used_limit, self.section.mode)
        ruled = self.managed.rules()
        for entry in ruled:
            if not engine.reader.exists(entry.path):
                self.logger.info("OOMRules cgroup is gone; no longer guarded",
                                 path=entry.path)
                self.managed.drop(entry.path)
        by_rule = self.rules_guard.tick(engine, host, estimate, self.managed.rules(),
                                        self.rules, self.section.mode)
        return [r for r in (record, by_rule) if r]

    def _on_kill(self, cgroup: str, reason: str, _outcome: ActionOutcome) -> None:
        if self.bus is not None:
            self.bus.emit_killed(cgroup, reason)

    def dump_text(self) -> str:
        from zoomd.kernel.meminfo import read_meminfo

        state = DumpState(self.daemon.engine.dry_run, self.conf, self.managed.swap(),
                          self.managed.pressure())
        return self.dumper.render(state, read_meminfo(self.daemon.root))

    def close(self) -> None:
        for part in (self.pid1, self.user, self.bus):
            if part is not None:
                with contextlib.suppress(OSError):
                    part.close()
