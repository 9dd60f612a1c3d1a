"""`zoomd status --root` on impossible trees (issue 15 item 10): every read bounded in
size and time, nothing outside the root read, and what no kernel writes refused with
one line naming the file and the field, exit 2. The trees are the zram-only-6.18
fixture with one thing changed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from zoomd.errors import KernelFileError
from zoomd.host import HostReader
from zoomd.kernel.hotfile import HotFile
from zoomd.kernel.root import MAX_READ_BYTES, Root, read_text_once

TREE = Path(__file__).parent / "fixtures" / "trees" / "zram-only-6.18"


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(TREE, tree, symlinks=True)
    return tree


def _sub(path: Path, pattern: str, repl: str) -> None:
    text = path.read_text()
    new = re.sub(pattern, repl, text, count=1, flags=re.M)
    assert new != text, pattern
    path.write_text(new)


def _replace(path: Path, make: Callable[[Path], object]) -> None:
    path.unlink()
    make(path)


def _sparse(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate(MAX_READ_BYTES + 1)


CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "MemFree above MemTotal": (
        lambda t: _sub(t / "proc/meminfo", r"^MemFree:.*$", "MemFree: 99999999999 kB"),
        "proc/meminfo: field 'MemFree': 99999999999 kB is above MemTotal"),
    "SwapFree above SwapTotal": (
        lambda t: _sub(t / "proc/meminfo", r"^SwapFree:.*$", "SwapFree: 99999999999 kB"),
        "proc/meminfo: field 'SwapFree': 99999999999 kB is above SwapTotal"),
    "duplicate MemTotal": (
        lambda t: (t / "proc/meminfo").write_text((t / "proc/meminfo").read_text()
                                                  + "MemTotal: 1 kB\n"),
        "proc/meminfo: field 'MemTotal': printed twice"),
    "swap Used above Size": (
        lambda t: _sub(t / "proc/swaps", r"360308", "99999999"),
        "proc/swaps: field '/dev/zram0.Used': 99999999 kB is above Size"),
    "PSI avg10 of 250": (
        lambda t: _sub(t / "proc/pressure/memory", r"some avg10=38.72", "some avg10=250.00"),
        "proc/pressure/memory: field 'some.avg10': 250 is above 100%"),
    "PSI full above some": (
        lambda t: _sub(t / "proc/pressure/io", r"^full (.*) total=\d+",
                       r"full \1 total=99999999999999"),
        "proc/pressure/io: field 'full.total': 99999999999999 is above some.total"),
    "no full line in memory": (
        lambda t: _sub(t / "proc/pressure/memory", r"^full .*\n", ""),
        "proc/pressure/memory: field 'full': no 'full' line"),
    "empty vmstat": (
        lambda t: (t / "proc/vmstat").write_text(""),
        "proc/vmstat: field 'nr_free_pages': missing"),
    "zram without mm_stat": (
        lambda t: (t / "sys/block/zram0/mm_stat").unlink(),
        "sys/block/zram0/mm_stat: missing"),
    "zram sysfs entry a symlink loop": (
        lambda t: (shutil.rmtree(t / "sys/block/zram0"),
                   os.symlink("zram0", t / "sys/block/zram0")),
        "sys/block/zram0"),
    "mm_stat a symlink loop": (
        lambda t: _replace(t / "sys/block/zram0/mm_stat",
                           lambda p: os.symlink("mm_stat", p)),
        "sys/block/zram0/mm_stat: unreadable (Too many levels of symbolic links)"),
    # In the tree, /dev/zero is the tree's (there is none): the host's is never read.
    "meminfo -> /dev/zero": (
        lambda t: _replace(t / "proc/meminfo", lambda p: os.symlink("/dev/zero", p)),
        "proc/meminfo: missing"),
    "meminfo -> ../../../../../../../../../../dev/zero": (
        lambda t: _replace(t / "proc/meminfo",
                           lambda p: os.symlink("../" * 40 + "dev/zero", p)),
        "proc/meminfo: missing"),
    "meminfo a FIFO": (
        lambda t: _replace(t / "proc/meminfo", os.mkfifo),
        "proc/meminfo: a FIFO, not a kernel file"),
    "vmstat a FIFO": (
        lambda t: _replace(t / "proc/vmstat", os.mkfifo),
        "proc/vmstat: a FIFO, not a kernel file"),
    "swaps a directory": (
        lambda t: _replace(t / "proc/swaps", os.mkdir),
        "proc/swaps"),
    "meminfo larger than any kernel file": (
        lambda t: _replace(t / "proc/meminfo", _sparse),
        "proc/meminfo: 33554433 bytes: larger than any kernel file"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_impossible_tree_is_refused_naming_file_and_field(tmp_path, case) -> None:
    make, expected = CASES[case]
    tree = _tree(tmp_path)
    make(tree)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "zoomd", "status", "--sample", "0",
                           "--root", str(tree)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr
    assert f"zoomd: {tree}/{expected}" in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1] == "zoomd: status cannot be trusted: not shown"
    assert len(proc.stderr.splitlines()) == 2, proc.stderr  # one line per problem


def test_no_full_line_in_cpu_pressure_is_an_old_kernel(tmp_path) -> None:
    """cpu pressure has a full line since 5.13 only: its absence is no error."""
    tree = _tree(tmp_path)
    _sub(tree / "proc/pressure/cpu", r"^full .*\n", "")
    proc = subprocess.run([sys.executable, "-m", "zoomd", "status", "--json", "--sample",
                           "0", "--root", str(tree)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert '"full": null' in proc.stdout


def test_absolute_symlink_in_the_tree_stays_in_the_tree(tmp_path) -> None:
    """/proc/meminfo -> /proc/other-meminfo names the tree's file, never the host's."""
    tree = _tree(tmp_path)
    os.rename(tree / "proc/meminfo", tree / "proc/other-meminfo")
    os.symlink("/proc/other-meminfo", tree / "proc/meminfo")
    root = Root(str(tree))
    text = root.read_text("/proc/meminfo")
    assert text.startswith("MemTotal:       24684096 kB")
    with HotFile(root.join("/proc/meminfo")) as hot:
        assert hot.read() == text
    snap = HostReader(root).sample()
    assert snap.meminfo.total == 24684096 * 1024
    # Through a directory link too, and the other helpers.
    shutil.rmtree(tree / "sys/class/block")
    os.symlink("/sys/block", tree / "sys/class/block")
    assert root.exists("/sys/class/block/zram0/mm_stat")
    assert "zram0" in root.listdir("/sys/class/block")
    assert root.realpath("/sys/class/block/zram0") == "/sys/block/zram0"


def test_absolute_symlink_to_the_host_reads_nothing_of_the_host(tmp_path) -> None:
    tree = _tree(tmp_path)
    _replace(tree / "proc/meminfo", lambda p: os.symlink("/proc/meminfo", p))
    with pytest.raises(KernelFileError, match="symbolic links"):
        Root(str(tree)).read_text("/proc/meminfo")
    (tree / "proc/vmstat").unlink()
    os.symlink("/../../../etc/hostname", tree / "proc/vmstat")  # .. stops at the tree
    assert Root(str(tree)).read_optional("/proc/vmstat") is None
    assert not Root(str(tree)).exists("/proc/vmstat")


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_a_device_is_no_kernel_file(path) -> None:
    with pytest.raises(KernelFileError, match="a character device, not a kernel file"):
        read_text_once(path)
    with pytest.raises(KernelFileError, match="a character device, not a kernel file"):
        HotFile(path)


def test_a_fifo_never_blocks(tmp_path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(KernelFileError, match="a FIFO, not a kernel file"):
        read_text_once(str(fifo))
    with pytest.raises(KernelFileError, match="a FIFO, not a kernel file"):
        HotFile(str(fifo))


def test_reads_are_bounded_in_size(tmp_path, monkeypatch) -> None:
    """A file that grows past the bound while read (or whose size lies) is refused."""
    import zoomd.kernel.root as root_mod

    big = tmp_path / "big"
    big.write_bytes(b"x" * (200 << 10))
    monkeypatch.setattr(root_mod, "MAX_READ_BYTES", 100 << 10)
    monkeypatch.setattr(root_mod, "_kind_refusal", lambda st: None)  # size unknown up front
    with pytest.raises(KernelFileError, match="larger than any kernel file"):
        read_text_once(str(big))


def test_hotfile_buffer_stops_growing(tmp_path, monkeypatch) -> None:
    import zoomd.kernel.hotfile as hot_mod

    big = tmp_path / "big"
    big.write_bytes(b"x" * (64 << 10))
    monkeypatch.setattr(hot_mod, "MAX_READ_BYTES", 16 << 10)
    with HotFile(str(big), bufsize=4096) as hot, \
            pytest.raises(KernelFileError, match="larger than any kernel file"):
        hot.read()


def test_live_daemon_tolerates_what_old_and_new_kernels_write(tree_path) -> None:
    """Every fixture tree (4.19 to 6.18, hybrid, writeback, zswap...) still reads."""
    for name in sorted(os.listdir(TREE.parent)):
        if name == "malformed" or not (TREE.parent / name / "proc").is_dir():
            continue
        reader = HostReader(Root(tree_path(name)))
        try:
            reader.sample()
        finally:
            reader.close()
