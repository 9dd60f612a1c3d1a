"""Property-based tests of every kernel-file parser.

For each parser: (1) what the kernel prints parses back to what was printed (octal
escapes included); (2) a numeric field replaced by something that is not a kernel
number is refused with a KernelFileError, never read as a number; (3) arbitrary and
mutated text raises nothing but zoomd's own errors, and whatever number comes out
was written in the text (no value is invented, no missing field becomes 0).
"""

from __future__ import annotations

import math

import pytest
from fuzzkit import (
    BAD_FLOAT,
    BAD_NUMBERS,
    BAD_UNSIGNED,
    FUZZ,
    S32,
    U64,
    count,
    dump_counts,
    ints_in,
    kernel_escape,
    mutated,
    only_zoomd_errors,
    render_meminfo,
    render_mm_stat,
    render_name_values,
    render_psi,
    render_swaps,
    render_zoneinfo,
    replace_token,
)
from hypothesis import given
from hypothesis import strategies as st

from zoomd.errors import KernelFileError
from zoomd.kernel.keyvalue import parse_name_values
from zoomd.kernel.meminfo import parse_meminfo
from zoomd.kernel.mountinfo import parse_mountinfo
from zoomd.kernel.proc_cgroup import parse_proc_cgroup
from zoomd.kernel.psi import parse_psi, parse_psi_fields
from zoomd.kernel.swaps import parse_swaps, unescape_octal
from zoomd.kernel.vmstat import parse_vmstat
from zoomd.kernel.zoneinfo import parse_zoneinfo
from zoomd.kernel.zram import MM_STAT_COLUMNS, parse_mm_stat


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    dump_counts()


ANY_TEXT = st.text(max_size=300)
AVG = st.integers(0, 10000).map(lambda v: v / 100)
PSI_LINE = st.tuples(AVG, AVG, AVG, U64)
NAME = st.from_regex(r"[a-z_][a-z0-9_]{0,24}", fullmatch=True)


# -- PSI --------------------------------------------------------------------------------
@FUZZ
@given(PSI_LINE, st.none() | PSI_LINE)
def test_psi_round_trip(some, full) -> None:
    count("psi round trip")
    if full is not None and full[3] > some[3]:  # no kernel writes it (issue 15 item 10)
        for need_full in (True, False):  # host and cgroup files alike
            with pytest.raises(KernelFileError, match=r"full\.total"):
                parse_psi(render_psi(some, full), "p", need_full=need_full)
        return
    psi = parse_psi(render_psi(some, full), "p")
    assert (psi.some.avg10, psi.some.avg60, psi.some.avg300, psi.some.total_us) == some
    if full is None:
        assert psi.full is None
    else:
        assert psi.full is not None
        assert (psi.full.avg10, psi.full.avg60, psi.full.avg300, psi.full.total_us) == full


@FUZZ
@given(st.one_of(PSI_LINE.flatmap(lambda s: st.just(render_psi(s, s))),
                 PSI_LINE.map(lambda s: render_psi(s, None)),
                 PSI_LINE.flatmap(lambda s: mutated(render_psi(s, s)))))
def test_psi_fast_path_agrees_with_the_field_parse(text) -> None:
    """The whole-file fast path for the kernel's own layout gives what the field-by-field
    parse gives, and refuses nothing that one accepts (it hands it over)."""
    count("psi fast path = field parse")
    try:
        expected = parse_psi_fields(text, "p")
    except KernelFileError as exc:
        with pytest.raises(KernelFileError) as caught:
            parse_psi(text, "p")
        assert str(caught.value) == str(exc)
        return
    assert parse_psi(text, "p") == expected


@FUZZ
@given(PSI_LINE, PSI_LINE, st.integers(0, 7), st.data())
def test_psi_corrupt_field_is_refused(some, full, field, data) -> None:
    count("psi corrupt field")
    text = render_psi(some, full)
    lines = text.splitlines()
    line = 0 if field < 4 else 1
    name = ("avg10", "avg60", "avg300", "total")[field % 4]
    bad = data.draw(st.sampled_from(BAD_UNSIGNED if name == "total" else BAD_FLOAT))
    parts = lines[line].split()
    parts[1 + field % 4] = f"{name}={bad}"
    lines[line] = " ".join(parts)
    with pytest.raises(KernelFileError):
        parse_psi("\n".join(lines) + "\n", "p")


