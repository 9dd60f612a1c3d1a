"""Shared pieces of the property-based (hypothesis) tests: settings, example counters,
kernel-style renderers, corruptions and mutations.

The example count per test can be raised for a long run with ZOOMD_FUZZ_EXAMPLES
(default 150); with ZOOMD_FUZZ_COUNTS=FILE each test adds the number of examples it
actually ran to that JSON file, which benchmarks/fuzz.py turns into
benchmarks/results/fuzz.md.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from zoomd.errors import ZoomdError

EXAMPLES = int(os.environ.get("ZOOMD_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

COUNTS: Counter[str] = Counter()

T = TypeVar("T")


def count(name: str) -> None:
    COUNTS[name] += 1


def dump_counts() -> None:
    """Add this process's counts to $ZOOMD_FUZZ_COUNTS (a JSON object name -> examples)."""
    target = os.environ.get("ZOOMD_FUZZ_COUNTS")
    if not target or not COUNTS:
        return
    old: dict[str, int] = {}
    if os.path.exists(target):
        with open(target) as f:
            old = json.load(f)
    for name, n in COUNTS.items():
        old[name] = old.get(name, 0) + n
    with open(target, "w") as f:
        json.dump(old, f, indent=1, sort_keys=True)
    COUNTS.clear()


def only_zoomd_errors(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Call `fn`; a ZoomdError means "refused" (None), anything else fails the test."""
    try:
        return fn(*args, **kwargs)
    except ZoomdError as exc:
        assert str(exc) and "\n" not in str(exc), f"error is not one line: {exc!r}"
        return None


# -- numbers --------------------------------------------------------------------------
U64 = st.integers(0, 2**64 - 1)
S32 = st.integers(-(2**31), 2**31 - 1)

# Tokens that are no kernel number, though Python's int()/float() or str.isdigit()
# would accept several of them: underscores, non-ASCII digits, superscripts, signs,
# nan/inf, exponents, hex.
BAD_NUMBERS = (
    "x", "1_0", "1_000", "٣", "１２", "²", "𝟙", "Ⅻ", "nan", "NaN", "inf", "-inf",
    "infinity", "0x10", "1e3", "1E3", "+5", "+", "-", "--1", "1,000", "12a", "0b1",
    "1.5.1", ".", "١٠٠",
)
BAD_UNSIGNED = (*BAD_NUMBERS, "-1", "-0", "-18446744073709551615")
BAD_FLOAT = (
    "x", "nan", "NaN", "inf", "-inf", "infinity", "1e3", "1_0.5", "٣.٥", "0x1p3",
    "+1.0", "1.", ".5", "--1", "1,5", "",
)

_ASCII_INT = re.compile(r"-?[0-9]+")


def ints_in(text: str) -> set[int]:
    """Every ASCII decimal number written in `text` (what a parser may legitimately find)."""
    return {int(m) for m in _ASCII_INT.findall(text)}


# -- kernel escaping (seq_file mangle_path for " \t\n\\") --------------------------------
_ESCAPED = " \t\n\\"


def kernel_escape(name: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in _ESCAPED else c for c in name)


# -- mutations ------------------------------------------------------------------------
_NASTY_TEXT = st.sampled_from(["\n", "\r", "\t", " ", "\x00", "\x85", "\u2028", "\x0b", ":",
                               "=", "\\", "\\040", "-", "0", "9" * 25, "é", "\ufeff"])
_INSERT = st.one_of(st.text(max_size=4), _NASTY_TEXT, st.sampled_from(BAD_NUMBERS))


@st.composite
def mutated(draw: st.DrawFn, text: str, max_ops: int = 4) -> str:
    """`text` with a few random edits: characters, tokens, lines, truncation."""
    ops = draw(st.integers(1, max_ops))
    for _ in range(ops):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "token", "dupline",
                                     "delline", "truncate", "swapline"]))
        n = len(text)
        if kind == "insert":
            at = draw(st.integers(0, n))
            text = text[:at] + draw(_INSERT) + text[at:]
        elif kind == "delete" and n:
            at = draw(st.integers(0, n - 1))
            length = draw(st.integers(1, 8))
            text = text[:at] + text[at + length:]
        elif kind == "replace" and n:
            at = draw(st.integers(0, n - 1))
            text = text[:at] + draw(_INSERT) + text[at + 1:]
        elif kind == "token":
            tokens = list(re.finditer(r"\S+", text))
            if tokens:
                m = draw(st.sampled_from(tokens))
                text = text[:m.start()] + draw(_INSERT) + text[m.end():]
        elif kind in ("dupline", "delline", "swapline"):
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            if kind == "dupline":
                lines.insert(i, lines[i])
            elif kind == "delline":
                del lines[i]
            else:
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif kind == "truncate":
            text = text[:draw(st.integers(0, n))]
    return text


def replace_token(text: str, index: int, new: str) -> str:
    """Replace the `index`-th whitespace-separated token of `text`."""
    tokens = list(re.finditer(r"[^ \t\n]+", text))
    m = tokens[index]
    return text[:m.start()] + new + text[m.end():]


# -- renderers: valid files as the kernel prints them ----------------------------------
def render_psi(some: tuple[float, float, float, int],
               full: tuple[float, float, float, int] | None) -> str:
    out = ""
    for kind, line in (("some", some), ("full", full)):
        if line is not None:
            a, b, c, total = line
            out += f"{kind} avg10={a:.2f} avg60={b:.2f} avg300={c:.2f} total={total}\n"
    return out


def render_name_values(values: dict[str, int], width: int = 0) -> str:
    return "".join(f"{k} {v}\n" if not width else f"{k:<{width}} {v}\n"
                   for k, v in values.items())


def render_meminfo(values: dict[str, int]) -> str:
    out = ""
    for name, v in values.items():
        unit = "" if name.startswith("HugePages_") else " kB"
        out += f"{name + ':':<16}{v:>8}{unit}\n"
    return out


def render_swaps(entries: list[tuple[str, str, int, int, int]]) -> str:
    out = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    for path, kind, size, used, prio in entries:
        # mm/swapfile.c swap_show(): "%*s%s\t%lu\t%s%lu\t%s%d\n", padding the escaped
        # path to 40 columns with at least one space.
        name = kernel_escape(path)
        pad = " " * (40 - len(name) if len(name) < 40 else 1)
        kind_col = "partition" if kind == "partition" else "file\t"
        out += (f"{name}{pad}{kind_col}\t{size}\t{chr(9) if size < 10**7 else ''}{used}"
                f"\t{chr(9) if used < 10**7 else ''}{prio}\n")
    return out


def render_mm_stat(values: list[int]) -> str:
    return " ".join(f"{v:>8}" for v in values) + "\n"


def render_zoneinfo(zones: list[tuple[int, str, dict[str, int]]]) -> str:
    out = ""
    for i, (node, name, f) in enumerate(zones):
        out += f"Node {node}, zone {name:>8}\n"
        if i == 0:
            out += "  per-node stats\n      nr_inactive_anon 66153\n      nr_active_anon 910\n"
        out += (f"  pages free     {f['free']}\n        boost    0\n"
                f"        min      {f['min']}\n        low      {f['low']}\n"
                f"        high     {f['high']}\n        spanned  4095\n"
                f"        present  3998\n        managed  {f['managed']}\n"
                f"        protection: (0, 2896, 7946, 7946, 7946)\n"
                f"      nr_free_pages {f['free']}\n  pagesets\n    cpu: 0\n"
                f"              count: 0\n              high:  0\n              batch: 1\n"
                f"  vm stats threshold: 6\n")
    return out
