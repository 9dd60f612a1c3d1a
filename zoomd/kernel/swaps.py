"""/proc/swaps: the active swap set, with the kernel's octal escapes undone."""

from __future__ import annotations

import re
from dataclasses import dataclass

from zoomd.errors import KernelFileError
from zoomd.kernel.keyvalue import kernel_fields, kernel_lines, parse_int, parse_uint
from zoomd.kernel.root import Root

_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape_octal(name: str) -> str:
    """Undo seq_file's mangling of space, tab, newline and backslash (`\\040`)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), name)


@dataclass(frozen=True, slots=True)
class SwapEntry:
    """One active swap area; sizes in bytes."""

    path: str
    type: str  # "partition" or "file" as the kernel says
    size_bytes: int
    used_bytes: int
    priority: int


def parse_swaps(text: str, path: str) -> list[SwapEntry]:
    entries: list[SwapEntry] = []
    # Lines end at "\n" and columns at spaces and tabs only: a file name may hold any
    # other character (\r, \x85, U+00A0...) and the kernel escapes only " \t\n\\".
    lines = kernel_lines(text)
    if not lines or not lines[0].startswith("Filename"):
        raise KernelFileError(path, "no 'Filename Type Size Used Priority' header")
    for lineno, line in enumerate(lines[1:], 2):
        parts = kernel_fields(line)
        if not parts:
            continue
        if len(parts) != 5:
            raise KernelFileError(path, f"line {lineno}: expected 5 columns, got {line!r}")
        name = unescape_octal(parts[0])
        size = parse_uint(path, f"{name}.Size", parts[2])
        used = parse_uint(path, f"{name}.Used", parts[3])
        prio = parse_int(path, f"{name}.Priority", parts[4])
        if used > size:
            raise KernelFileError(path, f"{used} kB is above Size ({size} kB): no kernel "
                                        "writes that", f"{name}.Used")
        entries.append(SwapEntry(name, parts[1], size * 1024, used * 1024, prio))
    return entries


def read_swaps(root: Root) -> list[SwapEntry]:
    return parse_swaps(root.read_text("/proc/swaps"), root.join("/proc/swaps"))
