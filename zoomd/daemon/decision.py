"""A decision record as one frozen type: what was decided, on what evidence, and how it went.

The engine makes one Decision per action (a policy's, a frozen group's escalation or
thaw, the systemd swap rule's); the log, the trace, the hooks' environment, metrics
and replay read its attributes. Its JSON form (`to_json`) is public: the trace
format, the log lines and what replay prints, so it keeps the keys, the values and
their order of the dictionaries it replaces; `from_json` reads it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from zoomd.actions.outcome import ActionOutcome
from zoomd.daemon.candidates import PREFERENCE_NAMES, Candidate
from zoomd.daemon.domains import Domain
from zoomd.daemon.processes import ProcessChoice
from zoomd.daemon.triggers import Verdict, WindowFigures
from zoomd.kinds import OutcomeAction, RankKey
from zoomd.model.reclaim import ReclaimEstimate

DecisionKind = Literal["policy", "escalation", "thaw", "swap-rule", "oom-rule"]
Mode = Literal["acted", "would"]


@dataclass(frozen=True, slots=True)
class HookRun:
    """What running one hook gave: for the decision record."""

    name: str
    when: str
    returncode: int | None  # None: still running (after) or killed at the timeout
    seconds: float
    timed_out: bool
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "when": self.when, "returncode": self.returncode,
                "seconds": round(self.seconds, 3), "timed_out": self.timed_out,
                "error": self.error}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HookRun:
        return cls(data["name"], data["when"], data["returncode"], data["seconds"],
                   data["timed_out"], data["error"])


@dataclass(frozen=True, slots=True)
class RankedCandidate:
    """A candidate as the record shows it: its scores under the keys it was ranked by."""

    path: str
    preference: str  # "prefer", "normal", "avoid"
    scores: Mapping[str, int]
    memory: int
    swap: int
    basis: str

    @classmethod
    def of(cls, cand: Candidate, rank: tuple[RankKey, ...]) -> RankedCandidate:
        return cls(cand.path, PREFERENCE_NAMES[cand.preference],
                   {key: cand.score(key) for key in rank}, cand.memory, cand.swap, cand.basis)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "preference": self.preference, "scores": dict(self.scores),
                "memory_bytes": self.memory, "swap_bytes": self.swap, "basis": self.basis}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RankedCandidate:
        return cls(data["path"], data["preference"], dict(data["scores"]),
                   data["memory_bytes"], data["swap_bytes"], data["basis"])


@dataclass(frozen=True, slots=True)
class ReclaimFigures:
    """The host's reclaim model at the decision (the record's "reclaim")."""

    mode: str
    kernel_reclaimable: int
    anon_reclaimable: int
    file_reclaimable: int
    effective_available: int
    anon_efficiency_pct: float | None
    all_swap_ram_backed: bool

    @classmethod
    def of(cls, estimate: ReclaimEstimate, all_ram_backed: bool) -> ReclaimFigures:
        return cls(estimate.mode, estimate.kernel_reclaimable, estimate.anon_reclaimable,
                   estimate.file_reclaimable, estimate.effective_available,
                   estimate.anon_efficiency_pct, all_ram_backed)

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "kernel_reclaimable_bytes": self.kernel_reclaimable,
                "anon_reclaimable_bytes": self.anon_reclaimable,
                "file_reclaimable_bytes": self.file_reclaimable,
                "effective_available_bytes": self.effective_available,
                "anon_efficiency_pct": self.anon_efficiency_pct,
                "all_swap_ram_backed": self.all_swap_ram_backed}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReclaimFigures:
        return cls(data["mode"], data["kernel_reclaimable_bytes"],
                   data["anon_reclaimable_bytes"], data["file_reclaimable_bytes"],
                   data["effective_available_bytes"], data["anon_efficiency_pct"],
                   data["all_swap_ram_backed"])


_OUTCOME_KEYS = ("action", "target", "ok", "method", "pids", "seconds_to_effect",
                 "memory_freed_bytes", "error")


def _outcome_from_json(data: Mapping[str, Any]) -> ActionOutcome:
    return ActionOutcome(data["action"], data["target"], data["ok"], data["method"],
                         tuple(data["pids"]), data["seconds_to_effect"],
                         data["memory_freed_bytes"], data["error"])


def _process_from_json(data: Mapping[str, Any]) -> ProcessChoice:
    return ProcessChoice(data["pid"], data["name"], data["rss_bytes"], data["swap_bytes"],
                         data["preferred"], data["pss_bytes"], data["swap_pss_bytes"],
                         data.get("major_faults"))


def _domain_to_json(domain: Domain) -> dict[str, Any]:
    return {"path": domain.path, "limit_bytes": domain.limit, "source": domain.source}


# The record's keys in the order they are written; a key whose field is None (or, for
# the optional collections, absent) is left out, as each kind of record always did.
_KNOWN = ("time", "monotonic", "policy", "monitor", "action", "dry_run", "victim",
          "victim_relative", "reason", "trigger", "swap_rule", "oom_rule", "reclaim",
          "candidates",
          "ranked_by", "skipped", "result", "summary", "victim_memory_bytes", "domain",
          "process", "why_process", "stalls", "hooks")


@dataclass(frozen=True, slots=True)
class Decision:
    """One action decided and carried out (or not, in dry-run), as recorded.

    Policy decisions carry the verdict that fired them, the reclaim figures, the
    candidates (the first is the victim) and the groups skipped; escalations and
    thaws of frozen groups a reason; the systemd rules (ManagedOOMSwap=, OOMRules=)
    their own figures. `extra` holds
    keys this version does not know (kept, in order, by from_json/to_json), and
    `result_extra` those its "result" holds beyond an ActionOutcome's (an
    integration's outcome may add some: systemd's prekill hooks), so a record from a
    newer zoomd, or fields an integration adds, pass through.
    """

    kind: DecisionKind
    time: float  # wall clock (the engine's injected one) when the action was over
    policy: str
    action: OutcomeAction
    dry_run: bool
    victim: str
    outcome: ActionOutcome
    summary: str
    monotonic: float | None = None  # the tick that decided it (rounded to 1 ms)
    monitor: str | None = None
    victim_relative: str | None = None
    reason: str | None = None
    verdict: Verdict | None = None  # the conditions that held (policy decisions)
    held_for: float | None = None  # the policy's `for`
    swap_rule: Mapping[str, Any] | None = None  # the swap rule's figures, as it writes them
    oom_rule: Mapping[str, Any] | None = None  # an OOMRules= ruleset and its figures, so too
    reclaim: ReclaimFigures | None = None
    candidates: tuple[RankedCandidate, ...] | None = None
    ranked_by: tuple[str, ...] | None = None
    skipped: Mapping[str, str] | None = None  # group -> why it was not a candidate
    victim_memory: int | None = None  # the victim's own memory (bytes), as ranked
    domain: Domain | None = None
    process: ProcessChoice | None = None  # acted on one process, no group to act on
    why_process: str | None = None
    stalls: Mapping[str, Mapping[str, Any]] | None = None  # per candidate (taskstats)
    hooks: tuple[HookRun, ...] | None = None
    extra: tuple[tuple[str, Any], ...] = ()
    result_extra: tuple[tuple[str, Any], ...] = ()

    @property
    def mode(self) -> Mode:
        return "would" if self.dry_run else "acted"

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    @property
    def held(self) -> list[str]:
        """The conditions that held when it fired ([] for other kinds)."""
        return self.verdict.held() if self.verdict is not None else []

    def finished(self, outcome: ActionOutcome, time: float,
                 hooks: tuple[HookRun, ...] | None = None) -> Decision:
        """This decision once its action is over: the outcome (a failure said in the
        summary), the time it ended, the hooks that ran."""
        summary = self.summary
        if not outcome.ok:
            summary += f" FAILED: {outcome.error}"
        return dataclasses.replace(self, outcome=outcome, time=time, summary=summary,
                                   hooks=hooks if hooks is not None else self.hooks)

    def to_json(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "time": self.time, "monotonic": self.monotonic, "policy": self.policy,
            "monitor": self.monitor, "action": self.action, "dry_run": self.dry_run,
            "victim": self.victim, "victim_relative": self.victim_relative,
            "reason": self.reason, "swap_rule": self.swap_rule, "oom_rule": self.oom_rule,
            "result": {**self.outcome.to_json(), **dict(self.result_extra)},
            "summary": self.summary,
            "victim_memory_bytes": self.victim_memory, "why_process": self.why_process,
        }
        if self.verdict is not None and self.verdict.figures is not None:
            values["trigger"] = {"figures": self.verdict.figures.to_json(),
                                 "all": dict(self.verdict.all), "any": dict(self.verdict.any),
                                 "held_for_seconds": self.held_for}
        if self.reclaim is not None:
            values["reclaim"] = self.reclaim.to_json()
        if self.candidates is not None:
            values["candidates"] = [c.to_json() for c in self.candidates]
        if self.ranked_by is not None:
            values["ranked_by"] = list(self.ranked_by)
        if self.skipped is not None:
            values["skipped"] = dict(self.skipped)
        if self.domain is not None:
            values["domain"] = _domain_to_json(self.domain)
        if self.process is not None:
            values["process"] = self.process.to_json()
        if self.stalls is not None:
            values["stalls"] = {k: dict(v) for k, v in self.stalls.items()}
        if self.hooks is not None:
            values["hooks"] = [run.to_json() for run in self.hooks]
        out = {key: values[key] for key in _KNOWN if values.get(key) is not None}
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        """A record as to_json wrote it (KeyError/TypeError on one it did not write)."""
        trigger = data.get("trigger")
        verdict = None
        if trigger is not None:
            verdict = Verdict(WindowFigures.from_json(trigger["figures"]), dict(trigger["all"]),
                              dict(trigger["any"]))
        if "swap_rule" in data:
            kind: DecisionKind = "swap-rule"
        elif "oom_rule" in data:
            kind = "oom-rule"
        elif trigger is not None:
            kind = "policy"
        else:
            kind = "thaw" if data["action"] == "thaw" else "escalation"
        domain = data.get("domain")
        process = data.get("process")
        candidates = data.get("candidates")
        hooks = data.get("hooks")
        return cls(
            kind, data["time"], data["policy"], data["action"], data["dry_run"],
            data["victim"], _outcome_from_json(data["result"]), data["summary"],
            monotonic=data.get("monotonic"), monitor=data.get("monitor"),
            victim_relative=data.get("victim_relative"), reason=data.get("reason"),
            verdict=verdict,
            held_for=trigger["held_for_seconds"] if trigger is not None else None,
            swap_rule=data.get("swap_rule"), oom_rule=data.get("oom_rule"),
            reclaim=ReclaimFigures.from_json(data["reclaim"]) if "reclaim" in data else None,
            candidates=None if candidates is None else tuple(
                RankedCandidate.from_json(c) for c in candidates),
            ranked_by=tuple(data["ranked_by"]) if "ranked_by" in data else None,
            skipped=data.get("skipped"),
            victim_memory=data.get("victim_memory_bytes"),
            domain=None if domain is None else Domain(domain["path"], domain["limit_bytes"],
                                                     domain["source"]),
            process=None if process is None else _process_from_json(process),
            why_process=data.get("why_process"),
            stalls=data.get("stalls"),
            hooks=None if hooks is None else tuple(HookRun.from_json(h) for h in hooks),
            extra=tuple((k, v) for k, v in data.items() if k not in _KNOWN),
            result_extra=tuple((k, v) for k, v in data["result"].items()
                               if k not in _OUTCOME_KEYS))
