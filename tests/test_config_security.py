"""The daemon, running as root, refuses a configuration anyone but root could change.

See zoomd/config/security.py for the rule. These tests chown files to another uid,
so they need root; as an unprivileged user the rule does not apply (tested too).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zoomd.config import load as load_mod
from zoomd.config import security
from zoomd.config.load import load_config
from zoomd.errors import ConfigError

OTHER_UID = 4242
CONFIG = '[[policy]]\nname = "p"\n[policy.all]\nmemory_pressure_full_above = "50%"\n'

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, root-only rule)")


@pytest.fixture
def etc(tmp_path):
    """A root-owned 0755 directory holding a root-owned 0644 zoomd.toml."""
    d = tmp_path / "etc"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    path = d / "zoomd.toml"
    path.write_text(CONFIG)
    os.chmod(path, 0o644)
    return d


def refused(path, match: str) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        load_config(str(path), secure=True)
    message = str(info.value)
    assert "\n" not in message and "refusing an unsafe configuration" in message
    return message


@needs_root
def test_root_owned_file_in_root_owned_directories_is_accepted(etc) -> None:
    config, files = load_config(str(etc / "zoomd.toml"), secure=True)
    assert [p.name for p in config.policy] == ["p"] and len(files) == 1


@needs_root
@pytest.mark.parametrize(("mode", "who"), [(0o664, "group"), (0o646, "everyone"),
                                           (0o666, "group")])
def test_file_writable_by_group_or_others_is_refused(etc, mode, who) -> None:
    os.chmod(etc / "zoomd.toml", mode)
    message = refused(etc / "zoomd.toml", who)
    assert f"mode {mode:04o}" in message


@needs_root
def test_file_owned_by_another_user_is_refused(etc) -> None:
    os.chown(etc / "zoomd.toml", OTHER_UID, 0)
    refused(etc / "zoomd.toml", f"uid {OTHER_UID}")


@needs_root
@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777])
def test_directory_writable_by_others_is_refused(etc, mode) -> None:
    os.chmod(etc, mode)
    refused(etc / "zoomd.toml", "may replace it")


@needs_root
def test_directory_owned_by_another_user_is_refused(etc) -> None:
    os.chown(etc, OTHER_UID, 0)
    refused(etc / "zoomd.toml", f"uid {OTHER_UID}")


@needs_root
def test_sticky_directory_guards_a_root_owned_file_only(etc) -> None:
    os.chmod(etc, 0o1777)  # like /tmp
    load_config(str(etc / "zoomd.toml"), secure=True)
    os.chown(etc / "zoomd.toml", OTHER_UID, 0)
    refused(etc / "zoomd.toml", "may replace it")


@needs_root
def test_symlink_into_a_place_others_may_write_is_refused(etc, tmp_path) -> None:
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir()
    os.chmod(unsafe, 0o777)
    (unsafe / "real.toml").write_text(CONFIG)
    os.chmod(unsafe / "real.toml", 0o644)
    link = etc / "linked.toml"
    link.symlink_to(unsafe / "real.toml")
    refused(link, "unsafe")
    os.chmod(unsafe, 0o755)  # the same link into a root-only place is fine
    load_config(str(link), secure=True)


@needs_root
def test_symlink_held_by_a_place_others_may_write_is_refused(etc, tmp_path) -> None:
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir()
    os.chmod(unsafe, 0o775)
    (unsafe / "zoomd.toml").symlink_to(etc / "zoomd.toml")
    refused(unsafe / "zoomd.toml", "group")


@needs_root
def test_relative_symlink_chain_is_followed(etc, tmp_path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir(mode=0o755)
    (inner / "a.toml").symlink_to("../etc/zoomd.toml")
    (etc / "b.toml").symlink_to("../inner/a.toml")
    load_config(str(etc / "b.toml"), secure=True)
    os.chmod(inner, 0o777)
    refused(etc / "b.toml", "inner")


@needs_root
def test_drop_in_directory_and_files(etc) -> None:
    d = etc / "zoomd.toml.d"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    drop = d / "10-x.toml"
    drop.write_text('[daemon]\ninterval = "2s"\n')
    os.chmod(drop, 0o644)
    config, files = load_config(str(etc / "zoomd.toml"), secure=True)
    assert config.daemon.interval == 2.0 and len(files) == 2
    os.chmod(d, 0o777)
    refused(etc / "zoomd.toml", "zoomd.toml.d")
    os.chmod(d, 0o755)
    os.chmod(drop, 0o664)
    refused(etc / "zoomd.toml", "10-x.toml")
    os.chmod(drop, 0o644)
    os.chown(drop, OTHER_UID, OTHER_UID)
    refused(etc / "zoomd.toml", "10-x.toml")
    # Without drop-ins (zoomd check --no-drop-ins style) only the main file counts.
    load_config(str(etc / "zoomd.toml"), drop_ins=False, secure=True)


@needs_root
def test_without_secure_nothing_is_checked(etc) -> None:
    os.chmod(etc / "zoomd.toml", 0o666)
    load_config(str(etc / "zoomd.toml"))


def test_unprivileged_zoomd_does_not_apply_the_rule(etc, monkeypatch) -> None:
    os.chmod(etc / "zoomd.toml", 0o666)
    monkeypatch.setattr(load_mod, "must_check", lambda: security.must_check(euid=1000))
    load_config(str(etc / "zoomd.toml"), secure=True)
    assert security.must_check(euid=0) and not security.must_check(euid=1000)


@needs_root
def test_the_shipped_configuration_is_exempt(etc, monkeypatch) -> None:
    os.chmod(etc / "zoomd.toml", 0o666)
    monkeypatch.setattr(load_mod, "shipped_config_path", lambda: str(etc / "zoomd.toml"))
    load_config(str(etc / "zoomd.toml"), secure=True)


@needs_root
def test_daemon_refuses_with_one_line_and_exit_2(etc) -> None:
    os.chmod(etc / "zoomd.toml", 0o664)
    proc = subprocess.run([sys.executable, "-m", "zoomd", "run", "--dry-run", "--config",
                           str(etc / "zoomd.toml"), "--duration", "1"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"zoomd: {etc}/zoomd.toml: refusing an unsafe configuration")


@needs_root
def test_reload_of_an_unsafe_configuration_keeps_the_running_one(etc, tree_path) -> None:
    import io
    import shutil

    from zoomd.daemon.log import Logger
    from zoomd.daemon.loop import Daemon
    from zoomd.kernel.root import Root

    tree = etc.parent / "tree"  # a copy: the daemon must not touch the fixture
    shutil.copytree(tree_path("cgroup2-pure"), tree)
    stream = io.StringIO()
    daemon = Daemon(str(etc / "zoomd.toml"), root=Root(str(tree)),
                    dry_run=True, logger=Logger("json", "debug", stream))
    try:
        (etc / "zoomd.toml").write_text(CONFIG.replace('"p"', '"q"'))
        os.chmod(etc / "zoomd.toml", 0o666)
        daemon._reload_config()
        assert [s.policy.name for s in daemon.engine.states] == ["p"]
        assert "refusing an unsafe configuration" in stream.getvalue()
        os.chmod(etc / "zoomd.toml", 0o644)
        daemon._reload_config()
        assert [s.policy.name for s in daemon.engine.states] == ["q"]
    finally:
        daemon.shutdown()


@needs_root
def test_a_missing_file_is_reported_as_missing(etc) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(etc / "nothing.toml"), secure=True)


NOBODY = 65534


def _owned_by_nobody(*paths) -> None:
    for path in paths:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


@pytest.fixture
def users_dir(tmp_path):
    """home/u/a/b and home/u/a/evil.toml, all owned by an unprivileged uid."""
    u = tmp_path / "home" / "u"
    (u / "a" / "b").mkdir(parents=True)
    (u / "a" / "evil.toml").write_text(CONFIG.replace('"p"', '"evil"'))
    _owned_by_nobody(u, u / "a", u / "a" / "b", u / "a" / "evil.toml")
    return u


@needs_root
@pytest.mark.parametrize("decoy", [False, True], ids=["no-decoy", "root-owned-decoy"])
def test_dotdot_after_a_symlink_goes_where_the_kernel_goes(etc, users_dir, monkeypatch,
                                                           decoy) -> None:
    """`link/../evil.toml` is u's a/evil.toml (the link's target's parent), not
    etc/evil.toml, which lexical normalisation judged instead."""
    (etc / "link").symlink_to(users_dir / "a" / "b")
    if decoy:  # what the lexical path names: safe, and not what is read
        (etc / "evil.toml").write_text(CONFIG)
        os.chmod(etc / "evil.toml", 0o644)
    message = refused(f"{etc}/link/../evil.toml", f"uid {NOBODY}")
    assert "home/u" in message
    monkeypatch.chdir(etc)
    refused("link/../evil.toml", f"uid {NOBODY}")
    refused("link/./../evil.toml", f"uid {NOBODY}")


@needs_root
def test_dotdot_after_a_symlink_into_root_only_places_is_accepted(etc, tmp_path) -> None:
    place = tmp_path / "root-only" / "a"
    (place / "b").mkdir(parents=True)
    (place / "real.toml").write_text(CONFIG)
    os.chmod(place / "real.toml", 0o644)
    (etc / "link").symlink_to(place / "b")
    config, _ = load_config(f"{etc}/link/../real.toml", secure=True)
    assert [p.name for p in config.policy] == ["p"]


@needs_root
def test_daemon_refuses_dotdot_through_a_users_symlink(etc, users_dir, tree_path) -> None:
    (etc / "link").symlink_to(users_dir / "a" / "b")
    proc = subprocess.run([sys.executable, "-m", "zoomd", "run", "--dry-run", "--root",
                           tree_path("cgroup2-pure"), "--config", "link/../evil.toml",
                           "--duration", "0.2"], cwd=etc, capture_output=True, text=True,
                          timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": os.path.dirname(
                              os.path.dirname(os.path.abspath(__file__)))})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing an unsafe configuration" in lines[0], proc.stderr


@needs_root
def test_a_link_to_the_shipped_file_does_not_exempt_the_drop_ins_beside_it(
        tmp_path, monkeypatch) -> None:
    """The shipped zoomd.toml is exempt; a user's link to it, and the user's drop-ins
    in link.d, are not (they were: the whole check was skipped)."""
    u = tmp_path / "u"
    (u / "z.toml.d").mkdir(parents=True)
    (u / "z.toml").symlink_to(load_mod.shipped_config_path())
    (u / "z.toml.d" / "evil.toml").write_text('[daemon]\ninterval = "7s"\n')
    _owned_by_nobody(u, u / "z.toml", u / "z.toml.d", u / "z.toml.d" / "evil.toml")
    refused(u / "z.toml", f"uid {NOBODY}")
    # Without drop-ins it is the shipped file, read by its own name.
    _, files = load_config(str(u / "z.toml"), drop_ins=False, secure=True)
    assert files == [load_mod.shipped_config_path()]
