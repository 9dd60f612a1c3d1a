"""Argument types for the command line: every number in a range named in the message.

`run --duration nan` ran forever, `-1` stopped at once, `record --keep -1` or
`--subtree-every 0` and `status --page-size 0` failed deep inside, `status --sample
nan` slept forever. Each of these functions turns the text into the value or raises
argparse.ArgumentTypeError, which zoomd's parser prints as one line (exit 2).
Pydantic-free, like zoomd/config/units.py which they share the syntax of.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from zoomd.config.units import format_duration, parse_duration, parse_percent, parse_size


def _fail(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


YEAR = 8760 * 3600.0  # the longest --duration: beyond it a float clock loses nothing,
# but no run or recording is meant to last that long


def _shown(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    return format_duration(seconds)


def seconds(low: float, high: float) -> Callable[[str], float]:
    """A duration ("500ms", "30s", "2min" or a number of seconds) within [low, high]."""
    def parse(text: str) -> float:
        try:
            value = parse_duration(text)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        if not low <= value <= high:
            raise _fail(f"must lie between {_shown(low)} and {_shown(high)}, got {text!r}")
        return value
    parse.__name__ = "duration"  # argparse names the type in its own messages
    return parse


def count(low: int, high: int) -> Callable[[str], int]:
    """A whole number within [low, high], in ASCII digits."""
    def parse(text: str) -> int:
        stripped = text.strip()
        digits = stripped[1:] if stripped.startswith("-") else stripped
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
            raise _fail(f"expected a whole number from {low} to {high}, got {text!r}")
        value = int(stripped)
        if not low <= value <= high:
            raise _fail(f"must be from {low} to {high}, got {text!r}")
        return value
    parse.__name__ = "number"
    return parse


def size(low: int, high: int) -> Callable[[str], int]:
    """Bytes ("64M", "1G" or a number) within [low, high]; no percentages."""
    def parse(text: str) -> int:
        try:
            value = parse_size(text)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        if value.bytes is None:
            raise _fail(f"expected a size such as \"64M\", got {text!r}")
        if not low <= value.bytes <= high:
            raise _fail(f"must be from {value_text(low)} to {value_text(high)}, "
                        f"got {text!r}")
        return value.bytes
    parse.__name__ = "size"
    return parse


def value_text(n: int) -> str:
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def page_size(text: str) -> int:
    """A page size: a power of two from 4K to 1M (what the kernel's PAGE_SIZE can be)."""
    value = count(4096, 1 << 20)(text)
    if value & (value - 1):
        raise _fail(f"a page size is a power of two (4096, 16384, 65536...), got {text!r}")
    return value


def percent(text: str) -> float:
    """A percentage from 0 to 100 ("40" or "40%")."""
    try:
        return parse_percent(text if text.strip().endswith("%") else text.strip() + "%")
    except ValueError:
        raise _fail(f"expected a percentage from 0 to 100 such as \"10\", got {text!r}") \
            from None


def cgroup_path(text: str) -> str:
    """A v2 cgroup path such as "/my-lab" (--scope): without NUL or empty, "." or ".."
    components, which would name a group by a name no glob or record uses."""
    parts = [p for p in text.strip("/").split("/")] if text.strip("/") else []
    if "\0" in text or any(p in ("", ".", "..") for p in parts):
        raise _fail(f"expected a cgroup path such as \"/my-lab\", without empty, \".\" or "
                    f"\"..\" components, got {text!r}")
    return text


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (exit 2), as every other error zoomd reports."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
