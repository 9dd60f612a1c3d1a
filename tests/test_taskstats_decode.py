"""struct taskstats decoding, one byte fixture per layout (tests/fixtures/taskstats)."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest

from zoomd.errors import KernelFileError
from zoomd.kernel.taskstats import LAYOUTS, MEMORY_KINDS, decode, layout_for

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "taskstats"
NAMES = [f"v{v}" for v in range(8, 18)] + ["v18-future"]


def _load(name: str) -> tuple[bytes, dict]:
    return (FIXTURES / f"{name}.bin").read_bytes(), \
        json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_each_layout_decodes_to_the_values_packed(name: str) -> None:
    payload, expected = _load(name)
    stats = decode(payload, byteorder="<")
    assert stats.version == expected["version"]
    assert stats.pid == expected["pid"]
    assert stats.tgid == expected["tgid"]
    assert stats.comm == expected["comm"]
    got = {k: {"count": d.count, "total_ns": d.total_ns, "max_ns": d.max_ns,
               "min_ns": d.min_ns} for k, d in stats.delays.items()}
    assert got == expected["delays"]


def test_kinds_appear_with_the_version_that_added_them() -> None:
    kinds = {v: set(decode(_load(f"v{v}")[0], byteorder="<").delays) for v in range(8, 18)}
    assert kinds[8] == {"cpu", "blkio", "swapin", "freepages"}
    assert kinds[9] - kinds[8] == {"thrashing"}
    assert kinds[11] - kinds[10] == {"compact"}
    assert kinds[13] - kinds[12] == {"wpcopy"}
    assert kinds[14] - kinds[13] == {"irq"}
    assert kinds[17] == kinds[14]


def test_fixtures_are_what_the_builder_writes() -> None:
    """The committed .bin/.json are the builder's output (regenerate with build.py)."""
    spec = importlib.util.spec_from_file_location("ts_build", FIXTURES / "build.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name, (payload, expected) in build.all_fixtures().items():
        assert (FIXTURES / f"{name}.bin").read_bytes() == payload, name
        assert json.loads((FIXTURES / f"{name}.json").read_text()) == expected, name


def test_v16_offsets_are_the_ones_measured_on_the_kernel() -> None:
    """FIELD-NOTES: freepages 312/320, thrashing 328/336, compact 352/360, wpcopy 400/408,
    irq 416/424, then 16 u64 max/min at 432 (struct of 560 bytes)."""
    f = LAYOUTS[16].fields
    assert [f[n][0] for n in ("freepages_count", "freepages_delay_total", "thrashing_count",
                              "thrashing_delay_total", "compact_count", "compact_delay_total",
                              "wpcopy_count", "wpcopy_delay_total", "irq_count",
                              "irq_delay_total", "cpu_delay_max", "irq_delay_min")] == \
        [312, 320, 328, 336, 352, 360, 400, 408, 416, 424, 432, 552]
    assert LAYOUTS[16].size == 560


def test_v15_is_not_read_with_the_v16_layout() -> None:
    """Same size, different places: v15 put max/min after each total."""
    assert LAYOUTS[15].size == LAYOUTS[16].size
    assert LAYOUTS[15].fields["freepages_count"][0] == 360
    assert LAYOUTS[15].fields["cpu_delay_max"][0] == 32


def test_sizes_per_version() -> None:
    assert {v: lay.size for v, lay in LAYOUTS.items()} == {
        8: 328, 9: 344, 10: 352, 11: 368, 12: 400, 13: 416, 14: 432, 15: 560, 16: 560,
        17: 688}


def test_newer_version_reads_with_the_newest_layout() -> None:
    assert layout_for(99) is LAYOUTS[17]


def test_truncated_payload_is_an_error_not_zeros() -> None:
    payload, _ = _load("v16")
    with pytest.raises(KernelFileError, match="needs 560"):
        decode(payload[:432], byteorder="<")


def test_older_than_v8_is_refused() -> None:
    payload = struct.pack("<H", 7) + bytes(400)
    with pytest.raises(KernelFileError, match="older than the oldest"):
        decode(payload, byteorder="<")


def test_empty_payload_is_an_error() -> None:
    with pytest.raises(KernelFileError, match="too short"):
        decode(b"", byteorder="<")


def test_reply_ids_win_over_the_struct() -> None:
    """TGID replies leave ac_pid zero; the id the reply was tagged with is used."""
    payload, expected = _load("v16")
    stats = decode(payload, tgid=77, byteorder="<")
    assert stats.tgid == 77 and stats.pid is None
    stats = decode(payload, pid=78, byteorder="<")
    assert stats.pid == 78 and stats.tgid == expected["tgid"]


def test_memory_total_sums_only_the_kinds_the_version_has() -> None:
    stats = decode(_load("v8")[0], byteorder="<")
    assert stats.total_ns() == stats.delays["swapin"].total_ns + \
        stats.delays["freepages"].total_ns
    assert set(MEMORY_KINDS) - set(stats.delays) == {"thrashing", "compact"}


LIVE = sorted(p.stem for p in FIXTURES.glob("live-*.bin"))


@pytest.mark.parametrize("name", LIVE)
def test_live_captures_still_decode_to_what_was_seen(name: str) -> None:
    payload = (FIXTURES / f"{name}.bin").read_bytes()
    record = json.loads((FIXTURES / f"{name}.json").read_text())
    tagged = record["captured"]["tagged_id"]
    by_pid = record["captured"]["query"].endswith("_PID")
    stats = decode(payload, pid=tagged) if by_pid else decode(payload, tgid=tagged)
    expected = record["expected"]
    assert (stats.version, stats.pid, stats.tgid, stats.comm) == \
        (expected["version"], expected["pid"], expected["tgid"], expected["comm"])
    got = {k: {"count": d.count, "total_ns": d.total_ns, "max_ns": d.max_ns,
               "min_ns": d.min_ns} for k, d in stats.delays.items()}
    assert got == expected["delays"]


@pytest.mark.parametrize("name", LIVE)
def test_live_captures_are_self_consistent(name: str) -> None:
    """Independent of the transcribed layout: in real bytes, every kind's count, total,
    max and min must fit together (count * min <= total <= count * max), the struct's
    own pid/tgid fields must name the task asked for, and the thrashing child must show
    reclaim and swap-in delays."""
    payload = (FIXTURES / f"{name}.bin").read_bytes()
    record = json.loads((FIXTURES / f"{name}.json").read_text())
    tagged = record["captured"]["tagged_id"]
    stats = decode(payload)
    for kind, d in stats.delays.items():
        if d.count:
            assert d.max_ns is not None and d.min_ns is not None
            assert d.count * d.min_ns <= d.total_ns <= d.count * d.max_ns, kind
        else:
            assert d.total_ns == 0, kind
    if record["captured"]["query"].endswith("_PID"):
        assert stats.pid == tagged and stats.tgid == tagged and stats.comm.startswith("python")
    assert stats.delays["freepages"].count > 0 and stats.delays["swapin"].count > 0
