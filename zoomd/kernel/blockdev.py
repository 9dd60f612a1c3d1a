"""What a swap device really is: RAM-backed (zram, brd, loop on tmpfs) or disk.

The kernel's reclaim arithmetic treats every free swap slot alike; the whole point of
zoomd is that a slot on zram costs RAM. Each device is resolved to one kind by
following sysfs: loop devices through their backing file, dm/md through their
slaves, swap files through the filesystem that holds them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from zoomd.errors import KernelFileError
from zoomd.kernel.keyvalue import is_decimal
from zoomd.kernel.mountinfo import RAM_FILESYSTEMS, Mount, mount_of
from zoomd.kernel.root import Root

BRD_MAJOR = 1
_MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class DeviceKind:
    """The verdict on one device: its kind, whether it is RAM-backed, and why."""

    kind: str  # zram, zram-writeback, ramdisk, loop, partition, file, dm, md, unknown
    ram_backed: bool
    block_device: str | None  # the sysfs name (zram0, vda2, dm-0) when there is one
    via: str  # how the verdict was reached, for operators


def _sys_block_dir(root: Root, name: str) -> str | None:
    for base in ("/sys/class/block", "/sys/block"):
        if root.exists(f"{base}/{name}"):
            return f"{base}/{name}"
        if root.is_loop(f"{base}/{name}"):
            raise KernelFileError(root.join(f"{base}/{name}"),
                                  "a symlink loop: no kernel's sysfs has one")
    return None


def _name_for_devnum(root: Root, major: int, minor: int) -> str | None:
    link = f"/sys/dev/block/{major}:{minor}"
    if not root.exists(link):
        return None
    return os.path.basename(root.realpath(link))


def _name_for_dev_path(root: Root, dev_path: str) -> str | None:
    """Map /dev/zram0, /dev/mapper/x, /dev/disk/by-*/... to a sysfs block name."""
    if root.is_live:
        try:
            st = os.stat(dev_path)
        except OSError:
            st = None
        if st is not None and (st.st_mode & 0o170000) == 0o060000:  # S_IFBLK
            name = _name_for_devnum(root, os.major(st.st_rdev), os.minor(st.st_rdev))
            if name:
                return name
    base = os.path.basename(dev_path)
    if dev_path.startswith("/dev/mapper/"):
        for name in root.listdir("/sys/block"):
            dm_name = root.read_optional(f"/sys/block/{name}/dm/name")
            if dm_name is not None and dm_name.strip() == base:
                return name
    if _sys_block_dir(root, base):
        return base
    return None


def classify_block(root: Root, name: str, depth: int = 0) -> DeviceKind:
    """Classify a block device by its sysfs name."""
    if depth > _MAX_DEPTH:
        return DeviceKind("unknown", False, name, "too many levels of indirection")
    sysdir = _sys_block_dir(root, name)
    if sysdir is None:
        return DeviceKind("unknown", False, name, f"no sysfs entry for {name}")
    if name.startswith("zram") and not root.exists(f"{sysdir}/mm_stat"):
        # Not a disk: every zram device has had mm_stat since 4.1 (PSI needs 4.20).
        raise KernelFileError(root.join(f"{sysdir}/mm_stat"), "missing (every zram "
                              "device has one)" if not root.is_loop(f"{sysdir}/mm_stat")
                              else "a symlink loop: no kernel's sysfs has one")
    if name.startswith("zram"):
        backing = root.read_optional(f"{sysdir}/backing_dev")
        if backing is not None and backing.strip() not in ("", "none"):
            return DeviceKind(
                "zram-writeback", True, name,
                f"zram with backing_dev {backing.strip()} (writeback only on request)",
            )
        return DeviceKind("zram", True, name, "zram: stored pages cost RAM")
    dev = root.read_optional(f"{sysdir}/dev")
    major_s = dev.split(":")[0].strip() if dev else ""
    major = int(major_s) if is_decimal(major_s) else None
    if major == BRD_MAJOR or (name.startswith("ram") and is_decimal(name[3:])):
        return DeviceKind("ramdisk", True, name, "brd RAM disk")
    if name.startswith("loop"):
        backing = root.read_optional(f"{sysdir}/loop/backing_file")
        if backing is None or not backing.strip():
            return DeviceKind("loop", False, name, "loop device without backing file")
        inner = classify_file(root, backing.strip(), depth + 1)
        return DeviceKind("loop", inner.ram_backed, name, f"loop over {backing.strip()}: "
                          f"{inner.via}")
    slaves = root.listdir(f"{sysdir}/slaves")
    if slaves and (name.startswith("dm-") or name.startswith("md")):
        kind = "dm" if name.startswith("dm-") else "md"
        verdicts = [classify_block(root, slave, depth + 1) for slave in slaves]
        ram = all(v.ram_backed for v in verdicts)
        parts = ", ".join(f"{s}={v.kind}" for s, v in zip(slaves, verdicts, strict=True))
        return DeviceKind(kind, ram, name, f"{kind} over {parts}")
    if name.startswith("dm-") or name.startswith("md"):
        kind = "dm" if name.startswith("dm-") else "md"
        return DeviceKind(kind, False, name, f"{kind} without visible slaves: assumed disk")
    return DeviceKind("partition", False, name, "disk block device")


def classify_file(root: Root, file_path: str, depth: int = 0,
                  mounts: list[Mount] | None = None) -> DeviceKind:
    """Classify a regular file by the filesystem (and device) that holds it."""
    if mounts is None:
        from zoomd.kernel.mountinfo import read_mountinfo

        mounts = read_mountinfo(root)
    mount = mount_of(mounts, file_path)
    if mount is None:
        return DeviceKind("file", False, None, f"no mount holds {file_path}: assumed disk")
    if mount.fstype in RAM_FILESYSTEMS:
        return DeviceKind("file", True, None, f"on {mount.fstype} at {mount.mount_point}")
    name = _name_for_devnum(root, mount.major, mount.minor)
    if name is None and mount.source.startswith("/dev/"):
        name = _name_for_dev_path(root, mount.source)
    if name is None:
        return DeviceKind("file", False, None,
                          f"on {mount.fstype} at {mount.mount_point}: device unknown, "
                          "assumed disk")
    inner = classify_block(root, name, depth + 1)
    return DeviceKind("file", inner.ram_backed, name,
                      f"on {mount.fstype} at {mount.mount_point} ({name}: {inner.kind})")


def classify_swap(root: Root, path: str, swap_type: str,
                  mounts: list[Mount] | None = None) -> DeviceKind:
    """Classify one /proc/swaps entry."""
    if swap_type == "file":
        return classify_file(root, path, mounts=mounts)
    name = _name_for_dev_path(root, path)
    if name is None:
        return DeviceKind("unknown", False, None, f"cannot resolve {path}: assumed disk")
    return classify_block(root, name)


def zswap_enabled(root: Root) -> bool | None:
    """Whether zswap compresses pages in RAM before they reach swap; None if unknown."""
    text = root.read_optional("/sys/module/zswap/parameters/enabled")
    if text is None:
        return None
    return text.strip() in ("Y", "1", "y")
