"""Regression tests for the parser bugs the property-based tests found.

Each input here once parsed to a number (or crashed with a non-zoomd exception, or
split a legitimate line in two); see tests/test_fuzz_kernel.py for the properties.
"""

from __future__ import annotations

import os

import pytest
from fakecgroupfs import FakeHost

from zoomd.daemon.sdnotify import Notifier
from zoomd.errors import KernelFileError
from zoomd.kernel.blockdev import classify_block
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.keyvalue import parse_int, parse_name_values, parse_uint
from zoomd.kernel.mountinfo import parse_mountinfo
from zoomd.kernel.proc_cgroup import parse_proc_cgroup
from zoomd.kernel.psi import parse_psi
from zoomd.kernel.root import Root
from zoomd.kernel.swaps import parse_swaps
from zoomd.kernel.zoneinfo import parse_zoneinfo
from zoomd.kernel.zram import parse_mm_stat

NOT_KERNEL_NUMBERS = ["1_000", "٣", "１２", "+5", " 7", "7 ", "0x10", "²"]


@pytest.mark.parametrize("text", NOT_KERNEL_NUMBERS)
def test_int_accepts_only_ascii_decimal(text) -> None:
    # int() takes all but the last two; isdigit() says yes to "²" and int() then fails.
    with pytest.raises(KernelFileError):
        parse_int("f", "x", text)
    with pytest.raises(KernelFileError):
        parse_uint("f", "x", text)
    assert parse_int("f", "x", "-7") == -7
    with pytest.raises(KernelFileError, match="non-negative"):
        parse_uint("f", "x", "-7")


@pytest.mark.parametrize("avg", ["nan", "inf", "-inf", "1e3", "1_0.5", "٣.٥"])
def test_psi_average_that_float_would_take_is_refused(avg) -> None:
    with pytest.raises(KernelFileError, match=r"some\.avg10"):
        parse_psi(f"some avg10={avg} avg60=0.00 avg300=0.00 total=5\n", "p")


def test_psi_negative_total_is_refused() -> None:
    with pytest.raises(KernelFileError, match=r"full\.total"):
        parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"
                  "full avg10=0.00 avg60=0.00 avg300=0.00 total=-5\n", "p")


@pytest.mark.parametrize("value", ["1_000", "٣", "+5", "-1"])
def test_counter_value_is_refused(value) -> None:
    with pytest.raises(KernelFileError, match="pgscan_anon"):
        parse_name_values(f"pgscan_anon {value}\n", "vmstat")


@pytest.mark.parametrize("odd", ["\xa0", "\x85", "\r", "\u2028", "\x1c", "\x0b"])
def test_swap_file_names_with_unicode_spaces_and_breaks(odd) -> None:
    # The kernel escapes only space, tab, newline and backslash; str.split() and
    # str.splitlines() also split at these, which cut the line in two.
    name = f"/swap/a{odd}b"
    text = ("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
            f"{name}                              file\t\t1024\t\t0\t\t-2\n")
    [entry] = parse_swaps(text, "s")
    assert entry.path == name and entry.size_bytes == 1024 * 1024


def test_swap_file_name_of_40_characters_or_more() -> None:
    name = "/" + "s" * 45
    text = ("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
            f"{name} file\t\t1024\t\t0\t\t-2\n")
    assert parse_swaps(text, "s")[0].path == name


def test_mount_point_with_line_separator() -> None:
    text = "30 22 0:26 / /mnt/a\u2028b rw,relatime - tmpfs tmp\x85fs rw\n"
    [mount] = parse_mountinfo(text, "m")
    assert mount.mount_point == "/mnt/a\u2028b" and mount.source == "tmp\x85fs"


def test_mount_device_number_in_other_digits_is_refused() -> None:
    with pytest.raises(KernelFileError, match="minor"):
        parse_mountinfo("30 22 0:٣ / /x rw - tmpfs tmpfs rw\n", "m")


ZONE = ("Node 0, zone   Normal\n  pages free     {free}\n        min      11\n"
        "        low      14\n        high     17\n        managed  3840\n")


def test_zone_without_pages_free_is_refused_not_zero() -> None:
    text = ZONE.format(free=1).replace("  pages free     1\n", "")
    with pytest.raises(KernelFileError, match=r"Normal\.pages free.: missing"):
        parse_zoneinfo(text, "z")
    assert parse_zoneinfo(ZONE.format(free=12), "z")[0].free == 12


