"""The schema of zoomd.toml. Every key is documented in the shipped zoomd.toml.

Unknown keys are errors (a typo must not silently disable a rule).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from zoomd import kinds
from zoomd.config import runtime
from zoomd.config.units import Size, format_duration, parse_duration, parse_percent, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
Percent = Annotated[float, BeforeValidator(parse_percent),
                    PlainSerializer(lambda v: f"{v:g}%")]
SizeValue = Annotated[Size, BeforeValidator(parse_size), PlainSerializer(str)]



def _within(low: float, high: float, low_text: str, high_text: str) -> AfterValidator:
    """A duration between `low` and `high` seconds: 0 would spin a core, 1e300 or
    "99999999999h" overflow a timer, and neither is a setting anyone means."""
    def check(seconds: float) -> float:
        if not low <= seconds <= high:
            shown = format_duration(seconds) if seconds < 1e9 else f"{seconds:g}s"
            raise ValueError(f"must lie between {low_text} and {high_text}, got {shown}")
        return seconds
    return AfterValidator(check)


def _can_start_with_slash(pattern: str) -> bool:
    """Whether the glob can match some text that begins with "/": "*" may match
    nothing, "**" may match "/", "?" and any other character are not "/"."""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i) or pattern[i] == "/":
            return True
        if pattern[i] != "*":
            return False
        i += 1
    return False


def check_globs(patterns: tuple[str, ...], absolute: bool) -> tuple[str, ...]:
    """Refuse a cgroup glob that can never match (zoomd/daemon/globs.py): an absolute
    one (protect, prefer, avoid) is matched against paths such as
    "/system.slice/sshd.service", a relative one (candidates) against paths below the
    monitor such as "app.slice/x.service"; neither kind of path has an empty, "." or
    ".." component or ends in "/"."""
    for pattern in patterns:
        if "\0" in pattern:
            raise ValueError(f"{pattern!r}: a cgroup path holds no NUL")
        starts = _can_start_with_slash(pattern)
        if absolute and not starts:
            raise ValueError(f"{pattern!r} is matched against absolute cgroup paths and "
                             f"can never match; write \"/{pattern}\" (or \"**/{pattern}\")")
        if not absolute and pattern.startswith("/"):
            raise ValueError(f"{pattern!r}: candidates are globs relative to the monitor "
                             f"and this one can never match; write "
                             f"\"{pattern.lstrip('/') or '**'}\"")
        if absolute and pattern == "/":
            raise ValueError("\"/\" is the root cgroup, which is never acted on anyway; "
                             "to match every group write \"/**\"")
        parts = pattern.split("/")[1:] if pattern.startswith("/") else pattern.split("/")
        if pattern in ("", "/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{pattern!r} can never match: a cgroup path has no empty, "
                             f"\".\" or \"..\" component and does not end in \"/\"")
    return patterns


def check_regexes(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """Compile each regex now, so that a bad one is refused at load and not raised
    when a process must be chosen (zoomd/daemon/processes.py compiles them again)."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except (re.error, OverflowError, RecursionError, ValueError, MemoryError) as exc:
            raise ValueError(f"{pattern[:60]!r} is not a valid regular expression: "
                             f"{exc}") from None
    return patterns


# The range of each kind of duration (zoomd.toml says which is which).
Interval = Annotated[Duration, _within(0.05, 600.0, "50ms", "10min")]
Window = Annotated[Duration, _within(0.1, 3600.0, "100ms", "1h")]
Hold = Annotated[Duration, _within(0.0, 3600.0, "0s", "1h")]
Delay = Annotated[Duration, _within(0.0, 86400.0, "0s", "24h")]
Timeout = Annotated[Duration, _within(0.1, 600.0, "100ms", "10min")]
FAST_INTERVAL = 0.25


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class DaemonSection(Strict):
    interval: Interval = 1.0
    fast_interval: Interval = FAST_INTERVAL  # default: 250ms, or interval if shorter
    psi_triggers: bool = True
    dry_run: bool = False
    log_format: kinds.LogFormat = "journal"
    log_level: kinds.LogLevel = "info"
    mlock: bool = True
    oom_score_adj: int = Field(-1000, ge=-1000, le=1000)
    protect: tuple[str, ...] = ()
    thaw_on_exit: bool = True
    discover_interval: Annotated[Duration, _within(0.5, 3600.0, "500ms", "1h")] = 5.0

    @model_validator(mode="before")
    @classmethod
    def _fast_default(cls, data: Any) -> Any:
        """An interval shorter than the default fast_interval is the fast one too."""
        if isinstance(data, dict) and "fast_interval" not in data and "interval" in data:
            try:
                interval = parse_duration(data["interval"])
            except ValueError:
                return data  # the interval's own validator says why
            if interval < FAST_INTERVAL:
                data = {**data, "fast_interval": data["interval"]}
        return data

    @field_validator("fast_interval")
    @classmethod
    def _not_slower(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval")
        if interval is not None and value > interval:
            raise ValueError(f"{format_duration(value)} is longer than interval "
                             f"({format_duration(interval)}); the fast interval may not "
                             f"be the slower one")
        return value

    @field_validator("protect")
    @classmethod
    def _absolute_globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_globs(value, absolute=True)


class ReclaimSection(Strict):
    anon: kinds.AnonMode = "auto"
    min_anon_efficiency: Percent = 30.0
    min_scanned_pages: int = Field(256, ge=1)
    assumed_compression_ratio: float = Field(2.0, ge=1.0, le=64.0)
    efficiency_sustain: Annotated[Duration, _within(0.0, 600.0, "0s", "10min")] = 5.0


class MetricsSection(Strict):
    """Prometheus metrics: an HTTP endpoint and/or a node_exporter textfile."""

    listen: str = ""
    textfile: str = ""
    textfile_interval: Annotated[Duration, _within(1.0, 3600.0, "1s", "1h")] = 15.0

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
    refault_share_above: Percent | None = None
    swap_turnover_above: float | None = Field(None, ge=0.0, le=1e6)

    def is_empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())


