"""oomd.conf as systemd reads it: value syntax from systemd's documentation
(oomd.conf(5), systemd.time(7)), search order, drop-ins, masking and bad values."""

from __future__ import annotations

import os

import pytest

from zoomd.systemd.oomdconf import OomdConf, load_oomd_conf, parse_text
from zoomd.systemd.values import (
    USEC_INFINITY,
    format_bytes,
    format_timespan,
    loadavg_format,
    loadavg_from_float,
    loadavg_from_permyriad,
    parse_permyriad,
    parse_timespan,
    permyriad_to_uint32_scale,
    uint32_scale_to_permyriad,
)

S = 1_000_000


@pytest.mark.parametrize(("text", "seconds"), [
    # systemd.time(7)'s examples of valid time spans
    ("2 h", 7200), ("2hours", 7200), ("48hr", 172800), ("1y 12month", 63115200),
    ("55s500ms", 55.5), ("300ms20s 5day", 432020.3),
    # oomd.conf(5) and the Debian drop-in
    ("30s", 30), ("20s", 20), ("1min 30s", 90), ("20", 20), ("0", 0), ("1.5s", 1.5),
    ("5m", 300), ("2M", 2 * 2629800), ("1w", 604800), ("100us", 0.0001),
])
def test_time_spans(text: str, seconds: float) -> None:
    assert parse_timespan(text) == round(seconds * S)


@pytest.mark.parametrize("text", ["", "-1s", "3.sec", "12.34.56", "5x", "1s x", "infinity s"])
def test_bad_time_spans(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timespan(text)


def test_infinity_and_formatting() -> None:
    assert parse_timespan("infinity") == USEC_INFINITY
    assert [format_timespan(v) for v in (30 * S, 90 * S, 20 * S, 0, 3 * 3600 * S + 60 * S)] \
        == ["30s", "1min 30s", "20s", "0", "3h 1min"]


@pytest.mark.parametrize(("text", "permyriad"), [
    ("90%", 9000), ("60%", 6000), ("12.34%", 1234), ("12.5%", 1250), ("0%", 0),
    ("100%", 10000), ("5‰", 50), ("2.5‰", 25), ("100‱", 100), ("10000‱", 10000),
])
def test_percent_permille_permyriad(text: str, permyriad: int) -> None:
    assert parse_permyriad(text) == permyriad


@pytest.mark.parametrize("text", ["90", "101%", "-5%", "1.234%", "5.%", "x%", "1.25‰", "1.5‱"])
def test_bad_percentages(text: str) -> None:
    with pytest.raises(ValueError):
        parse_permyriad(text)


def test_fixed_point_and_scales_as_systemd_prints_them() -> None:
    assert loadavg_format(loadavg_from_permyriad(6000)) == "60.00"
    assert loadavg_format(loadavg_from_permyriad(1234)) == "12.34"
    assert loadavg_format(loadavg_from_float(0.07)) == "0.07"
    assert uint32_scale_to_permyriad(permyriad_to_uint32_scale(5000)) == 5000
    assert uint32_scale_to_permyriad(2**32 - 1) == 10000
    assert [format_bytes(v) for v in (0, 512, 1536, 23 * 2**30 + 2**29)] \
        == ["0B", "512B", "1.5K", "23.5G"]


def write(root, path: str, text: str) -> str:
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text)
    return str(full)


def test_defaults_without_files(tmp_path) -> None:
    conf = load_oomd_conf(str(tmp_path))
    assert (conf.swap_used_limit, conf.pressure_limit, conf.pressure_duration_usec) \
        == (9000, 6000, 30 * S)
    assert conf.files == () and conf.warnings == ()


def test_shipped_file_commented_out_and_debian_dropin(tmp_path) -> None:
    write(tmp_path, "/etc/systemd/oomd.conf", "[OOM]\n#SwapUsedLimit=90%\n"
          "#DefaultMemoryPressureLimit=60%\n#DefaultMemoryPressureDurationSec=30s\n")
    write(tmp_path, "/usr/lib/systemd/oomd.conf.d/10-oomd-defaults.conf",
          "[OOM]\nDefaultMemoryPressureDurationSec=20s\n")
    conf = load_oomd_conf(str(tmp_path))
    assert conf.pressure_duration_usec == 20 * S and conf.warnings == ()
    assert [os.path.relpath(f, tmp_path) for f in conf.files] == [
        "etc/systemd/oomd.conf", "usr/lib/systemd/oomd.conf.d/10-oomd-defaults.conf"]


