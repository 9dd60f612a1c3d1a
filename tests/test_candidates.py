"""Victim choice on a fake cgroupfs: enumeration, exclusions, preferences, ranking."""

from __future__ import annotations

import random

import pytest
from fakecgroupfs import FakeHost

from zoomd.config.runtime import Conditions, Policy
from zoomd.daemon.candidates import (
    Candidate,
    Exclusions,
    apply_deltas,
    collect,
    drop_kernel_thread_holders,
    rank,
    walk_candidates,
)
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root

COND = Conditions(memory_pressure_full_above=10.0)


def policy(**kw) -> Policy:
    return Policy(name="t", all=COND, **kw)


@pytest.fixture
def host(tmp_path) -> FakeHost:
    h = FakeHost(str(tmp_path))
    h.add("/init.scope", pids=[2])
    h.add("/lab", pids=[])
    h.add("/lab/a", pids=[100], current=300, refault_anon=10)
    h.add("/lab/b", pids=[101], current=900, refault_anon=5)
    h.add("/lab/svc", pids=[])
    h.add("/lab/svc/x", pids=[102], current=50)
    h.add("/lab/grp", pids=[], oom_group=True)
    h.add("/lab/grp/y", pids=[103], current=70)
    h.add("/lab/empty", pids=[])
    return h


def reader(host: FakeHost) -> CgroupReader:
    return CgroupReader(Root(host.base))


def test_walk_stops_at_leaves_and_oom_groups(host) -> None:
    assert walk_candidates(reader(host), "/lab") == [
        "/lab/a", "/lab/b", "/lab/empty", "/lab/grp", "/lab/svc/x"]


def test_collect_skips_empty_and_protected_and_vital(host) -> None:
    ex = Exclusions(protect=("/lab/b",), vital_groups=("/init.scope", "/lab/svc/x"))
    found, skipped = collect(reader(host), policy(), "/lab", ex)
    assert [c.path for c in found] == ["/lab/a", "/lab/grp"]
    assert skipped == {"/lab/b": "protected", "/lab/empty": "empty",
                       "/lab/svc/x": "contains /lab/svc/x (PID 1 or zoomd)"}


def test_monitoring_root_never_offers_pid1_group(host) -> None:
    ex = Exclusions(protect=(), vital_groups=("/init.scope",))
    found, skipped = collect(reader(host), policy(), "/", ex)
    paths = [c.path for c in found]
    assert "/init.scope" not in paths and "/" not in paths
    assert "PID 1" in skipped["/init.scope"]


def test_candidate_globs_relative_to_monitor(host) -> None:
    found, _ = collect(reader(host), policy(candidates=("svc/*",)), "/lab",
                       Exclusions((), ()))
    assert [c.path for c in found] == ["/lab/svc/x"]


def test_policy_prefer_avoid_and_ranking(host) -> None:
    r = reader(host)
    base, _ = collect(r, policy(), "/lab", Exclusions((), ()))
    baseline = {c.path: c for c in base}
    host.groups["/lab/a"].refault_anon = 1010  # +1000 pages while pending
    host.groups["/lab/b"].refault_anon = 105  # +100
    host.write()
    found, _ = collect(r, policy(), "/lab", Exclusions((), ()))
    apply_deltas(found, baseline)
    order = [c.path for c in rank(found, ("refaults", "memory"))]
    assert order[:2] == ["/lab/a", "/lab/b"]
    # By memory alone b (900) beats a (300).
    assert rank(found, ("memory",))[0].path == "/lab/b"
    # avoid pushes a group last, prefer first.
    found, _ = collect(r, policy(avoid=("/lab/a",), prefer=("/lab/svc/**",)), "/lab",
                       Exclusions((), ()))
    apply_deltas(found, baseline)
    order = [c.path for c in rank(found, ("refaults", "memory"))]
    assert order[0] == "/lab/svc/x" and order[-1] == "/lab/a"


def test_ties_are_broken_by_path() -> None:
    cands = [Candidate("/z"), Candidate("/a"), Candidate("/m")]
    assert [c.path for c in rank(cands, ("memory",))] == ["/a", "/m", "/z"]


def test_pgscan_rank_falls_back_to_refaults_without_group_pgscan() -> None:
    a = Candidate("/a", deltas={"refaults": 5})
    b = Candidate("/b", deltas={"refaults": 50})
    assert [c.path for c in rank([a, b], ("pgscan",))] == ["/b", "/a"]


def test_random_trees_never_offer_protected_or_vital_groups(tmp_path) -> None:
    rng = random.Random(1234)
    for trial in range(25):
        h = FakeHost(str(tmp_path / f"t{trial}"))
        paths = ["/"]
        pid = 10
        for i in range(rng.randint(3, 15)):
            parent = rng.choice(paths)
            path = (parent.rstrip("/") + f"/g{i}")
            h.add(path, pids=[pid], current=rng.randint(0, 10_000),
                  oom_group=rng.random() < 0.2)
            paths.append(path)
            pid += 1
        protected = tuple(rng.sample(paths[1:], k=min(2, len(paths) - 1)))
        vital = (rng.choice(paths[1:]),)
        found, _ = collect(CgroupReader(Root(h.base)), policy(), "/",
                           Exclusions(protected, vital))
        for cand in found:
            assert cand.path not in protected
            assert not any(p.startswith(cand.path + "/") for p in protected)
            assert cand.path != "/"
            assert not (vital[0] == cand.path or vital[0].startswith(cand.path + "/"))


def test_kernel_thread_check_reads_only_the_head_of_the_ranking(tmp_path, monkeypatch) -> None:
    h = FakeHost(str(tmp_path))
    for i in range(40):
        h.add(f"/g{i:02d}", pids=[100 + i], current=1000 - i)
    h.kernel_threads.update({100, 102})
    h.write()
    reader = CgroupReader(Root(h.base))
    ex = Exclusions((), ())
    found, skipped = collect(reader, policy(rank=("memory",)), "/", ex,
                             check_kthreads=False)
    ranked = rank(found, ("memory",))
    assert [c.path for c in ranked[:3]] == ["/g00", "/g01", "/g02"]
    stat_reads: list[str] = []
    real = reader.root.read_optional
    monkeypatch.setattr(reader.root.__class__, "read_optional",
                        lambda self, p: (stat_reads.append(p) if p.endswith("/stat") else None)
                        or real(p))
    kept = drop_kernel_thread_holders(reader, ranked, skipped, 5)
    assert [c.path for c in kept[:5]] == ["/g01", "/g03", "/g04", "/g05", "/g06"]
    assert len(kept) == 38
    assert skipped["/g00"] == skipped["/g02"] == "holds a kernel thread"
    assert len(stat_reads) == 7  # the two holders and the five kept, no further
    # With the check on, collect itself skips them (the other callers' default).
    found_all, skipped_all = collect(reader, policy(rank=("memory",)), "/", ex)
    assert skipped_all["/g00"] == "holds a kernel thread" and len(found_all) == 38