class ProcessRules(Strict):
    """For action = "kill-process": which process in the chosen cgroup dies."""

    protect: tuple[str, ...] = ()  # regexes on the process name or command line
    prefer: tuple[str, ...] = ()

    @field_validator("protect", "prefer")
    @classmethod
    def _compiles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_regexes(value)


class Policy(Strict):
    name: str = Field(min_length=1)
    monitor: str = "/"
    select: kinds.Select = ""
    candidates: tuple[str, ...] = ("**",)
    window: Window = 5.0
    for_: Hold = Field(3.0, alias="for")
    all: Conditions = Conditions()
    any: Conditions = Conditions()
    action: kinds.Action = "kill"
    rank: tuple[kinds.RankKey, ...] = ("refaults", "memory")
    protect: tuple[str, ...] = ()
    prefer: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    dry_run: bool = False
    post_action_delay: Delay = 15.0
    thaw_after: Annotated[Duration, _within(0.1, 86400.0, "100ms", "24h")] = 30.0
    kill_after_frozen: Delay | None = None
    process: ProcessRules = ProcessRules()

    @field_validator("monitor")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"expected an absolute cgroup path such as \"/user.slice\", "
                             f"got {value!r}")
        path = "/" + value.strip("/") if value != "/" else "/"
        # "/../unified" or "/a/./b" name a group by a name no glob or record uses.
        parts = path.split("/")[1:] if path != "/" else []
        if "\0" in path or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"expected a cgroup path without NUL or empty, \".\" or "
                             f"\"..\" components, got {value!r}")
        return path

    @field_validator("candidates")
    @classmethod
    def _relative_globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_globs(value, absolute=False)

    @field_validator("protect", "prefer", "avoid")
    @classmethod
    def _absolute_globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_globs(value, absolute=True)

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

    window: Window = 2.0
    for_: Hold | None = Field(None, alias="for")  # None: the cgroup's own duration
    all: Conditions = Conditions(memory_pressure_full_above=40.0)
    any: Conditions = Conditions(refault_rate_above=15.0,
                                 effective_available_below="3%")  # type: ignore[arg-type]
    rank: tuple[kinds.RankKey, ...] = ("refaults", "memory")


class SystemdSection(Strict):
    """systemd-oomd's interfaces: oomd.conf, ManagedOOM varlink, oom1 D-Bus."""

    managed_oom: bool = True
    mode: kinds.SystemdMode = "zram-aware"
    system_socket: str = ""  # "": the current, then the systemd 252 spelling
    user_socket: str = ""  # "": listen only when socket-activated
    oomd_conf: bool = True
    dbus: bool = True
    dump_format: kinds.DumpFormat = "current"
    zram: ZramRule = ZramRule()


class TaskstatsSection(Strict):
    """Per-task delay accounting (taskstats over netlink): who stalls, and on what."""

    enabled: bool = False
    enable_delay_accounting: bool = False
    task_budget: int = Field(128, ge=1, le=4096)


class Hook(Strict):
    """A command run before or after an action (an argv list, never a shell string)."""

    name: str = Field(min_length=1)
    when: kinds.HookWhen = "after"
    command: tuple[str, ...] = Field(min_length=1)
    timeout: Timeout = 5.0  # "before" hooks: the action goes ahead after this long
    policies: tuple[str, ...] = ()  # globs on policy names; empty: every policy
    actions: tuple[kinds.Action, ...] = ()  # empty: all
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
        for i, arg in enumerate(value):
            if "\0" in arg:  # execve() cannot pass it: the hook would fail when it runs
                raise ValueError(f"argument {i} holds a NUL character: {arg!r}")
        return value

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if "\0" in value:
            raise ValueError(f"a hook name holds no NUL character, got {value!r}")
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
        hooks = [h.name for h in self.hook]
        dupes = sorted({n for n in hooks if hooks.count(n) > 1})
        if dupes:  # records name the hook that ran: two of one name would be one
            raise ValueError(f"hook names must be unique, repeated: {', '.join(dupes)}")
        return self


def to_runtime(model: BaseModel) -> Any:
    """The same configuration as zoomd/config/runtime.py's plain dataclasses."""
    return runtime.from_schema(model)
