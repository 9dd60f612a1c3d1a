"""Pressure stall information: /proc/pressure/* and a cgroup's *.pressure files.

`total` (cumulative microseconds of stall) is what triggers use: any window can be
computed from two readings, whereas avg10 lags by design.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zoomd.errors import KernelFileError
from zoomd.kernel.keyvalue import counter_delta, kernel_fields, kernel_lines, parse_uint
from zoomd.kernel.root import Root

_AVG = re.compile(r"[0-9]+(\.[0-9]+)?")
_LINE = r"avg10=([0-9]+\.[0-9]+) avg60=([0-9]+\.[0-9]+) avg300=([0-9]+\.[0-9]+) total=([0-9]+)\n"
# The whole file exactly as the kernel prints it (a watched group's is parsed every
# tick); anything else, older or newer, goes through the field-by-field parse.
_KERNEL_LAYOUT = re.compile(f"some {_LINE}(?:full {_LINE})?")


@dataclass(frozen=True, slots=True)
class PsiLine:
    """One `some` or `full` line: averages in percent, total in microseconds."""

    avg10: float
    avg60: float
    avg300: float
    total_us: int


@dataclass(frozen=True, slots=True)
class Psi:
    """A pressure file; `full` is None where the kernel prints no full line (cpu, old kernels)."""

    some: PsiLine
    full: PsiLine | None


def _parse_line(path: str, kind: str, fields: list[str]) -> PsiLine:
    values: dict[str, str] = {}
    for field in fields:
        name, sep, value = field.partition("=")
        if not sep:
            raise KernelFileError(path, f"expected name=value, got {field!r}", kind)
        values[name] = value
    out: dict[str, float | int] = {}
    for name in ("avg10", "avg60", "avg300"):
        if name not in values:
            raise KernelFileError(path, "missing", f"{kind}.{name}")
        # "12.34" as the kernel prints it; float() would also take nan, inf and 1e3.
        if _AVG.fullmatch(values[name]) is None:
            raise KernelFileError(
                path, f"expected a number, got {values[name]!r}", f"{kind}.{name}"
            )
        out[name] = float(values[name])
    if "total" not in values:
        raise KernelFileError(path, "missing", f"{kind}.total")
    total = parse_uint(path, f"{kind}.total", values["total"])
    return PsiLine(out["avg10"], out["avg60"], out["avg300"], total)


# Resources whose pressure files have had a `full` line since PSI exists (4.20); cpu
# got one in 5.13 (system-wide: zeros).
FULL_SINCE_PSI = ("memory", "io")


def parse_psi(text: str, path: str, need_full: bool = False) -> Psi:
    """Parse the text of a pressure file (`need_full`: memory and io, FULL_SINCE_PSI)."""
    m = _KERNEL_LAYOUT.fullmatch(text)
    if m is not None:
        g = m.groups()
        some = PsiLine(float(g[0]), float(g[1]), float(g[2]), int(g[3]))
        full = None if g[4] is None else PsiLine(float(g[4]), float(g[5]), float(g[6]),
                                                 int(g[7]))
        return _possible(Psi(some=some, full=full), path, need_full)
    return parse_psi_fields(text, path, need_full)


def _possible(psi: Psi, path: str, need_full: bool) -> Psi:
    """Refuse what no kernel prints: an average is a share of time (at most 100.00),
    and a task stalled "full" is stalled "some" too: full's total at most some's
    (host and cgroup files alike: the kernel computes both from one aggregation)."""
    for kind, line in (("some", psi.some), ("full", psi.full)):
        if line is None:
            continue
        for name in ("avg10", "avg60", "avg300"):
            value = getattr(line, name)
            if value > 100.0:
                raise KernelFileError(path, f"{value:g} is above 100%: no kernel writes "
                                            "that", f"{kind}.{name}")
    if psi.full is None:
        if need_full:
            raise KernelFileError(path, "no 'full' line (every kernel with PSI prints "
                                        "one here)", "full")
    elif psi.full.total_us > psi.some.total_us:
        raise KernelFileError(path, f"{psi.full.total_us} is above some.total "
                                    f"({psi.some.total_us}): no kernel writes that",
                              "full.total")
    return psi


def parse_psi_fields(text: str, path: str, need_full: bool = False) -> Psi:
    """The field-by-field parse: any order, extra fields and lines tolerated, and an
    error naming the field for anything unreadable."""
    lines: dict[str, PsiLine] = {}
    for raw in kernel_lines(text):
        parts = kernel_fields(raw)
        if not parts:
            continue
        kind = parts[0]
        if kind not in ("some", "full"):
            continue  # a future kernel may add lines: tolerate them
        lines[kind] = _parse_line(path, kind, parts[1:])
    if "some" not in lines:
        raise KernelFileError(path, "no 'some' line", "some")
    return _possible(Psi(some=lines["some"], full=lines.get("full")), path, need_full)


def read_pressure(root: Root, resource: str) -> Psi:
    """Read /proc/pressure/<resource> (memory, io, cpu)."""
    path = f"/proc/pressure/{resource}"
    return parse_psi(root.read_text(path), root.join(path), resource in FULL_SINCE_PSI)


def stall_percent(before_us: int | None, after_us: int | None,
                  elapsed_s: float) -> float | None:
    """Share of a window spent stalled (percent, at most 100), from two `total`
    readings; None for no window, an unknown reading or a counter reset (cgroup
    recreated): no evidence."""
    delta = counter_delta(before_us, after_us)
    if delta is None or elapsed_s <= 0:
        return None
    return min(100.0, 100.0 * delta / (elapsed_s * 1e6))