@FUZZ
@given(st.one_of(ANY_TEXT, PSI_LINE.flatmap(lambda s: mutated(render_psi(s, s)))))
def test_psi_any_text(text) -> None:
    count("psi any text")
    psi = only_zoomd_errors(parse_psi, text, "p")
    if psi is None:
        return
    found = ints_in(text)
    for line in (psi.some, psi.full):
        if line is None:
            continue
        assert line.total_us in found and line.total_us >= 0
        for avg in (line.avg10, line.avg60, line.avg300):
            assert math.isfinite(avg) and avg >= 0


# -- name value files: vmstat, memory.stat (v1 and v2), cgroup.events --------------------
NAME_VALUES = st.dictionaries(NAME, U64, max_size=30)


@FUZZ
@given(NAME_VALUES, st.sampled_from([0, 12]))
def test_name_values_round_trip(values, width) -> None:
    count("vmstat/memory.stat round trip")
    assert parse_name_values(render_name_values(values), "m") == values
    values = {"nr_free_pages": 1, **values}  # in every vmstat (an empty one is refused)
    assert parse_vmstat(render_name_values(values, width), "v").counters == values


@FUZZ
@given(NAME_VALUES.filter(bool), st.data())
def test_name_values_corrupt_value_is_refused(values, data) -> None:
    count("vmstat/memory.stat corrupt field")
    text = render_name_values(values)
    index = data.draw(st.integers(0, len(values) - 1))
    bad = data.draw(st.sampled_from(BAD_UNSIGNED))
    with pytest.raises(KernelFileError):
        parse_name_values(replace_token(text, 2 * index + 1, bad), "m")


@FUZZ
@given(st.one_of(ANY_TEXT, NAME_VALUES.flatmap(lambda v: mutated(render_name_values(v)))))
def test_name_values_any_text(text) -> None:
    count("vmstat/memory.stat any text")
    values = only_zoomd_errors(parse_name_values, text, "m")
    if values is not None:
        found = ints_in(text)
        assert all(v in found and v >= 0 for v in values.values())


# -- meminfo ------------------------------------------------------------------------------
REQUIRED = ("MemTotal", "MemFree", "MemAvailable", "Active(anon)", "Inactive(anon)",
            "Active(file)", "Inactive(file)", "SwapTotal", "SwapFree")
ANY_MEMINFO = st.fixed_dictionaries(
    {name: st.integers(0, 2**52) for name in REQUIRED},
    optional={"HugePages_Total": st.integers(0, 10**6), "Hugepagesize": st.integers(0, 2**30),
              "Committed_AS": st.integers(0, 2**52)})
PARTS = (("MemFree", "MemTotal"), ("SwapFree", "SwapTotal"))
# What a kernel can print: free never above total.
MEMINFO = ANY_MEMINFO.map(lambda v: {**v, **{p: min(v[p], v[w]) for p, w in PARTS}})


@FUZZ
@given(ANY_MEMINFO.filter(lambda v: any(v[p] > v[w] for p, w in PARTS)))
def test_meminfo_free_above_total_is_refused(values) -> None:
    count("meminfo free above total")
    with pytest.raises(KernelFileError, match="no kernel writes that") as err:
        parse_meminfo(render_meminfo(values), "mi")
    assert err.value.field in {p for p, w in PARTS if values[p] > values[w]}


@FUZZ
@given(MEMINFO)
def test_meminfo_round_trip(values) -> None:
    count("meminfo round trip")
    mem = parse_meminfo(render_meminfo(values), "mi")
    for name, v in values.items():
        assert mem.fields[name] == (v if name.startswith("HugePages_") else v * 1024)


@FUZZ
@given(MEMINFO, st.data())
def test_meminfo_corrupt_or_missing_field_is_refused(values, data) -> None:
    count("meminfo corrupt field")
    lines = render_meminfo(values).splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    name = lines[i].split(":")[0]
    if name in REQUIRED and name != "MemAvailable" and data.draw(st.booleans()):
        del lines[i]  # a field the model needs is missing
    else:
        lines[i] = replace_token(lines[i], 1, data.draw(st.sampled_from(BAD_UNSIGNED)))
    with pytest.raises(KernelFileError):
        parse_meminfo("\n".join(lines) + "\n", "mi")


