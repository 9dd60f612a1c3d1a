"""kernel.task_delayacct switch on a directory tree standing in for /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoomd.errors import KernelFileError
from zoomd.kernel.delayacct import SYSCTL, DelayAccounting, read_state
from zoomd.kernel.root import Root


def _tree(tmp_path: Path, value: str | None) -> Root:
    if value is not None:
        path = tmp_path / SYSCTL.lstrip("/")
        path.parent.mkdir(parents=True)
        path.write_text(value)
    return Root(str(tmp_path))


def _value(root: Root) -> str:
    return Path(root.join(SYSCTL)).read_text().strip()


def test_off_is_switched_on_and_restored(tmp_path: Path) -> None:
    root = _tree(tmp_path, "0\n")
    with DelayAccounting(root, enable=True) as acct:
        assert acct.before is not None and not acct.before.on
        assert acct.state.on and _value(root) == "1"
    assert _value(root) == "0"


def test_restored_on_an_exception(tmp_path: Path) -> None:
    root = _tree(tmp_path, "0\n")
    with pytest.raises(RuntimeError), DelayAccounting(root, enable=True):
        raise RuntimeError("boom")
    assert _value(root) == "0"


def test_already_on_is_left_on(tmp_path: Path) -> None:
    root = _tree(tmp_path, "1\n")
    with DelayAccounting(root, enable=True) as acct:
        assert not acct.changed
    assert _value(root) == "1"


def test_not_enabling_only_reads(tmp_path: Path) -> None:
    root = _tree(tmp_path, "0\n")
    with DelayAccounting(root, enable=False) as acct:
        assert not acct.state.on
        assert acct.state.describe == "delay accounting is off"
    assert _value(root) == "0"


def test_someone_else_turning_it_off_meanwhile_is_kept(tmp_path: Path) -> None:
    root = _tree(tmp_path, "0\n")
    with DelayAccounting(root, enable=True):
        Path(root.join(SYSCTL)).write_text("0\n")
    assert _value(root) == "0"


def test_no_switch_means_an_old_kernel_that_accounts(tmp_path: Path) -> None:
    root = _tree(tmp_path, None)
    state = read_state(root)
    assert state.on and not state.switch
    with DelayAccounting(root, enable=True) as acct:
        assert not acct.changed
    assert "kernel < 5.14" in state.describe


def test_garbage_is_an_error_naming_the_file(tmp_path: Path) -> None:
    root = _tree(tmp_path, "maybe\n")
    with pytest.raises(KernelFileError, match=r"task_delayacct.*expected 0 or 1"):
        read_state(root)


def test_unwritable_switch_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zoomd.kernel.delayacct as delayacct

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    root = _tree(tmp_path, "0\n")
    monkeypatch.setattr(delayacct, "open", refuse, raising=False)
    with pytest.raises(KernelFileError, match=r"task_delayacct.*CAP_SYS_ADMIN") as err:
        DelayAccounting(root, enable=True).__enter__()
    assert "\n" not in str(err.value)
