"""Randomised victim choice over generated cgroup trees and preferences (hypothesis).

Trees are written on tmpfs, where user.* and trusted.* xattrs work, so the systemd-oomd
preferences (user.oomd_omit, user.oomd_avoid, user.oomd_prefer, trusted.oomd_prefer)
are real xattrs. Whatever the tree, the globs and the xattrs, no candidate (and so no
victim) is the root, PID 1's group, zoomd's own group or an ancestor of either; nor a
group protected by a glob (daemon or policy) or omitted by user.oomd_omit, nor a group
inside one of those or containing one.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from fakecgroupfs import FakeHost
from fuzzkit import FUZZ, count, dump_counts
from hypothesis import given
from hypothesis import strategies as st

from zoomd.config.runtime import Policy
from zoomd.config.schema import validate
from zoomd.daemon.candidates import Exclusions, collect, rank
from zoomd.daemon.globs import is_ancestor_or_self, matches
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root


def validate_policy(**keys) -> Policy:
    """A policy as zoomd.toml would give it: tables as dicts, values as written."""
    return validate(keys, Policy)


SHM = "/dev/shm"


def _tmpfs_with_xattrs() -> str | None:
    if not os.path.isdir(SHM):
        return f"{SHM} missing"
    probe = tempfile.mkdtemp(prefix="zoomd-xattr-", dir=SHM)
    try:
        os.setxattr(probe, "user.zoomd_probe", b"1")
        if os.geteuid() == 0:
            os.setxattr(probe, "trusted.zoomd_probe", b"1")
    except OSError as exc:
        return f"no user xattrs on {SHM} ({exc.strerror})"
    finally:
        shutil.rmtree(probe)
    return None


_NO_XATTRS = _tmpfs_with_xattrs()
pytestmark = pytest.mark.skipif(_NO_XATTRS is not None, reason=f"needs tmpfs xattrs: "
                                f"{_NO_XATTRS}")


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    dump_counts()


@st.composite
def trees(draw):
    """A tree of up to 24 groups with processes, oom groups, globs, xattrs and vital groups."""
    n = draw(st.integers(1, 24))
    paths = ["/"]
    for i in range(n):
        parent = draw(st.sampled_from(paths))
        paths.append(parent.rstrip("/") + f"/g{i}")
    groups = paths[1:]
    spec = {
        "paths": groups,
        "pids": {p: draw(st.integers(0, 2)) for p in groups},
        "memory": {p: draw(st.integers(0, 10**9)) for p in groups},
        "oom_group": {p: draw(st.booleans()) for p in groups},
        "xattrs": {p: draw(st.sets(st.sampled_from(
            ["user.oomd_omit", "user.oomd_avoid", "user.oomd_prefer", "trusted.oomd_prefer"]),
            max_size=2)) for p in groups},
        "pid1": draw(st.sampled_from(groups)),
        "own": draw(st.sampled_from(groups)),
        "monitor": draw(st.sampled_from(paths)),
    }

    def glob_of(path: str) -> str:
        kind = draw(st.sampled_from(["exact", "star", "deep", "parent"]))
        name = path.rsplit("/", 1)[1]
        if kind == "star":
            return path.rsplit("/", 1)[0] + "/*" if path.count("/") > 1 else "/*"
        if kind == "deep":
            return f"/**/{name}"
        if kind == "parent" and path.count("/") > 1:
            return path.rsplit("/", 1)[0]
        return path

    spec["protect"] = tuple(glob_of(p) for p in draw(st.lists(st.sampled_from(groups),
                                                             max_size=3)))
    spec["policy_protect"] = tuple(glob_of(p) for p in draw(
        st.lists(st.sampled_from(groups), max_size=2)))
    spec["prefer"] = tuple(glob_of(p) for p in draw(st.lists(st.sampled_from(groups),
                                                            max_size=2)))
    spec["avoid"] = tuple(glob_of(p) for p in draw(st.lists(st.sampled_from(groups),
                                                           max_size=2)))
    return spec


def build(base: str, spec: dict) -> FakeHost:
    host = FakeHost(base)
    pid = 100
    for path in spec["paths"]:
        pids = list(range(pid, pid + spec["pids"][path]))
        pid += len(pids)
        host.add(path, pids=pids, current=spec["memory"][path],
                 oom_group=spec["oom_group"][path])
    for path in spec["paths"]:
        for name in spec["xattrs"][path]:
            os.setxattr(host.dir(path), name, b"1")
    return host


@FUZZ
@given(trees())
def test_no_protected_omitted_or_vital_group_is_ever_chosen(spec) -> None:
    count("random trees: victim choice")
    base = tempfile.mkdtemp(prefix="zoomd-tree-", dir=SHM)
    try:
        host = build(base, spec)
        policy = validate_policy(name="p", all={"reclaim_activity": True},
                        protect=spec["policy_protect"], prefer=spec["prefer"],
                        avoid=spec["avoid"], rank=("memory",))
        vital = (spec["pid1"], spec["own"])
        found, skipped = collect(CgroupReader(Root(host.base)), policy, spec["monitor"],
                                 Exclusions(spec["protect"], vital))
        ranked = rank(found, policy.rank)
        protected = spec["protect"] + spec["policy_protect"]
        omitted = [p for p in spec["paths"] if "user.oomd_omit" in spec["xattrs"][p]]
        for cand in ranked:
            path = cand.path
            assert path != "/" and path != spec["monitor"]
            assert is_ancestor_or_self(path, spec["monitor"]) is False
            for v in vital:
                assert not is_ancestor_or_self(path, v), (path, v)
            for other in spec["paths"]:
                related = is_ancestor_or_self(other, path) or is_ancestor_or_self(path, other)
                if not related:
                    continue
                assert not matches(other, protected), (path, other, protected)
                assert other not in omitted, (path, other)
        # Everything that is neither chosen nor skipped was not a candidate at all.
        assert not {c.path for c in found} & set(skipped)
        if ranked:  # the victim respects preferences: nothing preferred ranks below it
            victim = ranked[0]
            assert all(c.preference >= victim.preference for c in ranked)
    finally:
        shutil.rmtree(base)


def _host(tmp: str) -> FakeHost:
    host = FakeHost(tmp)
    host.add("/svc", pids=[])
    host.add("/svc/payload", pids=[10], current=900)
    host.add("/batch", pids=[], oom_group=True)
    host.add("/batch/job", pids=[11], current=800)
    host.add("/other", pids=[12], current=10)
    return host


def test_group_inside_a_protected_one_is_protected() -> None:
    base = tempfile.mkdtemp(prefix="zoomd-tree-", dir=SHM)
    try:
        host = _host(base)
        found, skipped = collect(CgroupReader(Root(host.base)),
                                 validate_policy(name="p", all={"reclaim_activity": True}), "/",
                                 Exclusions(("/svc",), ()))
        assert skipped["/svc/payload"] == "inside protected /svc"
        assert [c.path for c in found] == ["/batch", "/other"]
    finally:
        shutil.rmtree(base)


def test_omit_covers_the_subtree_both_ways() -> None:
    base = tempfile.mkdtemp(prefix="zoomd-tree-", dir=SHM)
    try:
        host = _host(base)
        os.setxattr(host.dir("/svc"), "user.oomd_omit", b"1")
        os.setxattr(host.dir("/batch/job"), "user.oomd_omit", b"1")
        found, skipped = collect(CgroupReader(Root(host.base)),
                                 validate_policy(name="p", all={"reclaim_activity": True}), "/",
                                 Exclusions((), ()))
        assert skipped["/svc/payload"] == "inside /svc (user.oomd_omit)"
        assert skipped["/batch"] == "contains /batch/job (user.oomd_omit)"
        assert [c.path for c in found] == ["/other"]
    finally:
        shutil.rmtree(base)


def test_records_show_swap_although_ranking_did_not_need_it(tmp_path) -> None:
    from zoomd.daemon.candidates import fill_record_figures

    host = FakeHost(str(tmp_path))
    host.add("/a", pids=[10], current=900, swap=77)
    policy = validate_policy(name="p", all={"reclaim_activity": True}, rank=("memory",))
    reader = CgroupReader(Root(host.base))
    found, _ = collect(reader, policy, "/", Exclusions((), ()))
    assert found[0].memory == 900 and not found[0].swap_read
    fill_record_figures(reader, found)
    assert found[0].to_json(policy.rank)["swap_bytes"] == 77
    swap_ranked, _ = collect(reader, validate_policy(name="q", all={"reclaim_activity": True},
                                            rank=("swap",)), "/", Exclusions((), ()))
    assert swap_ranked[0].swap == 77 and swap_ranked[0].swap_read
