"""OOMRules=: systemd v261's per-unit rulesets acted on, as systemd-oomd acts on them.

systemd-oomd (src/oom/oomd-manager.c, monitor_rules_contexts_handler(),
ruleset_check_conditions() and ruleset_execute_action(), commit 00a99cb427b0) looks
every second (RULESETS_INTERVAL_USEC) at each cgroup that PID 1 or a user manager
reported with property "OOMRules", and at each ruleset that cgroup names:
- MemoryPressureAbove=: the cgroup's own memory.pressure `full avg10` must be above it;
- SwapUsageMax=: the host's swap must be used above it (SwapFree under the rest);
- both when both are set; held for LastingSec= (per ruleset and cgroup; any tick
  where they do not hold restarts it, 0 acts at once);
- then Action=: kill-all kills the cgroup itself; kill-by-pgscan the candidate under
  it with the most reclaim, then the most memory, skipping ones with neither (the
  candidates are built afresh for the action, so their pgscan "rate" is memory.stat's
  cumulative pgscan); kill-by-swap the candidate with the most swap, among
  those holding more than 5% of SwapTotal; the kill's reason is "rule <name>";
  the timer starts again after the action.

zoomd does the same each tick, through the engine's action path (dry run, the kill
in flight, the record, prekill hooks, xattrs and the Killed signal), with three
differences, each for safety: kill-all on "/" is refused (systemd would signal
every process but its own), the engine's exclusions (PID 1's and zoomd's groups,
protected globs) hold, and kill-by-swap picks under the cgroup whose rule fired
(systemd's picks among all rule cgroups' candidates). After an action every rule
waits POST_ACTION_DELAY_S (the newer oomd-manager.h, commit 01e1303f9c61, adds
rules_post_action_delay_start); in zram-aware mode SwapUsageMax= counts swap as the
zram-aware swap rule does (swaprule.usable_swap_free), in strict mode as systemd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoomd.actions.outcome import ActionOutcome
from zoomd.config.runtime import Policy
from zoomd.daemon import candidates as cand_mod
from zoomd.daemon.decision import Decision, RankedCandidate
from zoomd.daemon.engine import Engine
from zoomd.errors import ZoomdError
from zoomd.model.reclaim import ReclaimEstimate
from zoomd.model.snapshot import HostSnapshot
from zoomd.systemd.managed import ManagedCgroup
from zoomd.systemd.oomrules import OomRule
from zoomd.systemd.swaprule import THRESHOLD_SWAP_USED_PCT, usable_swap_free

RULE_PREFIX = "systemd-rule:"
POST_ACTION_DELAY_S = 15.0  # POST_ACTION_DELAY_USEC


@dataclass(frozen=True, slots=True)
class RuleFigures:
    """What one rule compared on one cgroup in one tick."""

    pressure_full_avg10: float | None
    swap_total: int
    swap_free: int

    def to_json(self) -> dict[str, Any]:
        return {"memory_pressure_full_avg10_pct": self.pressure_full_avg10,
                "swap_total_bytes": self.swap_total, "swap_free_bytes": self.swap_free}


def conditions_hold(rule: OomRule, fig: RuleFigures) -> bool:
    if rule.memory_pressure_above is not None and (
            fig.pressure_full_avg10 is None
            or fig.pressure_full_avg10 <= rule.memory_pressure_above / 100):
        return False
    return rule.swap_above is None or \
        fig.swap_free < fig.swap_total * (10000 - rule.swap_above) // 10000


def rule_policy(rule: OomRule, path: str) -> Policy:
    """The zoomd policy a rule acts as (its name, ranking and post-action delay)."""
    rank: tuple[Any, ...] = {"kill-by-swap": ("swap", "memory")}.get(
        rule.action, ("pgscan", "memory"))
    return Policy(name=f"{RULE_PREFIX}{rule.name}:{path}", monitor=path, candidates=("**",),
                  window=1.0, for_=rule.lasting_usec / 1e6, action="kill", rank=rank,
                  post_action_delay=POST_ACTION_DELAY_S)


class RulesGuard:
    """Evaluated every tick while some cgroup is reported with OOMRules."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self.start_times: dict[tuple[str, str], float] = {}
        self.quiet_until = 0.0
        self.refused: set[tuple[str, str]] = set()

    def reset(self) -> None:
        """The rulesets were read again (reload): their timers restart, as systemd's."""
        self.start_times.clear()

    def tick(self, engine: Engine, host: HostSnapshot, estimate: ReclaimEstimate,
             entries: list[ManagedCgroup], rules: dict[str, OomRule],
             mode: str) -> Decision | None:
        wanted = {(name, e.path) for e in entries for name in e.rules}
        for key in [k for k in self.start_times if k not in wanted]:
            del self.start_times[key]
        if not entries:
            return None
        now = host.monotonic
        mem = host.meminfo
        swap_free = mem.swap_free if mode == "strict" else usable_swap_free(host, estimate)
        for entry in entries:
            if not engine.reader.exists(entry.path):
                continue
            fig = RuleFigures(self._pressure(engine, entry.path), mem.swap_total, swap_free)
            for name in entry.rules:
                rule = rules.get(name)
                if rule is None:
                    continue  # undefined: warned about when reported
                key = (name, entry.path)
                if not conditions_hold(rule, fig):
                    self.start_times.pop(key, None)
                    continue
                start = self.start_times.setdefault(key, now)
                if (now - start) * 1e6 < rule.lasting_usec or now < self.quiet_until \
                        or engine.in_flight(self):
                    continue
                self.start_times.pop(key, None)
                record = self._act(engine, host, rule, entry, fig, now)
                if record is not False:
                    return record if isinstance(record, Decision) else None
        return None

    @staticmethod
    def _pressure(engine: Engine, path: str) -> float | None:
        try:
            psi = engine.reader.pressure(path)
        except (ZoomdError, OSError):
            return None
        return None if psi is None or psi.full is None else psi.full.avg10

    def _candidates(self, engine: Engine, policy: Policy,
                    path: str) -> tuple[list[cand_mod.Candidate], dict[str, str]]:
        try:
            return cand_mod.collect(engine.reader, policy, path, engine.exclusions,
                                    leaf_monitor=True)
        except (ZoomdError, OSError) as exc:
            return [], {path: f"unreadable: {exc}"}

    def _choose(self, engine: Engine, host: HostSnapshot, rule: OomRule, policy: Policy,
                path: str) -> tuple[list[cand_mod.Candidate], dict[str, str], str | None]:
        """(ranked candidates, skipped, refusal) for the rule's action."""
        if rule.action == "kill-all":
            why = cand_mod.excluded_reason(path, engine.exclusions)
            if why is not None:
                return [], {}, f"kill-all on {path} is not supported by zoomd: {why}"
            return [cand_mod.Candidate(path)], {}, None
        cands, skipped = self._candidates(engine, policy, path)
        if rule.action == "kill-by-pgscan":
            eligible = []
            for cand in cands:
                cand.deltas["pgscan"] = cand.pgscan or 0
                if cand.pgscan or cand.memory:
                    eligible.append(cand)
            return cand_mod.rank(eligible, ("pgscan", "memory")), skipped, None
        minimum = host.meminfo.swap_total * THRESHOLD_SWAP_USED_PCT // 100
        eligible = [c for c in cands if c.swap > minimum]
        return cand_mod.rank(eligible, ("swap", "memory")), skipped, None

    def _act(self, engine: Engine, host: HostSnapshot, rule: OomRule,
             entry: ManagedCgroup, fig: RuleFigures,
             now: float) -> Decision | bool | None:
        """The rule's action: its record (None while in flight), False if nothing to do."""
        policy = rule_policy(rule, entry.path)
        ranked, skipped, refusal = self._choose(engine, host, rule, policy, entry.path)
        if refusal is not None:
            if (rule.name, entry.path) not in self.refused:
                self.refused.add((rule.name, entry.path))
                self.logger.warning("OOM rule cannot act", rule=rule.name,
                                    cgroup=entry.path, error=refusal)
            return False
        if not ranked:
            self.logger.debug("OOM rule held but found no candidate", rule=rule.name,
                              cgroup=entry.path, action=rule.action)
            return False
        victim = ranked[0]
        keys = policy.rank

        def make_record(dry: bool) -> Decision:
            """The record, its outcome pending (the engine finishes it)."""
            verb = "would kill" if dry else "killed"
            held = []
            if rule.memory_pressure_above is not None:
                held.append(f"memory pressure {fig.pressure_full_avg10:.2f}% above "
                            f"{rule.memory_pressure_above / 100:g}%")
            if rule.swap_above is not None:
                held.append(f"swap free {fig.swap_free >> 20} MiB of "
                            f"{fig.swap_total >> 20} MiB (SwapUsageMax="
                            f"{rule.swap_above / 100:g}%)")
            summary = (f"{verb} {victim.path} (OOMRules= rule '{rule.name}' on "
                       f"{entry.path}, {rule.action}: {' and '.join(held)} for "
                       f"{rule.lasting_usec / 1e6:g}s)")
            pending = ActionOutcome("kill", victim.path, False, "pending", (), None, None,
                                    None)
            return Decision(
                "oom-rule", 0.0, policy.name, "kill", dry, victim.path, pending, summary,
                monotonic=round(host.monotonic, 3), monitor=entry.path,
                reason=f"rule {rule.name}",
                oom_rule={**rule.to_json(), "cgroup": entry.path, "source": entry.source,
                          "figures": fig.to_json()},
                candidates=tuple(RankedCandidate.of(c, keys) for c in ranked[:10]),
                ranked_by=keys, skipped=skipped)

        try:
            record = engine.start_action(self, policy, victim.path, make_record,
                                         reason=f"rule {rule.name}")
        except ZoomdError as exc:
            self.logger.warning("OOM rule could not act", rule=rule.name,
                                victim=victim.path, error=str(exc))
            return False
        self.quiet_until = now + POST_ACTION_DELAY_S
        return record
