"""The daemon's plain configuration (zoomd/config/runtime.py), validated by pydantic
in the child process that hands it over: the same configuration and errors as
`zoomd check`, one definition, and no pydantic in the daemon's process."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from zoomd.config import runtime, schema
from zoomd.config.handover import load_runtime_config
from zoomd.config.load import load_config, shipped_config_path
from zoomd.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("path", ["zoomd/data/zoomd.toml", "policies/zram-server.toml",
                                  "policies/zram-desktop.toml", "policies/batch-freeze.toml",
                                  "policies/systemd-oomd.toml"])
def test_handover_gives_what_check_validated(path) -> None:
    config, files = load_config(os.path.join(REPO, path))
    plain, plain_files = load_runtime_config(os.path.join(REPO, path))
    assert isinstance(plain, runtime.Config)
    assert plain == config
    assert plain_files == files


def test_handover_errors_are_the_same_one_line(tmp_path) -> None:
    bad = tmp_path / "zoomd.toml"
    bad.write_text('[[policy]]\nname = "x"\nwindow = "soon"\n[policy.all]\n'
                   'memory_pressure_full_above = "40%"\n')
    with pytest.raises(ConfigError) as direct:
        load_config(str(bad))
    with pytest.raises(ConfigError) as handed:
        load_runtime_config(str(bad))
    assert str(handed.value) == str(direct.value)
    assert "policy[0].window" in str(handed.value) or "window" in str(handed.value)
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as gone:
        load_runtime_config(str(missing))
    assert str(missing) in str(gone.value)


def test_managed_policies_match_what_validation_would_build() -> None:
    from zoomd.systemd.managed import ManagedCgroup, pressure_policies
    from zoomd.systemd.oomdconf import OomdConf

    section = runtime.SystemdSection()
    entry = ManagedCgroup("/system.slice/app.service", "ManagedOOMMemoryPressure")
    built = pressure_policies(entry, OomdConf(), section)
    for policy in built:
        assert schema.validate(runtime.plain(policy), runtime.Policy) == policy


@pytest.mark.parametrize("extra", ["", "record=TRACE, "], ids=["plain", "recording"])
def test_the_daemon_process_never_imports_pydantic(extra: str, tmp_path) -> None:
    extra = extra.replace("TRACE", repr(str(tmp_path / "t.jsonl")))
    code = (
        "import sys\n"
        "from zoomd.cli import build_parser\n"
        "build_parser()\n"
        "from zoomd.daemon.loop import Daemon\n"
        "from zoomd.kernel.root import Root\n"
        f"d = Daemon({shipped_config_path()!r}, root=Root('/'), dry_run=True, {extra}"
        "duration=0.5)\n"
        "d.run()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'pydantic_core')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_pending_load_runs_beside_the_caller_and_gives_the_same_answer() -> None:
    from zoomd.config.handover import PendingLoad

    path = os.path.join(REPO, "zoomd/data/zoomd.toml")
    pending = PendingLoad(path)
    assert not pending.done  # an interpreter start later: the caller was not held up
    pending.wait()
    config, files = pending.result()
    assert (config, files) == load_runtime_config(path)


def test_pending_load_errors_and_cancel(tmp_path) -> None:
    from zoomd.config.handover import PendingLoad

    bad = tmp_path / "zoomd.toml"
    bad.write_text("[daemon]\nintervall = 1\n")
    pending = PendingLoad(str(bad))
    pending.wait()
    with pytest.raises(ConfigError, match="intervall"):
        pending.result()
    slow = PendingLoad(str(bad))
    slow.cancel()
    assert slow.proc is not None and slow.proc.returncode is not None  # reaped


def test_the_configuration_is_defined_once() -> None:
    """The validating side adds no table of its own: what it returns is the daemon's
    plain classes, and the [reclaim] table is the reclaim model's parameters."""
    from zoomd.model.reclaim import ModelParams

    assert not [name for name, value in vars(schema).items()
                if isinstance(value, type) and dataclasses.is_dataclass(value)]
    assert isinstance(schema.validate({"reclaim": {"anon": "kernel"}}).reclaim, ModelParams)
    assert schema.validate({}) == runtime.Config()
