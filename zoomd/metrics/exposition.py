"""The Prometheus text exposition format (version 0.0.4), written by hand.

A family is a name, a type, a help line and samples; a histogram's samples carry
their own suffixes (_bucket, _sum, _count). Label values and help text are escaped
as the format requires, so no cgroup name can break a scrape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    """One metric family and its samples: (name suffix, labels, value)."""

    name: str
    type: str  # "gauge", "counter", "histogram"
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float | int | bool | None, suffix: str = "",
            **labels: str) -> None:
        """Add a sample; None (no evidence) adds nothing."""
        if value is None:
            return
        self.samples.append((suffix, tuple(sorted(labels.items())), float(value)))


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render(families: list[Family]) -> str:
    """The exposition text of `families`, in the order given."""
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for suffix, labels, value in fam.samples:
            text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
            lines.append(f"{fam.name}{suffix}{{{text}}} {format_value(value)}" if text
                         else f"{fam.name}{suffix} {format_value(value)}")
    return "\n".join(lines) + "\n" if lines else ""


class Histogram:
    """Cumulative buckets, sum and count of observations (the Prometheus histogram)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def export(self, fam: Family, **labels: str) -> None:
        for bound, count in zip(self.buckets, self.counts, strict=True):
            fam.add(count, "_bucket", **labels, le=repr(float(bound)))  # "1.0" as clients do
        fam.add(self.count, "_bucket", **labels, le="+Inf")
        fam.add(self.sum, "_sum", **labels)
        fam.add(self.count, "_count", **labels)
