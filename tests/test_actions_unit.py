"""Effectors on fake cgroup trees (plain files) with real child processes.

The fake cgroup.procs files list `sleep 60` children this test starts, so the pidfd
path really kills processes while the tree itself is only files in tmp_path.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zoomd.actions import (
    ActionBackend,
    ActionOutcome,
    CgroupfsBackend,
    DryRunBackend,
    RecordingBackend,
    freeze_cgroup,
    kill_cgroup,
    kill_process,
    thaw_cgroup,
)
from zoomd.actions import kill as kill_mod
from zoomd.actions.safety import proc_stat


class Children:
    """`sleep 60` processes started by this test; only these are ever killed in cleanup."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 1) -> list[int]:
        new = [subprocess.Popen(["sleep", "60"]) for _ in range(n)]
        self.procs.extend(new)
        return [p.pid for p in new]

    def proc(self, pid: int) -> subprocess.Popen[bytes]:
        return next(p for p in self.procs if p.pid == pid)

    def killed(self, pid: int) -> bool:
        """Reaps the child: True when it died of SIGKILL."""
        return self.proc(pid).wait(timeout=5) == -signal.SIGKILL

    def alive(self, pid: int) -> bool:
        return self.proc(pid).poll() is None

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=5)


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.cleanup()


def fake_group(path: Path, pids: list[int], **files: str) -> Path:
    """A directory that looks like a cgroup: cgroup.procs plus any other files given."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))
    for name, content in files.items():
        (path / name.replace("_", ".")).write_text(content)
    return path


def snapshot(tree: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in tree.rglob("*") if p.is_file()}


# -- kill: pidfd path -------------------------------------------------------------------


def test_pidfd_fallback_when_cgroup_kill_missing(tmp_path: Path, children: Children) -> None:
    top = children.start(3)
    nested = children.start(1)
    group = fake_group(tmp_path / "victim", top)
    fake_group(group / "sub" / "leaf", nested)  # descendants count too
    fake_group(group / "sub", [])

    outcome = kill_cgroup(str(group))

    assert outcome.ok, outcome.error
    assert outcome.method == "pidfd"
    assert sorted(outcome.pids) == sorted(top + nested)
    assert outcome.seconds_to_effect is not None and 0 <= outcome.seconds_to_effect < 5
    assert outcome.error is None and outcome.memory_freed_bytes is None
    assert all(children.killed(p) for p in top + nested)


def test_use_cgroup_kill_false_leaves_cgroup_kill_alone(tmp_path: Path,
                                                        children: Children) -> None:
    pids = children.start(2)
    group = fake_group(tmp_path / "victim", pids, cgroup_kill="")

    outcome = kill_cgroup(str(group), use_cgroup_kill=False)

    assert outcome.ok and outcome.method == "pidfd"
    assert (group / "cgroup.kill").read_text() == ""
    assert all(children.killed(p) for p in pids)


def test_cgroup_kill_written_then_stragglers_killed_by_pidfd(tmp_path: Path,
                                                             children: Children) -> None:
    # A plain file accepts the write but kills nothing: the processes "outlive"
    # cgroup.kill, which is what happens to a process moved in after the write.
    pids = children.start(2)
    group = fake_group(tmp_path / "victim", pids, cgroup_kill="")

    outcome = kill_cgroup(str(group))

    assert outcome.ok and outcome.method == "cgroup.kill"
    assert (group / "cgroup.kill").read_text() == "1"
    assert outcome.error is not None and "SIGKILLed again by pidfd" in outcome.error
    assert outcome.seconds_to_effect is not None
    assert outcome.seconds_to_effect >= kill_mod.STRAGGLER_GRACE_S
    assert all(children.killed(p) for p in pids)


def test_cgroup_kill_error_falls_back_to_pidfd(tmp_path: Path, children: Children) -> None:
    pids = children.start(2)
    group = fake_group(tmp_path / "victim", pids)
    (group / "cgroup.kill").mkdir()  # writing it fails with EISDIR

    outcome = kill_cgroup(str(group))

    assert outcome.ok and outcome.method == "pidfd"
    assert outcome.error == f"fell back to pidfd: {group}/cgroup.kill: Is a directory"
    assert all(children.killed(p) for p in pids)


def test_memory_freed_from_usage_file(tmp_path: Path, children: Children,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pids = children.start(1)
    group = fake_group(tmp_path / "victim", pids, memory_current="1000\n")
    readings = iter([1000, 400])
    seen: list[str | None] = []

    def fake_usage(path: str | None) -> int | None:
        seen.append(path)
        return next(readings)

    monkeypatch.setattr(kill_mod, "read_usage", fake_usage)
    outcome = kill_cgroup(str(group), usage_file=str(group / "memory.current"))

    assert outcome.ok and outcome.memory_freed_bytes == 600
    assert seen == [str(group / "memory.current")] * 2


def test_usage_file_measured_for_real(tmp_path: Path, children: Children) -> None:
    group = fake_group(tmp_path / "victim", children.start(1), memory_current="4096\n")
    outcome = kill_cgroup(str(group), usage_file=str(group / "memory.current"))
    assert outcome.ok and outcome.memory_freed_bytes == 0  # a file nobody changed


def test_unreadable_usage_file_is_not_a_failure(tmp_path: Path, children: Children) -> None:
    group = fake_group(tmp_path / "victim", children.start(1))
    outcome = kill_cgroup(str(group), usage_file=str(group / "memory.current"))
    assert outcome.ok and outcome.memory_freed_bytes is None


def test_timeout_reports_what_is_left(tmp_path: Path, children: Children,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pids = children.start(1)
    group = fake_group(tmp_path / "victim", pids)
    monkeypatch.setattr(kill_mod, "send_sigkill", lambda fd, pid: True)  # signal "lost"

    outcome = kill_cgroup(str(group), timeout_s=0.2)

    assert not outcome.ok and outcome.seconds_to_effect is None
    assert outcome.error == f"{group}: 1 processes still there after 0.2s: {pids[0]}"
    assert outcome.pids == tuple(pids)
    assert children.alive(pids[0])


def test_empty_group_is_killed_trivially(tmp_path: Path) -> None:
    outcome = kill_cgroup(str(fake_group(tmp_path / "victim", [])))
    assert outcome.ok and outcome.pids == ()


# -- kill: refusals and errors ----------------------------------------------------------


@pytest.mark.parametrize("who", ["init", "self", "protected"])
@pytest.mark.parametrize("with_cgroup_kill", [False, True])
def test_forbidden_pid_means_nothing_is_killed(tmp_path: Path, children: Children, who: str,
                                               with_cgroup_kill: bool) -> None:
    pids = children.start(3)
    forbidden = {"init": 1, "self": os.getpid(), "protected": pids[1]}[who]
    extra = {"cgroup_kill": ""} if with_cgroup_kill else {}
    group = fake_group(tmp_path / "victim", [pids[0], pids[2]], **extra)
    fake_group(group / "child", [forbidden] if who != "protected" else [pids[1]])

    outcome = kill_cgroup(str(group), protected_pids=frozenset({pids[1]}))

    assert not outcome.ok and outcome.pids == ()
    assert outcome.error is not None and f"pid {forbidden} is" in outcome.error
    assert "\n" not in outcome.error
    assert all(children.alive(p) for p in pids)
    if with_cgroup_kill:
        assert (group / "cgroup.kill").read_text() == ""


def _a_kernel_thread() -> int | None:
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat.kernel_thread:
                return int(name)
    return None


def test_kernel_thread_means_nothing_is_killed(tmp_path: Path, children: Children) -> None:
    kthread = _a_kernel_thread()
    if kthread is None:
        pytest.skip("no kernel thread visible in /proc (pid namespace)")
    pids = children.start(1)
    group = fake_group(tmp_path / "victim", [*pids, kthread])

    outcome = kill_cgroup(str(group))

    assert not outcome.ok
    assert outcome.error is not None and f"pid {kthread} is a kernel thread" in outcome.error
    assert children.alive(pids[0])


def test_vanished_group_is_one_line_error(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    outcome = kill_cgroup(str(gone))
    assert not outcome.ok
    assert outcome.error == f"{gone}: No such file or directory"
    assert outcome.pids == () and outcome.seconds_to_effect is None


def test_garbage_in_cgroup_procs_is_an_outcome_not_a_traceback(tmp_path: Path) -> None:
    group = tmp_path / "victim"
    group.mkdir()
    (group / "cgroup.procs").write_text("12 twelve\n")
    outcome = kill_cgroup(str(group))
    assert not outcome.ok
    assert outcome.error == f"{group}/cgroup.procs: not a list of pids"


def test_missing_cgroup_procs(tmp_path: Path) -> None:
    outcome = kill_cgroup(str(tmp_path))
    assert not outcome.ok
    assert outcome.error == f"{tmp_path}/cgroup.procs: No such file or directory"


# -- kill_process -----------------------------------------------------------------------


def test_kill_process_kills_only_that_process(children: Children) -> None:
    victim, bystander = children.start(2)
    outcome = kill_process(victim)
    assert outcome.ok and outcome.method == "pidfd" and outcome.action == "kill-process"
    assert outcome.target == f"pid:{victim}" and outcome.pids == (victim,)
    assert outcome.seconds_to_effect is not None and outcome.seconds_to_effect < 5
    assert children.killed(victim) and children.alive(bystander)


@pytest.mark.parametrize("who", ["init", "self", "protected"])
def test_kill_process_refusals(children: Children, who: str) -> None:
    (child,) = children.start(1)
    pid = {"init": 1, "self": os.getpid(), "protected": child}[who]
    outcome = kill_process(pid, protected_pids=frozenset({child}))
    assert not outcome.ok and outcome.pids == ()
    assert outcome.error is not None and outcome.error.startswith(f"pid:{pid}: refusing: ")
    assert children.alive(child)


def test_kill_process_gone(children: Children) -> None:
    (child,) = children.start(1)
    children.proc(child).kill()
    children.proc(child).wait()
    outcome = kill_process(child)
    assert not outcome.ok and outcome.error == f"pid:{child}: No such process"


# -- freeze / thaw ----------------------------------------------------------------------


def test_freeze_v2_waits_for_frozen(tmp_path: Path) -> None:
    group = fake_group(tmp_path / "victim", [], cgroup_freeze="0\n",
                       cgroup_events="populated 0\nfrozen 0\n")

    def kernel() -> None:  # what the kernel does some time after the write
        time.sleep(0.15)
        (group / "cgroup.events").write_text("populated 0\nfrozen 1\n")

    t = threading.Thread(target=kernel)
    t.start()
    outcome = freeze_cgroup(str(group), None, timeout_s=3)
    t.join()

    assert outcome.ok and outcome.method == "cgroup.freeze", outcome.error
    assert (group / "cgroup.freeze").read_text().strip() == "1"
    assert outcome.seconds_to_effect is not None and outcome.seconds_to_effect >= 0.1


def test_a_freeze_is_written_at_once_and_seen_frozen_by_a_later_step(tmp_path: Path) -> None:
    """The loop's form: start_freeze_cgroup returns without waiting for `frozen 1`;
    each step() looks once; wake_in() says when to look again."""
    group = fake_group(tmp_path / "victim", [], cgroup_freeze="0\n",
                       cgroup_events="populated 0\nfrozen 0\n")
    started = time.monotonic()
    change = CgroupfsBackend().start_freeze_cgroup(str(group), None, timeout_s=3)
    assert time.monotonic() - started < 0.05
    assert (group / "cgroup.freeze").read_text().strip() == "1"
    assert change.step() is None and change.fds() == []
    wake = change.wake_in()
    assert wake is not None and 0 < wake <= 0.05
    (group / "cgroup.events").write_text("populated 0\nfrozen 1\n")  # the kernel, later
    outcome = change.step()
    change.close()
    assert outcome is not None and outcome.ok and outcome.method == "cgroup.freeze"
    assert change.wake_in() is None


def test_freeze_v2_timeout(tmp_path: Path) -> None:
    group = fake_group(tmp_path / "victim", [], cgroup_freeze="0\n",
                       cgroup_events="populated 0\nfrozen 0\n")
    outcome = freeze_cgroup(str(group), None, timeout_s=0.2)
    assert not outcome.ok and outcome.error == f"{group}: not frozen 1 after 0.2s"


def test_thaw_v2(tmp_path: Path) -> None:
    group = fake_group(tmp_path / "victim", [], cgroup_freeze="1\n",
                       cgroup_events="populated 0\nfrozen 0\n")
    outcome = thaw_cgroup(str(group), None)
    assert outcome.ok and outcome.action == "thaw"
    assert (group / "cgroup.freeze").read_text().strip() == "0"


def test_freeze_falls_back_to_v1_freezer(tmp_path: Path) -> None:
    v2 = fake_group(tmp_path / "v2" / "victim", [])  # no cgroup.freeze (e.g. old kernel)
    v1 = fake_group(tmp_path / "freezer" / "victim", [], freezer_state="THAWED\n")

    frozen = freeze_cgroup(str(v2), str(v1))
    assert frozen.ok and frozen.method == "freezer.state" and frozen.target == str(v1)
    assert (v1 / "freezer.state").read_text().strip() == "FROZEN"

    thawed = thaw_cgroup(str(v2), str(v1))
    assert thawed.ok and (v1 / "freezer.state").read_text().strip() == "THAWED"


def test_freeze_refuses_own_group(tmp_path: Path) -> None:
    group = fake_group(tmp_path / "victim", [os.getpid()], cgroup_freeze="0\n",
                       cgroup_events="frozen 0\n")
    outcome = freeze_cgroup(str(group), None)
    assert not outcome.ok and "is zoomd itself" in (outcome.error or "")
    assert (group / "cgroup.freeze").read_text() == "0\n"


def test_freeze_without_any_freezer(tmp_path: Path) -> None:
    outcome = freeze_cgroup(str(tmp_path / "gone"), None)
    assert not outcome.ok
    assert outcome.error == f"{tmp_path}/gone/cgroup.freeze: No such file or directory"
    assert not freeze_cgroup(None, None).ok


def test_freeze_vanished_v1_dir(tmp_path: Path) -> None:
    outcome = freeze_cgroup(None, str(tmp_path / "gone"))
    assert not outcome.ok and outcome.error == f"{tmp_path}/gone: No such file or directory"


# -- backends ---------------------------------------------------------------------------


def test_backends_satisfy_the_protocol() -> None:
    for backend in (CgroupfsBackend(), DryRunBackend(), RecordingBackend()):
        assert isinstance(backend, ActionBackend)


def test_dry_run_writes_nothing_and_signals_nobody(tmp_path: Path, children: Children,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pids = children.start(3)
    v2 = fake_group(tmp_path / "v2" / "victim", pids[:2], cgroup_kill="",
                    cgroup_freeze="0\n", cgroup_events="populated 1\nfrozen 0\n",
                    memory_current="123\n")
    fake_group(v2 / "leaf", pids[2:])
    v1 = fake_group(tmp_path / "freezer" / "victim", pids, freezer_state="THAWED\n")
    before = snapshot(tmp_path)
    forbidden: list[str] = []
    real_os_open, real_open = os.open, builtins.open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

    def guarded_os_open(path: object, flags: int, *args: object, **kw: object) -> int:
        if flags & write_flags:
            forbidden.append(f"os.open({path}, {flags:#o})")
        return real_os_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    def guarded_open(file: object, mode: str = "r", *args: object, **kw: object) -> object:
        if any(c in mode for c in "wax+"):
            forbidden.append(f"open({file}, {mode})")
        return real_open(file, mode, *args, **kw)  # type: ignore[call-overload]

    def no_signal(name: str) -> object:
        return lambda *a, **k: forbidden.append(f"{name}{a}")

    backend = DryRunBackend()
    with monkeypatch.context() as m:
        m.setattr(os, "open", guarded_os_open)
        m.setattr(builtins, "open", guarded_open)
        for name in ("kill", "killpg"):
            m.setattr(os, name, no_signal(f"os.{name}"))
        m.setattr(signal, "pidfd_send_signal", no_signal("pidfd_send_signal"))
        outcomes = [
            backend.kill_cgroup(str(v2), usage_file=str(v2 / "memory.current")),
            backend.kill_cgroup(str(v2), use_cgroup_kill=False),
            backend.kill_process(pids[0]),
            backend.freeze_cgroup(str(v2), str(v1)),
            backend.freeze_cgroup(None, str(v1)),
            backend.thaw_cgroup(str(v2), str(v1)),
        ]

    assert forbidden == []
    assert snapshot(tmp_path) == before
    assert all(children.alive(p) for p in pids)
    assert all(o.ok and o.method == "dry-run" for o in outcomes), outcomes
    assert sorted(outcomes[0].pids) == sorted(pids)
    assert outcomes[4].target == str(v1)
    assert [c.action for c in backend.calls] == [
        "kill", "kill", "kill-process", "freeze", "freeze", "thaw"]


def test_dry_run_reports_what_the_real_backend_would_refuse(tmp_path: Path,
                                                            children: Children) -> None:
    pids = children.start(1)
    group = fake_group(tmp_path / "victim", [*pids, 1], cgroup_kill="")
    backend = DryRunBackend()
    outcome = backend.kill_cgroup(str(group))
    assert not outcome.ok and outcome.method == "dry-run" and "pid 1 is init" in (
        outcome.error or "")
    gone = backend.kill_cgroup(str(tmp_path / "gone"))
    assert not gone.ok and gone.error == f"{tmp_path}/gone: No such file or directory"
    assert not backend.kill_process(1).ok
    assert (group / "cgroup.kill").read_text() == ""
    assert children.alive(pids[0])


def test_recording_backend_records_and_answers() -> None:
    refused = ActionOutcome("kill", "", False, "cgroup.kill", (), None, None, "boom")
    backend = RecordingBackend({
        "kill": refused,
        "freeze": lambda call: ActionOutcome("freeze", call.target, True, "cgroup.freeze",
                                             (7,), 0.01, None, None),
    })
    killed = backend.kill_cgroup("/sys/fs/cgroup/a", usage_file="/u", timeout_s=2.0)
    frozen = backend.freeze_cgroup("/sys/fs/cgroup/b", None)
    thawed = backend.thaw_cgroup(None, "/sys/fs/cgroup/freezer/b")
    one = backend.kill_process(42, protected_pids=frozenset({1}))

    assert (killed.ok, killed.target, killed.error) == (False, "/sys/fs/cgroup/a", "boom")
    assert frozen.ok and frozen.pids == (7,)
    assert thawed.ok and thawed.method == "recorded" and thawed.target.endswith("freezer/b")
    assert one.target == "pid:42"
    assert [(c.action, c.target) for c in backend.calls] == [
        ("kill", "/sys/fs/cgroup/a"), ("freeze", "/sys/fs/cgroup/b"),
        ("thaw", "/sys/fs/cgroup/freezer/b"), ("kill-process", "pid:42")]
    assert [c[0] for c in backend.calls] == [
        "kill_cgroup", "freeze_cgroup", "thaw_cgroup", "kill_process"]
    assert backend.calls[0].kwargs["usage_file"] == "/u"


def test_recording_backend_accepts_method_names() -> None:
    backend = RecordingBackend({"thaw_cgroup": ActionOutcome(
        "thaw", "", False, "cgroup.freeze", (), None, None, "nope")})
    assert not backend.thaw_cgroup("/g", None).ok
    assert backend.freeze_cgroup("/g", None).ok


def test_cgroupfs_backend_passes_arguments_through(tmp_path: Path, children: Children) -> None:
    pids = children.start(1)
    group = fake_group(tmp_path / "victim", pids, cgroup_kill="")
    outcome = CgroupfsBackend().kill_cgroup(str(group), use_cgroup_kill=False)
    assert outcome.ok and outcome.method == "pidfd"
    assert (group / "cgroup.kill").read_text() == ""
    assert children.killed(pids[0])


def test_outcome_to_json() -> None:
    outcome = ActionOutcome("kill", "/g", True, "cgroup.kill", (3, 4), 0.0123456789, 4096, None)
    data = outcome.to_json()
    assert json.loads(json.dumps(data)) == {
        "action": "kill", "target": "/g", "ok": True, "method": "cgroup.kill",
        "pids": [3, 4], "seconds_to_effect": 0.012346, "memory_freed_bytes": 4096,
        "error": None,
    }
