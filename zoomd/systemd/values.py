"""systemd's value syntax: percentages (%, permille, permyriad), time spans, and the
fixed-point and byte formats that `oomctl dump` prints.
"""

from __future__ import annotations

import re

from zoomd.kernel.keyvalue import is_decimal

USEC_PER_SEC = 1_000_000
USEC_INFINITY = (1 << 64) - 1
UINT32_MAX = (1 << 32) - 1

# parse_time(): longest suffixes first where one is a prefix of another ("ms" before
# "m", "min" before "m", "months" before "m"); "M" is a month, "m" a minute.
_SPAN_UNITS: tuple[tuple[str, int], ...] = (
    ("seconds", USEC_PER_SEC), ("second", USEC_PER_SEC), ("sec", USEC_PER_SEC),
    ("s", USEC_PER_SEC),
    ("minutes", 60 * USEC_PER_SEC), ("minute", 60 * USEC_PER_SEC), ("min", 60 * USEC_PER_SEC),
    ("months", 2_629_800 * USEC_PER_SEC), ("month", 2_629_800 * USEC_PER_SEC),
    ("M", 2_629_800 * USEC_PER_SEC),
    ("msec", 1000), ("ms", 1000), ("m", 60 * USEC_PER_SEC),
    ("hours", 3600 * USEC_PER_SEC), ("hour", 3600 * USEC_PER_SEC), ("hr", 3600 * USEC_PER_SEC),
    ("h", 3600 * USEC_PER_SEC),
    ("days", 86400 * USEC_PER_SEC), ("day", 86400 * USEC_PER_SEC), ("d", 86400 * USEC_PER_SEC),
    ("weeks", 604800 * USEC_PER_SEC), ("week", 604800 * USEC_PER_SEC),
    ("w", 604800 * USEC_PER_SEC),
    ("years", 31_557_600 * USEC_PER_SEC), ("year", 31_557_600 * USEC_PER_SEC),
    ("y", 31_557_600 * USEC_PER_SEC),
    ("usec", 1), ("us", 1), ("\u03bcs", 1), ("\u00b5s", 1),
)
_WS = " \t\n\r"
# ASCII digits only, as systemd: "\d" would read "٣s" as 3 seconds.
_NUMBER = re.compile(r"([0-9]+)(?:\.([0-9]*))?")


def parse_timespan(text: str, default_unit: int = USEC_PER_SEC) -> int:
    """A time span such as "1min 30s", "2.5s", "500ms" or "20" (seconds) in microseconds.

    "infinity" is USEC_INFINITY. Raises ValueError where systemd's parse_sec() fails.
    """
    p = text.lstrip(_WS)
    if p.startswith("infinity"):
        if p[len("infinity"):].strip(_WS):
            raise ValueError(f"invalid time span {text!r}")
        return USEC_INFINITY
    total = 0
    something = False
    while True:
        p = p.lstrip(_WS)
        if not p:
            if not something:
                raise ValueError(f"invalid time span {text!r}")
            return total
        if p[0] == "-":
            raise ValueError(f"negative time span {text!r}")
        match = _NUMBER.match(p)
        if match is None:
            raise ValueError(f"invalid time span {text!r}")
        whole, frac = match.group(1), match.group(2)
        if frac == "":
            raise ValueError(f"invalid time span {text!r}")  # "3.sec", "3. 1"
        rest = p[match.end():]
        unit_text = rest.lstrip(_WS)
        multiplier = default_unit
        for suffix, usec in _SPAN_UNITS:
            if unit_text.startswith(suffix):
                multiplier = usec
                unit_text = unit_text[len(suffix):]
                break
        else:
            if unit_text and unit_text[0] not in _WS and rest == unit_text:
                raise ValueError(f"invalid time span {text!r}")  # "12.34.56", "5x"
            unit_text = rest
        value = int(whole) * multiplier
        if frac:
            step = multiplier // 10
            for digit in frac:
                value += int(digit) * step
                step //= 10
        total += value
        if total >= USEC_INFINITY:
            raise ValueError(f"time span out of range {text!r}")
        something = True
        p = unit_text


