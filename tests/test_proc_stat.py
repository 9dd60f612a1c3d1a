"""/proc/PID/stat by position, after the last ')' of comm."""

from __future__ import annotations

from zoomd.kernel.proc_stat import PF_KTHREAD, parse_proc_stat, read_proc_stat
from zoomd.kernel.root import Root

# A 6.x line (52 fields); comm holds a space and a parenthesis, as a process may set.
LINE = ("4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 120394 0 5821 0 31 8 0 0 20 0 "
        "1 0 1533 38912000 2211 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 "
        "0 0 0 0 0 0 0 0 0 0 0\n")


def test_majflt_and_flags_by_position_whatever_comm_holds() -> None:
    stat = parse_proc_stat(LINE)
    assert stat.majflt == 5821 and stat.flags == 4194560 and not stat.kernel_thread
    assert stat.state == "S"


def test_a_kernel_thread_by_its_flag() -> None:
    line = f"2 (kthreadd) S 0 0 0 0 -1 {PF_KTHREAD | 0x40} 0 0 0 0 0 0\n"
    assert parse_proc_stat(line).kernel_thread


def test_a_short_or_odd_line_gives_unknown_fields_not_guesses() -> None:
    assert parse_proc_stat("7 (x) S 1 7 7 0 -1 4194560 0 0").majflt is None
    assert parse_proc_stat("7 (x) S 1 7 7 0 -1 -5 0 0 zz 0 0").flags is None
    assert parse_proc_stat("7 (x) S 1 7 7 0 -1 -5 0 0 zz 0 0").majflt is None
    assert parse_proc_stat("").majflt is None


def test_read_through_the_root_and_a_gone_process(tmp_path) -> None:
    (tmp_path / "proc" / "4242").mkdir(parents=True)
    (tmp_path / "proc" / "4242" / "stat").write_text(LINE)
    root = Root(str(tmp_path))
    stat = read_proc_stat(root, 4242)
    assert stat is not None and stat.majflt == 5821
    assert read_proc_stat(root, 4243) is None