def test_zone_line_of_the_wrong_shape_is_refused_not_skipped() -> None:
    with pytest.raises(KernelFileError):
        parse_zoneinfo(ZONE.format(free="1 2"), "z")
    with pytest.raises(KernelFileError):
        parse_zoneinfo(ZONE.format(free=1).replace("min      11", "min 1 1"), "z")


def test_mm_stat_negative_is_refused() -> None:
    with pytest.raises(KernelFileError, match="mem_limit"):
        parse_mm_stat("1 2 3 -4 5\n", "mm")


def test_proc_cgroup_path_with_carriage_return() -> None:
    parsed = parse_proc_cgroup("0::/a\rb/c\u2028d\n4:memory:/m\x85\n", "c")
    assert parsed.v2 == "/a\rb/c\u2028d" and parsed.v1 == {"memory": "/m\x85"}


def test_superscript_digits_do_not_crash_readers(tmp_path) -> None:
    host = FakeHost(str(tmp_path))
    host.add("/g", pids=[42])
    with open(f"{host.base}/proc/42/stat", "w") as f:
        f.write("42 (x) S 1 42 42 0 -1 ² 0 0\n")
    with open(f"{host.base}/sys/fs/cgroup/g/cgroup.procs", "w") as f:
        f.write("4²\n")
    reader = CgroupReader(Root(host.base))
    with pytest.raises(KernelFileError, match="pid"):
        reader.procs("/g")
    from zoomd.daemon.candidates import has_kernel_thread

    with open(f"{host.base}/sys/fs/cgroup/g/cgroup.procs", "w") as f:
        f.write("42\n")
    assert has_kernel_thread(reader, "/g") is False
    os.makedirs(f"{host.base}/sys/block/ram0")
    with open(f"{host.base}/sys/block/ram0/dev", "w") as f:
        f.write("²:0\n")
    assert classify_block(Root(host.base), "ram0").kind == "ramdisk"
    assert Notifier({"WATCHDOG_USEC": "²"}).watchdog_interval is None


@pytest.mark.parametrize("text", ["-1\n", "12\u2028", "1_0\n", "٣\n"])
def test_cgroup_number_file_is_refused(tmp_path, text) -> None:
    host = FakeHost(str(tmp_path))
    host.add("/g", pids=[42], current=5)
    with open(f"{host.base}/sys/fs/cgroup/g/memory.current", "w") as f:
        f.write(text)
    with pytest.raises(KernelFileError, match=r"memory\.current"):
        CgroupReader(Root(host.base)).memory("/g")


# -- configuration ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ['"1e400s"', '"' + "9" * 400 + 's"', "nan", "inf",
                                   "1" + "0" * 400])
def test_config_duration_that_is_no_number_is_refused(tmp_path, value) -> None:
    from zoomd.config.load import load_config
    from zoomd.errors import ConfigError

    path = tmp_path / "z.toml"
    path.write_text(f"[daemon]\ninterval = {value}\n")
    with pytest.raises(ConfigError, match=r"daemon\.interval"):
        load_config(str(path), drop_ins=False)


@pytest.mark.parametrize("value", ['"1_0%"', '"٣%"', '"nan%"', '"1e1%"'])
def test_config_percentage_that_float_would_take_is_refused(tmp_path, value) -> None:
    from zoomd.config.load import load_config
    from zoomd.errors import ConfigError

    path = tmp_path / "z.toml"
    path.write_text(f"[reclaim]\nmin_anon_efficiency = {value}\n")
    with pytest.raises(ConfigError, match="min_anon_efficiency"):
        load_config(str(path), drop_ins=False)


def test_config_size_too_large_for_a_float_is_refused(tmp_path) -> None:
    from zoomd.config.load import load_config
    from zoomd.errors import ConfigError

    path = tmp_path / "z.toml"
    path.write_text('[[policy]]\nname = "p"\n[policy.all]\neffective_available_below = "'
                    + "9" * 400 + 'M"\n')
    with pytest.raises(ConfigError, match="effective_available_below"):
        load_config(str(path), drop_ins=False)


def test_config_error_about_a_key_with_a_newline_is_one_line(tmp_path) -> None:
    from zoomd.config.load import load_config
    from zoomd.errors import ConfigError

    path = tmp_path / "z.toml"
    path.write_text('[daemon]\n"a\\nb" = 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path), drop_ins=False)
    assert "\n" not in str(info.value) and 'daemon."a\\nb": unknown key' in str(info.value)


def test_config_path_through_a_file_is_a_config_error(tmp_path) -> None:
    from zoomd.config.load import load_config
    from zoomd.errors import ConfigError

    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="Not a directory"):
        load_config(str(tmp_path / "f" / "z.toml"))
