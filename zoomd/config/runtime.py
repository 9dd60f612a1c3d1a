"""The configuration as the daemon runs on it: plain frozen dataclasses, no pydantic.

zoomd.toml is validated by the pydantic schema (zoomd/config/schema.py), in a short
child process when the daemon loads it (zoomd/config/handover.py). The daemon itself
only ever holds these classes: pydantic and the validators it builds cost ~18 MiB of
resident memory that a daemon meant to run on a host out of memory must not keep.

Each class mirrors the schema class of the same name, field for field and default
for default (tests/test_config_runtime.py fails on any drift). Values here are
already validated: durations in seconds, percentages 0-100, sizes as units.Size.
Code that builds policies at run time (the systemd integration) builds these
directly, from values it has validated itself.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from zoomd import kinds
from zoomd.config.units import Size


@dataclass(frozen=True, slots=True)
class DaemonSection:
    interval: float = 1.0
    fast_interval: float = 0.25
    psi_triggers: bool = True
    dry_run: bool = False
    log_format: kinds.LogFormat = "journal"
    log_level: kinds.LogLevel = "info"
    mlock: bool = True
    oom_score_adj: int = -1000
    protect: tuple[str, ...] = ()
    thaw_on_exit: bool = True
    discover_interval: float = 5.0


@dataclass(frozen=True, slots=True)
class ReclaimSection:
    anon: kinds.AnonMode = "auto"
    min_anon_efficiency: float = 30.0
    min_scanned_pages: int = 256
    assumed_compression_ratio: float = 2.0
    efficiency_sustain: float = 5.0


@dataclass(frozen=True, slots=True)
class MetricsSection:
    listen: str = ""
    textfile: str = ""
    textfile_interval: float = 15.0


@dataclass(frozen=True, slots=True)
class Conditions:
    memory_pressure_full_above: float | None = None
    memory_pressure_some_above: float | None = None
    memory_pressure_full_avg10_above: float | None = None
    effective_available_below: Size | None = None
    anon_efficiency_below: float | None = None
    refault_rate_above: float | None = None
    all_swap_ram_backed: bool | None = None
    reclaim_activity: bool | None = None
    protected_stall_above: float | None = None
    refault_share_above: float | None = None
    swap_turnover_above: float | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True, slots=True)
class ProcessRules:
    protect: tuple[str, ...] = ()
    prefer: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    monitor: str = "/"
    select: kinds.Select = ""  # "limited": one instance per memory-limited group (a template)
    candidates: tuple[str, ...] = ("**",)
    window: float = 5.0
    for_: float = 3.0
    all: Conditions = Conditions()
    any: Conditions = Conditions()
    action: kinds.Action = "kill"
    rank: tuple[kinds.RankKey, ...] = ("refaults", "memory")
    protect: tuple[str, ...] = ()
    prefer: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    dry_run: bool = False
    post_action_delay: float = 15.0
    thaw_after: float = 30.0
    kill_after_frozen: float | None = None
    process: ProcessRules = ProcessRules()


GLOB_CHARACTERS = frozenset("*?")


def is_template(policy: Policy) -> bool:
    """A policy that applies to many groups: a glob monitor, or a selector."""
    return bool(policy.select) or any(c in GLOB_CHARACTERS for c in policy.monitor)


@dataclass(frozen=True, slots=True)
class ZramRule:
    window: float = 2.0
    for_: float | None = None
    all: Conditions = Conditions(memory_pressure_full_above=40.0)
    any: Conditions = Conditions(refault_rate_above=15.0,
                                 effective_available_below=Size(percent=3.0))
    rank: tuple[kinds.RankKey, ...] = ("refaults", "memory")


@dataclass(frozen=True, slots=True)
class SystemdSection:
    managed_oom: bool = True
    mode: kinds.SystemdMode = "zram-aware"
    system_socket: str = ""
    user_socket: str = ""
    oomd_conf: bool = True
    dbus: bool = True
    dump_format: kinds.DumpFormat = "current"
    zram: ZramRule = ZramRule()


@dataclass(frozen=True, slots=True)
class TaskstatsSection:
    enabled: bool = False
    enable_delay_accounting: bool = False
    task_budget: int = 128


@dataclass(frozen=True, slots=True)
class Hook:
    name: str
    command: tuple[str, ...]
    when: kinds.HookWhen = "after"
    timeout: float = 5.0
    policies: tuple[str, ...] = ()
    actions: tuple[kinds.Action, ...] = ()
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    daemon: DaemonSection = DaemonSection()
    reclaim: ReclaimSection = ReclaimSection()
    metrics: MetricsSection = MetricsSection()
    systemd: SystemdSection = SystemdSection()
    taskstats: TaskstatsSection = TaskstatsSection()
    policy: tuple[Policy, ...] = ()
    hook: tuple[Hook, ...] = ()


CLASSES: dict[str, type] = {cls.__name__: cls for cls in (
    DaemonSection, ReclaimSection, MetricsSection, Conditions, ProcessRules, Policy,
    ZramRule, SystemdSection, TaskstatsSection, Hook, Config)}


def as_runtime(config: object) -> Config:
    """`config` as plain dataclasses; a validated schema Config (tests, replay) is
    converted (from_schema), which only happens where pydantic is loaded already."""
    if isinstance(config, Config):
        return config
    converted = from_schema(config)
    assert isinstance(converted, Config)
    return converted


def from_schema(model: object) -> object:
    """A schema model (zoomd/config/schema.py) as the plain dataclass of its name,
    field for field, nested models and tuples of them included. Read by duck typing
    (a pydantic model's class has `model_fields`) so that this module never imports
    the schema: the schema imports it."""
    cls = CLASSES[type(model).__name__]
    return cls(**{name: plain_value(getattr(model, name)) for name in type(model).model_fields})


def plain_value(value: object) -> object:
    if hasattr(type(value), "model_fields"):
        return from_schema(value)
    if isinstance(value, tuple):
        return tuple(plain_value(v) for v in value)
    return value