def format_timespan(usec: int, accuracy: int = USEC_PER_SEC) -> str:
    """format_timespan(): "30s", "1min 30s", "2h 5min"; "infinity"; "0"."""
    if usec >= USEC_INFINITY:
        return "infinity"
    if usec <= 0:
        return "0"
    table = (("y", 31_557_600 * USEC_PER_SEC), ("month", 2_629_800 * USEC_PER_SEC),
             ("w", 604800 * USEC_PER_SEC), ("d", 86400 * USEC_PER_SEC),
             ("h", 3600 * USEC_PER_SEC), ("min", 60 * USEC_PER_SEC), ("s", USEC_PER_SEC),
             ("ms", 1000), ("us", 1))
    parts: list[str] = []
    t = usec
    for suffix, unit in table:
        if t <= 0 or (t < accuracy and parts):
            break
        if t < unit:
            continue
        whole, rest = divmod(t, unit)
        if t < 60 * USEC_PER_SEC and rest > 0:
            digits = len(str(unit)) - 1
            cc = accuracy
            while cc > 1:
                rest //= 10
                digits -= 1
                cc //= 10
            if digits > 0:
                parts.append(f"{whole}.{rest:0{digits}d}{suffix}")
                t = 0
                continue
        parts.append(f"{whole}{suffix}")
        t = rest
    return " ".join(parts)


def _whole(text: str, symbol: str) -> int:
    body = text[: -len(symbol)]
    if not is_decimal(body):
        raise ValueError(f"invalid value {text!r}")
    return int(body)


def _with_places(text: str, symbol: str, places: int) -> int:
    body = text[: -len(symbol)]
    whole, dot, frac = body.partition(".")
    if not is_decimal(whole) or (dot and not (is_decimal(frac) and 1 <= len(frac) <= places)):
        raise ValueError(f"invalid value {text!r}")
    return int(whole) * 10**places + int((frac or "0").ljust(places, "0"))


def parse_permyriad(text: str) -> int:
    """parse_permyriad(): "60%", "12.34%", "5‰", "2.5‰", "100‱" -> 0..10000 (ValueError)."""
    if text.endswith("\u2031"):
        value = _whole(text, "\u2031")
    elif text.endswith("\u2030"):
        value = _with_places(text, "\u2030", 1)
    elif text.endswith("%"):
        value = _with_places(text, "%", 2)
    else:
        raise ValueError(f"expected a value with %, \u2030 or \u2031, got {text!r}")
    if value > 10000:
        raise ValueError(f"{text!r} is above 100%")
    return value


def permyriad_to_percent(value: int) -> str:
    """PERMYRIAD_AS_PERCENT_FORMAT: 9000 -> "90.00%"."""
    return f"{value // 100}.{value % 100:02d}%"


def uint32_scale_to_permyriad(scale: int) -> int:
    """A ManagedOOMMemoryPressureLimit= fraction (UINT32_MAX = 100%) in permyriad."""
    return (scale * 10000 + UINT32_MAX // 2) // UINT32_MAX


def permyriad_to_uint32_scale(value: int) -> int:
    """The inverse, as PID 1 sends it."""
    return (value * UINT32_MAX + 5000) // 10000


# Load averages as fixed point with 11 fractional bits (LOADAVG_PRECISION_BITS).
_FSHIFT = 11
_FIXED_1 = 1 << _FSHIFT


def loadavg_store(integer: int, hundredths: int) -> int:
    """store_loadavg_fixed_point(): 60, 0 -> 122880 (the fraction rounds up)."""
    frac = -((-(hundredths << _FSHIFT)) // 100)
    if frac >= _FIXED_1:
        raise ValueError("fraction out of range")
    return (integer << _FSHIFT) | frac


def loadavg_from_permyriad(value: int) -> int:
    return loadavg_store(value // 100, value % 100)


def loadavg_from_float(value: float) -> int:
    """A PSI avg10 such as 12.34 the way systemd parses it into fixed point."""
    hundredths = round(value * 100)
    return loadavg_store(hundredths // 100, hundredths % 100)


def loadavg_format(fixed: int) -> str:
    """"%lu.%02lu" of LOADAVG_INT_SIDE and LOADAVG_DECIMAL_SIDE."""
    return f"{fixed >> _FSHIFT}.{((fixed & (_FIXED_1 - 1)) * 100) >> _FSHIFT:02d}"


def format_bytes(value: int | None) -> str:
    """FORMAT_BYTES(): IEC, one decimal below the point, trailing B under 1 KiB."""
    if value is None or value >= (1 << 64) - 1:
        return "(null)"
    table = (("E", 1 << 60), ("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20),
             ("K", 1 << 10))
    for i, (suffix, factor) in enumerate(table):
        if value >= factor:
            if i != len(table) - 1:
                tenth = (value // table[i + 1][1] * 10 // table[-1][1]) % 10
            else:
                tenth = (value * 10 // factor) % 10
            return f"{value // factor}.{tenth}{suffix}"
    return f"{value}B"


def format_protection(value: int | None) -> str:
    """FORMAT_BYTES_CGROUP_PROTECTION(): "infinity" for "max"."""
    return "infinity" if value is None or value >= (1 << 64) - 1 else format_bytes(value)