@FUZZ
@given(st.one_of(ANY_TEXT, MEMINFO.flatmap(lambda v: mutated(render_meminfo(v)))))
def test_meminfo_any_text(text) -> None:
    count("meminfo any text")
    mem = only_zoomd_errors(parse_meminfo, text, "mi")
    if mem is not None:
        found = ints_in(text)
        for name, v in mem.fields.items():
            raw = v if name.startswith("HugePages_") else v // 1024
            assert raw in found and v >= 0


# -- /proc/swaps --------------------------------------------------------------------------
# Any file name the kernel could print: no NUL, no "/"-free restriction, every other
# character allowed (spaces, tabs, newlines and backslashes come out octal-escaped).
SWAP_NAME = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                    min_size=1, max_size=40)
ANY_SWAP_ENTRY = st.tuples(SWAP_NAME, st.sampled_from(["partition", "file"]),
                           st.integers(0, 2**53), st.integers(0, 2**53), S32)
# What a kernel can print: Used never above Size.
SWAP_ENTRY = ANY_SWAP_ENTRY.map(lambda e: (e[0], e[1], e[2], min(e[2], e[3]), e[4]))


@FUZZ
@given(st.lists(SWAP_ENTRY, max_size=3), ANY_SWAP_ENTRY.filter(lambda e: e[3] > e[2]))
def test_swap_used_above_size_is_refused(entries, bad) -> None:
    count("swaps used above size")
    with pytest.raises(KernelFileError, match="above Size") as err:
        parse_swaps(render_swaps([*entries, bad]), "s")
    assert err.value.field == f"{bad[0]}.Used"


@FUZZ
@given(SWAP_NAME)
def test_octal_escape_round_trip(name) -> None:
    count("octal escape round trip")
    escaped = kernel_escape(name)
    assert not any(c in escaped for c in " \t\n")
    assert unescape_octal(escaped) == name


@FUZZ
@given(st.lists(SWAP_ENTRY, max_size=6))
def test_swaps_round_trip(entries) -> None:
    count("swaps round trip")
    parsed = parse_swaps(render_swaps(entries), "s")
    assert [(e.path, e.type, e.size_bytes, e.used_bytes, e.priority) for e in parsed] == [
        (p, t, s * 1024, u * 1024, pr) for p, t, s, u, pr in entries]


@FUZZ
@given(st.lists(SWAP_ENTRY, min_size=1, max_size=4), st.data())
def test_swaps_corrupt_field_is_refused(entries, data) -> None:
    count("swaps corrupt field")
    text = render_swaps(entries)
    row = data.draw(st.integers(0, len(entries) - 1))
    column = data.draw(st.sampled_from([2, 3, 4]))
    bad = data.draw(st.sampled_from(BAD_NUMBERS if column == 4 else BAD_UNSIGNED))
    with pytest.raises(KernelFileError):
        parse_swaps(replace_token(text, 5 + 5 * row + column, bad), "s")


@FUZZ
@given(st.one_of(ANY_TEXT, st.lists(SWAP_ENTRY, max_size=3).flatmap(
    lambda e: mutated(render_swaps(e)))))
def test_swaps_any_text(text) -> None:
    count("swaps any text")
    entries = only_zoomd_errors(parse_swaps, text, "s")
    found = ints_in(text)
    for e in entries or ():
        assert e.size_bytes // 1024 in found and e.used_bytes // 1024 in found
        assert e.priority in found and e.size_bytes >= 0 and e.used_bytes >= 0


# -- mountinfo ----------------------------------------------------------------------------
MOUNT = st.tuples(st.integers(1, 10**5), st.integers(0, 10**5), st.integers(0, 4095),
                  st.integers(0, 2**20 - 1), SWAP_NAME, SWAP_NAME,
                  st.sampled_from(["ext4", "tmpfs", "cgroup2", "cgroup", "xfs", "fuse.sshfs"]),
                  SWAP_NAME, st.lists(st.sampled_from(["shared:1", "master:3", "unbindable"]),
                                      max_size=2))


def render_mountinfo(mounts) -> str:
    out = ""
    for mid, parent, major, minor, root, point, fstype, source, optional in mounts:
        opt = "".join(f" {o}" for o in optional)
        out += (f"{mid} {parent} {major}:{minor} {kernel_escape(root)} {kernel_escape(point)}"
                f" rw,relatime{opt} - {fstype} {kernel_escape(source)} rw,memory\n")
    return out


