"""Shared parsing of `name value` kernel files (vmstat, memory.stat, meminfo).

Parsing by name keeps us working across kernels that add, rename or drop fields;
a value that is not an integer is an error naming the file and the field, never
a zero that a policy could act on.

Numbers are what the kernel prints: ASCII decimal digits (and a minus sign where the
field is signed). Python's int() also takes "1_000", " 12", "+5" and non-ASCII digits
("٣", "１２"), and str.isdigit() says yes to "²" that int() then refuses; none of those
is a kernel number, so none of them may become one here.
"""

from __future__ import annotations

import re

from zoomd.errors import KernelFileError

_INT = re.compile(r"-?[0-9]+")
_BLANKS = re.compile(r"[ \t]+")


def is_decimal(text: str) -> bool:
    """True for a non-empty run of ASCII digits (what the kernel prints for %u).
    str.isdigit() alone also takes "٣" and "²"; on ASCII text it is exactly [0-9]+."""
    return text.isascii() and text.isdigit()


def parse_int(path: str, field: str, text: str) -> int:
    """A signed decimal integer as the kernel prints it (%d, %ld)."""
    if _INT.fullmatch(text) is None:
        raise KernelFileError(path, f"expected an integer, got {text!r}", field)
    return int(text)


def parse_uint(path: str, field: str, text: str) -> int:
    """An unsigned decimal integer as the kernel prints it (%u, %lu, %llu)."""
    if not is_decimal(text):
        what = "a non-negative integer" if _INT.fullmatch(text) else "an integer"
        raise KernelFileError(path, f"expected {what}, got {text!r}", field)
    return int(text)


def counter_delta(before: int | None, after: int | None) -> int | None:
    """How much a cumulative kernel counter grew between two readings; None when either
    is unknown or it went backwards (a counter reset: the group was recreated)."""
    if before is None or after is None or after < before:
        return None
    return after - before


def kernel_lines(text: str) -> list[str]:
    """Lines split at "\\n" only: str.splitlines() also splits at \\r, \\x85, \\u2028...,
    which a file name printed by the kernel may contain."""
    return text.split("\n")


def kernel_fields(line: str) -> list[str]:
    """Columns split at spaces and tabs only (str.split() splits at any Unicode space)."""
    stripped = line.strip(" \t")
    return _BLANKS.split(stripped) if stripped else []


def parse_name_values(text: str, path: str, unit_suffix: str | None = None) -> dict[str, int]:
    """Parse lines of `name value [unit]` (meminfo's `Name:  value kB` included)."""
    values: dict[str, int] = {}
    for lineno, line in enumerate(kernel_lines(text), 1):
        # Fast path for what the kernel prints: "name value" (vmstat, memory.stat) or
        # "Name:   value kB" (meminfo); anything else takes the strict path below.
        name, sep, rest = line.partition(" ")
        if sep and name:
            number, sep, unit = rest.lstrip(" ").partition(" ")
            if number.isdigit() and number.isascii() and (
                    not sep or (unit_suffix is not None and unit == unit_suffix)):
                name = name.rstrip(":")
                if name in values:
                    raise _duplicate(path, name)
                values[name] = int(number)
                continue
        parts = kernel_fields(line)
        if not parts:
            continue
        if len(parts) < 2:
            raise KernelFileError(path, f"line {lineno}: expected 'name value', got {line!r}")
        name = parts[0].rstrip(":")
        if unit_suffix is not None and len(parts) == 3 and parts[2] != unit_suffix:
            raise KernelFileError(path, f"unexpected unit {parts[2]!r}", name)
        if len(parts) > 3 or (len(parts) == 3 and unit_suffix is None):
            raise KernelFileError(path, f"line {lineno}: unexpected {line!r}", name)
        if name in values:
            raise _duplicate(path, name)
        values[name] = parse_uint(path, name, parts[1])
    return values


def _duplicate(path: str, name: str) -> KernelFileError:
    return KernelFileError(path, "printed twice: no kernel writes that", name)


def pick_values(text: str, path: str, names: tuple[str, ...]) -> dict[str, int]:
    """Only `names` from a `name value` file (memory.stat when ranking: three fields of
    sixty), each found at the start of a line; absent names are left out, and a present
    one whose value is no unsigned integer raises, as parse_name_values would."""
    out: dict[str, int] = {}
    for name in names:
        key = name + " "
        at = text.find(key)
        while at > 0 and text[at - 1] != "\n":
            at = text.find(key, at + 1)
        if at < 0:
            continue
        end = text.find("\n", at)
        value = text[at + len(key):end if end >= 0 else len(text)].strip(" \t")
        out[name] = parse_uint(path, name, value)
    return out
