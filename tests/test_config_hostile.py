"""Hostile configuration values (issue 15 items 4-7): what would break the daemon when
it must act, or silently never match, is refused at load with one line naming the
file and the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from zoomd.config.load import dump_config, load_config
from zoomd.errors import ConfigError

POLICY = """
[[policy]]
name = "p"
monitor = "/"
{policy}
[policy.all]
memory_pressure_full_above = "40%"
{tables}
"""


def _load(tmp_path, text: str):
    path = tmp_path / "z.toml"
    path.write_text(text)
    return load_config(str(path), drop_ins=False)


def _refused(tmp_path, text: str, key: str, *words: str) -> str:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'z.toml'}: {key}: "), message
    for word in words:
        assert word in message, message
    return message


def _policy(policy: str = "", tables: str = "") -> str:
    return POLICY.format(policy=policy, tables=tables)


# -- item 4: regexes compiled at load ----------------------------------------------------
@pytest.mark.parametrize("regex", ["(unclosed", "a{99999999999}", "(" * 5000 + ")" * 5000,
                                   "(?P<x>a)(?P<x>b)", "\\p{L}"])
@pytest.mark.parametrize("key", ["protect", "prefer"])
def test_process_regexes_compile_at_load(tmp_path, key, regex) -> None:
    text = _policy('action = "kill-process"',
                   f"[policy.process]\n{key} = [{_toml(regex)}]\n")
    _refused(tmp_path, text, f"policy[0](p).process.{key}", "not a valid regular expression")


def test_good_process_regexes_load(tmp_path) -> None:
    text = _policy('action = "kill-process"',
                   '[policy.process]\nprotect = ["^(bash|zsh)$"]\nprefer = ["chrom(e|ium)"]\n')
    config, _ = _load(tmp_path, text)
    assert config.policy[0].process.protect == ("^(bash|zsh)$",)


# -- item 5: hooks ---------------------------------------------------------------------------
HOOK = '\n[[hook]]\nname = "{name}"\ncommand = {command}\n'


def test_hook_argv_with_nul_is_refused(tmp_path) -> None:
    text = _policy() + HOOK.format(name="h", command='["/bin/true", "a\\u0000b"]')
    _refused(tmp_path, text, "hook[0](h).command", "NUL")
    text = _policy() + HOOK.format(name="h", command='["/bin/tr\\u0000ue"]')
    _refused(tmp_path, text, "hook[0](h).command", "NUL")


def test_duplicate_hook_names_are_refused(tmp_path) -> None:
    text = _policy() + HOOK.format(name="h", command='["/bin/true"]') * 2
    with pytest.raises(ConfigError, match="hook names must be unique, repeated: h"):
        _load(tmp_path, text)


# -- item 6: durations in a sane range ---------------------------------------------------------
@pytest.mark.parametrize(("table", "key", "value", "shown"), [
    ("daemon", "interval", "0", "between 50ms and 10min"),
    ("daemon", "interval", "1e300", "between 50ms and 10min"),
    ("daemon", "interval", '"99999999999h"', "between 50ms and 10min"),
    ("daemon", "interval", '"1h"', "between 50ms and 10min"),
    ("daemon", "fast_interval", "0", "between 50ms and 10min"),
    ("metrics", "textfile_interval", "0", "between 1s and 1h"),
    ("metrics", "textfile_interval", '"100ms"', "between 1s and 1h"),
    ("reclaim", "efficiency_sustain", '"2h"', "between 0s and 10min"),
    ("daemon", "discover_interval", "0", "between 500ms and 1h"),
])
def test_section_durations_have_a_range(tmp_path, table, key, value, shown) -> None:
    _refused(tmp_path, f"[{table}]\n{key} = {value}\n", f"{table}.{key}", shown)


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("window", "0", "between 100ms and 1h"),
    ("window", "1e300", "between 100ms and 1h"),
    ("for", '"2h"', "between 0s and 1h"),
    ("post_action_delay", '"99999999999h"', "between 0s and 24h"),
    ("thaw_after", "0", "between 100ms and 24h"),
    ("kill_after_frozen", "1e300", "between 0s and 24h"),
])
def test_policy_durations_have_a_range(tmp_path, key, value, shown) -> None:
    _refused(tmp_path, _policy(f"{key} = {value}"), f"policy[0](p).{key}", shown)


def test_hook_timeout_and_zram_rule_have_a_range(tmp_path) -> None:
    text = _policy() + HOOK.format(name="h", command='["/bin/true"]') + "timeout = 0\n"
    _refused(tmp_path, text, "hook[0](h).timeout", "between 100ms and 10min")
    _refused(tmp_path, "[systemd.zram]\nwindow = 0\n", "systemd.zram.window", "100ms")
    _refused(tmp_path, '[systemd.zram]\nfor = "5h"\n', "systemd.zram.for", "1h")


def test_fast_interval_may_not_be_above_interval(tmp_path) -> None:
    _refused(tmp_path, '[daemon]\ninterval = "1s"\nfast_interval = "2s"\n',
             "daemon.fast_interval", "longer than interval")
    _refused(tmp_path, '[daemon]\nfast_interval = "2s"\n', "daemon.fast_interval",
             "longer than interval (1s)")
    # Left unset, it follows a shorter interval rather than refusing a default.
    config, _ = _load(tmp_path, '[daemon]\ninterval = "100ms"\n')
    assert config.daemon.fast_interval == 0.1
    config, _ = _load(tmp_path, '[daemon]\ninterval = "5s"\n')
    assert config.daemon.fast_interval == 0.25
    again = tmp_path / "again.toml"
    again.write_text(dump_config(config))
    assert load_config(str(again), drop_ins=False)[0] == config


# -- item 7: patterns that can never match ---------------------------------------------------
@pytest.mark.parametrize("glob", ["system.slice/sshd.service", "*sshd.service", "?x",
                                  "/system.slice/", "/a//b", "/a/../b", "/./a", "/", ""])
@pytest.mark.parametrize("key", ["protect", "prefer", "avoid"])
def test_absolute_globs_that_never_match(tmp_path, key, glob) -> None:
    _refused(tmp_path, _policy(f"{key} = [{_toml(glob)}]"), f"policy[0](p).{key}",
             "match")


def test_daemon_protect_globs_that_never_match(tmp_path) -> None:
    _refused(tmp_path, '[daemon]\nprotect = ["system.slice/sshd.service"]\n',
             "daemon.protect", "never match", '"/system.slice/sshd.service"')


@pytest.mark.parametrize("glob", ["/app.slice/*", "a/", "a/../b", "./a", ""])
def test_candidate_globs_that_never_match(tmp_path, glob) -> None:
    _refused(tmp_path, _policy(f"candidates = [{_toml(glob)}]"), "policy[0](p).candidates",
             "never match")


@pytest.mark.parametrize("monitor", ["/../unified", "/a/./b", "/a/..", "/a//b", "/a\u0000b"])
def test_monitor_with_another_name_for_a_group(tmp_path, monitor) -> None:
    text = _policy().replace('monitor = "/"', f"monitor = {_toml(monitor)}")
    _refused(tmp_path, text, "policy[0](p).monitor", "components")


@pytest.mark.parametrize(("key", "glob"), [("protect", "**/sshd.service"),
                                           ("protect", "*/init.scope"),
                                           ("prefer", "/user.slice/**"),
                                           ("candidates", "**"),
                                           ("candidates", "*/app.slice/*.scope")])
def test_globs_that_can_match_load(tmp_path, key, glob) -> None:
    config, _ = _load(tmp_path, _policy(f"{key} = [{_toml(glob)}]"))
    assert getattr(config.policy[0], key) == (glob,)


def test_check_refuses_with_one_line_and_exit_2(tmp_path) -> None:
    path = tmp_path / "z.toml"
    path.write_text(_policy('action = "kill-process"', '[policy.process]\nprotect = ["("]\n'))
    proc = subprocess.run([sys.executable, "-m", "zoomd", "check", "--file-only", "--config",
                           str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "policy[0](p).process.protect" in proc.stderr


def _toml(text: str) -> str:
    """A TOML basic string for any text (NUL and all)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# -- item 5: hook programs, judged where they would run ------------------------------------
