"""Property-based tests of the configuration loader: random TOML documents shaped like
zoomd.toml, random text and bytes, random mutations of the shipped zoomd.toml, and
random drop-ins on top of it.

Only ConfigError (one line, naming the file) may escape load_config, and a
configuration that loads holds no number that is not one: no NaN or infinite
duration, no negative size, no percentage outside 0..100.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import tempfile

import pytest
from fuzzkit import FUZZ, count, dump_counts, mutated, only_zoomd_errors
from hypothesis import given
from hypothesis import strategies as st

from zoomd.config.load import dump_config, load_config, shipped_config_path
from zoomd.config.units import Size
from zoomd.errors import ConfigError

try:
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    dump_counts()


@pytest.fixture(scope="module")
def workdir():
    path = tempfile.mkdtemp(prefix="zoomd-fuzz-config-")
    yield path
    shutil.rmtree(path)


with open(shipped_config_path(), encoding="utf-8") as _f:
    SHIPPED = _f.read()


# -- a small TOML writer ------------------------------------------------------------------
_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_str(s: str) -> str:
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def toml_key(k: str) -> str:
    return k if _BARE.fullmatch(k) else toml_str(k)


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_doc(doc: dict, headers: bool) -> str:
    """Top-level tables as [headers] (or [[arrays]]) when `headers`, else inline."""
    lines = []
    tables = []
    for key, value in doc.items():
        if headers and isinstance(value, dict):
            tables.append(f"[{toml_key(key)}]\n" + "".join(
                f"{toml_key(k)} = {toml_value(v)}\n" for k, v in value.items()))
        elif headers and isinstance(value, list) and value and all(
                isinstance(x, dict) for x in value):
            for entry in value:
                tables.append(f"[[{toml_key(key)}]]\n" + "".join(
                    f"{toml_key(k)} = {toml_value(v)}\n" for k, v in entry.items()))
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}\n")
    return "".join(lines) + "\n".join(tables)


# -- values ---------------------------------------------------------------------------------
DURATIONS = st.sampled_from([
    "500ms", "1s", "30s", "2min", "1h", "0", "0s", " 3 s", "-1s", "1e3s", "1e400s",
    "9" * 400 + "s", "9" * 400, "nan", "inf", "1.5.2s", "٣s", "1_0s", "1.s", ".5s", "s", "",
])
PERCENTS = st.sampled_from([
    "40%", "0%", "100%", "100.0%", "101%", "-1%", "nan%", "inf%", "1e2%", "٣%", "1_0%",
    "9" * 400 + "%", "%", "40", "40 %",
])
SIZES = st.sampled_from([
    "512M", "2G", "5%", "0", "1K", "1KiB", "1kb", "9" * 400 + "M", "9" * 400, "1e3M", "nan",
    "-1M", "1.5G", "M", "٣M", "150%",
])
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70), st.just(10**400), st.just(-(10**400)),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, -1, 0.0, -0.0]))
SCALAR = st.one_of(DURATIONS, PERCENTS, SIZES, NUMBERS, st.booleans(), st.text(max_size=12))
LEAF = st.one_of(SCALAR, st.lists(SCALAR, max_size=3))
ANY_VALUE = st.recursive(LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)

DAEMON_KEYS = ["interval", "fast_interval", "psi_triggers", "dry_run", "log_format",
               "log_level", "mlock", "oom_score_adj", "protect", "thaw_on_exit"]
RECLAIM_KEYS = ["anon", "min_anon_efficiency", "min_scanned_pages",
                "assumed_compression_ratio"]
CONDITION_KEYS = ["memory_pressure_full_above", "memory_pressure_some_above",
                  "memory_pressure_full_avg10_above", "effective_available_below",
                  "anon_efficiency_below", "refault_rate_above", "all_swap_ram_backed",
                  "reclaim_activity"]
POLICY_KEYS = ["name", "monitor", "candidates", "window", "for", "action", "rank", "protect",
               "prefer", "avoid", "dry_run", "post_action_delay", "thaw_after",
               "kill_after_frozen"]
SYSTEMD_KEYS = ["managed_oom", "mode", "system_socket", "user_socket", "oomd_conf", "dbus",
                "dump_format"]
HOOK_KEYS = ["name", "when", "command", "timeout", "policies", "actions", "dry_run"]
ENUMS = st.sampled_from(["auto", "kernel", "ram-backed", "efficiency", "compression", "json",
                         "journal", "debug", "kill", "freeze", "kill-process", "refaults",
                         "memory", "strict", "zram-aware", "before", "after", "/", "/x.slice"])
SCHEMA_VALUE = st.one_of(LEAF, ENUMS, st.lists(ENUMS, max_size=3))


def table(keys: list[str], extra: bool = True) -> st.SearchStrategy[dict]:
    key = st.sampled_from(keys) | st.text(max_size=6) if extra else st.sampled_from(keys)
    return st.dictionaries(key, SCHEMA_VALUE, max_size=len(keys))


CONDITIONS = table(CONDITION_KEYS)
POLICY = st.builds(
    lambda base, all_, any_, process: {
        **base, **({"all": all_} if all_ is not None else {}),
        **({"any": any_} if any_ is not None else {}),
        **({"process": process} if process is not None else {})},
    table(POLICY_KEYS), st.none() | CONDITIONS, st.none() | CONDITIONS,
    st.none() | table(["protect", "prefer"]))
DOCUMENT = st.fixed_dictionaries({}, optional={
    "daemon": table(DAEMON_KEYS),
    "reclaim": table(RECLAIM_KEYS),
    "systemd": st.builds(lambda t, z: {**t, **({"zram": z} if z else {})}, table(SYSTEMD_KEYS),
                         st.none() | st.builds(
                             lambda t, a: {**t, **({"all": a} if a else {})},
                             table(["window", "for", "rank"]), st.none() | CONDITIONS)),
    "policy": st.lists(POLICY, max_size=3),
    "hook": st.lists(table(HOOK_KEYS), max_size=2),
    "extra": ANY_VALUE,
})


# -- properties ---------------------------------------------------------------------------
def numbers_of(obj: object, where: str = ""):
    """Every number held in a loaded configuration, with where it sits."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, Size):
        for name in (f.name for f in dataclasses.fields(obj)):
            yield from numbers_of(getattr(obj, name), f"{where}.{name}")
    elif isinstance(obj, tuple | list):
        for i, item in enumerate(obj):
            yield from numbers_of(item, f"{where}[{i}]")
    elif isinstance(obj, Size):
        if obj.bytes is not None:
            yield f"{where}.bytes", obj.bytes
        if obj.percent is not None:
            yield f"{where}.percent", obj.percent
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield where, obj


