"""Property-based tests of the systemd-facing parsers and of the trace reader.

oomd.conf (and systemd's time-span and percentage syntax): parse_text never raises; a
value that does not parse is a warning naming file:line and key, and the value before
it stays (systemd's contract), so no number comes from a misread value; what systemd
prints parses back.

ManagedOOM varlink: decode() raises only VarlinkError (the link is dropped);
ManagedSet.apply only its two documented errors; PID 1's client and the user-manager
listener raise nothing; a malformed cgroup element is skipped, so nothing is guarded
(and no policy built) from a misread value.

Recorded traces: TraceReader raises only TraceError (one line) or warns about what a
killed writer leaves (a truncated last line, a gzip stream without its end); what it
returns holds only finite numbers of the right types.

Example counts: tests/fuzzkit.py (ZOOMD_FUZZ_EXAMPLES, ZOOMD_FUZZ_COUNTS).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import select
import shutil
import socket
import tempfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from fuzzkit import BAD_NUMBERS, EXAMPLES, FUZZ, count, dump_counts, mutated, only_zoomd_errors
from hypothesis import given, settings
from hypothesis import strategies as st

from zoomd.config.runtime import SystemdSection
from zoomd.daemon.log import Logger
from zoomd.systemd.managed import (
    PRESSURE,
    PROPERTIES,
    RULES,
    SWAP,
    ManagedCgroup,
    ManagedParametersError,
    ManagedPermissionError,
    ManagedSet,
    pressure_policies,
)
from zoomd.systemd.oomdconf import (
    DEFAULT_PRESSURE_DURATION,
    DEFAULT_PRESSURE_LIMIT,
    DEFAULT_SWAP_USED_LIMIT,
    OomdConf,
    parse_text,
)
from zoomd.systemd.pid1 import Pid1Client
from zoomd.systemd.userside import UserListener, owner_uid_of_path
from zoomd.systemd.values import (
    UINT32_MAX,
    USEC_INFINITY,
    USEC_PER_SEC,
    format_timespan,
    parse_permyriad,
    parse_timespan,
    permyriad_to_percent,
    uint32_scale_to_permyriad,
)
from zoomd.systemd.varlink import PeerCred, VarlinkError, VarlinkStream, decode, encode
from zoomd.trace.format import TraceError, make_header
from zoomd.trace.reader import Record, Sample, TraceReader
from zoomd.trace.writer import TraceFile

# Hypothesis gives each example a fresh draw; sockets are set up per example, so the
# one socket-level property runs a tenth as many.
SOCKET_FUZZ = settings(FUZZ, max_examples=max(5, EXAMPLES // 10))


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    dump_counts()


@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="zoomd-fuzz-systemd-")
    yield path
    shutil.rmtree(path)


def write(directory: str, name: str, data: str | bytes) -> str:
    """Write `data` (text as UTF-8, lone surrogates kept) to directory/name."""
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


# == oomd.conf =============================================================================
KEYS = ("SwapUsedLimit", "DefaultMemoryPressureLimit", "DefaultMemoryPressureDurationSec")
FIELD = {"SwapUsedLimit": "swap_used_limit", "DefaultMemoryPressureLimit": "pressure_limit",
         "DefaultMemoryPressureDurationSec": "pressure_duration_usec"}
DEFAULT = {"swap_used_limit": DEFAULT_SWAP_USED_LIMIT, "pressure_limit": DEFAULT_PRESSURE_LIMIT,
           "pressure_duration_usec": DEFAULT_PRESSURE_DURATION}
VALID_CONF = (
    "#  This file is part of systemd.\n"
    "[OOM]\n"
    "SwapUsedLimit=85%\n"
    "DefaultMemoryPressureLimit = 55.5%\n"
    "DefaultMemoryPressureDurationSec=1min 30s\n"
    "; drop-in style comment\n"
    "DefaultMemoryPressureDurationSec=2.5s \\\n"
    "  500ms\n"
    "[X-Vendor]\n"
    "Anything=goes\n"
    "[OOM]\n"
    "SwapUsedLimit=905‰\n"
)

# The test's own reading of a value systemd takes: ASCII digits, ASCII blanks.
PERCENT_SYNTAX = re.compile(r"[0-9]+(?:\.[0-9]{1,2})?%|[0-9]+(?:\.[0-9])?‰|[0-9]+‱")
SPAN_SYNTAX = re.compile(r"infinity|(?:[0-9]+(?:\.[0-9]+)?[ \t]*[a-zA-Zµμ]*[ \t]*)+")
_EOL = re.compile(r"\r\n|\r|\n")


def candidate_assignments(text: str) -> set[tuple[str, str]]:
    """Every (key, value) a line or a run of continued lines could assign; lenient on
    purpose (the properties ask only that a value came from somewhere like this)."""
    lines = _EOL.split(text)
    out: set[tuple[str, str]] = set()
    for i in range(len(lines)):
        joined = ""
        for j in range(i, min(i + 4, len(lines))):
            piece = lines[j]
            joined += piece[:-1] + " " if piece.endswith("\\") else piece
            for candidate in (piece, joined):
                key, eq, value = candidate.partition("=")
                if eq:
                    out.add((key.strip(" \t"), value.strip(" \t")))
            if not piece.endswith("\\"):
                break
    return out


def parses_to(parse: Callable[[str], int], text: str) -> int | None:
    """The value `parse` reads from `text`, None where it refuses it."""
    try:
        return parse(text)
    except ValueError:
        return None


def check_conf(text: str, path: str = "/etc/systemd/oomd.conf") -> OomdConf:
    """parse_text's contract on any text: no exception, values in range, warnings one
    line each naming a line of the file, and every non-default value written in it."""
    conf = parse_text(text, path, OomdConf())
    assert conf.files == (path,)
    assert isinstance(conf.swap_used_limit, int) and 0 <= conf.swap_used_limit <= 10000
    assert isinstance(conf.pressure_limit, int) and 0 <= conf.pressure_limit <= 10000
    assert isinstance(conf.pressure_duration_usec, int)
    assert USEC_PER_SEC <= conf.pressure_duration_usec < USEC_INFINITY
    n_lines = len(_EOL.split(text))
    for warning in conf.warnings:
        assert "\n" not in warning and "\r" not in warning, warning
        m = re.match(rf"{re.escape(path)}:([0-9]+): ", warning)
        assert m and 1 <= int(m.group(1)) <= n_lines, warning
    candidates = candidate_assignments(text)
    for key in KEYS:
        value = getattr(conf, FIELD[key])
        if value == DEFAULT[FIELD[key]]:
            continue
        syntax, parse = (SPAN_SYNTAX, parse_timespan) if key.endswith("Sec") \
            else (PERCENT_SYNTAX, parse_permyriad)
        assert any(k == key and syntax.fullmatch(v) and parses_to(parse, v) == value
                   for k, v in candidates), (key, value)
    return conf


CONF_ALPHABET = st.sampled_from([
    *"[]=%‰‱.#;\\ \t\n\r0123456789smhinwdyMµ-+x_", "٣", "²", "１", "\xa0", "\x85", "\u2028",
    "\x0b", "\x0c", "\x1c", "\x00", "\ufeff", "OOM", "[OOM]\n", "infinity", "min", "ms",
    *KEYS])
CONF_TEXT = st.lists(CONF_ALPHABET, max_size=60).map("".join)


@FUZZ
@given(st.one_of(st.text(max_size=300), CONF_TEXT, CONF_TEXT.map(lambda t: "[OOM]\n" + t)))
def test_oomd_conf_any_text(text: str) -> None:
    """Any text, and text made of oomd.conf's own pieces and other scripts' digits,
    spaces and line breaks: parse_text's contract holds (check_conf)."""
    count("oomd.conf any text")
    check_conf(text)


