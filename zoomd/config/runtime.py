"""The configuration, defined once: plain frozen dataclasses, one per table of zoomd.toml.

Each field says its type (the Literals of zoomd/kinds.py for closed sets of names),
its default, and in Annotated metadata how it is written, its range and its checks
(zoomd/config/units.py, zoomd/config/checks.py). The daemon only ever holds these
classes, already validated: durations in seconds, percentages 0-100, sizes as
units.Size. zoomd.toml is validated against them, with pydantic, in a short child
process when the daemon loads it (zoomd/config/handover.py; zoomd/config/schema.py
adds the checks that span keys): pydantic and the validators it builds cost ~18 MiB
of resident memory that a daemon meant to run on a host out of memory must not keep.
Unknown keys are errors (a typo must not silently disable a rule): the
`__pydantic_config__` of each class, read only by that child.

No `from __future__ import annotations` here: the fields' types must be objects, not
strings, for older pydantic (2.5 here) resolves a plain dataclass's string annotations in
the caller's namespace, where these names are not (pyproject allows pydantic 2.5).
"""

import types
import typing
from dataclasses import Field, dataclass, fields
from functools import cache
from typing import Annotated, Any

from zoomd import kinds
from zoomd.config import checks
from zoomd.config.units import (
    DURATION,
    FORBID,
    PERCENT,
    SIZE,
    Bounds,
    Check,
    Size,
    Unit,
    Within,
)
from zoomd.model.reclaim import ModelParams

# The range of each kind of duration (zoomd.toml says which is which).
Interval = Annotated[float, DURATION, Within(0.05, 600.0)]
Window = Annotated[float, DURATION, Within(0.1, 3600.0)]
Hold = Annotated[float, DURATION, Within(0.0, 3600.0)]
Delay = Annotated[float, DURATION, Within(0.0, 86400.0)]
Timeout = Annotated[float, DURATION, Within(0.1, 600.0)]
Percent = Annotated[float, PERCENT]
FAST_INTERVAL = 0.25
AbsoluteGlobs = Annotated[tuple[str, ...], Check(checks.absolute_globs)]
SomeGlobs = Annotated[tuple[str, ...], Check(checks.one_or_many, before=True),
                      Check(checks.absolute_globs)]
Ranks = Annotated[tuple[kinds.RankKey, ...], Check(checks.one_or_many, before=True)]
Regexes = Annotated[tuple[str, ...], Check(checks.regexes)]


@dataclass(frozen=True, slots=True)
class DaemonSection:
    __pydantic_config__ = FORBID

    interval: Interval = 1.0
    fast_interval: Interval = FAST_INTERVAL  # default: 250ms, or interval if shorter
    psi_triggers: bool = True
    dry_run: bool = False
    log_format: kinds.LogFormat = "journal"
    log_level: kinds.LogLevel = "info"
    mlock: bool = True
    oom_score_adj: Annotated[int, Bounds(ge=-1000, le=1000)] = -1000
    protect: AbsoluteGlobs = ()
    thaw_on_exit: bool = True
    discover_interval: Annotated[float, DURATION, Within(0.5, 3600.0)] = 5.0


@dataclass(frozen=True, slots=True)
class MetricsSection:
    """Prometheus metrics: an HTTP endpoint and/or a node_exporter textfile."""

    __pydantic_config__ = FORBID

    listen: Annotated[str, Check(checks.listen_address)] = ""
    textfile: str = ""
    textfile_interval: Annotated[float, DURATION, Within(1.0, 3600.0)] = 15.0


@dataclass(frozen=True, slots=True)
class Conditions:
    """Trigger conditions; in [policy.all] every one set must hold, in [policy.any] one."""

    __pydantic_config__ = FORBID

    memory_pressure_full_above: Percent | None = None
    memory_pressure_some_above: Percent | None = None
    memory_pressure_full_avg10_above: Percent | None = None
    effective_available_below: Annotated[Size, SIZE] | None = None
    anon_efficiency_below: Percent | None = None
    refault_rate_above: Percent | None = None
    all_swap_ram_backed: bool | None = None
    reclaim_activity: bool | None = None
    protected_stall_above: Percent | None = None
    refault_share_above: Percent | None = None
    swap_turnover_above: Annotated[float, Bounds(ge=0.0, le=1e6)] | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True, slots=True)
class ProcessRules:
    """For action = "kill-process": which process in the chosen cgroup dies."""

    __pydantic_config__ = FORBID

    protect: Regexes = ()  # regexes on the process name or command line
    prefer: Regexes = ()


@dataclass(frozen=True, slots=True)
class Policy:
    __pydantic_config__ = FORBID

    name: Annotated[str, Bounds(min_length=1), Check(checks.policy_name)]
    monitor: Annotated[str, Check(checks.cgroup_path)] = "/"
    select: kinds.Select = ""  # "limited": one instance per memory-limited group (a template)
    candidates: Annotated[tuple[str, ...], Check(checks.one_or_many, before=True),
                          Check(checks.relative_globs)] = ("**",)
    window: Window = 5.0
    for_: Hold = 3.0  # "for" in zoomd.toml
    all: Conditions = Conditions()
    any: Conditions = Conditions()
    action: kinds.Action = "kill"
    rank: Ranks = ("refaults", "memory")
    protect: SomeGlobs = ()
    prefer: SomeGlobs = ()
    avoid: SomeGlobs = ()
    dry_run: bool = False
    post_action_delay: Delay = 15.0
    thaw_after: Annotated[float, DURATION, Within(0.1, 86400.0)] = 30.0
    kill_after_frozen: Delay | None = None
    process: ProcessRules = ProcessRules()


