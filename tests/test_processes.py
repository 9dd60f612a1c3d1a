"""Per-process mode: the largest process of a group, with protect/prefer rules."""

from __future__ import annotations

from fakecgroupfs import FakeHost

from zoomd.config.runtime import ProcessRules
from zoomd.daemon.processes import choose_process
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root


def make(tmp_path) -> CgroupReader:
    host = FakeHost(str(tmp_path))
    # FakeHost gives each process VmRSS = pid kB: 300 is the largest.
    host.add("/term", pids=[100, 300, 200])
    return CgroupReader(Root(host.base))


def test_largest_process_is_chosen(tmp_path) -> None:
    assert choose_process(make(tmp_path), "/term", None).pid == 300


def test_protected_names_are_skipped(tmp_path) -> None:
    rules = ProcessRules(protect=("^proc300$",))
    assert choose_process(make(tmp_path), "/term", rules).pid == 200


def test_preferred_beats_larger(tmp_path) -> None:
    rules = ProcessRules(prefer=("proc100",))
    assert choose_process(make(tmp_path), "/term", rules).pid == 100


def test_everything_protected_gives_none(tmp_path) -> None:
    rules = ProcessRules(protect=("^proc",))
    assert choose_process(make(tmp_path), "/term", rules) is None


def test_pid1_is_never_chosen(tmp_path) -> None:
    host = FakeHost(str(tmp_path))
    host.add("/init", pids=[1])
    assert choose_process(CgroupReader(Root(host.base)), "/init", None) is None


def test_oom_score_adj_minus_1000_is_never_chosen(tmp_path) -> None:
    """The kernel's own "never kill me" (sshd, zoomd itself) holds for zoomd too."""
    reader = make(tmp_path)
    with open(reader.root.join("/proc/300/oom_score_adj"), "w") as f:
        f.write("-1000\n")
    assert choose_process(reader, "/term", None).pid == 200


def test_direct_only_leaves_child_groups_alone(tmp_path) -> None:
    host = FakeHost(str(tmp_path))
    host.add("/", pids=[150])
    host.add("/child", pids=[900])
    reader = CgroupReader(Root(host.base))
    choice = choose_process(reader, "/", None, direct_only=True)
    assert choice.pid == 150 and choice.rss == 150 * 1024


def test_a_process_is_ranked_on_its_own_share_where_smaps_rollup_says_it(tmp_path) -> None:
    """300 has the largest RSS, but most of it is shared: its Pss is small."""
    reader = make(tmp_path)
    for pid, pss, swap_pss in ((300, 10, 0), (200, 150, 100)):
        with open(reader.root.join(f"/proc/{pid}/smaps_rollup"), "w") as f:
            f.write(f"00400000-7fff [rollup]\nRss: {pid} kB\nPss: {pss} kB\n"
                    f"Swap: 0 kB\nSwapPss: {swap_pss} kB\n")
    choice = choose_process(reader, "/term", None)
    assert choice.pid == 200 and choice.size == 250 * 1024
    assert choice.to_json()["basis"] == "smaps_rollup"
