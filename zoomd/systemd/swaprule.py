"""ManagedOOMSwap=kill: systemd-oomd's swap rule, and a zram-aware one.

systemd-oomd acts when MemAvailable and SwapFree are both below (100 -
SwapUsedLimit)% of their totals, on the descendant of a swap-managed cgroup with the
most swap, if it holds more than 5% of SwapTotal. On zram that rule is fooled: a
free zram slot is not free memory (filling it costs RAM), so SwapFree stays high
while the host browns out. The zram-aware rule uses zoomd's reclaim model instead:
memory is zoomd's effective available, and swap counts disk slots fully but
RAM-backed slots only for the RAM that pushing the remaining anon into them would
give back (nothing while anon reclaim is failing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoomd.actions.outcome import ActionOutcome
from zoomd.config.runtime import Conditions, Policy
from zoomd.daemon import candidates as cand_mod
from zoomd.daemon.decision import Decision, RankedCandidate
from zoomd.daemon.engine import Engine
from zoomd.model.reclaim import ReclaimEstimate
from zoomd.model.snapshot import HostSnapshot
from zoomd.systemd.managed import ManagedCgroup
from zoomd.systemd.values import permyriad_to_percent

THRESHOLD_SWAP_USED_PCT = 5  # candidates holding less swap than this share are skipped
POST_ACTION_DELAY_S = 2.0
SWAP_POLICY = Policy(
    name="systemd-swap", candidates=("**",), rank=("swap", "memory"),
    action="kill", all=Conditions(reclaim_activity=True))  # conditions: see SwapGuard


@dataclass(frozen=True, slots=True)
class SwapFigures:
    """What the swap rule compares (bytes) and its verdict."""

    mode: str
    mem_total: int
    mem_available: int
    swap_total: int
    swap_free: int
    mem_threshold: int
    swap_threshold: int

    @property
    def holds(self) -> bool:
        return self.mem_available < self.mem_threshold and self.swap_free < self.swap_threshold

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "mem_total_bytes": self.mem_total,
                "mem_available_bytes": self.mem_available, "swap_total_bytes": self.swap_total,
                "swap_free_bytes": self.swap_free, "mem_threshold_bytes": self.mem_threshold,
                "swap_threshold_bytes": self.swap_threshold}


def usable_swap_free(host: HostSnapshot, estimate: ReclaimEstimate) -> int:
    """Disk slots, plus the RAM that filling RAM-backed slots with anon would give back.

    Both figures are the model's (estimate.anon_by_mode), so the swap rule shares the
    daemon's sustained efficiency gate (HostModel.anon_failing): "auto" is nothing
    while anon reclaim has failed for efficiency_sustain, and is not fooled by the
    swap-onset second of near-0% efficiency that a single 5 s window would be. What
    "auto" frees beyond disk slots ("ram-backed" counts those) is the RAM-backed share.
    """
    disk = sum(s.free_bytes for s in host.swaps if not s.kind.ram_backed)
    by_mode = estimate.anon_by_mode
    return disk + max(0, by_mode.get("auto", 0) - by_mode.get("ram-backed", 0))


def swap_figures(host: HostSnapshot, estimate: ReclaimEstimate, swap_used_limit: int,
                 mode: str) -> SwapFigures:
    """The swap rule's inputs under `mode` ("strict" or "zram-aware")."""
    mem = host.meminfo
    total, swap_total = mem.total, mem.swap_total
    if mode == "strict":
        available = mem.available if mem.available is not None else mem.free
        swap_free = mem.swap_free
    else:
        available = estimate.effective_available
        swap_free = usable_swap_free(host, estimate)
    share = 10000 - swap_used_limit
    return SwapFigures(mode, total, available, swap_total, swap_free,
                       total * share // 10000, swap_total * share // 10000)


class SwapGuard:
    """Evaluated every tick while some cgroup is ManagedOOMSwap=kill."""

    def __init__(self) -> None:
        self.quiet_until = 0.0
        self.last: SwapFigures | None = None

    def tick(self, engine: Engine, host: HostSnapshot, estimate: ReclaimEstimate,
             entries: list[ManagedCgroup], swap_used_limit: int,
             mode: str) -> Decision | None:
        if not entries:
            self.last = None
            return None
        fig = swap_figures(host, estimate, swap_used_limit, mode)
        self.last = fig
        if not fig.holds or host.monotonic < self.quiet_until or engine.in_flight(self):
            return None
        found: dict[str, cand_mod.Candidate] = {}
        skipped: dict[str, str] = {}
        for entry in entries:
            if not engine.reader.exists(entry.path):
                continue
            try:
                cands, skip = cand_mod.collect(engine.reader, SWAP_POLICY, entry.path,
                                               engine.exclusions)
            except OSError:
                continue
            skipped.update(skip)
            for cand in cands:
                found.setdefault(cand.path, cand)
        minimum = fig.swap_total * THRESHOLD_SWAP_USED_PCT // 100
        eligible = [c for c in found.values() if c.swap > minimum]
        keys: tuple[str, ...] = ("swap", "memory")
        if not eligible and mode == "zram-aware":
            # RAM gone while zram is still nearly empty (pages that do not compress, or
            # reclaim stalled before it could swap): nobody holds 5% of SwapTotal, and
            # systemd-oomd's rule would wait for the kernel's OOM killer. The memory
            # that cannot usefully go to zram is the offender: rank by it.
            eligible = list(found.values())
            keys = ("memory", "swap")
        ranked = cand_mod.rank(eligible, keys)
        if not ranked:
            return None
        victim = ranked[0]
        limit = permyriad_to_percent(swap_used_limit)

        def make_record(dry: bool) -> Decision:
            """The record, its outcome pending (the engine finishes it)."""
            verb = "would kill" if dry else "killed"
            summary = (f"{verb} {victim.path} (ManagedOOMSwap=kill, {mode}: memory "
                       f"available {fig.mem_available >> 20} MiB and swap free "
                       f"{fig.swap_free >> 20} MiB both under {10000 - swap_used_limit} "
                       f"permyriad of their totals, SwapUsedLimit={limit})")
            pending = ActionOutcome("kill", victim.path, False, "pending", (), None, None,
                                    None)
            return Decision(
                "swap-rule", 0.0, SWAP_POLICY.name, "kill", dry, victim.path, pending,
                summary, monotonic=round(host.monotonic, 3), reason="memory-used",
                swap_rule=fig.to_json(),
                candidates=tuple(RankedCandidate.of(c, keys) for c in ranked[:10]),
                ranked_by=keys, skipped=skipped)

        # The engine's action path: the backend for the policy (dry-run or not), the
        # kill in flight until the group is empty, the record logged and kept then
        # (returned here when that is at once, else by a later engine tick).
        record = engine.start_action(self, SWAP_POLICY, victim.path, make_record,
                                     reason="memory-used")
        self.quiet_until = host.monotonic + POST_ACTION_DELAY_S
        return record
