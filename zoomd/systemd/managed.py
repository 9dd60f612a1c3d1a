"""The cgroups units mark ManagedOOMMemoryPressure=kill / ManagedOOMSwap=kill, as PID 1
and user managers report them, and the zoomd policies that guard them.

A message is {"cgroups": [{"mode": "kill"|"auto", "path": ..., "property": ...,
"limit": <uint32, UINT32_MAX = 100%>, "duration": <usec>, "rules": [<name>, ...]},
...]}; "rules" is systemd v261's (the ControlGroup type of io.systemd.oom and
io.systemd.ManagedOOM, man/io.systemd.oom.xml: `rules: ?[]string`), used with
property "OOMRules" (the unit's OOMRules=, names of .oomrule rulesets; see
oomrules.py and rules.py). As in systemd-oomd (src/oom/oomd-manager.c,
process_managed_oom_message(), commit 00a99cb427b0): fields are dispatched by name
and unknown ones ignored; malformed elements (a field of the wrong type, "rules"
included) are skipped and the rest applied; an OOMRules element without rules stops
guarding the path, as "auto" does;
"auto" stops guarding the path; a limit of 0 or no limit means oomd.conf's default
and so does a missing duration; a sender whose uid is neither 0 nor the owner of a
reported cgroup ends the processing of its message with a permission error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zoomd.config.runtime import Conditions, Policy, SystemdSection
from zoomd.systemd.oomdconf import OomdConf
from zoomd.systemd.values import (
    UINT32_MAX,
    USEC_INFINITY,
    USEC_PER_SEC,
    uint32_scale_to_permyriad,
)

PRESSURE = "ManagedOOMMemoryPressure"
SWAP = "ManagedOOMSwap"
RULES = "OOMRules"
PROPERTIES = (PRESSURE, SWAP, RULES)
MAX_RULES = 64  # rule names per cgroup; systemd has no bound but its 16 MiB message
MAX_RULE_NAME = 255  # a file name (NAME_MAX), without ".oomrule"
POST_ACTION_DELAY_S = 15.0  # systemd-oomd's POST_ACTION_DELAY_USEC
RECLAIM_WINDOW_S = 30.0  # "reclaim activity in the last 30 s" (RECLAIM_DURATION_USEC)
PRESSURE_PREFIX = "systemd-pressure:"
ZRAM_PREFIX = "systemd-zram:"


class ManagedPermissionError(Exception):
    """A peer reported a cgroup it does not own; the rest of its message is ignored."""


class ManagedParametersError(Exception):
    """The parameters are not {"cgroups": [...]}."""


@dataclass(frozen=True, slots=True)
class ManagedCgroup:
    """One guarded cgroup; limit and duration None mean oomd.conf's defaults."""

    path: str
    property: str
    limit: int | None = None  # permyriad
    duration_usec: int | None = None
    source: str = "system"  # "system" (PID 1) or "uid:N" (a user manager)
    rules: tuple[str, ...] = ()  # OOMRules: the rulesets' names, in order, no repeats

    def effective_limit(self, conf: OomdConf) -> int:
        return conf.pressure_limit if self.limit is None else self.limit

    def effective_duration(self, conf: OomdConf) -> int:
        return conf.pressure_duration_usec if self.duration_usec is None else self.duration_usec


def normalise_path(path: str) -> str:
    """systemd's empty_to_root(), and no trailing slash."""
    return "/" + path.strip("/") if path.strip("/") else "/"


def _path_ok(path: str) -> bool:
    """No ".", ".." or empty component and no NUL: "/user.slice/user-1000.slice/../.."
    passes the owner check as uid 1000's yet names the root, whose groups (PID 1's too)
    then match no protected path."""
    inner = path.strip("/")
    return "\0" not in path and (not inner or all(
        part not in ("", ".", "..") for part in inner.split("/")))


