"""Stall rates and the budgeted per-cgroup sampler, on a fake cgroupfs and fake taskstats."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from fakecgroupfs import FakeHost

from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root
from zoomd.kernel.taskstats import Delay, TaskStats
from zoomd.model.stall_rates import StallFigures, dominant_kind, memory_rate, task_rates
from zoomd.stallsampler import LIST_FACTOR, StallSampler

NS = 1_000_000_000


def stats(tgid: int, **totals_s: float) -> TaskStats:
    kinds = ("cpu", "blkio", "swapin", "freepages", "thrashing", "compact")
    delays = {k: Delay(int(totals_s.get(k, 0) * 1000), int(totals_s.get(k, 0) * NS))
              for k in kinds}
    return TaskStats(16, None, tgid, "", MappingProxyType(delays))


class FakeSource:
    """Delay totals that grow by `per_s` seconds of stall per second of the fake clock."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.per_s: dict[int, dict[str, float]] = {}
        self.asked: list[int] = []
        self.gone: set[int] = set()

    def tgid(self, tgid: int) -> TaskStats | None:
        self.asked.append(tgid)
        if tgid in self.gone:
            return None
        rates = self.per_s.get(tgid, {})
        return stats(tgid, **{k: v * self.clock[0] for k, v in rates.items()})


@pytest.fixture
def host(tmp_path) -> FakeHost:
    fake = FakeHost(str(tmp_path))
    fake.add("/work.slice", pids=[10, 11])
    fake.add("/work.slice/db", pids=[12])
    fake.add("/user.slice", pids=[20])
    return fake


def _sampler(host: FakeHost, budget: int = 16, rotate: bool = True):
    clock = [100.0]
    source = FakeSource(clock)
    reader = CgroupReader(Root(host.base))
    sampler = StallSampler(source, reader, budget, rotate=rotate, clock=lambda: clock[0])
    return sampler, source, clock


def test_rates_are_stall_seconds_per_second() -> None:
    before, after = stats(1, freepages=1.0, swapin=0.5), stats(1, freepages=2.6, swapin=0.9)
    rates = task_rates(before, after, 2.0)
    assert rates is not None
    assert rates["freepages"] == pytest.approx(0.8)
    assert rates["swapin"] == pytest.approx(0.2)


def test_totals_going_backwards_mean_another_task() -> None:
    assert task_rates(stats(1, freepages=5.0), stats(1, freepages=1.0), 1.0) is None
    assert task_rates(stats(1), stats(1), 0.0) is None


def test_swapin_and_thrashing_are_not_counted_twice() -> None:
    rates = {"freepages": 0.2, "compact": 0.1, "swapin": 0.5, "thrashing": 0.4}
    assert memory_rate(rates) == pytest.approx(0.8)
    figures = StallFigures.of_task(rates)
    assert figures.memory_sum == pytest.approx(1.2)
    assert figures.kind == "swapin"
    assert dominant_kind({"cpu": 3.0}) is None


def test_a_group_adds_its_tasks_memory_figures() -> None:
    one = StallFigures.of_task({"freepages": 0.6, "swapin": 0.1})
    two = StallFigures.of_task({"thrashing": 0.2})
    group = StallFigures.of_group([one, two])
    assert group.memory == pytest.approx(0.9)  # not 0.6 + max(0.1, 0.2)
    assert group.rates["freepages"] == pytest.approx(0.6)
    assert group.kind == "freepages"


def test_groups_sum_their_subtree_after_two_samples(host: FakeHost) -> None:
    sampler, source, clock = _sampler(host)
    source.per_s = {10: {"freepages": 0.5}, 11: {"thrashing": 0.25, "swapin": 0.25},
                    12: {"compact": 0.1}, 20: {}}
    first = sampler.sample(["/work.slice", "/user.slice"])
    assert first.processes == ()  # nothing to compare with yet
    assert first.groups["/work.slice"].rated == 0
    clock[0] += 2.0
    second = sampler.sample(["/work.slice", "/user.slice"])
    work = second.groups["/work.slice"]
    assert (work.listed, work.sampled, work.rated, work.complete) == (3, 3, 3, True)
    assert work.figures.memory == pytest.approx(0.5 + 0.25 + 0.1)
    assert work.figures.rates["freepages"] == pytest.approx(0.5)
    assert second.groups["/user.slice"].figures.memory == 0.0
    by_pid = {p.tgid: p for p in second.processes}
    assert by_pid[11].figures.kind in ("thrashing", "swapin")
    assert by_pid[10].seconds == pytest.approx(2.0)


def test_budget_caps_queries_and_says_the_figure_is_partial(host: FakeHost) -> None:
    sampler, source, clock = _sampler(host, budget=2, rotate=False)
    sampler.sample(["/work.slice", "/user.slice"])
    assert len(source.asked) == 2
    # Round robin: each group gets a share before any group gets a second one.
    assert set(source.asked) == {10, 20}
    clock[0] += 1.0
    second = sampler.sample(["/work.slice", "/user.slice"])
    assert second.queries == 2
    work = second.groups["/work.slice"]
    assert (work.listed, work.sampled, work.rated, work.complete) == (3, 1, 1, False)


def test_rotation_reaches_every_task_over_calls(host: FakeHost) -> None:
    sampler, source, clock = _sampler(host, budget=1, rotate=True)
    for _ in range(3):
        sampler.sample(["/work.slice"])
        clock[0] += 1.0
    assert sorted(source.asked) == [10, 11, 12]


def test_a_task_asked_for_twice_in_nested_groups_is_queried_once(host: FakeHost) -> None:
    sampler, source, _ = _sampler(host)
    sampler.sample(["/work.slice", "/work.slice/db"])
    assert sorted(source.asked) == [10, 11, 12]


def test_exited_tasks_are_forgotten_and_kernel_threads_skipped(host: FakeHost) -> None:
    host.add("/", pids=[1, 2])
    with open(f"{host.base}/proc/2/cmdline", "w"):
        pass  # a kernel thread: empty command line
    sampler, source, clock = _sampler(host)
    sampler.sample(["/"])
    assert 2 not in source.asked
    source.gone.add(10)
    clock[0] += 1.0
    second = sampler.sample(["/work.slice"])
    assert 10 not in {p.tgid for p in second.processes}
    assert second.groups["/work.slice"].rated == 2


def test_listing_cap_is_reported(tmp_path) -> None:
    fake = FakeHost(str(tmp_path))
    fake.add("/big", pids=list(range(100, 100 + LIST_FACTOR + 3)))
    sampler, _, _ = _sampler(fake, budget=1)
    sample = sampler.sample(["/big"])
    assert sample.groups["/big"].capped and sample.groups["/big"].listed == LIST_FACTOR
