"""The few cgroupfs reads and writes the effectors need, with the path kept in every error.

Writes are one write(2) each, as cgroupfs expects. Reads of a group's processes walk
its whole subtree, because cgroup.kill and the freezers act on the subtree too.
"""

from __future__ import annotations

import errno
import os

from zoomd.errors import KernelFileError
from zoomd.kernel import tap
from zoomd.kernel.keyvalue import is_decimal


def write_value(path: str, value: str) -> None:
    """Write one value; raises OSError carrying `path` so the error can name it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(fd)


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    text = data.decode("utf-8", "replace")
    if tap.ACTIVE is not None:  # a dry run's preview names pids the trace must hold
        text = tap.ACTIVE.read(path, text)
    return text


def read_pids(path: str) -> list[int]:
    """One cgroup.procs (or tasks) file as pids."""
    tokens = read_text(path).split()
    if not all(is_decimal(token) for token in tokens):  # int() takes "1_0" and "٣"
        raise KernelFileError(path, "not a list of pids")
    return [int(token) for token in tokens]


def subtree_pids(group_dir: str, *, vanished_ok: bool = False) -> list[int]:
    """Pids in `group_dir`/cgroup.procs and in every descendant group, without repeats.

    A descendant that disappears while we walk was empty (only empty groups can be
    removed) and threaded descendants (EOPNOTSUPP) are listed by their domain, so both
    are skipped. With `vanished_ok`, a vanished `group_dir` counts as empty: used once a
    kill has started, when the group being removed means the kill is done.
    """
    try:
        pids = read_pids(os.path.join(group_dir, "cgroup.procs"))
    except FileNotFoundError:
        if vanished_ok:
            return []
        raise
    except OSError as exc:
        if exc.errno != errno.EOPNOTSUPP:
            raise
        pids = threaded_pids(group_dir)  # a threaded group lists threads, not processes
    seen = set(pids)
    stack = [group_dir]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                subdirs = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            continue
        if tap.ACTIVE is not None:
            tap.ACTIVE.listing(directory, [os.path.basename(d) for d in subdirs], True)
        for sub in subdirs:
            try:
                more = read_pids(os.path.join(sub, "cgroup.procs"))
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EOPNOTSUPP):
                    continue
                raise
            for pid in more:
                if pid not in seen:
                    seen.add(pid)
                    pids.append(pid)
            stack.append(sub)
    return pids


def threaded_pids(group_dir: str, proc: str = "/proc") -> list[int]:
    """Processes with a thread in a threaded group (whose cgroup.procs is EOPNOTSUPP).

    SIGKILL takes a whole process, so acting on a threaded group acts on every process
    that has a thread in it, wherever its other threads are.
    """
    pids: list[int] = []
    for tid in read_pids(os.path.join(group_dir, "cgroup.threads")):
        try:
            status = read_text(f"{proc}/{tid}/status")
        except OSError:
            continue  # that thread has exited
        for line in status.splitlines():
            if line.startswith("Tgid:"):
                fields = line.split()
                if len(fields) != 2 or not is_decimal(fields[1]):
                    raise KernelFileError(f"{proc}/{tid}/status", "bad Tgid")
                tgid = int(fields[1])
                if tgid not in pids:
                    pids.append(tgid)
                break
    return pids


def read_usage(path: str | None) -> int | None:
    """memory.current / memory.usage_in_bytes in bytes, or None when unreadable.

    A measurement, not a precondition: a group removed right after its kill has no
    usage file any more, and the kill still succeeded.
    """
    if path is None:
        return None
    try:
        return int(read_text(path).split()[0])
    except (OSError, ValueError, IndexError):
        return None