@FUZZ
@given(mutated(VALID_CONF, max_ops=6))
def test_oomd_conf_mutations(text: str) -> None:
    """A valid file with lines, tokens and characters edited: the same contract."""
    count("oomd.conf mutations of a valid file")
    check_conf(text)


BAD_PERCENT = sorted({
    *(f"{b}{sym}" for b in BAD_NUMBERS for sym in ("%", "‰", "‱")),
    "", "90", "101%", "100.01%", "1.234%", "5.%", ".5%", "1.25‰", "1.5‱", "10001‱",
    "90%\xa0", "\xa090%", "90 %", "٩٠%", "90%%", "%", "‰", "9" * 30 + "%", "1" * 5000 + "%",
})
BAD_SPAN = sorted({
    *BAD_NUMBERS, *(f"{b}s" for b in BAD_NUMBERS), *(f"{b} min" for b in BAD_NUMBERS),
    "500ms", "999999us", "infinity", "-1s", "5x", "1s x", "infinity s", "12.34.56",
    "3.sec", "٣s", "1\xa0s", "1s\xa0", "9" * 25 + "s", "99999999999y", "1" * 5000,
})
GOOD = {"SwapUsedLimit": ("85%", 8500), "DefaultMemoryPressureLimit": ("42.5%", 4250),
        "DefaultMemoryPressureDurationSec": ("45s", 45 * USEC_PER_SEC)}
BLANKS = st.sampled_from(["", " ", "\t", "  "])


@FUZZ
@given(st.sampled_from(KEYS).flatmap(lambda k: st.tuples(
    st.just(k), st.sampled_from(BAD_SPAN if k.endswith("Sec") else BAD_PERCENT))),
    st.integers(0, 3), BLANKS, BLANKS)
def test_oomd_conf_bad_value_keeps_the_one_before(key_bad: tuple[str, str], filler: int,
                                                  before: str, after: str) -> None:
    """A value systemd refuses after a good one: the good one stays, and the warning
    names the file, the line and the key."""
    count("oomd.conf bad values kept out")
    key, bad = key_bad
    good_text, good_value = GOOD[key]
    lines = ["[OOM]", f"{key}={good_text}", *(["# filler"] * filler),
             f"{before}{key}{after}={before}{bad}", "[OOM]"]
    line = 3 + filler
    conf = check_conf("\n".join(lines) + "\n", "/run/systemd/oomd.conf.d/50-x.conf")
    assert getattr(conf, FIELD[key]) == good_value, (key, bad)
    assert any(w.startswith(f"/run/systemd/oomd.conf.d/50-x.conf:{line}: ")
               and f"{key}=" in w for w in conf.warnings), (bad, conf.warnings)


def permille(value: int) -> str:
    """Permyriad as permille with its one decimal place (exact)."""
    return f"{value // 10}.{value % 10}‰"


PERCENT_FORMATS = st.sampled_from([permyriad_to_percent, permille, lambda v: f"{v}‱"])
DURATIONS = st.one_of(st.integers(USEC_PER_SEC, 3600 * USEC_PER_SEC),
                      st.integers(USEC_PER_SEC, USEC_INFINITY - 1))


@FUZZ
@given(st.integers(0, 10000), st.integers(0, 10000), DURATIONS, PERCENT_FORMATS,
       PERCENT_FORMATS, st.booleans(), BLANKS)