def test_search_order_and_dropin_precedence(tmp_path) -> None:
    # The first main file wins (/etc before /run before /usr/lib) ...
    write(tmp_path, "/run/systemd/oomd.conf", "[OOM]\nSwapUsedLimit=80%\n")
    write(tmp_path, "/usr/lib/systemd/oomd.conf", "[OOM]\nSwapUsedLimit=70%\n")
    # ... drop-ins come after it in name order whatever their directory, and a name in
    # /etc hides the same name in /usr/lib.
    write(tmp_path, "/usr/lib/systemd/oomd.conf.d/10-vendor.conf",
          "[OOM]\nDefaultMemoryPressureLimit=50%\nSwapUsedLimit=95%\n")
    write(tmp_path, "/etc/systemd/oomd.conf.d/10-vendor.conf",
          "[OOM]\nDefaultMemoryPressureLimit=40%\n")
    write(tmp_path, "/usr/local/lib/systemd/oomd.conf.d/20-local.conf",
          "[OOM]\nDefaultMemoryPressureDurationSec=1min 30s\n")
    write(tmp_path, "/run/systemd/oomd.conf.d/05-early.conf",
          "[OOM]\nDefaultMemoryPressureLimit=10%\nDefaultMemoryPressureDurationSec=5s\n")
    conf = load_oomd_conf(str(tmp_path))
    assert conf.swap_used_limit == 8000  # /run main; the /usr/lib 10-vendor is hidden
    assert conf.pressure_limit == 4000  # /etc's 10-vendor after /run's 05-early
    assert conf.pressure_duration_usec == 90 * S
    names = [os.path.relpath(f, tmp_path) for f in conf.files]
    assert names == ["run/systemd/oomd.conf", "run/systemd/oomd.conf.d/05-early.conf",
                     "etc/systemd/oomd.conf.d/10-vendor.conf",
                     "usr/local/lib/systemd/oomd.conf.d/20-local.conf"]


def test_dev_null_masks_a_vendor_dropin(tmp_path) -> None:
    write(tmp_path, "/usr/lib/systemd/oomd.conf.d/10-oomd-defaults.conf",
          "[OOM]\nDefaultMemoryPressureDurationSec=20s\n")
    (tmp_path / "etc/systemd/oomd.conf.d").mkdir(parents=True)
    os.symlink("/dev/null", tmp_path / "etc/systemd/oomd.conf.d/10-oomd-defaults.conf")
    conf = load_oomd_conf(str(tmp_path))
    assert conf.pressure_duration_usec == 30 * S and conf.files == ()


def test_bad_values_warn_with_file_line_and_key_and_keep_the_value(tmp_path) -> None:
    good = write(tmp_path, "/etc/systemd/oomd.conf",
                 "[OOM]\nSwapUsedLimit=85%\nDefaultMemoryPressureDurationSec=45s\n")
    bad = write(tmp_path, "/etc/systemd/oomd.conf.d/50-bad.conf", "\n".join([
        "[OOM]",
        "SwapUsedLimit=85",                          # no unit
        "DefaultMemoryPressureLimit=120%",           # above 100%
        "DefaultMemoryPressureDurationSec=500ms",    # under 1 s
        "DefaultMemoryPressureDurationSec=soon",     # not a time span
        "SwapLimit=50%",                             # unknown key
        "PrekillHookTimeoutSec=soon",                # not a time span
        "no equals sign",
        "[Resolve]",                                 # unknown section: ignored
        "DNS=1.1.1.1",
        ""]))
    conf = load_oomd_conf(str(tmp_path))
    assert conf.swap_used_limit == 8500
    assert conf.pressure_limit == 6000
    assert conf.pressure_duration_usec == 45 * S
    assert conf.files == (good, bad)
    text = "\n".join(conf.warnings)
    for line, key in ((2, "SwapUsedLimit=85"), (3, "DefaultMemoryPressureLimit=120%"),
                      (4, "DefaultMemoryPressureDurationSec=500ms"),
                      (5, "DefaultMemoryPressureDurationSec=soon"), (6, "'SwapLimit'"),
                      (7, "PrekillHookTimeoutSec"), (8, "missing '='"),
                      (9, "unknown section 'Resolve'")):
        assert any(w.startswith(f"{bad}:{line}: ") and key in w for w in conf.warnings), \
            (line, key, text)
    assert "DNS" not in text  # inside an ignored section: silent, as systemd


def test_empty_and_zero_duration_mean_the_default() -> None:
    conf = parse_text("[OOM]\nDefaultMemoryPressureDurationSec=10s\n", "a", OomdConf())
    assert parse_text("[OOM]\nDefaultMemoryPressureDurationSec=\n", "b", conf) \
        .pressure_duration_usec == 30 * S
    assert parse_text("[OOM]\nDefaultMemoryPressureDurationSec=0\n", "b", conf) \
        .pressure_duration_usec == 30 * S


def test_continuation_lines_and_comments() -> None:
    conf = parse_text("# comment\n; also\n[OOM]\nDefaultMemoryPressureDurationSec=1min \\\n"
                      "30s\n", "f", OomdConf())
    assert conf.pressure_duration_usec == 90 * S and conf.warnings == ()
