"""The schema of zoomd.toml. Every key is documented in the shipped zoomd.toml.

Unknown keys are errors (a typo must not silently disable a rule).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from zoomd.config import runtime
from zoomd.config.units import Size, format_duration, parse_duration, parse_percent, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
Percent = Annotated[float, BeforeValidator(parse_percent),
                    PlainSerializer(lambda v: f"{v:g}%")]
SizeValue = Annotated[Size, BeforeValidator(parse_size), PlainSerializer(str)]

AnonMode = Literal["kernel", "ram-backed", "efficiency", "compression", "auto"]
RankKey = Literal["pgscan", "memory", "swap", "pressure", "refaults", "stalls"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class DaemonSection(Strict):
    interval: Duration = 1.0
    fast_interval: Duration = 0.25
    psi_triggers: bool = True
    dry_run: bool = False
    log_format: Literal["journal", "json"] = "journal"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    mlock: bool = True
    oom_score_adj: int = Field(-1000, ge=-1000, le=1000)
    protect: tuple[str, ...] = ()
    thaw_on_exit: bool = True


class ReclaimSection(Strict):
    anon: AnonMode = "auto"
    min_anon_efficiency: Percent = 30.0
    min_scanned_pages: int = Field(256, ge=1)
    assumed_compression_ratio: float = Field(2.0, ge=1.0, le=64.0)
    efficiency_sustain: Duration = 5.0


class MetricsSection(Strict):
    """Prometheus metrics: an HTTP endpoint and/or a node_exporter textfile."""

    listen: str = ""
    textfile: str = ""
    textfile_interval: Duration = 15.0

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str) -> str:
        import re

        if value and not re.fullmatch(r"(\d+|[^\s\[\]]*:\d+|\[[0-9a-fA-F:.]+\]:\d+)",
                                      value.strip()):
            raise ValueError(f"expected \"PORT\" (loopback) or \"HOST:PORT\", got {value!r}")
        return value.strip()


class Conditions(Strict):
    """Trigger conditions; in [policy.all] every one set must hold, in [policy.any] one."""

    memory_pressure_full_above: Percent | None = None
    memory_pressure_some_above: Percent | None = None
    memory_pressure_full_avg10_above: Percent | None = None
    effective_available_below: SizeValue | None = None
    anon_efficiency_below: Percent | None = None
    refault_rate_above: Percent | None = None
    all_swap_ram_backed: bool | None = None
    reclaim_activity: bool | None = None
    protected_stall_above: Percent | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())


class ProcessRules(Strict):
    """For action = "kill-process": which process in the chosen cgroup dies."""

    protect: tuple[str, ...] = ()  # regexes on the process name or command line
    prefer: tuple[str, ...] = ()


class Policy(Strict):
    name: str = Field(min_length=1)
    monitor: str = "/"
    candidates: tuple[str, ...] = ("**",)
    window: Duration = 5.0
    for_: Duration = Field(3.0, alias="for")
    all: Conditions = Conditions()
    any: Conditions = Conditions()
    action: Literal["kill", "freeze", "kill-process"] = "kill"
    rank: tuple[RankKey, ...] = ("refaults", "memory")
    protect: tuple[str, ...] = ()
    prefer: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    dry_run: bool = False
    post_action_delay: Duration = 15.0
    thaw_after: Duration = 30.0
    kill_after_frozen: Duration | None = None
    process: ProcessRules = ProcessRules()

    @field_validator("monitor")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"expected an absolute cgroup path such as \"/user.slice\", "
                             f"got {value!r}")
        return "/" + value.strip("/") if value != "/" else "/"

    @field_validator("candidates", "protect", "prefer", "avoid", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("rank", mode="before")
    @classmethod
    def _rank_list(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _has_trigger(self) -> Policy:
        if self.all.is_empty() and self.any.is_empty():
            raise ValueError("a policy needs at least one condition in [policy.all] or "
                             "[policy.any]")
        return self


class ZramRule(Strict):
    """The rule zoomd adds on a ManagedOOMMemoryPressure=kill cgroup in zram-aware mode."""

    window: Duration = 2.0
    for_: Duration | None = Field(None, alias="for")  # None: the cgroup's own duration
    all: Conditions = Conditions(memory_pressure_full_above=40.0)
    any: Conditions = Conditions(refault_rate_above=15.0,
                                 effective_available_below="3%")  # type: ignore[arg-type]
    rank: tuple[RankKey, ...] = ("refaults", "memory")


class SystemdSection(Strict):
    """systemd-oomd's interfaces: oomd.conf, ManagedOOM varlink, oom1 D-Bus."""

    managed_oom: bool = True
    mode: Literal["strict", "zram-aware"] = "zram-aware"
    system_socket: str = ""  # "": the current, then the systemd 252 spelling
    user_socket: str = ""  # "": listen only when socket-activated
    oomd_conf: bool = True
    dbus: bool = True
    dump_format: Literal["current", "v252"] = "current"
    zram: ZramRule = ZramRule()


class TaskstatsSection(Strict):
    """Per-task delay accounting (taskstats over netlink): who stalls, and on what."""

    enabled: bool = False
    enable_delay_accounting: bool = False
    task_budget: int = Field(128, ge=1, le=4096)


class Hook(Strict):
    """A command run before or after an action (an argv list, never a shell string)."""

    name: str = Field(min_length=1)
    when: Literal["before", "after"] = "after"
    command: tuple[str, ...] = Field(min_length=1)
    timeout: Duration = 5.0  # "before" hooks: the action goes ahead after this long
    policies: tuple[str, ...] = ()  # globs on policy names; empty: every policy
    actions: tuple[Literal["kill", "freeze", "kill-process"], ...] = ()  # empty: all
    dry_run: bool = False  # also run for dry-run decisions

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError("expected an argv list such as [\"/usr/bin/logger\", \"-t\", "
                             "\"zoomd\"], not a shell string")
        return value

    @field_validator("command")
    @classmethod
    def _absolute(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value[0].startswith("/"):
            raise ValueError(f"the program must be an absolute path, got {value[0]!r}")
        return value


class Config(Strict):
    daemon: DaemonSection = DaemonSection()
    reclaim: ReclaimSection = ReclaimSection()
    metrics: MetricsSection = MetricsSection()
    systemd: SystemdSection = SystemdSection()
    taskstats: TaskstatsSection = TaskstatsSection()
    policy: tuple[Policy, ...] = ()
    hook: tuple[Hook, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        names = [p.name for p in self.policy]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"policy names must be unique, repeated: {', '.join(dupes)}")
        return self


def to_runtime(model: BaseModel) -> Any:
    """The same configuration as zoomd/config/runtime.py's plain dataclasses."""
    cls = runtime.CLASSES[type(model).__name__]
    values: dict[str, Any] = {}
    for name in type(model).model_fields:
        values[name] = _runtime_value(getattr(model, name))
    return cls(**values)


def _runtime_value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return to_runtime(value)
    if isinstance(value, tuple):
        return tuple(_runtime_value(v) for v in value)
    return value