def test_oomd_conf_round_trip(swap: int, pressure: int, usec: int, fmt_swap: Any,
                              fmt_pressure: Any, exact: bool, blank: str) -> None:
    """Values as systemd prints them (oomctl dump: "%" with two places and
    format_timespan at 1 s accuracy; or to the microsecond) parse back."""
    count("oomd.conf round trip")
    span = format_timespan(usec, 1 if exact else USEC_PER_SEC)
    text = (f"[OOM]\nSwapUsedLimit{blank}={blank}{fmt_swap(swap)}\n"
            f"DefaultMemoryPressureLimit={fmt_pressure(pressure)}{blank}\n"
            f"DefaultMemoryPressureDurationSec={blank}{span}\n")
    conf = check_conf(text)
    assert conf.warnings == ()
    assert (conf.swap_used_limit, conf.pressure_limit) == (swap, pressure)
    if exact:
        assert conf.pressure_duration_usec == usec, span
    else:
        assert usec - USEC_PER_SEC < conf.pressure_duration_usec <= usec, span


# == varlink ===============================================================================
def over_the_wire(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the peer receives it: encoded, NUL-framed, decoded."""
    frame = encode(message)
    assert frame.endswith(b"\0") and frame.count(b"\0") == 1
    return decode(frame[:-1])


USER = "/user.slice/user-1000.slice/user@1000.service"
SEGMENT = st.from_regex(r"[a-z0-9@_-]{1,6}(\.[a-z]{1,7})?", fullmatch=True)
GOOD_PATHS = st.one_of(
    st.sampled_from(["", "/", "/system.slice/a.service", USER, USER + "/app.slice/b.service",
                     "system.slice/c.service/", "/user.slice/user-1001.slice/x.scope",
                     "/odd name\n/tab\there", "/user.slice/user-1000.slice/"]),
    st.lists(SEGMENT, min_size=1, max_size=3).map(lambda p: "/" + "/".join(p)),
    st.lists(SEGMENT, max_size=2).map(lambda p: USER + "".join("/" + s for s in p)))
JSON_JUNK = st.sampled_from([None, 0, 1, -1, True, False, 1.5, "", "x", [], {}, [1], {"a": 1},
                             float("nan"), float("inf"), 10**30, -(10**30)])
MODE_JUNK = st.one_of(JSON_JUNK, st.sampled_from(["Kill", "KILL", "kill ", " auto", "stop",
                                                  "kill\0", ["kill"]]))
PATH_JUNK = st.one_of(JSON_JUNK.filter(lambda v: not isinstance(v, str)), st.sampled_from([
    "/a/../b", "..", "/..", "/.", "./a", "/a/./b", "/a//b", "/a\0b", "/system.slice/..",
    "/user.slice/user-1000.slice/../../init.scope", "/user.slice/user-1000.slice/./x"]))
PROP_JUNK = JSON_JUNK.filter(lambda v: not isinstance(v, str))
LIMIT_JUNK = st.sampled_from([True, False, -1, UINT32_MAX + 1, 2**64, 10**30, -(10**30), 0.5,
                              1.0, 50.0, float("nan"), float("inf"), "50%", "1", [], {}, [1]])
DURATION_JUNK = st.sampled_from([True, False, -1, USEC_INFINITY + 1, 2**70, 1.5, 1e6,
                                 float("nan"), float("-inf"), "30s", "1", [], {}])

RULES_JUNK = st.sampled_from([0, 1, True, "x", "", {}, {"a": 1}, [1], [None], [""], ["a/b"],
                              [".."], ["x" * 256], [f"r{i}" for i in range(65)], ["ok", 5]])
RULE_NAMES = st.lists(st.sampled_from(["30-desktop-pressure", "30-desktop-swap", "a",
                                       "r" * 255, "\u00e9t\u00e9"]), max_size=4)
# mode, path, prop, limit, duration, rules
Expected = tuple[str, str, str, int | None, int | None, tuple[str, ...]] | None


def expected_entry(mode: str, path: str, prop: str, limit: int | None,
                   duration: int | None, rules: list[str] | None = None) -> Expected:
    """What a well-formed element means (module docstring of zoomd.systemd.managed)."""
    path = "/" + path.strip("/") if path.strip("/") else "/"
    if prop == RULES:
        return mode, path, prop, None, None, tuple(dict.fromkeys(rules or ()))
    if prop != PRESSURE:
        return mode, path, prop, None, None, ()
    return (mode, path, prop, uint32_scale_to_permyriad(limit) if limit else None,
            None if duration is None or duration == USEC_INFINITY else duration, ())


@st.composite
def labelled_element(draw: st.DrawFn) -> tuple[Any, Expected]:
    """(element, its meaning, or None when it is malformed): a well-formed element, or
    one with a single field of the wrong type, out of range, missing, or a path that
    leaves the reported group."""
    mode = draw(st.sampled_from(["kill", "auto"]))
    path = draw(GOOD_PATHS)
    prop = draw(st.sampled_from([PRESSURE, PRESSURE, SWAP, "ManagedOOMFoo", "OOMRules"]))
    element: dict[str, Any] = {"mode": mode, "path": path, "property": prop}
    limit = draw(st.none() | st.integers(0, UINT32_MAX) | st.sampled_from([0, 1, UINT32_MAX]))
    duration = draw(st.none() | st.integers(0, USEC_INFINITY)
                    | st.sampled_from([0, USEC_INFINITY]))
    if limit is not None or draw(st.booleans()):
        element["limit"] = limit
    if duration is not None or draw(st.booleans()):
        element["duration"] = duration
    rules = draw(st.none() | RULE_NAMES)  # systemd 261; any property may carry it
    if rules is not None or draw(st.booleans()):
        element["rules"] = rules
    corruption = draw(st.sampled_from(["none", "none", "mode", "path", "property", "limit",
                                       "duration", "rules", "drop", "not an object"]))
    if corruption == "none":
        return element, expected_entry(mode, path, prop, limit, duration, rules)
    if corruption == "not an object":
        return draw(st.one_of(JSON_JUNK, st.just([element]), st.just(json.dumps(element)))), \
            None
    if corruption == "drop":
        del element[draw(st.sampled_from(["mode", "path", "property"]))]
    else:
        element[corruption] = draw({"mode": MODE_JUNK, "path": PATH_JUNK, "property": PROP_JUNK,
                                    "limit": LIMIT_JUNK, "duration": DURATION_JUNK,
                                    "rules": RULES_JUNK}[corruption])
    return element, None


def oracle(start: dict[tuple[str, str], ManagedCgroup],
           labelled: list[tuple[Any, Expected]], uid: int, source: str,
           ) -> tuple[dict[tuple[str, str], ManagedCgroup], bool]:
    """The set after applying the elements in order, and whether a permission error ends
    the message (the documented contract, from the labels alone)."""
    entries = dict(start)
    for _, meaning in labelled:
        if meaning is None:
            continue
        mode, path, prop, limit, duration, rules = meaning
        if uid != 0:
            owner = owner_uid_of_path(path)
            if owner is None:
                continue
            if owner != uid:
                return entries, True
        if prop not in PROPERTIES:
            continue
        if mode == "auto" or (prop == RULES and not rules):
            entries.pop((prop, path), None)
        else:
            entries[(prop, path)] = ManagedCgroup(path, prop, limit, duration, source, rules)
    return entries, False


def check_entries(managed: ManagedSet) -> None:
    """Whatever is guarded is well-formed, and the policies built from it hold real
    numbers in range."""
    for (prop, path), entry in managed.entries.items():
        assert (entry.property, entry.path) == (prop, path) and prop in PROPERTIES
        assert path.startswith("/") and (path == "/" or not path.endswith("/"))
        parts = path.strip("/").split("/") if path != "/" else []
        assert "\0" not in path and not {"", ".", ".."} & set(parts), path
        assert entry.limit is None or (type(entry.limit) is int and 0 <= entry.limit <= 10000)
        assert entry.duration_usec is None or (
            type(entry.duration_usec) is int and 0 <= entry.duration_usec < USEC_INFINITY)
        assert bool(entry.rules) == (prop == RULES), entry  # OOMRules: never without
        assert len(entry.rules) <= 64 and len(set(entry.rules)) == len(entry.rules)
        assert all(type(n) is str and 0 < len(n) <= 255 and "/" not in n and "\0" not in n
                   for n in entry.rules), entry.rules
    conf = OomdConf()
    for entry in managed.pressure():
        for mode in ("strict", "zram-aware"):
            for policy in pressure_policies(entry, conf, SystemdSection(mode=mode)):
                assert policy.monitor == entry.path
                assert math.isfinite(policy.for_) and policy.for_ >= 0
                assert math.isfinite(policy.window) and policy.window > 0
                above = policy.all.memory_pressure_full_avg10_above
                assert above is None or 0 <= above <= 100


PARAMETERS_JUNK = st.sampled_from([None, [], 1, "x", {}, {"cgroups": None}, {"cgroups": {}},
                                   {"cgroups": "abc"}, {"nope": []}, {"cgroups": 5}])


@FUZZ
@given(st.lists(labelled_element(), max_size=8), st.sampled_from([0, 1000]),
       st.lists(labelled_element(), max_size=3), st.one_of(st.none(), PARAMETERS_JUNK))
def test_varlink_cgroup_elements(labelled: list[tuple[Any, Expected]], uid: int,
                                 first: list[tuple[Any, Expected]],
                                 junk: Any) -> None:
    """Elements with wrong types, missing fields, huge numbers and paths that leave the
    reported group, through the wire format into ManagedSet.apply: a malformed element
    changes nothing, the rest is applied as the labels say."""
    count("varlink cgroup elements")
    managed = ManagedSet()
    managed.apply({"cgroups": [e for e, _ in first]}, uid=0, source="system")
    start, _ = oracle({}, first, 0, "system")
    assert managed.entries == start
    source = "system" if uid == 0 else f"uid:{uid}"
    if junk is not None:
        with pytest.raises(ManagedParametersError):
            managed.apply(over_the_wire({"parameters": junk})["parameters"], uid=uid,
                          source=source, owner_of=owner_uid_of_path)
        assert managed.entries == start
    wire = over_the_wire({"parameters": {"cgroups": [e for e, _ in labelled]},
                          "continues": True})
    expected, refused = oracle(start, labelled, uid, source)
    try:
        notes = managed.apply(wire["parameters"], uid=uid, source=source,
                              owner_of=owner_uid_of_path)
    except ManagedPermissionError as exc:
        assert refused, exc
    else:
        assert not refused
        logs = io.StringIO()
        for note in notes:  # as the listener logs them: one line each, whatever the path
            Logger(stream=logs).warning("ManagedOOM report", uid=uid, note=note)
        assert logs.getvalue().count("\n") == len(notes)
    assert managed.entries == expected
    check_entries(managed)


NESTED = st.tuples(st.sampled_from([b"[", b'{"a":', b'{"parameters":']),
                   st.integers(1, 200_000)).map(lambda t: t[0] * t[1])
VALID_MESSAGES = [
    {"parameters": {"cgroups": [{"mode": "kill", "path": USER, "property": PRESSURE,
                                 "limit": 2147483648, "duration": 20_000_000}]},
     "continues": True},
    {"method": "io.systemd.oom.ReportManagedOOMCGroups", "oneway": True,
     "parameters": {"cgroups": [{"mode": "auto", "path": "/x.slice", "property": SWAP}]}},
    {"error": "org.varlink.service.PermissionDenied", "parameters": {}},
]
RAW_MESSAGE = st.one_of(
    st.binary(max_size=300),
    NESTED,
    st.sampled_from(VALID_MESSAGES).flatmap(
        lambda m: mutated(json.dumps(m), max_ops=5)).map(
        lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"1" * 5000, b'{"a": 1' + b"0" * 5000 + b"}", b"NaN", b'"\\ud800"',
                     b'{"a": "\xff"}', b"\xef\xbb\xbf{}", b"{}" * 2, b" {} ", b"[]", b"null"]),
).map(lambda raw: raw.replace(b"\0", b""))


@FUZZ
@given(RAW_MESSAGE)
def test_varlink_decode_any_bytes(raw: bytes) -> None:
    """Any frame (bytes, mutated messages, deep nesting, huge numbers, bad UTF-8):
    decode() returns an object or raises VarlinkError, one line."""
    count("varlink decode bytes")
    try:
        message = decode(raw)
    except VarlinkError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(message, dict) and all(isinstance(k, str) for k in message)


JSON_VALUE = st.recursive(
    st.one_of(JSON_JUNK, st.text(max_size=8), st.integers(-(2**70), 2**70)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=10)
MESSAGE = st.one_of(
    st.fixed_dictionaries({}, optional={
        "error": st.one_of(st.sampled_from(["org.varlink.service.PermissionDenied",
                                            "io.systemd.System"]), JSON_VALUE),
        "parameters": st.one_of(
            st.lists(labelled_element(), max_size=4).map(
                lambda ls: {"cgroups": [e for e, _ in ls]}), PARAMETERS_JUNK, JSON_VALUE),
        "continues": st.one_of(st.booleans(), JSON_VALUE),
        "method": st.one_of(st.sampled_from(["io.systemd.oom.ReportManagedOOMCGroups",
                                             "io.systemd.service.Ping", "x.Y"]), JSON_VALUE),
        "oneway": st.one_of(st.booleans(), JSON_VALUE),
        "more": JSON_VALUE,
    }),
    st.dictionaries(st.text(max_size=8), JSON_VALUE, max_size=4))


class SentReplies:
    """A stand-in for the user manager's end: keeps what zoomd answers."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(over_the_wire(message))


def paths_reported(messages: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(property, normalised path) of every kill element in the messages."""
    out = set()
    for message in messages:
        parameters = message.get("parameters")
        cgroups = parameters.get("cgroups") if isinstance(parameters, dict) else None
        for element in cgroups if isinstance(cgroups, list) else []:
            if isinstance(element, dict) and element.get("mode") == "kill" \
                    and isinstance(element.get("path"), str) \
                    and isinstance(element.get("property"), str):
                path = element["path"]
                out.add((element.get("property"),
                         "/" + path.strip("/") if path.strip("/") else "/"))
    return out


@FUZZ
@given(st.lists(MESSAGE, min_size=1, max_size=5), st.sampled_from([0, 1000]))
def test_varlink_messages_to_pid1_client_and_user_listener(messages: list[dict[str, Any]],
                                                           uid: int) -> None:
    """Decoded messages of any shape, as PID 1's replies and as user managers' reports:
    nothing escapes, and only elements reported with mode "kill" are guarded."""
    count("varlink messages to PID 1's client and the user listener")
    messages = [over_the_wire(m) for m in messages]
    logs = io.StringIO()
    pid1 = Pid1Client(ManagedSet(), Logger(stream=logs), paths=(), clock=lambda: 0.0)
    for message in messages:
        if not pid1._handle(message):
            pid1.got_snapshot = False  # the link dropped: the next reply is a snapshot
    check_entries(pid1.managed)
    assert set(pid1.managed.entries) <= paths_reported(messages)
    assert all(e.source == "system" for e in pid1.managed.entries.values())

    listener = UserListener(ManagedSet(), Logger(stream=logs), [])
    replies = SentReplies()
    for message in messages:
        listener._handle(cast(VarlinkStream, replies), PeerCred(4242, uid, uid), message)
    check_entries(listener.managed)
    assert set(listener.managed.entries) <= paths_reported(messages)
    for entry in listener.managed.entries.values():
        assert entry.source == f"uid:{uid}"
        assert uid == 0 or owner_uid_of_path(entry.path) == uid
    answered = [m for m in messages if not m.get("oneway")]
    assert len(replies.sent) == len(answered)
    for line in logs.getvalue().split("\n")[:-1]:  # journald splits at "\n" only
        assert line.startswith("<")  # one line per event, whatever the peer sent


CHUNK = st.one_of(
    st.sampled_from(VALID_MESSAGES).map(encode),
    st.lists(labelled_element(), max_size=4).map(lambda ls: encode(
        {"parameters": {"cgroups": [e for e, _ in ls]}, "continues": True})),
    RAW_MESSAGE.map(lambda raw: raw[:2000] + b"\0"),
    st.binary(max_size=64),
)


@SOCKET_FUZZ
@given(st.lists(CHUNK, min_size=1, max_size=6), st.booleans())
def test_varlink_pid1_link_over_a_socket(chunks: list[bytes], hang_up: bool) -> None:
    """The one socket-level property: PID 1's end writes any mix of messages, garbage
    and half frames, and maybe hangs up; on_readable never raises, a bad frame drops the
    link, and what is guarded is well-formed."""
    count("varlink PID 1 link over a socket")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    client = Pid1Client(ManagedSet(), Logger(stream=io.StringIO()), paths=(),
                        clock=lambda: 0.0)
    client.stream = VarlinkStream(ours)
    try:
        theirs.sendall(b"".join(chunks))
        if hang_up:
            theirs.close()
        for _ in range(len(chunks) + 2):
            fd = client.fileno()
            if fd is None or not select.select([fd], [], [], 0)[0]:
                break
            client.on_readable()
        check_entries(client.managed)
        if hang_up:
            assert not client.connected
    finally:
        client.close()
        theirs.close()


# == traces ================================================================================
def _valid_trace(directory: str, name: str) -> bytes:
    trace = TraceFile(os.path.join(directory, name),
                      make_header(page_size=4096, scope="/", started_wall=1000.0, hostname="h",
                                  kernel="k", vital_groups=["/init.scope"]),
                      keyframe_every=2)
    trace.sample(1.0, 1001.0, {"host": {"/proc/meminfo": "MemTotal: 1 kB\n",
                                        "/proc/pressure/memory": "some avg10=0.00\n"},
                               "sub": {"/sys/fs/cgroup/a/memory.current": "4096\n",
                                       "@swap_kinds": '{"/dev/zram0": ["zram", true]}'}})
    trace.sample(2.0, 1002.0, {"host": {"/proc/meminfo": "MemTotal: 2 kB\n"}}, dropped=3)
    trace.record(2.0, {"policy": "p", "victim": "/a", "pids": [1, 2]})
    trace.sample(3.5, 1003.5, {"host": {"/proc/meminfo": "é\t\\\"\n"}, "sub": {}})
    trace.close()
    with open(os.path.join(directory, name), "rb") as f:
        return f.read()


with tempfile.TemporaryDirectory(prefix="zoomd-fuzz-trace-") as _d:
    VALID_TRACE = _valid_trace(_d, "t.jsonl")
    VALID_TRACE_GZ = _valid_trace(_d, "t.jsonl.gz")
    VALID_EVENTS = list(TraceReader(os.path.join(_d, "t.jsonl")).events())
HEADER_LINE = VALID_TRACE.split(b"\n", 1)[0] + b"\n"
DOCUMENTED_WARNINGS = ("truncated last line skipped", "gzip stream ends early")


def read_trace(path: str) -> tuple[list[Sample | Record], list[str]] | None:
    """Read a whole trace: None when refused with TraceError (one line, naming the
    file); otherwise the events, checked for types and finite numbers."""
    def read() -> tuple[list[Sample | Record], list[str]]:
        reader = TraceReader(path)
        return list(reader.events()), reader.warnings

    result = only_zoomd_errors(read)
    if result is None:
        return None
    events, warnings = result
    for warning in warnings:
        assert "\n" not in warning and warning.startswith(path), warning
        assert any(w in warning for w in DOCUMENTED_WARNINGS), warning
    for event in events:
        assert type(event.t) is float and math.isfinite(event.t)
        if isinstance(event, Record):
            assert isinstance(event.record, dict)
            continue
        assert type(event.wall) is float and math.isfinite(event.wall)
        assert type(event.key) is bool
        assert type(event.dropped) is int and event.dropped >= 0
        assert all(isinstance(p, str) and (v is None or isinstance(v, str))
                   for p, v in event.files.items())
    return result


def check_refusal(path: str) -> str | None:
    """The TraceError message when the trace is refused, else None."""
    try:
        list(TraceReader(path).events())
    except TraceError as exc:
        return str(exc)
    return None


@FUZZ
@given(st.one_of(st.binary(max_size=400),
                 st.binary(max_size=200).map(lambda b: b"\x1f\x8b" + b),
                 st.binary(max_size=200).map(lambda b: HEADER_LINE + b),
                 st.binary(max_size=200).map(lambda b: gzip.compress(HEADER_LINE + b))))
def test_trace_any_bytes(workdir: str, data: bytes) -> None:
    """Any bytes, alone or after a gzip magic, a valid header or inside gzip."""
    count("trace any bytes")
    read_trace(write(workdir, "any.jsonl", data))


@FUZZ
@given(mutated(VALID_TRACE.decode(), max_ops=6))
def test_trace_mutated_lines(workdir: str, text: str) -> None:
    """A valid plain trace with lines, tokens and characters edited."""
    count("trace mutated lines")
    read_trace(write(workdir, "mutated.jsonl", text))


@FUZZ
@given(st.booleans(), st.data())
def test_trace_cut_short(workdir: str, compress: bool, data: st.DataObject) -> None:
    """What a killed writer leaves, a prefix of the file: it reads as a prefix of the
    events, every complete line included, with at most the documented warnings; only a
    cut inside the header line is refused."""
    count("trace cut short")
    full = VALID_TRACE_GZ if compress else VALID_TRACE
    prefix = full[:data.draw(st.integers(0, len(full)))]
    text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(prefix) if compress else prefix
    result = read_trace(write(workdir, "cut.jsonl" + (".gz" if compress else ""), prefix))
    if not text.startswith(HEADER_LINE[:-1]):
        assert result is None
        return
    assert result is not None
    events, _ = result
    assert events == VALID_EVENTS[:len(events)]
    assert len(events) >= text.count(b"\n") - 1


@st.composite
def corrupted_gzip(draw: st.DrawFn) -> bytes:
    """The gzip trace cut short, with bytes flipped, inserted, zeroed, or garbage and
    further members after it."""
    data = bytearray(VALID_TRACE_GZ)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "zero", "garbage",
                                     "member", "half member"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "zero":
            data[at:at + draw(st.integers(1, 32))] = bytes(draw(st.integers(1, 32)))
        elif kind == "garbage":
            data += draw(st.binary(min_size=1, max_size=16))
        elif kind == "member":
            data += VALID_TRACE_GZ
        else:
            data += VALID_TRACE_GZ[:draw(st.integers(1, len(VALID_TRACE_GZ) - 1))]
    return bytes(data)


@FUZZ
@given(corrupted_gzip())
def test_trace_corrupted_gzip(workdir: str, data: bytes) -> None:
    """A valid gzip trace damaged at the byte level (corrupted_gzip)."""
    count("trace corrupted gzip")
    read_trace(write(workdir, "corrupted.jsonl.gz", data))


FINITE = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53))
NOT_FINITE = st.sampled_from([True, False, None, "1.0", "soon", [], {}, [1.0], float("nan"),
                              float("inf"), float("-inf"), 10**400, -(10**400)])
GOOD_FILES = st.dictionaries(st.text(max_size=12), st.none() | st.text(max_size=20), max_size=3)
BAD_FILES = st.one_of(st.sampled_from([None, [], "x", 1, True, [["/a", "b"]]]),
                      st.dictionaries(st.text(max_size=5), st.sampled_from(
                          [1, 1.5, True, [], {}, ["a"]]), min_size=1, max_size=2))
GOOD_DROPPED = st.integers(0, 2**64) | st.just(10**400)
BAD_DROPPED = st.sampled_from([-1, -(10**400), 1.5, 1.0, True, False, None, "3", [], {},
                               float("nan"), float("inf")])
BAD_KEY = st.sampled_from([1, 0, "true", None, [], {}, 1.0])
MISSING = object()


@st.composite
def labelled_line(draw: st.DrawFn) -> tuple[bytes, bool, dict[str, Any] | None]:
    """(line without its newline, is it valid, what a valid sample line holds)."""
    if draw(st.integers(0, 9)) == 0:  # nesting past json's recursion limit
        return draw(NESTED), False, None
    bad_field = draw(st.sampled_from([None, None, "t", "wall", "files", "key", "dropped",
                                      "record"]))
    t = draw(NOT_FINITE if bad_field == "t" else FINITE)
    if draw(st.integers(0, 4)) == 0:  # a decision record
        record = draw(st.sampled_from([None, [], "x", 1]) if bad_field == "record"
                      else st.dictionaries(st.text(max_size=5), JSON_VALUE, max_size=3))
        return json.dumps({"t": t, "record": record}).encode(), \
            bad_field not in ("t", "record"), {"t": t, "record": record}
    line: dict[str, Any] = {"t": t}
    fields = {
        "wall": draw(NOT_FINITE if bad_field == "wall" else FINITE | st.just(MISSING)),
        "files": draw(BAD_FILES if bad_field == "files" else GOOD_FILES),
        "key": draw(BAD_KEY if bad_field == "key" else st.booleans() | st.just(MISSING)),
        "dropped": draw(BAD_DROPPED if bad_field == "dropped"
                        else GOOD_DROPPED | st.just(MISSING)),
    }
    line.update({k: v for k, v in fields.items() if v is not MISSING})
    valid = bad_field in (None, "record")
    return json.dumps(line).encode(), valid, line


@FUZZ
@given(st.lists(labelled_line(), min_size=1, max_size=6), st.booleans())
def test_trace_lines_of_the_wrong_types(workdir: str,
                                        lines: list[tuple[bytes, bool, dict[str, Any] | None]],
                                        compress: bool) -> None:
    """Sample and record lines whose fields have the wrong type, huge or non-finite
    numbers, or too deep a nesting: the first such line is refused by number, and when
    none is, every value read is the one written."""
    count("trace lines of the wrong types")
    data = HEADER_LINE + b"".join(raw + b"\n" for raw, _, _ in lines)
    path = write(workdir, "typed.jsonl" + (".gz" if compress else ""),
                 gzip.compress(data) if compress else data)
    bad = [i for i, (_, valid, _) in enumerate(lines) if not valid]
    if bad:
        message = check_refusal(path)
        assert message is not None and f": line {bad[0] + 2}: corrupted" in message, message
        assert "\n" not in message
        return
    result = read_trace(path)
    assert result is not None
    events, warnings = result
    assert warnings == []
    for event, (_, _, line) in zip(events, lines, strict=True):
        assert line is not None and event.t == float(line["t"])
        if isinstance(event, Record):
            assert json.dumps(event.record) == json.dumps(line["record"])  # NaN != NaN
        else:
            assert event.wall == float(line.get("wall", 0.0))
            assert event.files == line["files"]
            assert event.key is line.get("key", False)
            assert event.dropped == line.get("dropped", 0)


# == regressions the properties found =======================================================
@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"parameters":' * 7_000])
def test_varlink_deep_nesting_drops_the_link(raw: bytes) -> None:
    # RecursionError escaped VarlinkStream.receive, the user listener and the daemon's
    # loop: any local user could stop zoomd through the 0666 ManagedOOM socket.
    with pytest.raises(VarlinkError):
        decode(raw)
    ours, theirs = socket.socketpair()
    stream = VarlinkStream(ours)
    try:
        theirs.sendall(raw + b"\0")
        with pytest.raises(VarlinkError):
            for _ in range(100):
                select.select([ours], [], [], 1.0)
                stream.receive()
    finally:
        stream.close()
        theirs.close()


@pytest.mark.parametrize("path", [
    "/user.slice/user-1000.slice/../../init.scope", "/user.slice/user-1000.slice/..",
    "/user.slice/user-1000.slice/./x", "/user.slice/user-1000.slice//x",
    "/user.slice/user-1000.slice/x\0"])
def test_managed_path_leaving_the_reported_group_is_malformed(path: str) -> None:
    # It passed the owner check as uid 1000's and was guarded as given: candidates under
    # it (PID 1's init.scope among them) then matched no vital or protected path.
    assert owner_uid_of_path(path.replace("\0", "")) == 1000
    managed = ManagedSet()
    notes = managed.apply({"cgroups": [{"mode": "kill", "path": path, "property": PRESSURE}]},
                          uid=1000, source="uid:1000", owner_of=owner_uid_of_path)
    assert managed.entries == {} and notes == ["cgroups[0]: malformed, skipped"]


def test_user_slice_uid_in_other_digits_owns_nothing() -> None:
    assert owner_uid_of_path("/user.slice/user-١٠٠٠.slice/x.service") is None


@pytest.mark.parametrize(("value", "key"), [
    ("٣%", "SwapUsedLimit"), ("１２%", "DefaultMemoryPressureLimit"),
    ("٣s", "DefaultMemoryPressureDurationSec"),
    ("𝟙min", "DefaultMemoryPressureDurationSec"), ("90%\xa0", "SwapUsedLimit"),
    ("\u200950%", "DefaultMemoryPressureLimit")])
def test_oomd_conf_value_systemd_refuses_is_not_read(value: str, key: str) -> None:
    # "\d" and str.isdigit() took other scripts' digits; str.strip() took Unicode spaces.
    conf = parse_text(f"[OOM]\n{key}={value}\n", "f", OomdConf())
    assert getattr(conf, FIELD[key]) == DEFAULT[FIELD[key]]
    assert len(conf.warnings) == 1 and conf.warnings[0].startswith(f"f:2: {key}=")


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\x0b", "\x0c", "\x1c"])
def test_oomd_conf_lines_end_only_where_systemd_ends_them(separator: str) -> None:
    # str.splitlines() split there: a comment's tail became an assignment, and later
    # warnings named the wrong line.
    conf = parse_text(f"[OOM]\n# note{separator}SwapUsedLimit=10%\nBogus=1\n", "f", OomdConf())
    assert conf.swap_used_limit == DEFAULT_SWAP_USED_LIMIT
    assert conf.warnings == ("f:3: unknown key 'Bogus' in section 'OOM', ignoring",)


@pytest.mark.parametrize(("line", "reason"), [
    (b'{"t": 1, "wall": 0, "files": {}, "dropped": "x"}', "'dropped'"),
    (b'{"t": 1, "wall": 0, "files": {}, "dropped": 1e400}', "'dropped'"),
    (b'{"t": 1, "wall": 0, "files": {}, "dropped": 1.5}', "'dropped'"),
    (b'{"t": 1, "wall": 0, "files": {}, "key": "false"}', "'key'"),
    (b'{"t": 1' + b"0" * 400 + b', "wall": 0, "files": {}}', "'t'"),
    (b'{"t": NaN, "wall": 0, "files": {}}', "'t'"),
    (b'{"t": 1, "wall": Infinity, "files": {}}', "'wall'"),
    (b'{"t": 1, "wall": true, "files": {}}', "'wall'"),
    (b'{"t": 1, "files": {"/a": "\xff"}}', "not JSON"),
    (b"[" * 100_000, "not JSON"),
])
def test_trace_line_of_the_wrong_type_is_one_error(tmp_path: Any, line: bytes,
                                                   reason: str) -> None:
    # Each escaped as ValueError, OverflowError, RecursionError or AttributeError (invalid
    # UTF-8 has no .msg), or was read as NaN, 1.0 or a truncated count.
    path = write(str(tmp_path), "t.jsonl", HEADER_LINE + line + b'\n{"t": 9, "files": {}}\n')
    with pytest.raises(TraceError, match=r"t\.jsonl: line 2: corrupted") as caught:
        list(TraceReader(path).events())
    assert reason in str(caught.value)


@pytest.mark.parametrize("change", [{"page_size": 0}, {"page_size": -4096},
                                    {"page_size": True}, {"version": True},
                                    {"vital_groups": 5}, {"vital_groups": "/init.scope"},
                                    {"vital_groups": [1]}])
def test_trace_header_value_that_replay_would_misread(tmp_path: Any,
                                                      change: dict[str, Any]) -> None:
    header = {**json.loads(HEADER_LINE), **change}
    path = write(str(tmp_path), "h.jsonl", json.dumps(header).encode() + b"\n")
    with pytest.raises(TraceError, match=r"h\.jsonl: "):
        TraceReader(path)


@pytest.mark.parametrize("value", [b"\xc2\xb2", "١".encode(), b"1" * 5000, b"9" * 25])
def test_kill_counter_xattr_that_is_no_number(monkeypatch: pytest.MonkeyPatch,
                                              value: bytes) -> None:
    # A delegated cgroup's owner can set its user.* xattrs (cgroupfs takes values far
    # longer than ext4's 4 KiB): "²" passed isdigit() and 5000 digits passed too, then
    # int() raised ValueError in the kill path, before the kill.
    from zoomd.systemd import xattrs

    written: list[bytes] = []
    monkeypatch.setattr(xattrs.os, "getxattr", lambda _d, _n: value)
    monkeypatch.setattr(xattrs.os, "setxattr", lambda _d, _n, v: written.append(v))
    assert xattrs.read_counter("/g", xattrs.OOMS) == 0
    error = xattrs.increment("/g", xattrs.OOMS, 1)
    assert error is not None and "not a number" in error and written == []


@pytest.mark.parametrize("fact", [
    "[" * 100_000, '{"/dev/vda2": ["partition", "false", "vda2", "recorded"]}',
    '{"/dev/vda2": ["partition", 0, 5, "recorded"]}', '{"/dev/vda2": [1, true, null, 2]}'])
def test_swap_verdict_fact_of_the_wrong_shape_is_not_used(fact: str) -> None:
    # A nested fact escaped classify() as RecursionError, and bool("false") called a
    # recorded disk RAM-backed; the tree's own walk decides instead.
    from zoomd.trace.format import SWAP_KINDS
    from zoomd.trace.tree import MaterialisedTree

    with MaterialisedTree("t.jsonl") as tree:
        tree.apply(Sample(0.0, 0.0, {SWAP_KINDS: fact}))
        verdict = tree.classify(tree.root, "/dev/vda2", "partition")
    assert not verdict.ram_backed and verdict.via != "recorded"
