"""A cgroup subtree of the lab's own, in v2 (for PSI and cgroup.kill) and v1 memory (limits).

On hybrid hosts the memory controller lives on v1, so a limit is a v1 memory cgroup
under our own v1 memory cgroup, while PSI (memory.pressure) comes from the v2 group
the same process sits in. On pure v2 hosts the limit is memory.max on the v2 group.
Teardown kills only what the lab started and removes only what it created.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from zoomdlab.lab.signals import deferred_signals
from zoomdlab.lab.sysfs import (
    LabError,
    cgroup1_mount,
    cgroup2_mount,
    cgroup_dir,
    own_cgroup,
    read_text,
    write_text,
)

# Writes the shell's own pid into each cgroup.procs given, then execs the command: the
# process is inside every limit before the program allocates anything. A shell
# trampoline rather than preexec_fn, because preexec_fn is unsafe with threads running
# (the timeline recorder is one).
JOIN_TIMEOUT_S = 10.0
_TRAMPOLINE = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1" || exit 126; shift; '
    'n=$((n - 1)); done; exec "$@"'
)


@dataclass(frozen=True, slots=True)
class LabChild:
    """One child group: the same name in v2 and (on hybrid hosts) v1 memory."""

    name: str
    v2_path: str  # absolute directory
    v2_rel: str  # relative to the cgroup2 mount, leading '/'
    v1_path: str | None  # absolute v1 memory directory, None on pure v2
    memory_limit: int | None

    @property
    def procs_files(self) -> list[str]:
        files = [f"{self.v2_path}/cgroup.procs"]
        if self.v1_path:
            files.append(f"{self.v1_path}/cgroup.procs")
        return files


class LabCgroups:
    """Context manager owning zoomd-lab-<pid> in v2 and, on hybrid hosts, in v1 memory."""

    def __init__(self, name: str | None = None, v2_parent: str | None = None) -> None:
        self.name = name or f"zoomd-lab-{os.getpid()}"
        self._v2_parent = v2_parent
        self.v2_mount = ""
        self.v2_path = ""  # absolute
        self.v2_rel = ""  # relative to the v2 mount, leading '/'
        self.v1_path: str | None = None
        self.memory_mode = "none"  # "v1", "v2" or "none" (no limits possible)
        self.children: dict[str, LabChild] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []  # directories we made, in creation order

    # -- setup -----------------------------------------------------------------
    def __enter__(self) -> LabCgroups:
        try:
            self._setup()
        except BaseException:
            self._teardown(unwinding=True)
            raise
        return self

    def _setup(self) -> None:
        v2 = cgroup2_mount()
        if v2 is None:
            raise LabError("no cgroup2 mount in /proc/self/mountinfo")
        self.v2_mount = v2.point
        parent = self._v2_parent if self._v2_parent is not None else own_cgroup(None) or "/"
        parent_dir = cgroup_dir(v2, parent)
        self.v2_path = f"{parent_dir}/{self.name}"
        self.v2_rel = "/" + os.path.relpath(self.v2_path, self.v2_mount).lstrip("/")
        self._mkdir(self.v2_path)

        v1 = cgroup1_mount("memory")
        own_v1 = own_cgroup("memory")
        if v1 is not None and own_v1 is not None:
            self.memory_mode = "v1"
            self.v1_path = f"{cgroup_dir(v1, own_v1)}/{self.name}"
            self._mkdir(self.v1_path)
        elif "memory" in read_text(f"{self.v2_path}/cgroup.controllers").split():
            # Only our own group's subtree_control is touched, never the parent's.
            self.memory_mode = "v2"
            write_text(f"{self.v2_path}/cgroup.subtree_control", "+memory")

    def _mkdir(self, path: str) -> None:
        try:
            os.mkdir(path)
        except FileExistsError:
            raise LabError(f"{path} exists: a lab of this name is running or leaked") from None
        self._created.append(path)

    def child(self, name: str, memory_limit: int | None = None) -> LabChild:
        """Create (or return) a child group; `memory_limit` in bytes caps RAM, not swap."""
        if name in self.children:
            return self.children[name]
        if memory_limit is not None and self.memory_mode == "none":
            raise LabError("no memory controller: neither v1 memory nor memory in v2 controllers")
        v2_path = f"{self.v2_path}/{name}"
        self._mkdir(v2_path)
        v1_path = None
        if self.v1_path:
            v1_path = f"{self.v1_path}/{name}"
            self._mkdir(v1_path)
            if memory_limit is not None:
                memsw = f"{v1_path}/memory.memsw.limit_in_bytes"
                if os.path.exists(memsw):
                    write_text(memsw, -1)  # RAM+swap unlimited: the limit pushes into swap
                write_text(f"{v1_path}/memory.limit_in_bytes", memory_limit)
        elif memory_limit is not None:
            write_text(f"{v2_path}/memory.max", memory_limit)
            if os.path.exists(f"{v2_path}/memory.swap.max"):
                write_text(f"{v2_path}/memory.swap.max", "max")
        child = LabChild(name, v2_path, f"{self.v2_rel}/{name}", v1_path, memory_limit)
        self.children[name] = child
        return child

    def start(
        self, child: str | LabChild, argv: Sequence[str], **popen_kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start `argv` inside the child in every hierarchy, before it allocates anything."""
        group = child if isinstance(child, LabChild) else self.children[child]
        files = group.procs_files
        cmd = ["/bin/sh", "-c", _TRAMPOLINE, "sh", str(len(files)), *files, *argv]
        popen_kwargs.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(cmd, **popen_kwargs)
        self._procs.append(proc)
        self._wait_joined(proc, files)
        return proc

    @staticmethod
    def _wait_joined(proc: subprocess.Popen[Any], files: list[str],
                     timeout: float = JOIN_TIMEOUT_S) -> None:
        """Return once the trampoline has written itself into every group: callers look
        at the group next (populated, cgroup.procs), and a process still on its way in
        read as an empty group (a test once saw its victim "killed" before the daemon
        had started)."""
        deadline = time.monotonic() + timeout
        pid = str(proc.pid)
        while True:
            if all(pid in read_text(f).split() for f in files):
                return
            if proc.poll() is not None:
                if proc.returncode != 126:
                    return  # joined, ran and ended already: nothing to wait for
                raise LabError(f"{files[0]}: the process exited with 126 before it was "
                               "seen in its group (it could not join, or not be run)")
            if time.monotonic() > deadline:
                raise LabError(f"{files[0]}: pid {pid} not in the group after {timeout:.0f} s")
            time.sleep(0.002)

    # -- inspection ------------------------------------------------------------
    def populated(self, child: LabChild | None = None) -> bool:
        """Whether the child (or the whole lab subtree) still has processes."""
        path = child.v2_path if child else self.v2_path
        for line in read_text(f"{path}/cgroup.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "populated":
                return value.strip() == "1"
        return False

    def pids(self, child: LabChild) -> list[int]:
        return [int(p) for p in read_text(f"{child.v2_path}/cgroup.procs").split()]

    # -- teardown --------------------------------------------------------------
    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._teardown(unwinding=exc_type is not None)

    def kill_all(self) -> None:
        """SIGKILL everything in our own subtree, then our Popen children (fallback)."""
        kill_file = f"{self.v2_path}/cgroup.kill"
        if self.v2_path and os.path.exists(kill_file):
            write_text(kill_file, 1)
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # our own session (start_new_session)
                except (ProcessLookupError, PermissionError):
                    proc.kill()

    def _teardown(self, unwinding: bool, timeout: float = 15.0) -> None:
        errors: list[str] = []
        with deferred_signals():
            try:
                self.kill_all()
            except OSError as exc:
                errors.append(f"kill: {exc}")
            deadline = time.monotonic() + timeout
            for proc in self._procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    errors.append(f"pid {proc.pid} did not exit")
            while self.v2_path in self._created and self.populated():
                if time.monotonic() > deadline:
                    errors.append(f"{self.v2_path} still populated")
                    break
                time.sleep(0.05)
            for path in reversed(self._created):
                try:
                    _rmdir_retry(path, deadline)
                except OSError as exc:
                    errors.append(f"rmdir {path}: {exc.strerror}")
            self._created.clear()
        if errors:
            message = "lab cgroup teardown: " + "; ".join(errors)
            if not unwinding:
                raise LabError(message)
            print(f"zoomdlab.lab: {message}", flush=True)


def _rmdir_retry(path: str, deadline: float) -> None:
    """rmdir, retrying EBUSY: a killed task leaves its cgroup a moment after exit."""
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
