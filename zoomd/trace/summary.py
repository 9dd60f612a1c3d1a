"""Summaries of a replay: per policy, per configuration, and across a fleet of traces.

A policy's stall is its monitored group's memory PSI `full` above a threshold over
a sample interval; intervals less than EPISODE_GAP_S apart form one episode. "Stall
avoided" is the stall the trace still shows after a policy's first action in an
episode: what acting would have saved had it ended the stall at once (an upper
bound, and ~0 on a trace where the live daemon acted itself).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from zoomd.daemon.decision import Decision
from zoomd.trace.replay import ConfigRun, PolicyTrack, TraceResult

EPISODE_GAP_S = 5.0
DAY_S = 86400.0


def r3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def episodes(track: PolicyTrack) -> list[tuple[float, float]]:
    """Stall episodes (start, end): stalled intervals, joined across short calm gaps."""
    out: list[tuple[float, float]] = []
    for start, end, stalled, _ in track.intervals:
        if not stalled:
            continue
        if out and start - out[-1][1] < EPISODE_GAP_S:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _episode_of(eps: list[tuple[float, float]], t: float) -> int | None:
    for i, (start, end) in enumerate(eps):
        if start <= t <= end + EPISODE_GAP_S:
            return i
    return None


def decided_at(decision: Decision) -> float:
    """When it was decided (replay stamps every decision with its sample's time)."""
    assert decision.monotonic is not None
    return decision.monotonic


def repeats(track: PolicyTrack, decisions: list[Decision]) -> list[bool]:
    """Whether each decision repeats an earlier one (same victim, same stall episode).

    Replay cannot remove a victim from a recorded trace: the stall goes on, and the
    policy fires again after its post_action_delay. Those repeats are shown, but not
    counted as actions.
    """
    eps = episodes(track)
    seen: set[tuple[int, str, str]] = set()
    out = []
    for d in decisions:
        episode = _episode_of(eps, decided_at(d))
        key = (episode if episode is not None else -1, d.action, d.victim)
        out.append(episode is not None and key in seen)
        seen.add(key)
    return out


def _stalled_between(track: PolicyTrack, lo: float, hi: float) -> float:
    return sum(min(end, hi) - max(start, lo) for start, end, stalled, _ in track.intervals
               if stalled and end > lo and start < hi)


def policy_summary(track: PolicyTrack, decisions: list[Decision], t0: float,
                   retry_at: dict[float, bool]) -> dict[str, Any]:
    """Actions, first action, stall before it, stall avoided, kernel retrying while stuck."""
    eps = episodes(track)
    rep = repeats(track, decisions)
    acts = [d for d, r in zip(decisions, rep, strict=True) if not r]
    before = None
    avoided = 0.0
    acted_in: set[int] = set()
    for n, d in enumerate(acts):
        i = _episode_of(eps, decided_at(d))
        if i is None:
            continue
        if n == 0:
            before = decided_at(d) - eps[i][0]
        if i not in acted_in:  # later actions in the same episode avoid nothing more
            acted_in.add(i)
            avoided += _stalled_between(track, decided_at(d), eps[i][1])
    stuck = sum(end - start for start, end, _, holds in track.intervals if holds)
    retrying = sum(end - start for start, end, _, holds in track.intervals
                   if holds and retry_at.get(end, False))
    return {
        "monitor": track.monitor,
        "actions": len(acts),
        "repeats": len(decisions) - len(acts),
        "by_action": dict(sorted(Counter(d.action for d in acts).items())),
        "first_action_t": r3(decided_at(acts[0]) - t0) if acts else None,
        "stalled_s": r3(sum(end - start for start, end, s, _ in track.intervals if s)),
        "stall_episodes": len(eps),
        "episodes_acted": len(acted_in),
        "stall_before_first_action_s": r3(before),
        "stall_avoided_s": r3(avoided),
        "conditions_held_s": r3(stuck),
        "kernel_retry_while_stuck_s": r3(retrying),
    }


def config_summary(run: ConfigRun, result: TraceResult) -> dict[str, Any]:
    retry_at = dict(zip(result.timeline["t"], result.timeline["kernel_retry"], strict=True))
    policies = {}
    for name, track in run.tracks.items():
        mine = [d for d in run.decisions if d.policy == name]
        policies[name] = policy_summary(track, mine, result.t0, retry_at)
    firsts = [(p["first_action_t"], n) for n, p in policies.items()
              if p["first_action_t"] is not None]
    first = min(firsts) if firsts else None
    by_action: Counter[str] = Counter()
    for p in policies.values():
        by_action.update(p["by_action"])
    return {
        "actions": sum(p["actions"] for p in policies.values()),
        "repeats": sum(p["repeats"] for p in policies.values()),
        "by_action": dict(sorted(by_action.items())),
        "first_action_t": first[0] if first else None,
        "stall_before_first_action_s":
            policies[first[1]]["stall_before_first_action_s"] if first else None,
        "stall_avoided_s": r3(sum(p["stall_avoided_s"] or 0 for p in policies.values())),
        "stalled_s": r3(max((p["stalled_s"] or 0 for p in policies.values()), default=0.0)),
        "kernel_retry_while_stuck_s":
            r3(max((p["kernel_retry_while_stuck_s"] or 0 for p in policies.values()),
                   default=0.0)),
        "skipped_ticks": run.skipped_ticks,
        "error": run.error,
        "policies": policies,
    }


def kernel_view(result: TraceResult) -> dict[str, Any]:
    """Where should_reclaim_retry() would keep retrying (host-wide watermark test)."""
    line = result.timeline
    retry = [bool(x) for x in line["kernel_retry"] if x is not None]
    seconds = 0.0
    for i in range(1, len(line["t"])):
        if line["kernel_retry"][i]:
            seconds += line["t"][i] - line["t"][i - 1]
    reclaim = [x for x in line["kernel_reclaimable"] if x is not None]
    return {
        "samples": len(retry),
        "samples_retrying": sum(retry),
        "retrying_s": r3(seconds),
        "kernel_reclaimable_bytes_min": min(reclaim) if reclaim else None,
        "kernel_reclaimable_bytes_max": max(reclaim) if reclaim else None,
        "min_watermark_bytes": line["min_free"][-1] if line["min_free"] else None,
    }


def actions_of(run: ConfigRun) -> list[dict[str, Any]]:
    """A run's decisions without the repeats on an already acted-on stall."""
    flags: dict[int, bool] = {}
    for name, track in run.tracks.items():
        mine = [d for d in run.decisions if d.policy == name]
        flags.update((id(d), r) for d, r in zip(mine, repeats(track, mine), strict=True))
    return [d for d in run.decisions if not flags.get(id(d), False)]


def verdict(run_summary: dict[str, Any], decisions: list[Decision]) -> str:
    """One line per configuration for the disagreement table (`decisions`: no repeats)."""
    if run_summary.get("error"):
        return "not replayed"
    if not decisions:
        return "no action"
    first = decisions[0]
    return (f"{len(decisions)} action(s), first {first.action} {first.victim} "
            f"at {run_summary['first_action_t']:.3f}s")


def fleet_summary(results: list[TraceResult], names: list[str]) -> dict[str, Any]:
    """Per configuration across traces (hosts by header hostname), and disagreements."""
    per: dict[str, dict[str, Any]] = {}
    host_seconds: dict[str, float] = {}
    for result in results:
        host = str(result.header.get("hostname", result.name))
        host_seconds[host] = host_seconds.get(host, 0.0) + result.duration
    host_days = sum(host_seconds.values()) / DAY_S
    for name in names:
        acted: set[str] = set()
        actions = 0
        avoided = 0.0
        for result in results:
            run = next(r for r in result.runs if r.spec.name == name)
            summary = config_summary(run, result)
            if summary["actions"]:
                acted.add(str(result.header.get("hostname", result.name)))
            actions += summary["actions"]
            avoided += summary["stall_avoided_s"] or 0.0
        per[name] = {
            "traces": len(results),
            "hosts": len(host_seconds),
            "hosts_acted": len(acted),
            "host_days": round(host_days, 6),
            "actions": actions,
            "actions_per_host_day": round(actions / host_days, 3) if host_days > 0 else None,
            "stall_avoided_s": r3(avoided),
        }
    disagreements = []
    for result in results:
        signatures = {}
        verdicts = {}
        for run in result.runs:
            if run.error:
                continue
            acts = actions_of(run)
            signatures[run.spec.name] = tuple(sorted((d.action, d.victim) for d in acts))
            verdicts[run.spec.name] = verdict(config_summary(run, result), acts)
        if len(set(signatures.values())) > 1:
            disagreements.append({"trace": result.name,
                                  "hostname": result.header.get("hostname"),
                                  "verdicts": verdicts})
    return {"configs": per, "disagreements": disagreements}
