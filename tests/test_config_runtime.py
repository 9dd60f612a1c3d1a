"""The daemon's plain configuration (zoomd/config/runtime.py) against the pydantic
schema, and the child process that hands it over: no drift, same errors, and no
pydantic in the daemon's process."""

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

SCHEMA_CLASSES = [schema.DaemonSection, schema.ReclaimSection, schema.MetricsSection,
                  schema.Conditions, schema.ProcessRules, schema.Policy, schema.ZramRule,
                  schema.SystemdSection, schema.TaskstatsSection, schema.Hook, schema.Config]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("model", SCHEMA_CLASSES, ids=lambda c: c.__name__)
def test_every_schema_class_has_its_plain_twin(model) -> None:
    plain = runtime.CLASSES[model.__name__]
    assert {f.name for f in dataclasses.fields(plain)} == set(model.model_fields)
    for name, info in model.model_fields.items():
        twin = next(f for f in dataclasses.fields(plain) if f.name == name)
        if info.is_required():
            assert twin.default is dataclasses.MISSING, (model.__name__, name)
            continue
        assert runtime.plain_value(info.default) == twin.default, (model.__name__, name)
    assert set(runtime.CLASSES) == {c.__name__ for c in SCHEMA_CLASSES}


@pytest.mark.parametrize("path", ["zoomd/data/zoomd.toml", "policies/zram-server.toml",
                                  "policies/zram-desktop.toml", "policies/batch-freeze.toml",
                                  "policies/systemd-oomd.toml"])
def test_handover_gives_what_the_schema_validated(path) -> None:
    config, files = load_config(os.path.join(REPO, path))
    plain, plain_files = load_runtime_config(os.path.join(REPO, path))
    assert isinstance(plain, runtime.Config)
    assert plain == schema.to_runtime(config)
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


def _shallow(obj: object) -> dict:
    """Fields as a dict, nested config classes too, but units.Size kept as it is."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = _shallow(value) if type(value).__name__ in runtime.CLASSES else value
    return out


def test_managed_policies_match_what_validation_would_build() -> None:
    from zoomd.systemd.managed import ManagedCgroup, pressure_policies
    from zoomd.systemd.oomdconf import OomdConf

    section = runtime.SystemdSection()
    entry = ManagedCgroup("/system.slice/app.service", "ManagedOOMMemoryPressure")
    built = pressure_policies(entry, OomdConf(), section)
    for policy in built:
        as_dict = _shallow(policy)
        as_dict["for"] = as_dict.pop("for_")
        validated = schema.to_runtime(schema.Policy.model_validate(as_dict))
        assert validated == policy


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


def _literal_values(annotation) -> set:
    """Every name a Literal anywhere in `annotation` allows (tuple[Action, ...] too)."""
    import typing

    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    return set().union(*(_literal_values(a) for a in typing.get_args(annotation)))


@pytest.mark.parametrize("model", SCHEMA_CLASSES, ids=lambda c: c.__name__)
def test_plain_fields_keep_the_schemas_literals(model) -> None:
    """Actions, rank keys, anon modes and the other closed sets of names are the same
    Literal (zoomd/kinds.py) in the schema and in the plain dataclasses the daemon
    runs on, not a bare str on one side."""
    import typing

    hints = typing.get_type_hints(runtime.CLASSES[model.__name__])
    for name, info in model.model_fields.items():
        assert _literal_values(hints[name]) == _literal_values(info.annotation), \
            (model.__name__, name)
