"""Typed values of zoomd.toml: durations, sizes (bytes or % of a total), percentages.

Operators write "500ms", "30s", "2min", "512M", "5%"; a bare number is accepted
where its unit is unambiguous (seconds, bytes, percent). Pydantic-free: the daemon
imports this without the schema (zoomd/config/runtime.py), and so may the reclaim
model, whose parameters are the [reclaim] table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_DURATION = re.compile(r"^[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*(ms|s|sec|m|min|h)?[ \t]*\Z")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0,
                   "h": 3600.0}
_SIZE = re.compile(r"^[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*([KMGT]i?B?|B|%)?[ \t]*\Z",
                   re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


_PERCENT = re.compile(r"^[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*%[ \t]*\Z")


def shown(value: Any) -> str:
    """repr() of a value for a one-line error, cut short (a 400-digit number...)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _finite(value: float, what: str, given: Any = None) -> float:
    """float(value), refusing NaN, infinities and numbers too large for a float."""
    text = shown(value if given is None else given)
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{what} too large: {text}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {text}")
    return number


def parse_duration(value: Any) -> float:
    """Seconds from "500ms", "30s", "2min", "1h" or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"500ms\", \"30s\" or \"2min\"")
    if isinstance(value, int | float):
        seconds = _finite(value, "a duration")
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = _finite(float(m.group(1)) * _DURATION_UNITS[m.group(2)], "a duration",
                          value)
    else:
        raise ValueError(f"expected a duration such as \"500ms\", \"30s\" or \"2min\", "
                         f"got {shown(value)}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}min"
    return f"{seconds:g}s"


def parse_percent(value: Any) -> float:
    """Percent from "40%" or 40 (0..100)."""
    if isinstance(value, bool):
        raise ValueError("expected a percentage such as \"40%\"")
    if isinstance(value, str):
        # float() would also take "nan", "1e2", "1_0" and non-ASCII digits.
        m = _PERCENT.match(value)
        if m is None:
            raise ValueError(f"expected a percentage such as \"40%\", got {shown(value)}")
        number = float(m.group(1))
    elif isinstance(value, int | float):
        number = _finite(value, "a percentage")
    else:
        raise ValueError(f"expected a percentage such as \"40%\", got {shown(value)}")
    if not 0.0 <= number <= 100.0:
        raise ValueError(f"a percentage must lie between 0 and 100, got {shown(value)}")
    return number


@dataclass(frozen=True, slots=True)
class Size:
    """Bytes, or a percentage of a total the user of the value supplies."""

    bytes: int | None = None
    percent: float | None = None

    def resolve(self, total: int) -> int:
        if self.percent is not None:
            return int(total * self.percent / 100.0)
        return int(self.bytes or 0)

    def __str__(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g}%"
        value = int(self.bytes or 0)
        for unit in ("T", "G", "M", "K"):
            if value and value % _SIZE_UNITS[unit] == 0:
                return f"{value // _SIZE_UNITS[unit]}{unit}"
        return str(value)


def parse_size(value: Any) -> Size:
    """A size from "512M", "2G", "5%" or a number of bytes."""
    if isinstance(value, Size):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a size such as \"512M\" or \"5%\"")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return Size(bytes=value)
    if isinstance(value, str) and (m := _SIZE.match(value)):
        number = _finite(float(m.group(1)), "a size", value)
        unit = (m.group(2) or "").upper()
        if unit == "%":
            return Size(percent=parse_percent(f"{number}%"))
        unit = unit.rstrip("B").rstrip("I") or ""
        return Size(bytes=int(_finite(number * _SIZE_UNITS[unit], "a size", value)))
    raise ValueError(f"expected a size such as \"512M\", \"2G\" or \"5%\", "
                     f"got {shown(value)}")


# -- per-key metadata -----------------------------------------------------------------
# zoomd/config/runtime.py annotates its fields with these (Annotated[float, DURATION,
# Within(...)]): how a key is written, shown and bounded, said once beside its default.
# The daemon only reads the plain values. The validating child (zoomd/config/schema.py)
# hands the annotations to pydantic, which asks each of these objects for its part of
# the schema through __get_pydantic_core_schema__: the one place pydantic_core is
# imported, only ever called there.

FORBID = {"extra": "forbid"}  # each class's __pydantic_config__: unknown keys are errors


@dataclass(frozen=True, slots=True)
class Unit:
    """How a key is written: "500ms", "40%", "512M"."""

    name: str  # the man page's name for the type
    parse: Callable[[Any], Any]
    show: Callable[[Any], str]

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(self.parse, handler(source))


DURATION = Unit("duration", parse_duration, format_duration)
PERCENT = Unit("percentage", parse_percent, lambda v: f"{v:g}%")
SIZE = Unit("size or percentage", parse_size, str)


def _duration_text(seconds: float) -> str:
    return f"{seconds // 3600:.0f}h" if seconds >= 3600 and seconds % 3600 == 0 \
        else format_duration(seconds)


@dataclass(frozen=True, slots=True)
class Within:
    """A duration between `low` and `high` seconds: 0 would spin a core, 1e300 or
    "99999999999h" overflow a timer, and neither is a setting anyone means."""

    low: float
    high: float

    def check(self, seconds: float) -> float:
        if not self.low <= seconds <= self.high:
            got = format_duration(seconds) if seconds < 1e9 else f"{seconds:g}s"
            raise ValueError(f"must lie between {_duration_text(self.low)} and "
                             f"{_duration_text(self.high)}, got {got}")
        return seconds

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self.check, handler(source))


@dataclass(frozen=True, slots=True)
class Bounds:
    """A number's range or a list's or string's least length, as pydantic's own: put
    it first after the type, which it constrains."""

    ge: float | None = None
    le: float | None = None
    min_length: int | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        schema = dict(handler(source))
        if schema["type"].startswith("function"):
            raise TypeError("Bounds must come right after the type it bounds")
        schema.update({k: getattr(self, k) for k in ("ge", "le", "min_length")
                       if getattr(self, k) is not None})
        return schema


@dataclass(frozen=True, slots=True)
class Check:
    """A check of one key's value (returning it, perhaps normalised), raising
    ValueError with the reason; `before`: on the value as written, before its type."""

    func: Callable[[Any], Any]
    before: bool = False

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        wrap = core_schema.no_info_before_validator_function if self.before \
            else core_schema.no_info_after_validator_function
        return wrap(self.func, handler(source))
