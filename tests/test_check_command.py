"""`zoomd check` shows everything `run` will use and refuses what `run` will refuse
(issue 15, item 3): it left out [[hook]] and [taskstats], skipped the ownership rule,
and passed a missing monitored group or a listen address `run` cannot bind."""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import socket
import subprocess
import sys

import pytest

from zoomd.cli import main
from zoomd.config import load as load_mod
from zoomd.config import security
from zoomd.config.load import dump_config, load_config
from zoomd.config.runtime import Config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICY = '[[policy]]\nname = "p"\nmonitor = "{monitor}"\n[policy.all]\n' \
         'memory_pressure_full_above = "50%"\n'
EVERYTHING = POLICY.format(monitor="/system.slice") + '''
[taskstats]
enabled = true
task_budget = 64

[[hook]]
name = "log"
when = "before"
command = ["/usr/bin/logger", "-t", "zoomd", "a \\"quoted\\" arg\\nwith a newline"]
timeout = "2s"
policies = ["p*"]
'''


@pytest.fixture
def tree(tree_path, tmp_path):
    copy = tmp_path / "tree"  # a copy: nothing may touch the fixture
    shutil.copytree(tree_path("cgroup2-pure"), copy)
    return str(copy)


def write(tmp_path, text: str, name: str = "z.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, 0o644)
    return str(path)


def check(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["check", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_check_shows_hooks_taskstats_and_every_table(tmp_path, capsys, tree) -> None:
    status, out, _ = check(capsys, "--root", tree, "--config", write(tmp_path, EVERYTHING))
    assert status == 0
    assert "[[hook]]" in out and 'command = ["/usr/bin/logger"' in out
    assert "[taskstats]\nenabled = true" in out
    for table in (f.name for f in dataclasses.fields(Config)):
        assert f"[{table}]" in out or f"[[{table}]]" in out, table


def test_the_dump_loads_back_to_the_same_configuration(tmp_path) -> None:
    config, _ = load_config(write(tmp_path, EVERYTHING))
    again, _ = load_config(write(tmp_path, dump_config(config), "again.toml"))
    assert again == config


def test_no_hooks_is_said_not_hidden(tmp_path, capsys, tree) -> None:
    _, out, _ = check(capsys, "--root", tree, "--config",
                      write(tmp_path, POLICY.format(monitor="/")))
    assert "# [[hook]]: none" in out


@pytest.mark.skipif(os.geteuid() != 0, reason="the ownership rule applies to root")
def test_check_as_root_refuses_what_run_refuses_ownership(tmp_path, capsys, tree) -> None:
    path = write(tmp_path, POLICY.format(monitor="/"))
    os.chmod(path, 0o666)
    status, out, err = check(capsys, "--root", tree, "--config", path)
    assert status == 2 and not out
    assert err.count("\n") == 1 and "refusing an unsafe configuration" in err


def test_check_as_a_user_says_what_root_would_refuse(tmp_path, capsys, tree,
                                                     monkeypatch) -> None:
    path = write(tmp_path, POLICY.format(monitor="/"))
    os.chmod(path, 0o666)
    as_user = lambda euid=None: False  # noqa: E731
    monkeypatch.setattr(load_mod, "must_check", as_user)
    monkeypatch.setattr(security, "must_check", as_user)
    status, out, err = check(capsys, "--root", tree, "--config", path)
    assert status == 0 and "[[policy]]" in out
    assert "run as root, `zoomd run` would refuse it" in err and "mode 0666" in err


def test_check_refuses_a_missing_monitored_group(tmp_path, capsys, tree) -> None:
    path = write(tmp_path, POLICY.format(monitor="/no-such.slice"))
    status, out, err = check(capsys, "--root", tree, "--config", path)
    assert status == 2 and not out
    assert err.count("\n") == 1 and "monitored cgroup does not exist" in err
    # --scope re-roots it as for run; --file-only checks the files alone.
    assert check(capsys, "--root", tree, "--scope", "/system.slice", "--config",
                 write(tmp_path, POLICY.format(monitor="/"), "s.toml"))[0] == 0
    assert check(capsys, "--root", tree, "--file-only", "--config", path)[0] == 0


def test_check_and_run_refuse_a_listen_address_they_cannot_bind(tmp_path, capsys,
                                                                tree) -> None:
    path = write(tmp_path, POLICY.format(monitor="/") +
                 '[metrics]\nlisten = "192.0.2.1:9464"\n')  # TEST-NET-1: not ours
    status, out, err = check(capsys, "--root", tree, "--config", path)
    assert status == 2 and not out
    assert err.count("\n") == 1 and "cannot listen on 192.0.2.1:9464" in err
    proc = subprocess.run([sys.executable, "-m", "zoomd", "run", "--dry-run", "--root", tree,
                           "--config", path, "--duration", "0.2"], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 2 and "cannot listen on 192.0.2.1:9464" in proc.stderr


def test_check_says_plainly_when_the_address_is_in_use_now(tmp_path, capsys, tree) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        path = write(tmp_path, POLICY.format(monitor="/") +
                     f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        status, out, err = check(capsys, "--root", tree, "--config", path)
    assert status == 0 and "[[policy]]" in out
    assert f"127.0.0.1:{port}" in err and "in use now" in err


def test_check_and_run_refuse_a_textfile_in_no_directory(tmp_path, capsys, tree) -> None:
    textfile = tmp_path / "missing" / "zoomd.prom"
    path = write(tmp_path, POLICY.format(monitor="/") +
                 f'[metrics]\ntextfile = "{textfile}"\n')
    status, _, err = check(capsys, "--root", tree, "--config", path)
    assert status == 2 and "is not a directory" in err and err.count("\n") == 1
    proc = subprocess.run([sys.executable, "-m", "zoomd", "run", "--dry-run", "--root", tree,
                           "--config", path, "--duration", "0.2"], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 2 and "is not a directory" in proc.stderr, proc.stderr


def test_a_reload_to_an_address_it_cannot_bind_keeps_the_daemon_running(tmp_path,
                                                                        tree) -> None:
    """It raised out of the loop: a SIGHUP stopped the daemon with exit 2, which
    systemd (RestartPreventExitStatus=2) does not restart."""
    from zoomd.daemon.log import Logger
    from zoomd.daemon.loop import Daemon
    from zoomd.kernel.root import Root

    path = write(tmp_path, POLICY.format(monitor="/") + '[metrics]\nlisten = "0"\n')
    stream = io.StringIO()
    daemon = Daemon(path, root=Root(tree), dry_run=True,
                    logger=Logger("json", "debug", stream))
    try:
        write(tmp_path, POLICY.format(monitor="/").replace('"p"', '"q"') +
              '[metrics]\nlisten = "192.0.2.1:9464"\n')
        daemon._reload_config()
        assert [s.policy.name for s in daemon.engine.states] == ["p"]
        assert "cannot listen on 192.0.2.1:9464" in stream.getvalue()
        assert daemon.config.metrics.listen == "0"
    finally:
        daemon.shutdown()


def test_a_reload_that_turns_metrics_on_starts_them(tmp_path, tree) -> None:
    """`check` shows [metrics]; a daemon started without it ignored it on SIGHUP."""
    import urllib.request

    from zoomd.daemon.log import Logger
    from zoomd.daemon.loop import Daemon
    from zoomd.daemon.observers import MetricsObserver
    from zoomd.kernel.root import Root

    path = write(tmp_path, POLICY.format(monitor="/"))
    daemon = Daemon(path, root=Root(tree), dry_run=True,
                    logger=Logger("json", "debug", io.StringIO()))
    try:
        assert not daemon.observers
        write(tmp_path, POLICY.format(monitor="/") + '[metrics]\nlisten = "0"\n')
        daemon._reload_config()
        (obs,) = [o for o in daemon.observers if isinstance(o, MetricsObserver)]
        daemon.tick()
        host, port = obs.server.address
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as reply:
            assert b"zoomd_" in reply.read()
    finally:
        daemon.shutdown()