@FUZZ
@given(st.lists(MOUNT, max_size=5))
def test_mountinfo_round_trip(mounts) -> None:
    count("mountinfo round trip")
    parsed = parse_mountinfo(render_mountinfo(mounts), "mi")
    assert [(m.major, m.minor, m.root, m.mount_point, m.fstype, m.source)
            for m in parsed] == [(ma, mi, r, p, f, s) for _, _, ma, mi, r, p, f, s, _ in mounts]
    assert all(m.super_options == ("rw", "memory") for m in parsed)


@FUZZ
@given(st.lists(MOUNT, min_size=1, max_size=3), st.sampled_from(BAD_UNSIGNED), st.data())
def test_mountinfo_corrupt_device_is_refused(mounts, bad, data) -> None:
    count("mountinfo corrupt field")
    lines = render_mountinfo(mounts).split("\n")[:-1]
    i = data.draw(st.integers(0, len(lines) - 1))
    parts = lines[i].split(" ")
    major, minor = parts[2].split(":")
    parts[2] = f"{bad}:{minor}" if data.draw(st.booleans()) else f"{major}:{bad}"
    lines[i] = " ".join(parts)
    with pytest.raises(KernelFileError):
        parse_mountinfo("\n".join(lines) + "\n", "mi")


@FUZZ
@given(st.one_of(ANY_TEXT, st.lists(MOUNT, max_size=3).flatmap(
    lambda m: mutated(render_mountinfo(m)))))
def test_mountinfo_any_text(text) -> None:
    count("mountinfo any text")
    found = ints_in(text)
    for m in only_zoomd_errors(parse_mountinfo, text, "mi") or ():
        assert m.major in found and m.minor in found and m.major >= 0 and m.minor >= 0


# -- zoneinfo -----------------------------------------------------------------------------
ZONE = st.tuples(st.integers(0, 64), st.sampled_from(["DMA", "DMA32", "Normal", "Movable"]),
                 st.fixed_dictionaries({k: st.integers(0, 2**40) for k in
                                        ("free", "min", "low", "high", "managed")}))


@FUZZ
@given(st.lists(ZONE, min_size=1, max_size=5))
def test_zoneinfo_round_trip(zones) -> None:
    count("zoneinfo round trip")
    parsed = parse_zoneinfo(render_zoneinfo(zones), "z")
    assert [(z.node, z.name, z.free, z.min, z.low, z.high, z.managed) for z in parsed] == [
        (n, name, f["free"], f["min"], f["low"], f["high"], f["managed"])
        for n, name, f in zones]


@FUZZ
@given(st.lists(ZONE, min_size=1, max_size=3), st.data())
def test_zoneinfo_corrupt_or_missing_field_is_refused(zones, data) -> None:
    count("zoneinfo corrupt field")
    lines = render_zoneinfo(zones).split("\n")[:-1]
    candidates = [i for i, line in enumerate(lines)
                  if line.split()[:1] in (["min"], ["low"], ["high"], ["managed"])
                  or line.startswith("  pages free") or line.startswith("Node")]
    i = data.draw(st.sampled_from(candidates))
    if data.draw(st.booleans()) and not lines[i].startswith("Node"):
        del lines[i]  # a field the zone must have is missing
    else:
        parts = lines[i].split()
        bad = data.draw(st.sampled_from(BAD_UNSIGNED))
        if parts[0] == "Node":
            parts[1] = bad + ","
        else:
            parts[-1] = bad
        lines[i] = " ".join(parts)
    with pytest.raises(KernelFileError):
        parse_zoneinfo("\n".join(lines) + "\n", "z")


@FUZZ
@given(st.one_of(ANY_TEXT, st.lists(ZONE, min_size=1, max_size=2).flatmap(
    lambda z: mutated(render_zoneinfo(z)))))
def test_zoneinfo_any_text(text) -> None:
    count("zoneinfo any text")
    found = ints_in(text)
    for z in only_zoomd_errors(parse_zoneinfo, text, "z") or ():
        for v in (z.node, z.free, z.min, z.low, z.high, z.managed):
            assert v in found and v >= 0


# -- zram mm_stat -------------------------------------------------------------------------
MM_STAT = st.lists(U64, min_size=5, max_size=9)


@FUZZ
@given(MM_STAT)
def test_mm_stat_round_trip(values) -> None:
    count("mm_stat round trip")
    mm = parse_mm_stat(render_mm_stat(values), "mm")
    assert [getattr(mm, name) for name in MM_STAT_COLUMNS[:len(values)]] == values
    assert all(getattr(mm, name) is None for name in MM_STAT_COLUMNS[len(values):])