def check_loaded(path: str, drop_ins: bool = True) -> None:
    loaded = only_zoomd_errors(load_config, path, drop_ins=drop_ins)
    if loaded is None:
        return
    config, _ = loaded
    for where, value in numbers_of(config):
        # Integers may be as large as TOML writes them; floats must be real numbers.
        assert isinstance(value, int) or math.isfinite(value), f"{where} = {value!r}"
        if where.endswith("swap_turnover_above"):  # a ratio, not a share
            assert 0 <= value <= 1e6, f"{where} = {value!r}"
        elif where.endswith(".percent") or any(where.endswith(k) for k in (
                "_above", "_below", "min_anon_efficiency")):
            assert 0 <= value <= 100, f"{where} = {value!r}"
        elif where.endswith("oom_score_adj"):
            assert -1000 <= value <= 1000
        else:
            assert value >= 0, f"{where} = {value!r}"
    dump_config(config)  # what `zoomd check` prints


def write(directory: str, name: str, data: str | bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


@FUZZ
@given(DOCUMENT, st.booleans())
def test_random_documents(workdir, doc, headers) -> None:
    count("config random documents")
    text = toml_doc(doc, headers)
    tomllib.loads(text)  # the writer makes valid TOML; the schema decides the rest
    check_loaded(write(workdir, "doc.toml", text), drop_ins=False)


@FUZZ
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400)))
def test_random_text_and_bytes(workdir, data) -> None:
    count("config random text/bytes")
    check_loaded(write(workdir, "text.toml", data), drop_ins=False)


@FUZZ
@given(mutated(SHIPPED, max_ops=6))
def test_mutations_of_shipped_config(workdir, text) -> None:
    count("config mutations of zoomd.toml")
    check_loaded(write(workdir, "shipped.toml", text), drop_ins=False)


_ASSIGNMENT = re.compile(r"^([A-Za-z_]+) = (.*)$", re.MULTILINE)
ASSIGNMENTS = list(_ASSIGNMENT.finditer(SHIPPED))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(ASSIGNMENTS), SCHEMA_VALUE), min_size=1,
                max_size=4))
def test_values_of_shipped_config_replaced(workdir, changes) -> None:
    count("config values of zoomd.toml replaced")
    text = SHIPPED
    for m, value in sorted(changes, key=lambda c: -c[0].start()):
        if m.start() < len(text) and text[m.start():m.end()] == m.group(0):
            text = text[:m.start()] + f"{m.group(1)} = {toml_value(value)}" + text[m.end():]
    check_loaded(write(workdir, "replaced.toml", text), drop_ins=False)


@FUZZ
@given(st.lists(DOCUMENT, min_size=1, max_size=3), st.booleans())
def test_random_drop_ins_on_shipped_config(workdir, docs, headers) -> None:
    count("config random drop-ins")
    main = write(workdir, "main.toml", SHIPPED)
    directory = main + ".d"
    shutil.rmtree(directory, ignore_errors=True)
    os.mkdir(directory)
    for i, doc in enumerate(docs):
        write(directory, f"{i:02d}.toml", toml_doc(doc, headers))
    check_loaded(main)


def test_deeply_nested_document_is_a_config_error(tmp_path) -> None:
    # tomllib recurses once per level of nesting: RecursionError, not TOMLDecodeError.
    path = write(str(tmp_path), "deep.toml", "x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"deep\.toml"):
        load_config(path, drop_ins=False)