GLOB_CHARACTERS = frozenset("*?")


def is_template(policy: Policy) -> bool:
    """A policy that applies to many groups: a glob monitor, or a selector."""
    return bool(policy.select) or any(c in GLOB_CHARACTERS for c in policy.monitor)


@dataclass(frozen=True, slots=True)
class ZramRule:
    """The rule zoomd adds on a ManagedOOMMemoryPressure=kill cgroup in zram-aware mode."""

    __pydantic_config__ = FORBID

    window: Window = 2.0
    for_: Hold | None = None  # None: the cgroup's own duration
    all: Conditions = Conditions(memory_pressure_full_above=40.0)
    any: Conditions = Conditions(refault_rate_above=15.0,
                                 effective_available_below=Size(percent=3.0))
    rank: tuple[kinds.RankKey, ...] = ("refaults", "memory")


@dataclass(frozen=True, slots=True)
class SystemdSection:
    """systemd-oomd's interfaces: oomd.conf, ManagedOOM varlink, oom1 D-Bus."""

    __pydantic_config__ = FORBID

    managed_oom: bool = True
    mode: kinds.SystemdMode = "zram-aware"
    system_socket: str = ""  # "": the current, then the systemd 252 spelling
    user_socket: str = ""  # "": listen only when socket-activated
    oomd_conf: bool = True
    dbus: bool = True
    dump_format: kinds.DumpFormat = "current"
    zram: ZramRule = ZramRule()


@dataclass(frozen=True, slots=True)
class TaskstatsSection:
    """Per-task delay accounting (taskstats over netlink): who stalls, and on what."""

    __pydantic_config__ = FORBID

    enabled: bool = False
    enable_delay_accounting: bool = False
    task_budget: Annotated[int, Bounds(ge=1, le=4096)] = 128


@dataclass(frozen=True, slots=True, kw_only=True)
class Hook:
    """A command run before or after an action (an argv list, never a shell string)."""

    __pydantic_config__ = FORBID

    name: Annotated[str, Bounds(min_length=1), Check(checks.hook_name)]
    when: kinds.HookWhen = "after"
    command: Annotated[tuple[str, ...], Bounds(min_length=1),
                       Check(checks.not_a_shell_string, before=True), Check(checks.argv)]
    timeout: Timeout = 5.0  # "before" hooks: the action goes ahead after this long
    policies: tuple[str, ...] = ()  # globs on policy names; empty: every policy
    actions: tuple[kinds.Action, ...] = ()  # empty: all
    dry_run: bool = False  # also run for dry-run decisions


@dataclass(frozen=True, slots=True)
class Config:
    __pydantic_config__ = FORBID

    daemon: DaemonSection = DaemonSection()
    # [reclaim] is the reclaim model's own parameters (zoomd/model/reclaim.py)
    reclaim: ModelParams = ModelParams()  # noqa: RUF009 (frozen)
    metrics: MetricsSection = MetricsSection()
    systemd: SystemdSection = SystemdSection()
    taskstats: TaskstatsSection = TaskstatsSection()
    policy: tuple[Policy, ...] = ()
    hook: tuple[Hook, ...] = ()


def toml_name(name: str) -> str:
    """A field's key in zoomd.toml: `for_` is "for" (a Python keyword)."""
    return "for" if name == "for_" else name


@cache
def keys(cls: type) -> tuple[tuple[str, Field[Any], Any], ...]:
    """Each field of a configuration class: its key, the field, and its type with the
    Annotated metadata (for the dump, the man page and the child's validation)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple((toml_name(f.name), f, hints[f.name]) for f in fields(cls))


def unit_of(hint: Any) -> Unit | None:
    """How a value of this type is written ("500ms", "40%"), if it has a unit."""
    return next((m for m in metadata_of(hint) if isinstance(m, Unit)), None)


def metadata_of(hint: Any) -> tuple[Any, ...]:
    """The Annotated metadata of a type, an optional one's included."""
    if typing.get_origin(hint) is typing.Annotated:
        return hint.__metadata__
    inner = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(inner) == 1:
        return metadata_of(inner[0])
    return ()


def plain(value: Any, hint: Any = None) -> Any:
    """A configuration object as zoomd.toml would hold it (dicts, lists, "500ms"):
    the dump of `zoomd check`, which loads back to the same configuration. Unset keys
    (None) are left out."""
    if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, Size):
        return {key: plain(getattr(value, f.name), h) for key, f, h in keys(type(value))
                if getattr(value, f.name) is not None}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    unit = unit_of(hint)
    return unit.show(value) if unit is not None else value
