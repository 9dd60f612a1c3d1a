"""/proc/PID/cgroup: which groups a process belongs to, per hierarchy.

On a hybrid host the v2 group and the v1 memory cgroup of the same processes need
not share a path, so the memory cgroup of a v2 group is found through its members.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoomd.errors import KernelFileError
from zoomd.kernel.keyvalue import kernel_lines
from zoomd.kernel.root import Root


@dataclass(frozen=True, slots=True)
class ProcCgroups:
    """A process's membership: the v2 path and each v1 controller's path."""

    v2: str | None
    v1: dict[str, str]  # controller (or name=...) -> path


def parse_proc_cgroup(text: str, path: str) -> ProcCgroups:
    v2: str | None = None
    v1: dict[str, str] = {}
    for line in kernel_lines(text):  # a cgroup name may hold \r, \x85, U+2028...
        if not line:
            continue
        parts = line.split(":", 2)
        if len(parts) != 3:
            raise KernelFileError(path, f"expected 'id:controllers:path', got {line!r}")
        hier_id, controllers, cgpath = parts
        if hier_id == "0" and controllers == "":
            v2 = cgpath
            continue
        for controller in controllers.split(","):
            if controller:
                v1[controller] = cgpath
    return ProcCgroups(v2, v1)


def read_proc_cgroup(root: Root, pid: int | str) -> ProcCgroups | None:
    """Membership of a process, or None if it exited meanwhile."""
    path = f"/proc/{pid}/cgroup"
    try:
        text = root.read_text(path)
    except KernelFileError:
        if not root.exists(f"/proc/{pid}"):
            return None
        raise
    return parse_proc_cgroup(text, root.join(path))