def _hook_config(tmp_path, program: str) -> str:
    path = tmp_path / "z.toml"
    path.write_text(_policy() + HOOK.format(name="h", command=f'["{program}", "x"]'))
    return str(path)


def _program(directory, mode: int = 0o755):
    directory.mkdir(exist_ok=True)
    program = directory / "hook"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(mode)
    return program


@pytest.mark.parametrize(("make", "why"), [
    (lambda d: d / "absent", "No such file or directory"),
    (lambda d: _program(d / "bin", 0o644), "not executable"),
    (lambda d: (d / "adir").mkdir() or d / "adir", "not a regular file"),
    (lambda d: _program(d / "bin") / "under", "Not a directory"),
])
def test_hook_program_that_cannot_run_is_refused_on_host(tmp_path, make, why) -> None:
    config = _hook_config(tmp_path, str(make(tmp_path)))
    load_config(config, drop_ins=False)  # the file alone is valid (for other hosts)
    with pytest.raises(ConfigError) as err:
        load_config(config, drop_ins=False, on_host=True)
    assert str(err.value).startswith(f"{config}: hook[0](h).command: ")
    assert why in str(err.value)
    proc = subprocess.run([sys.executable, "-m", "zoomd", "check", "--config", config],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "hook[0](h).command" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "zoomd", "check", "--file-only", "--config",
                           config], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_hook_program_that_can_run_loads_on_host(tmp_path) -> None:
    program = _program(tmp_path / "bin")
    config, _ = load_config(_hook_config(tmp_path, str(program)), drop_ins=False,
                            on_host=True)
    assert config.hook[0].command == (str(program), "x")


needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="the ownership rule applies to a zoomd run as root")


@needs_root
@pytest.mark.parametrize("unsafe", ["directory", "file", "owner"])
def test_root_refuses_a_hook_program_others_may_change(tmp_path, unsafe) -> None:
    program = _program(tmp_path / "bin")
    if unsafe == "directory":
        (tmp_path / "bin").chmod(0o777)  # anyone may replace the program
    elif unsafe == "file":
        program.chmod(0o777)
    else:
        os.chown(program, 1000, 1000)
    config = _hook_config(tmp_path, str(program))
    with pytest.raises(ConfigError, match="unsafe hook program") as err:
        load_config(config, drop_ins=False, on_host=True)
    assert str(err.value).startswith(f"{config}: hook[0](h).command: ")
    # run: the validating child refuses it, one line, before anything starts.
    proc = subprocess.run([sys.executable, "-m", "zoomd", "run", "--dry-run", "--duration",
                           "1", "--config", config], capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "unsafe hook program" in proc.stderr


# -- names and values that would forge a log line ---------------------------------------
@pytest.mark.parametrize("name", ["a\nb", "a\rb", "tab\there", "zw\u200bsp", "ls\u2028x",
                                  "x" * 129])
def test_policy_names_are_printable_and_bounded(tmp_path, name) -> None:
    """Names go into journal and JSON log lines, metrics labels and hooks' environment."""
    text = _policy().replace('name = "p"', f"name = {json.dumps(name)}")
    shown = name if name.isprintable() else json.dumps(name)  # as the loader names it
    _refused(tmp_path, text, f"policy[0]({shown}).name", "policy name")


def test_a_policy_name_cannot_pose_as_a_template_instance(tmp_path) -> None:
    text = _policy().replace('name = "p"', 'name = "domain-thrash@/box"')
    _refused(tmp_path, text, 'policy[0]("domain-thrash@/box").name', "'@'")


@pytest.mark.parametrize(("key", "value"), [
    ("interval", "1\\ns"), ("interval", "1s\\n"), ("interval", "\\n1s"),
    ("post_action_delay", "10s\\n")])
def test_a_newline_in_a_duration_is_refused_not_read_around(tmp_path, key, value) -> None:
    if key == "interval":
        text = f'[daemon]\ninterval = "{value}"\n' + _policy()
        _refused(tmp_path, text, "daemon.interval", "duration")
    else:
        text = _policy(f'{key} = "{value}"')
        _refused(tmp_path, text, f"policy[0](p).{key}", "duration")


def test_a_newline_in_a_size_or_percent_is_refused(tmp_path) -> None:
    text = _policy().replace('memory_pressure_full_above = "40%"',
                             'memory_pressure_full_above = "40%\\n"')
    _refused(tmp_path, text, "policy[0](p).all.memory_pressure_full_above")