@FUZZ
@given(MM_STAT, st.data())
def test_mm_stat_corrupt_field_is_refused(values, data) -> None:
    count("mm_stat corrupt field")
    index = data.draw(st.integers(0, len(values) - 1))
    bad = data.draw(st.sampled_from(BAD_UNSIGNED))
    with pytest.raises(KernelFileError):
        parse_mm_stat(replace_token(render_mm_stat(values), index, bad), "mm")


@FUZZ
@given(st.one_of(ANY_TEXT, MM_STAT.flatmap(lambda v: mutated(render_mm_stat(v)))))
def test_mm_stat_any_text(text) -> None:
    count("mm_stat any text")
    mm = only_zoomd_errors(parse_mm_stat, text, "mm")
    if mm is not None:
        found = ints_in(text)
        for name in MM_STAT_COLUMNS:
            v = getattr(mm, name)
            assert v is None or (v in found and v >= 0)


# -- /proc/PID/cgroup ---------------------------------------------------------------------
CGPATH = st.lists(st.text(st.characters(blacklist_categories=("Cs",),
                                        blacklist_characters="\x00/\n"), min_size=1,
                          max_size=10), max_size=4).map(lambda p: "/" + "/".join(p))
V1 = st.dictionaries(st.sampled_from(["memory", "cpu,cpuacct", "freezer", "pids",
                                      "name=systemd", "blkio"]), CGPATH, max_size=5)


def render_proc_cgroup(v2: str | None, v1: dict[str, str]) -> str:
    lines = [f"{i}:{c}:{p}" for i, (c, p) in enumerate(v1.items(), 1)]
    if v2 is not None:
        lines.append(f"0::{v2}")
    return "".join(line + "\n" for line in lines)


@FUZZ
@given(st.none() | CGPATH, V1)
def test_proc_cgroup_round_trip(v2, v1) -> None:
    count("proc cgroup round trip")
    parsed = parse_proc_cgroup(render_proc_cgroup(v2, v1), "c")
    assert parsed.v2 == v2
    expected = {c: p for controllers, p in v1.items() for c in controllers.split(",")}
    assert parsed.v1 == expected


@FUZZ
@given(st.one_of(ANY_TEXT, st.tuples(st.none() | CGPATH, V1).flatmap(
    lambda a: mutated(render_proc_cgroup(*a)))))
def test_proc_cgroup_any_text(text) -> None:
    count("proc cgroup any text")
    parsed = only_zoomd_errors(parse_proc_cgroup, text, "c")
    if parsed is not None:
        assert parsed.v2 is None or isinstance(parsed.v2, str)


@FUZZ
@given(NAME_VALUES, st.lists(NAME, max_size=4), st.data())
def test_pick_values_agrees_with_the_full_parse(values, extra, data) -> None:
    # Ranking reads three fields of memory.stat, not sixty: the same numbers, and the
    # same refusal of a picked field that is no number.
    from zoomd.kernel.keyvalue import pick_values

    count("memory.stat picked fields")
    text = render_name_values(values)
    names = tuple(dict.fromkeys([*list(values)[:3], *extra]))
    assert pick_values(text, "m", names) == {n: values[n] for n in names if n in values}
    if values:
        index = data.draw(st.integers(0, len(values) - 1))
        name = list(values)[index]
        bad = replace_token(text, 2 * index + 1, data.draw(st.sampled_from(BAD_UNSIGNED)))
        with pytest.raises(KernelFileError):
            pick_values(bad, "m", (name,))


@FUZZ
@given(NAME_VALUES.filter(bool), st.lists(NAME, max_size=3), st.data())
def test_lazy_vmstat_agrees_with_the_full_parse(values, missing, data) -> None:
    # The daemon parses a /proc/vmstat counter when the model first asks for it.
    from zoomd.kernel.vmstat import VmStat

    count("vmstat lazy")
    values = {"nr_free_pages": 1, **values}  # in every vmstat (an empty one is refused)
    text = render_name_values(values)
    lazy = VmStat.lazy(text, "v")
    for name in [*values, *missing]:
        assert lazy.get(name) == values.get(name)
    assert lazy.counters == values and lazy == VmStat(values)
    index = data.draw(st.integers(0, len(values) - 1))
    bad = replace_token(text, 2 * index + 1, data.draw(st.sampled_from(BAD_UNSIGNED)))
    with pytest.raises(KernelFileError):
        VmStat.lazy(bad, "v").get(list(values)[index])
