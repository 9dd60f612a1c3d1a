"""Small helpers the lab shares: sysfs/cgroupfs writes, mounts and our own cgroups.

Mounts come from zoomd's own mountinfo parser; mount points are always found, never
hard-coded.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from zoomd.errors import ZoomdError
from zoomd.kernel.mountinfo import RAM_FILESYSTEMS, parse_mountinfo

__all__ = ["RAM_FILESYSTEMS", "LabError", "Mount", "mounts"]


class LabError(ZoomdError):
    """The lab could not set up or tear down something; the message says what and where."""


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def write_text(path: str, value: str | int) -> None:
    """Write one value with a single write(2), as cgroupfs and sysfs expect."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def run(argv: list[str]) -> str:
    """Run a helper tool (mkswap, swapon, ...) and raise LabError with its stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise LabError(f"{' '.join(argv)}: exit {proc.returncode}: {msg}")
    return proc.stdout


@dataclass(frozen=True, slots=True)
class Mount:
    """The few mountinfo fields the lab needs."""

    point: str
    root: str  # the path inside the filesystem (or cgroup hierarchy) mounted at `point`
    dev: int
    fstype: str
    options: tuple[str, ...]


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    """The host's mounts, through zoomd's own mountinfo parser."""
    return [
        Mount(m.mount_point, m.root, os.makedev(m.major, m.minor), m.fstype, m.super_options)
        for m in parse_mountinfo(read_text(mountinfo), mountinfo)
    ]


def cgroup2_mount() -> Mount | None:
    """The first cgroup2 mount (the unified hierarchy), or None."""
    for m in mounts():
        if m.fstype == "cgroup2":
            return m
    return None


def cgroup1_mount(controller: str) -> Mount | None:
    """The v1 hierarchy that carries `controller` (e.g. memory), or None on pure v2."""
    for m in mounts():
        if m.fstype == "cgroup" and controller in m.options:
            return m
    return None


def cgroup_dir(mount: Mount, cgroup_path: str) -> str:
    """Directory of a /proc/self/cgroup path under a mount whose root may not be '/'."""
    root = mount.root.rstrip("/")
    rel = cgroup_path
    if root and (cgroup_path == root or cgroup_path.startswith(root + "/")):
        rel = cgroup_path[len(root) :]
    return os.path.join(mount.point, rel.lstrip("/")).rstrip("/")


def own_cgroup(controller: str | None) -> str | None:
    """Our cgroup path in a v1 controller's hierarchy, or in v2 when controller is None."""
    for line in read_text("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        if controller is None and controllers == "":
            return path
        if controller is not None and controller in controllers.split(","):
            return path
    return None


def filesystem_type(path: str) -> str:
    """Type of the filesystem holding `path`, matched by device number (not prefix)."""
    dev = os.stat(path).st_dev
    found = "unknown"
    for m in mounts():
        if m.dev == dev:
            found = m.fstype  # last match wins: the topmost mount of that device
    return found
