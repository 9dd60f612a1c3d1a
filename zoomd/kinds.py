"""The closed sets of names the configuration, the engine, the actions and the records
share: one Literal each, so a name is checked where it is written (pydantic at load,
a type checker everywhere else) and listed from one place (the tuples).

They stay plain strings at run time: the records, the trace and the hook environment
print them as they are.
"""

from __future__ import annotations

from typing import Literal, get_args

Action = Literal["kill", "freeze", "kill-process"]
ACTIONS: tuple[Action, ...] = get_args(Action)
OutcomeAction = Literal["kill", "freeze", "kill-process", "thaw"]  # what an effector did
RankKey = Literal["pgscan", "memory", "swap", "pressure", "refaults", "stalls"]
RANK_KEYS: tuple[RankKey, ...] = get_args(RankKey)
AnonMode = Literal["kernel", "ram-backed", "efficiency", "compression", "auto"]
ANON_MODES: tuple[AnonMode, ...] = get_args(AnonMode)
LogFormat = Literal["journal", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
Select = Literal["", "limited"]  # "limited": one instance per memory-limited group
SystemdMode = Literal["strict", "zram-aware"]
DumpFormat = Literal["current", "v252"]
HookWhen = Literal["before", "after"]
