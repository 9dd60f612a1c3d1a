"""Shared parsing of `name value` kernel files (vmstat, memory.stat, meminfo).

Parsing by name keeps us working across kernels that add, rename or drop fields;
a value that is not an integer is an error naming the file and the field, never
a zero that a policy could act on.
"""

from __future__ import annotations

from zoomd.errors import KernelFileError


def parse_int(path: str, field: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise KernelFileError(path, f"expected an integer, got {text!r}", field) from None


def parse_name_values(text: str, path: str, unit_suffix: str | None = None) -> dict[str, int]:
    """Parse lines of `name value [unit]` (meminfo's `Name:  value kB` included)."""
    values: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < 2:
            raise KernelFileError(path, f"line {lineno}: expected 'name value', got {line!r}")
        name = parts[0].rstrip(":")
        if unit_suffix is not None and len(parts) == 3 and parts[2] != unit_suffix:
            raise KernelFileError(path, f"unexpected unit {parts[2]!r}", name)
        if len(parts) > 3 or (len(parts) == 3 and unit_suffix is None):
            raise KernelFileError(path, f"line {lineno}: unexpected {line!r}", name)
        values[name] = parse_int(path, name, parts[1])
    return values
