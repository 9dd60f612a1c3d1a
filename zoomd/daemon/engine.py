"""Policy state machines: when conditions have held long enough, choose and act.

The engine is driven by `tick()` with the host snapshot of the moment; it owns no
timers and reads no clock of its own (the wall time its records carry comes from an
injected `wall_clock`), so tests and replay can drive it with any clock. Acting goes
through an ActionBackend, which dry-run replaces. Nothing in a tick waits: a
decision's before-hooks and its kill are an action in flight (daemon/inflight.py),
advanced by each later tick and, between ticks, by the loop (`advance_actions`); its
record, a Decision (daemon/decision.py), is made when it is over.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from zoomd.actions.backend import ActionBackend, DryRunBackend, Finished, PendingAction
from zoomd.actions.outcome import ActionOutcome
from zoomd.config.runtime import Config, Policy, is_template
from zoomd.daemon import candidates as cand_mod
from zoomd.daemon import templates as tmpl_mod
from zoomd.daemon.decision import Decision, HookRun, RankedCandidate, ReclaimFigures
from zoomd.daemon.domains import Domain
from zoomd.daemon.globs import is_ancestor_or_self, matches, relative_to, scoped
from zoomd.daemon.hooks import HookRunner
from zoomd.daemon.inflight import InFlight, InFlightSet
from zoomd.daemon.log import Logger
from zoomd.daemon.monitor import GroupMonitor, open_monitor
from zoomd.daemon.policy_stalls import PolicyStalls, uses_protected_stall
from zoomd.daemon.processes import ProcessChoice, choose_process, major_faults
from zoomd.daemon.sample import GroupSample, History
from zoomd.daemon.triggers import (
    NO_EVIDENCE,
    TURNOVER_WINDOW_S,
    Verdict,
    WindowFigures,
    judge,
    uses_turnover,
    window_figures,
)
from zoomd.errors import ZoomdError
from zoomd.kernel.cgroups import MAX_PIDS_OWNED, CgroupReader
from zoomd.kernel.hotfile import FdBudget, process_budget
from zoomd.kinds import Action, RankKey
from zoomd.model.reclaim import ReclaimEstimate
from zoomd.model.snapshot import HostSnapshot

# At least this long between discoveries per group walked (10,000 groups: every 25 s,
# ~4% of a core; benchmarks/discovery.py).
DISCOVERY_S_PER_GROUP = 0.0025
RECORDS_KEPT = 16  # each holds its candidates and skipped groups: ~20 KiB at 200 groups
SHOWN_CANDIDATES = 10  # candidates a record shows (the first is the victim)


@dataclass
class FrozenGroup:
    path: str
    frozen_at: float
    clear_since: float | None = None


@dataclass
class PolicyState:
    """What one policy remembers between ticks."""

    policy: Policy
    monitor: GroupMonitor
    history: History
    pending_since: float | None = None
    quiet_until: float = 0.0
    baseline: dict[str, cand_mod.Candidate] = field(default_factory=dict)
    # Major faults of the processes directly in the watched group at the same start.
    process_faults: dict[int, int] = field(default_factory=dict)
    frozen: dict[str, FrozenGroup] = field(default_factory=dict)
    verdict: Verdict = NO_EVIDENCE  # this tick's: its conditions over its window
    last_no_victim_log: float = -1e9
    last_sample_error_log: float = -1e9
    template: str | None = None  # the template this policy is an instance of
    domain: Domain | None = None  # the memory domain it guards (select = "limited")
    leaf_is_candidate: bool = False  # see Engine.add_policy

    @property
    def last_figures(self) -> WindowFigures | None:
        return self.verdict.figures


class Engine:
    """Evaluates every policy each tick and acts through the backend."""

    def __init__(self, config: Config, reader: CgroupReader, backend: ActionBackend,
                 logger: Logger, *, scope: str = "/", dry_run: bool = False,
                 vital_groups: tuple[str, ...] = (), page_size: int = 4096,
                 fd_budget: FdBudget | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.wall_clock = wall_clock  # the time a record says it was made (replay: the trace's)
        # Descriptors every watched group's files may keep open, together (the daemon
        # shares its budget with its PSI triggers; None: one of the engine's own).
        self.fd_budget = fd_budget if fd_budget is not None else process_budget()
        self.reader = reader
        self.backend = backend
        self.dry_backend = DryRunBackend()
        self.logger = logger
        self.scope = scope
        self.dry_run = dry_run or config.daemon.dry_run
        self.page_size = page_size
        self.exclusions = cand_mod.Exclusions(
            protect=tuple(config.daemon.protect), vital_groups=vital_groups)
        # The latest decision records (they are logged as they are made): bounded, so a
        # daemon that acts for months does not keep every record it ever made.
        self.records: deque[Decision] = deque(maxlen=RECORDS_KEPT)
        self.hooks = HookRunner(tuple(config.hook))
        self.inflight = InFlightSet()
        self._finished: list[Decision] = []  # records made between two ticks
        self.stalls: PolicyStalls | None = None  # set by the daemon when [taskstats] is on
        self.states: list[PolicyState] = []
        # Templates (glob monitors, select = "limited"): their instances are policies
        # added and removed by sync_instances() as groups come and go.
        self.templates = tmpl_mod.templates_of(config.policy, scope)
        self.generation = 0  # counts changes to the set of policies (triggers re-armed)
        self._next_discovery = -1e18
        self._unguarded_logged: set[str] = set()
        for policy in config.policy:
            if not is_template(policy):
                self.add_policy(policy, scope=scope)

    def add_policy(self, policy: Policy, *, scope: str = "/", template: str | None = None,
                   domain: Domain | None = None, leaf_is_candidate: bool = False) -> None:
        """Start evaluating a policy (at start-up, or one made at run time).

        `leaf_is_candidate`: a watched group with no children is its own candidate, as
        a template's instances' groups are (a container's processes live in the group
        with the limit) and as systemd-oomd counts a ManagedOOM leaf unit."""
        path = scoped(policy.monitor, scope)
        horizon = max(policy.window, 10.0) + policy.for_
        if uses_turnover(policy.all, policy.any):
            horizon = max(horizon, TURNOVER_WINDOW_S + 1.0)
        monitor = open_monitor(path, reader=self.reader,
                               v1_path=domain.v1_path if domain else None,
                               limit=domain.limit if domain else None, budget=self.fd_budget)
        self.states.append(PolicyState(policy, monitor, History(horizon),
                                       template=template, domain=domain,
                                       leaf_is_candidate=leaf_is_candidate
                                       or template is not None))
        self.generation += 1

    def sync_instances(self, now: float) -> None:
        """Create and drop template instances as groups appear and vanish (every
        [daemon] discover_interval): one look at the tree, bounded in groups walked."""
        if not self.templates or now < self._next_discovery:
            return
        self._next_discovery = now + self.config.daemon.discover_interval
        try:
            wanted, discovery = tmpl_mod.instances_now(self.templates, self.reader)
        except (OSError, ZoomdError) as exc:
            self.logger.warning("cannot discover groups", error=str(exc))
            return
        if discovery is not None:
            # A big tree is walked less often: its cost grows with the groups, and
            # what it finds (a new unit or container) can wait a little longer.
            self._next_discovery = now + max(self.config.daemon.discover_interval,
                                             discovery.walked * DISCOVERY_S_PER_GROUP)
        if discovery is not None:
            for group, reason in discovery.unguarded.items():
                if group not in self._unguarded_logged:
                    self._unguarded_logged.add(group)
                    self.logger.warning("memory-limited group not guarded", group=group,
                                        reason=reason)
            if discovery.truncated:
                self.logger.warning("discovery stopped at its bound",
                                    domains=len(discovery.domains))
        current = {s.policy.name: s for s in self.states if s.template is not None}
        names = {inst.policy.name for inst in wanted}
        for name, state in current.items():
            if name not in names and not self.inflight.owned_by(state):
                self.remove_policy(name)
                self.logger.info("policy instance dropped", policy=name,
                                 reason="group gone or no longer matching")
        for inst in wanted:
            held = current.get(inst.policy.name)
            if held is not None and held.domain == inst.domain:
                continue
            if held is not None:  # its limit changed: judged against the new one
                if self.inflight.owned_by(held):
                    continue
                self.remove_policy(inst.policy.name)
            try:
                self.add_policy(inst.policy, template=inst.template, domain=inst.domain)
            except (OSError, ZoomdError) as exc:
                self.logger.warning("cannot watch group", policy=inst.policy.name,
                                    error=str(exc))
                continue
            if held is None:
                self.logger.info("policy instance added", policy=inst.policy.name,
                                 limit=inst.domain.limit if inst.domain else None,
                                 source=inst.domain.source if inst.domain else None)

    def remove_policy(self, name: str) -> list[ActionOutcome]:
        """Stop a policy; what it froze is thawed. Returns the thaw outcomes."""
        outcomes: list[ActionOutcome] = []
        for state in [s for s in self.states if s.policy.name == name]:
            for path in list(state.frozen):
                outcomes.append(self.backend.thaw_cgroup(self.reader.root.join(
                    self.reader.layout.v2_dir(path)), self._v1_freezer_dir(path)))
            state.monitor.close()
            self.states.remove(state)
            self.generation += 1  # its group's trigger goes
        return outcomes

    @property
    def busy(self) -> bool:
        """True while some policy is pending, holds frozen groups or has an action in
        flight: tick fast."""
        return bool(self.inflight) or \
            any(s.pending_since is not None or s.frozen for s in self.states)

    def monitored_pressure_paths(self) -> list[str]:
        return [s.monitor.pressure_path for s in self.states]

    def close(self) -> None:
        self.finish_in_flight()
        for state in self.states:
            state.monitor.close()
        self.hooks.close()

    # -- actions in flight (the loop's part) --------------------------------------------
    def advance_actions(self) -> None:
        """Between ticks, when an action's descriptor turned readable or its wake time
        came: advance what is in flight; records made are returned by the next tick."""
        self._finished.extend(self.inflight.advance())

    def action_fds(self) -> list[int]:
        """Descriptors to wake on: hooks' and dying processes' pidfds."""
        return self.inflight.fds()

    def action_wake_in(self) -> float | None:
        """Seconds until an action in flight wants a look without an event."""
        return self.inflight.wake_in()

    def finish_in_flight(self) -> list[Decision]:
        """Finish every action in flight, waiting for it (shutdown, tests): bounded by
        the hooks' timeouts and the kills'. Returns the records not yet returned."""
        self._finished.extend(self.inflight.drain())
        done, self._finished = self._finished, []
        return done

    # ---------------------------------------------------------------------------------
    def tick(self, host: HostSnapshot, estimate: ReclaimEstimate) -> list[Decision]:
        """Advance every policy by one sample; returns the records of actions finished
        since the previous tick (made by it or by an action in flight)."""
        done, self._finished = self._finished, []
        done.extend(self.inflight.advance())
        now = host.monotonic
        self.sync_instances(now)
        # Policies watching the same group alike (a domain's two rules, the host's)
        # share one reading of it per tick.
        shared: dict[tuple[str, str | None, int | None], GroupSample] = {}
        for state in self.states:
            key = (state.monitor.path, state.monitor.pinned_v1, state.monitor.limit)
            reading = shared.get(key)
            if reading is not None:
                state.history.add(reading)
            elif self._sample(state, host, estimate):
                latest = state.history.latest()
                if latest is not None:
                    shared[key] = latest
            else:
                continue
            policy = state.policy
            fig = window_figures(state.history, policy.window, self.page_size,
                                 self.config.reclaim.min_scanned_pages,
                                 uses_turnover(policy.all, policy.any))
            if fig is not None and self.stalls is not None and \
                    uses_protected_stall(state.policy):
                pct, _ = self.stalls.protected_stall_pct(state.policy, state.monitor.path)
                fig = dataclasses.replace(fig, protected_stall_pct=pct)
            state.verdict = verdict = judge(policy.all, policy.any, fig)
            holds = verdict.holds
            done.extend(self._advance_frozen(state, now, holds))
            if not holds:
                state.pending_since = None
                state.baseline.clear()
                state.process_faults.clear()
                continue
            if state.pending_since is None:
                state.pending_since = now
                state.baseline = self._baseline(state, host)
                state.process_faults = self._process_faults(state)
                self.logger.info("conditions hold, waiting", policy=state.policy.name,
                                 **{"for": state.policy.for_})
            if now - state.pending_since < state.policy.for_ or now < state.quiet_until \
                    or self.inflight.owned_by(state):
                continue
            try:
                record = self._fire(state, host, estimate, verdict)
            except ZoomdError as exc:
                # Reading the chosen group failed before anything was done to it.
                self.logger.warning("cannot act", policy=state.policy.name, error=str(exc))
                continue
            if record is not None:
                done.append(record)
        return done

    def _sample(self, state: PolicyState, host: HostSnapshot,
                estimate: ReclaimEstimate) -> bool:
        """One sample of the watched group; False (logged, at most every 30 s) when it
        cannot be read, e.g. the group was removed: that policy waits, the others run,
        and the group's files are opened afresh so a group created again is watched."""
        try:
            state.history.add(state.monitor.sample(host, estimate))
            return True
        except (OSError, ZoomdError) as first:
            error = first
        monitor = None
        try:
            monitor = open_monitor(state.monitor.path, self.reader, budget=self.fd_budget)
            state.history.add(monitor.sample(host, estimate))
        except (OSError, ZoomdError) as exc:
            error = exc
            if monitor is not None:
                monitor.close()
        else:
            state.monitor.close()
            state.monitor = monitor
            return True
        if host.monotonic - state.last_sample_error_log >= 30:
            self.logger.warning("cannot sample monitored group", policy=state.policy.name,
                                error=str(error))
            state.last_sample_error_log = host.monotonic
        return False

    # ---------------------------------------------------------------------------------
    def _baseline(self, state: PolicyState, host: HostSnapshot) -> dict[str, Any]:
        try:
            found, _ = cand_mod.collect(self.reader, state.policy, state.monitor.path,
                                        self.exclusions, check_kthreads=False)  # chooses nothing
        except (OSError, ZoomdError):
            return {}
        if self.stalls is not None and "stalls" in state.policy.rank:
            self.stalls.memory_pct([c.path for c in found])  # first sight: rates later
        return {c.path: c for c in found}

    def _processes_compete(self, state: PolicyState) -> bool:
        """Whether the processes directly in the watched group compete with its child
        groups for the victim: on hosts without systemd most processes sit in the root
        cgroup beside a few groups (containers, a test's group), and a container's
        processes beside its sidecars' groups; the biggest consumer may be any of them.
        Not where the operator named the groups that may be acted on (candidates other
        than any child), nor for freeze."""
        policy = state.policy
        return policy.action != "freeze" and any(g in ("*", "**") for g in policy.candidates)

    def _process_faults(self, state: PolicyState) -> dict[int, int]:
        """Major faults of each process directly in the watched group, read when the
        conditions begin to hold: the start of the period their deltas rank over."""
        if not self._processes_compete(state) or not (
                {"refaults", "pgscan"} & set(state.policy.rank)):
            return {}
        faults: dict[int, int] = {}
        try:
            pids = self.reader.procs(state.monitor.path)
        except (OSError, ZoomdError):
            return {}
        for pid in pids[:MAX_PIDS_OWNED]:
            count = major_faults(self.reader, pid)
            if count is not None:
                faults[pid] = count
        return faults

    def _with_faults(self, state: PolicyState, process: ProcessChoice) -> ProcessChoice:
        """The process with its major faults over the pending period; None (unknown,
        ranked as 0) when it was not there, or not read, when the period began."""
        then = state.process_faults.get(process.pid)
        now = major_faults(self.reader, process.pid)
        if then is None or now is None or now < then:
            return process
        return dataclasses.replace(process, major_faults=now - then)

    @staticmethod
    def _outranks(process: ProcessChoice, path: str, group: cand_mod.Candidate,
                  keys: tuple[RankKey, ...]) -> bool:
        """Whether a process directly in `path` comes before the first candidate group
        under the policy's rank, each on its own figures: the process's major faults
        for refaults (and pgscan), its own share (Pss + SwapPss) for memory, SwapPss
        for swap; none for pressure or stalls, which single processes do not have."""
        own = cand_mod.Candidate(path=path, memory=process.size,
                                 swap=process.swap_pss if process.swap_pss is not None
                                 else process.swap)
        if process.major_faults is not None:
            own.deltas["refaults"] = process.major_faults
        return cand_mod.rank([group, own], keys)[0] is own

    def _backend_for(self, policy: Policy) -> tuple[ActionBackend, bool]:
        dry = self.dry_run or policy.dry_run
        return (self.dry_backend if dry else self.backend), dry

    def _choose(self, state: PolicyState, host: HostSnapshot,
                ) -> tuple[list[cand_mod.Candidate], dict[str, str],
                           dict[str, dict[str, Any]], ProcessChoice | None, str] | None:
        """The victim choice: candidates ranked (the first is the victim), the groups
        skipped and why, the stall figures ranked on, and the process chosen instead
        with why: when no group may be acted on (see _process_fallback), or when the
        largest process directly in the watched group outranks every group (see
        _processes_compete); None when nothing may be chosen (logged)."""
        policy = state.policy
        try:
            found, skipped = cand_mod.collect(self.reader, policy, state.monitor.path,
                                              self.exclusions, check_kthreads=False,
                                              leaf_monitor=state.leaf_is_candidate)
        except (OSError, ZoomdError) as exc:
            self.logger.warning("cannot list candidates", policy=policy.name, error=str(exc))
            return None
        found = [c for c in found if c.path not in state.frozen]
        cand_mod.apply_deltas(found, state.baseline)
        stall_figures: dict[str, dict[str, Any]] = {}
        if self.stalls is not None and "stalls" in policy.rank:
            stall_figures = self.stalls.memory_pct([c.path for c in found])
            for cand in found:
                if cand.path in stall_figures:
                    cand.deltas["stalls"] = int(stall_figures[cand.path]["memory_pct"] * 1e4)
        ranked = cand_mod.rank(found, policy.rank)
        ranked = cand_mod.drop_kernel_thread_holders(self.reader, ranked, skipped,
                                                     SHOWN_CANDIDATES)
        path = state.monitor.path
        if not ranked:
            process, why_not = self._process_fallback(state)
            if process is not None:
                return (ranked, skipped, stall_figures, self._with_faults(state, process),
                        f"no candidate group in {path}: the largest process directly in it")
            if host.monotonic - state.last_no_victim_log > 30:
                self.logger.warning("conditions hold but no candidate", policy=policy.name,
                                    skipped=skipped or None, process=why_not)
                state.last_no_victim_log = host.monotonic
            return None
        cand_mod.fill_record_figures(self.reader, ranked[:SHOWN_CANDIDATES])
        if ranked[0].path != path and self._processes_compete(state):
            process, _ = self._process_fallback(state)
            if process is not None:
                process = self._with_faults(state, process)
                if self._outranks(process, path, ranked[0], policy.rank):
                    return (ranked, skipped, stall_figures, process,
                            f"the largest process directly in {path} outranks every "
                            f"candidate group (rank {', '.join(policy.rank)}: its own "
                            "major faults and Pss+SwapPss against each group's figures)")
        return ranked, skipped, stall_figures, None, ""

    def _process_fallback(self, state: PolicyState) -> tuple[ProcessChoice | None, str]:
        """No group to act on (every process directly in the root cgroup, or in a
        domain's own group): the largest process directly in the watched group, with
        the kill-process rules, as earlyoom would; else why not."""
        policy = state.policy
        path = state.monitor.path
        if policy.action == "freeze":
            return None, "a freeze policy does not act on single processes"
        if path != "/" and (matches(path, self.exclusions.protect) or any(
                matches(p, self.exclusions.protect) for p in cand_mod.ancestors(path))):
            return None, f"{path} is protected"
        try:
            choice = choose_process(self.reader, path, policy.process, direct_only=True)
        except (OSError, ZoomdError) as exc:
            return None, f"cannot read its processes: {exc}"
        if choice is None:
            return None, f"no process directly in {path} may be killed"
        return choice, ""

    def _fire(self, state: PolicyState, host: HostSnapshot, estimate: ReclaimEstimate,
              verdict: Verdict) -> Decision | None:
        chosen = self._choose(state, host)
        if chosen is None:
            return None
        ranked, skipped, stall_figures, process, why_process = chosen
        policy = state.policy
        backend, dry = self._backend_for(policy)
        if process is not None:
            victim_path, action = state.monitor.path, "kill-process"
            victim_memory = process.size
            issue = self._issue_process_kill(backend, process.pid)
        else:
            victim_path, action = ranked[0].path, policy.action
            victim_memory = ranked[0].memory
            issue = self._prepare(backend, policy, victim_path)  # reads it: may raise

        # The record, made once: the before-hooks see it with a pending outcome, and
        # it is finished with the action's own.
        pending = self._record(state, host, estimate, verdict, ranked, skipped, victim_path,
                               action, dry, victim_memory, process, why_process,
                               stall_figures)
        hooks = self.hooks.start_before(pending) if self.hooks.hooks else None

        def finish(outcome: ActionOutcome, hook_runs: list[HookRun]) -> Decision:
            record = pending.finished(outcome, self.wall_clock())
            if self.hooks.hooks:
                record = dataclasses.replace(
                    record, hooks=(*hook_runs, *self.hooks.after(record)))
            if outcome.ok and action == "freeze" and not dry:
                state.frozen[victim_path] = FrozenGroup(victim_path, host.monotonic)
            self._keep(record)
            return record

        # Decided now: the policies on this group wait from now, as they did when the
        # action was carried out within this tick.
        self._quiet_overlapping(state, host.monotonic)
        record = self.inflight.start(InFlight(state, hooks, issue, finish))
        if record is None:
            self.logger.info("action in flight", policy=policy.name, victim=victim_path)
        return record

    def _quiet_overlapping(self, acted: PolicyState, now: float) -> None:
        """After an action, every policy watching the same group (the acting one
        included) waits out its own post_action_delay: its window still holds the
        stall that the action just ended, and must not pick a second victim for it.
        Where a template instance is involved (a memory domain) that holds for groups
        containing one another too: a domain's stall is in its ancestors' PSI, so the
        host's rules and a domain nested in another wait as well. Policies on other
        groups go on: their stalls may be their own."""
        here = acted.monitor.path
        for state in self.states:
            there = state.monitor.path
            nested = (state.template is not None or acted.template is not None) and (
                is_ancestor_or_self(there, here) or is_ancestor_or_self(here, there))
            if state is not acted and there != here and not nested:
                continue
            state.quiet_until = max(state.quiet_until, now + state.policy.post_action_delay)
            state.pending_since = None
            state.baseline.clear()

    def _prepare(self, backend: ActionBackend, policy: Policy, path: str,
                 reason: str | None = None) -> Callable[[], PendingAction]:
        """Read what acting on `path` needs (now: a ZoomdError here means nothing was
        done) and return what issues the action; it returns at once."""
        action = policy.action
        v2_dir = self.reader.root.join(self.reader.layout.v2_dir(path))
        memory = self.reader.memory(path)
        usage_file = None
        if memory is not None and memory.source == "v2":
            usage_file = f"{v2_dir}/memory.current"
        elif memory is not None and memory.source.startswith("v1:"):
            v1dir = self.reader.layout.v1_dir("memory", memory.source[3:])
            usage_file = self.reader.root.join(f"{v1dir}/memory.usage_in_bytes") if v1dir \
                else None
        if action == "kill":
            return lambda: backend.start_kill_cgroup(v2_dir, usage_file=usage_file,
                                                     reason=reason)
        if action == "freeze":
            v1_freezer = self._v1_freezer_dir(path)
            return lambda: backend.start_freeze_cgroup(v2_dir, v1_freezer)
        return self._kill_largest_process(backend, path, policy)

    def start_action(self, owner: object, policy: Policy, path: str,
                     make_record: Callable[[bool], Decision], *,
                     reason: str | None = None) -> Decision | None:
        """An action decided by a rule of its own (the swap rule), through the same path
        as a policy's: the backend for `policy` (dry-run or not), the group read now,
        the action in flight until over (owned by `owner`, which should not decide
        again meanwhile: see `in_flight`), then its record, `make_record(dry)` finished
        with the outcome, logged and kept. Returns the record when it is over at once."""
        backend, dry = self._backend_for(policy)
        issue = self._prepare(backend, policy, path, reason)
        pending = make_record(dry)

        def finish(outcome: ActionOutcome, _runs: list[HookRun]) -> Decision:
            record = pending.finished(outcome, self.wall_clock())
            self._keep(record)
            return record

        return self.inflight.start(InFlight(owner, None, issue, finish))

    def in_flight(self, owner: object) -> bool:
        """Whether `owner` (a policy's state, or a rule of its own) has an action in flight."""
        return self.inflight.owned_by(owner)

    def _v1_freezer_dir(self, path: str) -> str | None:
        if self.reader.exists(path) and self.reader.root.exists(
                f"{self.reader.layout.v2_dir(path)}/cgroup.freeze"):
            return None
        from zoomd.kernel.proc_cgroup import read_proc_cgroup

        for pid in self.reader.subtree_procs(path, limit=1):
            membership = read_proc_cgroup(self.reader.root, pid)
            if membership and "freezer" in membership.v1:
                directory = self.reader.layout.v1_dir("freezer", membership.v1["freezer"])
                return self.reader.root.join(directory) if directory else None
        return None

    @staticmethod
    def _issue_process_kill(backend: ActionBackend, pid: int) -> Callable[[], PendingAction]:
        return lambda: backend.start_kill_process(pid)

    def _kill_largest_process(self, backend: ActionBackend, path: str,
                              policy: Policy) -> Callable[[], PendingAction]:
        choice = choose_process(self.reader, path, policy.process)
        if choice is None:
            refused = ActionOutcome("kill-process", path, False, "pidfd", (), None, None,
                                    "no process may be killed in this group")
            return lambda: Finished(refused)
        return self._issue_process_kill(backend, choice.pid)

    def _advance_frozen(self, state: PolicyState, now: float, holds: bool) -> list[Decision]:
        out: list[Decision] = []
        policy = state.policy
        for path, frozen in list(state.frozen.items()):
            if policy.kill_after_frozen is not None and \
                    now - frozen.frozen_at >= policy.kill_after_frozen:
                del state.frozen[path]
                record = self.inflight.start(self._escalation(
                    state, path, f"frozen for {now - frozen.frozen_at:.1f}s"))
                if record is not None:
                    out.append(record)
                continue
            if holds:
                frozen.clear_since = None
                continue
            if frozen.clear_since is None:
                frozen.clear_since = now
            if now - frozen.clear_since >= policy.thaw_after:
                del state.frozen[path]
                record = self.inflight.start(self._thaw(
                    state, path, f"conditions clear for {policy.thaw_after:g}s"))
                if record is not None:
                    out.append(record)
        return out

    def _escalation(self, state: PolicyState, path: str, reason: str) -> InFlight:
        """kill_after_frozen: kill a group that stayed frozen (no hooks, as before)."""
        backend, dry = self._backend_for(state.policy)
        v2_dir = self.reader.root.join(self.reader.layout.v2_dir(path))
        return InFlight(state, None, lambda: backend.start_kill_cgroup(v2_dir),
                        lambda outcome, _runs: self._simple_record(state, "escalation", path,
                                                                   dry, outcome, reason))

    def _thaw(self, state: PolicyState, path: str, reason: str) -> InFlight:
        """thaw_after: thaw a group once its policy's conditions stayed clear."""
        backend, dry = self._backend_for(state.policy)
        v2_dir = self.reader.root.join(self.reader.layout.v2_dir(path))
        v1_freezer = self._v1_freezer_dir(path)
        return InFlight(state, None, lambda: backend.start_thaw_cgroup(v2_dir, v1_freezer),
                        lambda outcome, _runs: self._simple_record(state, "thaw", path,
                                                                   dry, outcome, reason))

    def thaw_all(self) -> list[ActionOutcome]:
        """On shutdown: thaw everything zoomd froze."""
        outcomes = []
        for state in self.states:
            for path in list(state.frozen):
                outcomes.append(self.backend.thaw_cgroup(self.reader.root.join(
                    self.reader.layout.v2_dir(path)), self._v1_freezer_dir(path)))
                del state.frozen[path]
        return outcomes

    # ---------------------------------------------------------------------------------
    def _keep(self, record: Decision) -> None:
        """A finished decision: logged, and kept among the latest."""
        self.logger.record(record.to_json())
        self.records.append(record)

    def _simple_record(self, state: PolicyState, kind: Literal["escalation", "thaw"],
                       path: str, dry: bool, outcome: ActionOutcome,
                       reason: str) -> Decision:
        action: Literal["kill", "thaw"] = "kill" if kind == "escalation" else "thaw"
        verb = f"would {action}" if dry else {"kill": "killed", "thaw": "thawed"}[action]
        summary = f"{verb} {path} (policy {state.policy.name}: {reason})"
        record = Decision(kind, self.wall_clock(), state.policy.name, action, dry, path,
                          outcome, summary, reason=reason)
        self._keep(record)
        return record

    def _record(self, state: PolicyState, host: HostSnapshot, estimate: ReclaimEstimate,
                verdict: Verdict, ranked: list[cand_mod.Candidate], skipped: dict[str, str],
                victim: str, action: Action, dry: bool, victim_memory: int,
                process: ProcessChoice | None, why_process: str,
                stall_figures: dict[str, dict[str, Any]]) -> Decision:
        """A policy's decision, its action pending (see Decision.finished)."""
        policy = state.policy
        fig = verdict.figures
        assert fig is not None  # it fired: its conditions held over these figures
        verbs = {"kill": ("would kill", "killed"), "freeze": ("would freeze", "froze"),
                 "kill-process": ("would kill the largest process of",
                                  "killed the largest process of")}
        verb = verbs[action][0] if dry else verbs[action][1]
        summary = (f"{verb} {victim} (policy {policy.name}: {', '.join(verdict.held())}; "
                   f"full {fig.pressure_full_pct or 0:.0f}% over {fig.seconds:.1f}s)")
        pending = ActionOutcome(action, victim, False, "pending", (), None, None, None)
        return Decision(
            "policy", self.wall_clock(), policy.name, action, dry, victim, pending, summary,
            monotonic=round(host.monotonic, 3), monitor=state.monitor.path,
            victim_relative=relative_to(victim, state.monitor.path), verdict=verdict,
            held_for=policy.for_, reclaim=ReclaimFigures.of(estimate, host.all_ram_backed),
            candidates=tuple(RankedCandidate.of(c, policy.rank)
                             for c in ranked[:SHOWN_CANDIDATES]),
            skipped=skipped, victim_memory=victim_memory, domain=state.domain,
            process=process, why_process=why_process if process is not None else None,
            stalls=stall_figures or None,
            hooks=() if self.hooks.hooks else None)
