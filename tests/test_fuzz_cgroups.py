"""Property-based tests of the cgroup readers on fake trees: memory.stat (v2 and v1),
memory.current/max/swap.current, memory.pressure, cgroup.procs, cgroup.events,
memory.oom.group and the v1 usage/limit files, as CgroupReader reads them.

Only zoomd's own errors escape, and a numeric field replaced by something that is no
kernel number makes the read fail instead of producing a figure.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from fakecgroupfs import FakeHost
from fuzzkit import (
    BAD_UNSIGNED,
    FUZZ,
    U64,
    count,
    dump_counts,
    ints_in,
    mutated,
    only_zoomd_errors,
    render_name_values,
    render_psi,
    replace_token,
)
from hypothesis import given
from hypothesis import strategies as st

from zoomd.errors import KernelFileError
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root

TREES = os.path.join(os.path.dirname(__file__), "fixtures", "trees")


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    dump_counts()


@pytest.fixture(scope="module")
def v2host():
    base = tempfile.mkdtemp(prefix="zoomd-fuzz-v2-")
    host = FakeHost(base)
    host.add("/g", pids=[42], current=1 << 20, limit=1 << 30, anon=1000, file=2000)
    yield host
    shutil.rmtree(base)


@pytest.fixture(scope="module")
def hybrid():
    base = tempfile.mkdtemp(prefix="zoomd-fuzz-hybrid-")
    tree = os.path.join(base, "tree")
    shutil.copytree(os.path.join(TREES, "hybrid-v1-memory"), tree)
    yield tree
    shutil.rmtree(base)


V2_STAT_NAMES = ("anon", "file", "workingset_refault_anon", "workingset_refault_file",
                 "pgscan", "pgsteal", "inactive_anon", "active_anon")
V2_STAT = st.fixed_dictionaries({n: U64 for n in V2_STAT_NAMES})
INT_FILE = st.one_of(U64.map(lambda v: f"{v}\n"), st.just("max\n"))
V2_FILES = st.fixed_dictionaries({
    "memory.stat": V2_STAT.map(render_name_values),
    "memory.current": U64.map(lambda v: f"{v}\n"),
    "memory.max": INT_FILE,
    "memory.swap.current": U64.map(lambda v: f"{v}\n"),
    "memory.oom.group": st.sampled_from(["0\n", "1\n"]),
    "memory.pressure": st.tuples(U64, U64).map(
        lambda t: render_psi((0.0, 0.0, 0.0, t[0]), (0.0, 0.0, 0.0, t[1]))),
    "cgroup.procs": st.lists(st.integers(1, 2**22), max_size=5).map(
        lambda p: "".join(f"{x}\n" for x in p)),
    "cgroup.events": st.tuples(st.integers(0, 1), st.integers(0, 1)).map(
        lambda t: f"populated {t[0]}\nfrozen {t[1]}\n"),
})
NUMERIC_V2 = ("memory.stat", "memory.current", "memory.swap.current", "memory.oom.group",
              "memory.pressure", "cgroup.events")


def write_files(directory: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)


def read_everything(reader: CgroupReader, path: str) -> None:
    reader.memory(path)
    reader.pressure(path)
    reader.events(path)
    reader.procs(path)
    reader.oom_group(path)


@FUZZ
@given(V2_FILES)
def test_v2_group_round_trip(v2host, files) -> None:
    count("cgroup v2 files round trip")
    write_files(v2host.dir("/g"), files)
    reader = CgroupReader(Root(v2host.base))
    mem = reader.memory("/g")
    assert mem is not None and mem.source == "v2"
    assert mem.current == int(files["memory.current"])
    assert mem.limit == (None if files["memory.max"] == "max\n" else int(files["memory.max"]))
    assert mem.swap == int(files["memory.swap.current"])
    stat = {k: int(v) for k, v in (line.split() for line in files["memory.stat"].splitlines())}
    assert mem.anon == stat["anon"] and mem.file == stat["file"]
    assert reader.procs("/g") == [int(p) for p in files["cgroup.procs"].split()]
    assert reader.oom_group("/g") == (files["memory.oom.group"] == "1\n")


@FUZZ
@given(V2_FILES, st.sampled_from((*NUMERIC_V2, "cgroup.procs", "memory.max")), st.data())
def test_v2_corrupt_number_is_refused(v2host, files, name, data) -> None:
    count("cgroup v2 files corrupt field")
    text = files[name]
    tokens = [i for i, t in enumerate(text.split()) if any(c.isdigit() for c in t)
              or t == "max"]
    if not tokens:
        return  # an empty cgroup.procs has no number to corrupt
    index = data.draw(st.sampled_from(tokens))
    bad = data.draw(st.sampled_from(BAD_UNSIGNED))
    token = text.split()[index]
    if "=" in token:
        bad = token.split("=")[0] + "=" + bad
    files = dict(files, **{name: replace_token(text, index, bad)})
    write_files(v2host.dir("/g"), files)
    reader = CgroupReader(Root(v2host.base))
    with pytest.raises(KernelFileError):
        read_everything(reader, "/g")


@FUZZ
@given(V2_FILES, st.sampled_from(sorted((*NUMERIC_V2, "cgroup.procs", "memory.max"))),
       st.data())
def test_v2_any_text(v2host, files, name, data) -> None:
    count("cgroup v2 files any text")
    text = data.draw(st.one_of(st.text(max_size=200), mutated(files[name])))
    files = dict(files, **{name: text})
    write_files(v2host.dir("/g"), files)
    reader = CgroupReader(Root(v2host.base))
    only_zoomd_errors(read_everything, reader, "/g")
    mem = only_zoomd_errors(reader.memory, "/g")
    if mem is not None:
        found = set().union(*(ints_in(t) for t in files.values()))
        for v in (mem.current, mem.limit, mem.swap, *mem.stat.values()):
            assert v is None or (v in found and v >= 0)


V1_STAT = st.fixed_dictionaries({n: U64 for n in (
    "cache", "rss", "swap", "total_cache", "total_rss", "total_swap", "total_inactive_anon",
    "total_active_anon", "total_inactive_file", "total_active_file",
    "total_workingset_refault_anon", "total_workingset_refault_file", "total_pgmajfault",
    "hierarchical_memory_limit")})
V1_FILES = st.fixed_dictionaries({
    "memory.stat": V1_STAT.map(render_name_values),
    "memory.usage_in_bytes": U64.map(lambda v: f"{v}\n"),
    "memory.limit_in_bytes": U64.map(lambda v: f"{v}\n"),
})


def v1_dir(tree: str) -> str:
    return os.path.join(tree, "sys/fs/cgroup/memory/lab-mem")


@FUZZ
@given(V1_FILES)
def test_v1_memory_round_trip(hybrid, files) -> None:
    count("cgroup v1 memory files round trip")
    write_files(v1_dir(hybrid), files)
    mem = CgroupReader(Root(hybrid)).memory("/lab")
    assert mem is not None and mem.source == "v1:/lab-mem"
    stat = dict(line.split() for line in files["memory.stat"].splitlines())
    assert mem.current == int(files["memory.usage_in_bytes"])
    limit = int(files["memory.limit_in_bytes"])
    assert mem.limit == (None if limit >= 1 << 62 else limit)
    assert mem.anon == int(stat["total_rss"]) and mem.swap == int(stat["total_swap"])


@FUZZ
@given(V1_FILES, st.sampled_from(["memory.stat", "memory.usage_in_bytes",
                                  "memory.limit_in_bytes"]), st.data())
def test_v1_corrupt_number_is_refused(hybrid, files, name, data) -> None:
    count("cgroup v1 memory files corrupt field")
    text = files[name]
    tokens = text.split()
    index = data.draw(st.sampled_from([i for i, t in enumerate(tokens) if t.isdigit()]))
    files = dict(files, **{name: replace_token(text, index,
                                                data.draw(st.sampled_from(BAD_UNSIGNED)))})
    write_files(v1_dir(hybrid), files)
    with pytest.raises(KernelFileError):
        CgroupReader(Root(hybrid)).memory("/lab")


@FUZZ
@given(V1_FILES, st.sampled_from(["memory.stat", "memory.usage_in_bytes",
                                  "memory.limit_in_bytes", "proc-cgroup"]), st.data())
def test_v1_any_text(hybrid, files, name, data) -> None:
    count("cgroup v1 memory files any text")
    proc_cgroup = os.path.join(hybrid, "proc/4242/cgroup")
    with open(os.path.join(TREES, "hybrid-v1-memory/proc/4242/cgroup")) as f:
        original = f.read()
    if name == "proc-cgroup":
        text = data.draw(st.one_of(st.text(max_size=200), mutated(original)))
        with open(proc_cgroup, "w") as f:
            f.write(text)
    else:
        text = data.draw(st.one_of(st.text(max_size=200), mutated(files[name])))
        files = dict(files, **{name: text})
    write_files(v1_dir(hybrid), files)
    try:
        mem = only_zoomd_errors(CgroupReader(Root(hybrid)).memory, "/lab")
        if mem is not None and mem.source != "procs":  # "procs": sums of /proc/PID/status
            found = set().union(*(ints_in(t) for t in files.values()))
            for v in (mem.current, mem.limit, mem.swap, *mem.stat.values()):
                assert v is None or (v in found and v >= 0)
    finally:
        with open(proc_cgroup, "w") as f:
            f.write(original)