def _rules(raw: Any) -> tuple[str, ...] | None:
    """A "rules" value (absent or null: no rules) or None when malformed: a list of
    at most MAX_RULES rule names (non-empty, no "/" or NUL, at most MAX_RULE_NAME),
    repeats dropped as systemd's strv_uniq()."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_RULES:
        return None
    out: list[str] = []
    for name in raw:
        if not isinstance(name, str) or not name or len(name) > MAX_RULE_NAME \
                or "/" in name or "\0" in name or name in (".", ".."):
            return None
        if name not in out:
            out.append(name)
    return tuple(out)


def _element(raw: Any) -> tuple[str, str, str, int | None, int | None,
                                tuple[str, ...]] | None:
    """(mode, path, property, limit, duration, rules) or None for a malformed element."""
    if not isinstance(raw, dict):
        return None
    mode, path, prop = raw.get("mode"), raw.get("path"), raw.get("property")
    if mode not in ("kill", "auto") or not isinstance(path, str) or not isinstance(prop, str) \
            or not _path_ok(path):
        return None
    limit = raw.get("limit")
    duration = raw.get("duration")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 0 <= limit <= UINT32_MAX):
        return None
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)
                                 or not 0 <= duration <= USEC_INFINITY):
        return None
    rules = _rules(raw.get("rules"))
    if rules is None:
        return None
    return mode, normalise_path(path), prop, limit, duration, rules


class ManagedSet:
    """What is guarded now, keyed by (property, path)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], ManagedCgroup] = {}
        self.generation = 0  # bumped on every change, so users rebuild only when needed
        # Whether a ruleset name is defined (.oomrule files): for the notes only.
        self.known_rule: Callable[[str], bool] | None = None

    def pressure(self) -> list[ManagedCgroup]:
        return sorted((e for e in self.entries.values() if e.property == PRESSURE),
                      key=lambda e: e.path)

    def swap(self) -> list[ManagedCgroup]:
        return sorted((e for e in self.entries.values() if e.property == SWAP),
                      key=lambda e: e.path)

    def rules(self) -> list[ManagedCgroup]:
        return sorted((e for e in self.entries.values() if e.property == RULES),
                      key=lambda e: e.path)

    def _set(self, key: tuple[str, str], entry: ManagedCgroup | None) -> None:
        old = self.entries.get(key)
        if entry is None:
            if old is not None:
                del self.entries[key]
                self.generation += 1
        elif old != entry:
            self.entries[key] = entry
            self.generation += 1

    def replace_source(self, source: str, parameters: Any) -> list[str]:
        """A full snapshot from `source` (PID 1's first reply): drop what it no longer lists."""
        for key in [k for k, e in self.entries.items() if e.source == source]:
            self._set(key, None)
        return self.apply(parameters, uid=0, source=source)

    def apply(self, parameters: Any, *, uid: int, source: str,
              owner_of: Callable[[str], int | None] = lambda _path: None) -> list[str]:
        """Apply an update; returns notes on skipped elements. Raises
        ManagedParametersError or ManagedPermissionError (see the module docstring)."""
        if not isinstance(parameters, dict) or not isinstance(parameters.get("cgroups"), list):
            raise ManagedParametersError("parameters must be {\"cgroups\": [...]}")
        notes: list[str] = []
        for index, raw in enumerate(parameters["cgroups"]):
            parsed = _element(raw)
            if parsed is None:
                notes.append(f"cgroups[{index}]: malformed, skipped")
                continue
            mode, path, prop, limit, duration, rules = parsed
            if uid != 0:
                owner = owner_of(path)
                if owner is None:
                    notes.append(f"{path}: owner unknown (gone?), skipped")
                    continue
                if owner != uid:
                    raise ManagedPermissionError(
                        f"{path} is owned by uid {owner}, not by the sender's uid {uid}")
            if prop not in PROPERTIES:
                notes.append(f"{path}: property {prop!r} not supported, skipped")
                continue
            key = (prop, path)
            if mode == "auto" or (prop == RULES and not rules):
                self._set(key, None)
                continue
            entry = ManagedCgroup(path, prop, source=source)
            if prop == RULES:
                entry = ManagedCgroup(path, prop, source=source, rules=rules)
                known = self.known_rule
                unknown = [n for n in rules if known is not None and not known(n)]
                if unknown:
                    notes.append(f"{path} references undefined ruleset(s) "
                                 f"{', '.join(unknown)}: they will be ignored")
            if prop == PRESSURE:
                permyriad = uint32_scale_to_permyriad(limit) if limit else None
                usec = duration if duration is not None and duration != USEC_INFINITY \
                    else None
                entry = ManagedCgroup(path, prop, permyriad, usec, source)
            self._set(key, entry)
        return notes

    def drop(self, path: str) -> None:
        """Forget a cgroup that no longer exists (as systemd-oomd does)."""
        for key in [k for k in self.entries if k[1] == path]:
            self._set(key, None)


def pressure_policies(entry: ManagedCgroup, conf: OomdConf,
                      section: SystemdSection) -> list[Policy]:
    """systemd-oomd's pressure rule for one cgroup, plus the zram-aware rule if enabled."""
    limit_pct = entry.effective_limit(conf) / 100.0
    duration = entry.effective_duration(conf) / USEC_PER_SEC
    window = min(RECLAIM_WINDOW_S, max(2.0, duration))
    # Built directly: every value here was checked (oomd.conf, the varlink message's
    # cgroup path and properties, the validated [systemd] section).
    policies = [Policy(
        name=PRESSURE_PREFIX + entry.path, monitor=entry.path, candidates=("**",),
        window=window, for_=duration, action="kill", rank=("pgscan", "memory"),
        post_action_delay=POST_ACTION_DELAY_S,
        all=Conditions(memory_pressure_full_avg10_above=limit_pct, reclaim_activity=True),
    )]
    if section.mode == "zram-aware":
        rule = section.zram
        policies.append(Policy(
            name=ZRAM_PREFIX + entry.path, monitor=entry.path, candidates=("**",),
            window=rule.window, for_=rule.for_ if rule.for_ is not None else duration,
            action="kill", rank=tuple(rule.rank), post_action_delay=POST_ACTION_DELAY_S,
            all=rule.all, any=rule.any,
        ))
    return policies
