"""The daemon: wake on PSI triggers, swap-set changes, signals or the interval; tick.

Each tick reads the host (kept-open files), runs the reclaim model and every
policy, and acts. Nothing waits inside it: a decision's "before" hooks and its kill
are actions in flight, which the loop wakes for (their pidfds, or their next look)
and advances between ticks, so the watchdog and every other policy go on. SIGHUP
reloads the configuration (a bad one is reported and the old one kept);
SIGTERM/SIGINT thaw what zoomd froze and exit (0 on SIGTERM, 130 on SIGINT).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time

from zoomd.actions.backend import ActionBackend, CgroupfsBackend
from zoomd.config.handover import PendingLoad, load_runtime_config
from zoomd.config.runtime import Config
from zoomd.daemon.decision import Decision
from zoomd.daemon.engine import Engine
from zoomd.daemon.hostmodel import HostModel
from zoomd.daemon.log import Logger
from zoomd.daemon.observers import make_observers, reload_observers
from zoomd.daemon.pipeline import TickResult, step
from zoomd.daemon.policy_stalls import open_policy_stalls
from zoomd.daemon.ports import Extension
from zoomd.daemon.preflight import refusal
from zoomd.daemon.psitrigger import PsiTrigger, open_trigger
from zoomd.daemon.sdnotify import Notifier
from zoomd.daemon.selfprotect import lock_memory, set_oom_score_adj, vital_groups
from zoomd.errors import ZoomdError, exit_status
from zoomd.host import HostReader
from zoomd.kernel import hotfile, tap
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root


class Daemon:
    def __init__(self, config_path: str | None, *, root: Root, scope: str = "/",
                 dry_run: bool = False, backend: ActionBackend | None = None,
                 duration: float | None = None, logger: Logger | None = None,
                 systemd: dict | None = None, record: str | None = None) -> None:
        self.config_path = config_path
        self.root = root
        self.scope = scope
        self.dry_run = dry_run
        self.backend = backend or CgroupfsBackend()
        self.duration = duration
        self.config, self.config_files = load_runtime_config(config_path, secure=True)
        self.logger = logger or Logger(self.config.daemon.log_format,
                                       self.config.daemon.log_level)
        # --record: the trace is a tap on every read from here on (start-up's too).
        self.tap = tap.start("/" if root.is_live else root.path) if record else None
        self.host = HostReader(root)
        self.cgroups = CgroupReader(root)
        # The descriptors watched groups may keep open (their files, PSI triggers),
        # resized by _protect_self once the soft limit is raised.
        self.fd_budget = hotfile.process_budget()
        # [taskstats] is read at start only (a reload does not open or close netlink).
        self.stalls, self._delayacct = open_policy_stalls(self.config, self.cgroups,
                                                          self.logger, root)
        self.engine = self._make_engine(self.config)
        self.notifier = Notifier()
        self.triggers: list[PsiTrigger] = []
        self._armed_generation: int | None = None  # engine.generation triggers were armed at
        self._stop = False
        self._stopped_by: int | None = None  # the signal that stopped the loop
        self._reload = False
        self._pending_load: PendingLoad | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._swap_set: tuple[tuple[str, str, bool], ...] | None = None
        self._watching = ""
        self._fd_limit = 0
        self.model = HostModel(self.config.reclaim)
        self.extensions: list[Extension] = []
        wants_systemd = self.config.systemd.managed_oom or self.config.systemd.dbus
        booted = os.path.isdir("/run/systemd/system") or "DBUS_SYSTEM_BUS_ADDRESS" in os.environ
        if wants_systemd and not systemd and not booted:
            # Not booted with systemd: no PID 1 to subscribe to, no oomctl to answer.
            self.logger.info("not a systemd host: ManagedOOM and org.freedesktop.oom1 off")
        elif wants_systemd:
            from zoomd.systemd.integration import SystemdIntegration

            self.extensions.append(SystemdIntegration(self, systemd))
        self.observers = make_observers(self, record)  # trace recorder, metrics

    def install_backend(self, backend: ActionBackend) -> None:
        """An integration's backend around ours (DaemonPort): this engine acts through
        it from now on, and every engine a reload makes."""
        self.backend = backend
        self.engine.backend = backend

    def _make_engine(self, config: Config) -> Engine:
        engine = Engine(config, self.cgroups, self.backend, self.logger, scope=self.scope,
                        dry_run=self.dry_run, vital_groups=vital_groups(self.root),
                        page_size=self.host.page_size, fd_budget=self.fd_budget,
                        wall_clock=time.time)  # the records' wall time: this host's
        engine.stalls = self.stalls
        return engine

    # -- set-up -------------------------------------------------------------------------
    def _protect_self(self) -> None:
        d = self.config.daemon
        self._fd_limit, _budget = hotfile.raise_fd_limit(self.fd_budget)
        if not self.root.is_live:
            return
        err = set_oom_score_adj(d.oom_score_adj)
        if err:
            self.logger.warning("cannot protect zoomd from the OOM killer", error=err)
        if d.mlock:
            err = lock_memory()
            if err:
                self.logger.warning("cannot lock zoomd's memory", error=err)

    def _close_triggers(self) -> None:
        for trig in self.triggers:
            trig.close()
            self.fd_budget.release()
        self.triggers = []

    def _arm_triggers(self) -> None:
        self._close_triggers()
        self._armed_generation = self.engine.generation
        if not self.config.daemon.psi_triggers or not self.root.is_live:
            return  # a captured tree's pressure files are plain files: never write them
        paths = sorted(set(self.engine.monitored_pressure_paths()))
        failed: list[str] = []
        over_budget = 0
        for path in paths:
            if not self.fd_budget.acquire():
                over_budget += 1
                continue
            trig, err = open_trigger(path)
            if trig is None:
                self.fd_budget.release()
                failed.append(err or path)
            else:
                self.triggers.append(trig)
        # One line however many groups are watched: 10,000 lines of the same refusal
        # would bury everything else in the journal.
        if failed:
            self.logger.warning("PSI trigger unavailable, polling instead", error=failed[0],
                                groups=len(failed))
        if over_budget:
            self.logger.warning("PSI triggers on part of the watched groups, the rest polled",
                                armed=len(self.triggers), polled=over_budget,
                                reason="descriptor budget spent (RLIMIT_NOFILE)")

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True
            self._stopped_by = self._stopped_by or signum
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _start_reload(self) -> None:
        """SIGHUP: validate the configuration in a child while the loop goes on."""
        self._reload = False
        self._pending_load = PendingLoad(self.config_path, secure=True)
        self.logger.info("reloading the configuration")

    def _reload_config(self) -> None:
        """Reload and wait for it (tests; the loop itself never waits)."""
        self._start_reload()
        assert self._pending_load is not None
        self._pending_load.wait()
        self._finish_reload()

    def _finish_reload(self) -> None:
        pending, self._pending_load = self._pending_load, None
        assert pending is not None
        try:
            config, files = pending.result()
            engine = self._make_engine(config)
        except ZoomdError as exc:
            self.logger.error("reload failed, keeping the running configuration",
                              error=str(exc))
            return
        # What start-up would refuse (a listen address that cannot be bound, a textfile
        # directory that is gone) must not stop a running daemon: keep the old one.
        problem = refusal(config, lambda: self.cgroups, self.scope,
                          self.config.metrics.listen)
        if problem is not None:
            engine.close()
            self.logger.error("reload failed, keeping the running configuration",
                              error=problem)
            return
        for outcome in self.engine.thaw_all():
            self.logger.info("thawed on reload", target=outcome.target, ok=outcome.ok)
        self.engine.close()
        self.config, self.config_files, self.engine = config, files, engine
        self.model.params = config.reclaim
        self.host.refresh_watermarks()  # a changed vm.min_free_kbytes counts from now
        for ext in self.extensions:
            ext.on_reload()
        try:
            reload_observers(self)
        except ZoomdError as exc:  # preflight bound the address; someone took it since
            self.logger.error("metrics unavailable after the reload", error=str(exc))
        self._arm_triggers()
        self.logger.info("configuration reloaded", files=",".join(files))

    # -- loop ---------------------------------------------------------------------------
    def tick(self) -> TickResult:
        started = time.monotonic()
        if self.tap is not None:
            self.tap.begin()  # what the trace's sample holds: this tick's first reads
        for ext in self.extensions:
            ext.before_tick()
        snap = self.host.sample()
        self._report_swap_set(snap)
        # Template instances first, so the trace captures the groups this tick judges
        # and new groups' pressure files get their triggers.
        self.engine.sync_instances(snap.monotonic)
        if self.engine.generation != self._armed_generation:
            self._arm_triggers()
        result = step(snap, self.model, self.engine, started)
        more: list[Decision] = []
        for ext in self.extensions:
            more += ext.after_tick(snap, result.estimate)
        result = result.with_decisions(more, started)  # timed to here, the rules' too
        for obs in self.observers:
            obs.observe(self, result)
        return result

    def _report_swap_set(self, snap) -> None:
        """Log the swap devices and what backs them whenever the set changes (swapon,
        swapoff, a zram device reset and set up again), and tell systemd (STATUS=)."""
        swaps = tuple((s.entry.path, s.kind.kind, s.kind.ram_backed) for s in snap.swaps)
        if swaps == self._swap_set:
            return
        first = self._swap_set is None
        self._swap_set = swaps
        text = ", ".join(f"{path} ({kind}, {'RAM' if ram else 'disk'})"
                         for path, kind, ram in swaps) or "none"
        self.logger.info("swap devices", devices=text, all_ram_backed=snap.all_ram_backed)
        if not first and self._watching:
            self.notifier.status(f"{self._watching}; swap: {text}")

    def run(self) -> int:
        self._protect_self()
        self._arm_triggers()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        mode = "dry-run" if self.engine.dry_run else "acting"
        names = ", ".join(s.policy.name for s in self.engine.states
                          if s.template is None) or "none"
        templates = ", ".join(p.name for p in self.engine.templates) or None
        self.logger.info(f"zoomd started ({mode})", policies=names, templates=templates,
                         config=",".join(self.config_files), scope=self.scope,
                         triggers=len(self.triggers), fd_limit=self._fd_limit,
                         fds_kept_open_at_most=self.fd_budget.limit)
        self._watching = f"watching: {names} ({mode})"
        self.notifier.ready(self._watching)
        started = time.monotonic()
        last_watchdog = 0.0
        next_tick = started
        poller = select.poll()
        try:
            while not self._stop:
                now = time.monotonic()
                if self.duration is not None and now - started >= self.duration:
                    break
                # A reload waits for the actions in flight: they belong to this engine.
                if self._pending_load is not None and self._pending_load.done and \
                        not self.engine.inflight:
                    self._finish_reload()
                if self._reload and self._pending_load is None:
                    self._start_reload()
                if now >= next_tick:
                    try:
                        self.tick()
                    except ZoomdError as exc:
                        # A misread value never becomes an action: skip this tick, say why.
                        self.logger.error("tick skipped", error=str(exc))
                    d = self.config.daemon
                    next_tick = time.monotonic() + (
                        d.fast_interval if self.engine.busy or self._pressured()
                        else d.interval)
                else:
                    self.engine.advance_actions()  # woken for an action in flight
                now = time.monotonic()
                watchdog = self.notifier.watchdog_interval
                if watchdog and now - last_watchdog >= watchdog:
                    self.notifier.watchdog()
                    last_watchdog = now
                timeout = next_tick - now
                wake = self.engine.action_wake_in()
                if wake is not None:
                    timeout = min(timeout, wake)
                if watchdog:
                    timeout = min(timeout, last_watchdog + watchdog - now)
                if self.duration is not None:
                    timeout = min(timeout, self.duration - (now - started))
                if self._wait(poller, max(0.0, timeout)):
                    next_tick = now  # a trigger, a signal, a socket: tick at once
        finally:
            self.shutdown()
        return exit_status(self._stopped_by)

    def _pressured(self) -> bool:
        """Any watched group stalled since the previous tick: sample fast."""
        for state in self.engine.states:
            hist = state.history
            last = hist.latest()
            prev = hist.at_or_before(last.t - 0.001) if last else None
            if last and prev and last.psi_some_us is not None and prev.psi_some_us is not None \
                    and last.psi_some_us > prev.psi_some_us:
                return True
        return False

    def _wait(self, poller: select.poll, timeout: float) -> bool:
        """Sleep until an event or `timeout`; True when something other than an action
        in flight woke us (that calls for a tick)."""
        fds = {self._wake_r: select.POLLIN}
        pending = self._pending_load
        for fd in pending.fds() if pending is not None else ():
            fds[fd] = select.POLLIN
        for trig in self.triggers:
            fds[trig.fd] = select.POLLPRI
        if self.host.swaps_fd is not None:
            fds[self.host.swaps_fd] = select.POLLPRI | select.POLLERR
        owners = {}
        for ext in self.extensions:
            for fd, mask in ext.fds().items():
                fds[fd], owners[fd] = mask, ext
        actions = set(self.engine.action_fds()) - set(fds)
        for fd in actions:
            fds[fd] = select.POLLIN
        for fd, mask in fds.items():
            poller.register(fd, mask)
        try:
            events = poller.poll(timeout * 1000.0)
        except InterruptedError:
            events = []
        finally:
            for fd in fds:
                poller.unregister(fd)
        for fd, mask in events:
            if fd in actions:
                continue  # advanced by the loop, no tick needed
            if fd == self._wake_r:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 64)
            elif pending is not None and fd in pending.fds():
                pending.on_readable()
            elif fd in owners:
                owners[fd].on_event(fd, mask)
            elif fd == self.host.swaps_fd:
                self.logger.info("swap set changed; re-reading devices")
                self.host.invalidate_devices()
            elif mask & select.POLLERR:
                self.logger.warning("PSI trigger source gone; re-arming")
                self._arm_triggers()
        return any(fd not in actions for fd, _ in events)

    def shutdown(self) -> None:
        if self._pending_load is not None:
            self._pending_load.cancel()
            self._pending_load = None
        # What is in flight is finished (its record logged), as it was when the tick
        # that decided it carried it out: bounded by the hooks' and the kill's timeouts.
        self.engine.finish_in_flight()
        if self.config.daemon.thaw_on_exit:
            for outcome in self.engine.thaw_all():
                self.logger.info("thawed on exit", target=outcome.target, ok=outcome.ok)
        self.notifier.stopping()
        self._close_triggers()
        self.engine.close()
        for ext in self.extensions:
            ext.close()
        for obs in self.observers:
            obs.close()
        self.host.close()
        self.notifier.close()
        if self._delayacct is not None:
            try:
                self._delayacct.restore()  # put kernel.task_delayacct back as we found it
            except ZoomdError as exc:
                self.logger.warning("cannot restore kernel.task_delayacct", error=str(exc))
        self.logger.info("zoomd stopped")
