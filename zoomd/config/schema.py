"""zoomd.toml validated against the configuration (zoomd/config/runtime.py) by pydantic,
plus the checks that span keys, which no single field can say.

Imported by `zoomd check`, the daemon's short validating child (zoomd/config/handover.py),
replay and the tests; never by the daemon itself.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from zoomd.config import runtime
from zoomd.config.units import format_duration, parse_duration, shown

T = TypeVar("T")
_NESTED: dict[type, tuple[tuple[str, type, bool], ...]] = {
    runtime.Config: (("daemon", runtime.DaemonSection, False),
                     ("policy", runtime.Policy, True), ("systemd", runtime.SystemdSection, False)),
    runtime.SystemdSection: (("zram", runtime.ZramRule, False),),
}


class Invalid(ValueError):
    """The first thing wrong, at `loc` (keys and list indexes, as validated)."""

    def __init__(self, loc: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.loc, self.message = loc, message


@cache
def _adapter(cls: type) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


def validate(data: Any, cls: type[T] = runtime.Config) -> T:  # type: ignore[assignment]
    """`data` (a parsed zoomd.toml, or one of its tables for `cls`) as the configuration,
    or Invalid naming the first key that is wrong."""
    try:
        value = _adapter(cls).validate_python(_prepare(data, cls))
    except ValidationError as exc:
        err = exc.errors()[0]
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            message = "unknown key"
        elif err["type"] == "literal_error":
            message = f"expected {err['ctx']['expected']}, got {err['input']!r}"
        elif err["type"] == "dataclass_type":
            message = f"expected a table, got {shown(err['input'])}"
        raise Invalid(tuple(err["loc"]), message) from None
    _check(value, ())
    return value


def _prepare(data: Any, cls: type) -> Any:
    """Keys spelled as their fields ("for" is `for_`), and the default of
    fast_interval, which follows interval."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for key, info, _ in runtime.keys(cls):
        if key != info.name and key in data:
            data[info.name] = data.pop(key)
    if cls is runtime.DaemonSection and "fast_interval" not in data and "interval" in data:
        try:  # an interval shorter than the default fast_interval is the fast one too
            if parse_duration(data["interval"]) < runtime.FAST_INTERVAL:
                data["fast_interval"] = data["interval"]
        except ValueError:
            pass  # the interval's own validator says why
    for key, sub, many in _NESTED.get(cls, ()):
        if many and isinstance(data.get(key), list):
            data[key] = [_prepare(entry, sub) for entry in data[key]]
        elif key in data:
            data[key] = _prepare(data[key], sub)
    return data


def _check(value: object, loc: tuple[Any, ...]) -> None:
    """The checks across keys: a fast interval not slower than the interval, a policy
    with a condition, names that are unique."""
    if isinstance(value, runtime.DaemonSection) and value.fast_interval > value.interval:
        raise Invalid((*loc, "fast_interval"),
                      f"{format_duration(value.fast_interval)} is longer than interval "
                      f"({format_duration(value.interval)}); the fast interval may not "
                      f"be the slower one")
    if isinstance(value, runtime.Policy) and value.all.is_empty() and value.any.is_empty():
        raise Invalid(loc, "a policy needs at least one condition in [policy.all] or "
                           "[policy.any]")
    if isinstance(value, runtime.Config):
        _check(value.daemon, ("daemon",))
        for i, policy in enumerate(value.policy):
            _check(policy, ("policy", i))
        # records name the policy, and the hook, that acted: two of one name would be one
        for what, names in (("policy", [p.name for p in value.policy]),
                            ("hook", [h.name for h in value.hook])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise Invalid((), f"{what} names must be unique, repeated: "
                                  f"{', '.join(dupes)}")
