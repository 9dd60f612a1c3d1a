"""Configuration: typed values, unknown keys, drop-ins, one-line errors, shipped policies."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from zoomd.config.load import dump_config, load_config, shipped_config_path
from zoomd.config.units import parse_duration, parse_percent, parse_size
from zoomd.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("30s", 30.0), ("2min", 120.0), ("1h", 3600.0), (15, 15.0), ("1.5s", 1.5),
])
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-1s", "3 parsecs", True, "1d"])
def test_bad_durations(bad) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_sizes_and_percentages() -> None:
    assert parse_size("512M").resolve(0) == 512 << 20
    assert parse_size("2G").resolve(0) == 2 << 30
    assert parse_size("1GiB").resolve(0) == 1 << 30
    assert parse_size("5%").resolve(1000) == 50
    assert parse_size(4096).resolve(0) == 4096
    assert parse_percent("40%") == 40.0
    for bad in ("lots", "-5M", "101%"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError):
        parse_percent("40")


def test_shipped_config_is_valid_and_is_the_top_level_file() -> None:
    config, files = load_config(shipped_config_path())
    assert files == [shipped_config_path()]
    assert [p.name for p in config.policy] == ["stuck-memory", "sustained-thrash",
                                              "host-stuck", "domain-thrash", "domain-stuck"]
    with open(os.path.join(REPO, "zoomd.toml")) as a, open(shipped_config_path()) as b:
        assert a.read() == b.read()


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


POLICY = """
[[policy]]
name = "p"
monitor = "/user.slice"
for = "5s"
[policy.all]
memory_pressure_full_above = "40%"
"""


def test_unknown_key_names_file_and_key_path(tmp_path) -> None:
    path = _write(tmp_path, "z.toml", POLICY.replace('for = "5s"', 'fro = "5s"'))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: policy[0](p).fro: unknown key"


def test_bad_value_names_what_was_expected(tmp_path) -> None:
    path = _write(tmp_path, "z.toml", POLICY.replace('"40%"', '"forty"'))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "policy[0](p).all.memory_pressure_full_above" in str(err.value)
    assert "percentage" in str(err.value)


def test_policy_without_conditions_is_an_error(tmp_path) -> None:
    path = _write(tmp_path, "z.toml", '[[policy]]\nname = "p"\n')
    with pytest.raises(ConfigError, match="at least one condition"):
        load_config(path)


def test_invalid_toml_and_missing_file(tmp_path) -> None:
    path = _write(tmp_path, "z.toml", "[daemon\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "absent.toml"))


def test_drop_ins_apply_in_name_order_and_merge_policies_by_name(tmp_path) -> None:
    main = _write(tmp_path, "z.toml", POLICY)
    _write(tmp_path, "z.toml.d/20-late.toml", '[daemon]\ninterval = "2s"\n')
    _write(tmp_path, "z.toml.d/10-early.toml",
           '[daemon]\ninterval = "5s"\n[[policy]]\nname = "p"\nfor = "9s"\n'
           '[[policy]]\nname = "q"\n[policy.any]\nall_swap_ram_backed = true\n')
    config, files = load_config(main)
    assert [os.path.basename(f) for f in files] == ["z.toml", "10-early.toml", "20-late.toml"]
    assert config.daemon.interval == 2.0
    assert [p.name for p in config.policy] == ["p", "q"]
    assert config.policy[0].for_ == 9.0
    assert config.policy[0].monitor == "/user.slice"
    assert config.policy[0].all.memory_pressure_full_above == 40.0


def test_error_in_a_drop_in_names_the_drop_in(tmp_path) -> None:
    main = _write(tmp_path, "z.toml", POLICY)
    bad = _write(tmp_path, "z.toml.d/50-bad.toml", '[daemon]\nintervall = "2s"\n')
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value).startswith(f"{bad}: daemon.intervall")


def test_duplicate_policy_names_in_one_file(tmp_path) -> None:
    path = _write(tmp_path, "z.toml", POLICY + POLICY)
    # The same name twice in one file is two entries after merging only across files.
    with pytest.raises(ConfigError, match="unique"):
        load_config(path, drop_ins=False)


@pytest.mark.parametrize("policy_file", sorted(glob.glob(os.path.join(REPO, "policies", "*.toml"))))
def test_every_shipped_policy_passes_zoomd_check(policy_file, tree_path) -> None:
    """Alone (--file-only), and on a host that has the groups it watches."""
    for host in (["--file-only"], ["--root", tree_path("cgroup2-pure")]):
        proc = subprocess.run([sys.executable, "-m", "zoomd", "check", *host, "--config",
                               policy_file], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "[[policy]]" in proc.stdout


def test_systemd_oomd_policy_reproduces_its_defaults() -> None:
    config, _ = load_config(os.path.join(REPO, "policies", "systemd-oomd.toml"))
    (policy,) = config.policy
    assert policy.all.memory_pressure_full_avg10_above == 60.0
    assert policy.for_ == 30.0
    assert policy.all.reclaim_activity is True
    assert policy.rank == ("pgscan", "memory")
    assert policy.post_action_delay == 15.0


def test_check_cli_bad_config_exits_2_with_one_line(tmp_path) -> None:
    path = _write(tmp_path, "z.toml", '[reclaim]\nanon = "magic"\n')
    proc = subprocess.run([sys.executable, "-m", "zoomd", "check", "--config", path],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert "reclaim.anon" in proc.stderr


def test_dump_round_trips(tmp_path) -> None:
    config, _ = load_config(shipped_config_path())
    text = dump_config(config)
    path = _write(tmp_path, "again.toml", text)
    again, _ = load_config(path)
    assert again == config
