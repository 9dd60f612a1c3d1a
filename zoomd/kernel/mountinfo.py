"""/proc/self/mountinfo: where cgroupfs is mounted and which filesystem holds a file.

Mount points are found here rather than hard-coded, so hybrid, pure-v2 and
unusual layouts (and captured trees) all work.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoomd.errors import KernelFileError
from zoomd.kernel.keyvalue import kernel_fields, kernel_lines, parse_uint
from zoomd.kernel.root import Root
from zoomd.kernel.swaps import unescape_octal

RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"})


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount: its point, device numbers, filesystem type and super options."""

    mount_point: str
    major: int
    minor: int
    fstype: str
    source: str
    root: str
    super_options: tuple[str, ...]


def parse_mountinfo(text: str, path: str) -> list[Mount]:
    mounts: list[Mount] = []
    for lineno, line in enumerate(kernel_lines(text), 1):
        if not kernel_fields(line):
            continue
        # The separator is the first lone "-" after the six fixed fields (a mount point
        # or root may itself be "-", which the kernel prints unescaped).
        tokens = kernel_fields(line)
        sep = next((i for i in range(6, len(tokens)) if tokens[i] == "-"), None)
        fields = tokens[:sep] if sep is not None else tokens
        rest = tokens[sep + 1:] if sep is not None else []
        if sep is None or len(fields) < 6 or len(rest) < 2:
            raise KernelFileError(path, f"line {lineno}: malformed mount {line!r}")
        major_s, _, minor_s = fields[2].partition(":")
        major = parse_uint(path, f"line {lineno}: major", major_s)
        minor = parse_uint(path, f"line {lineno}: minor", minor_s)
        options = tuple(rest[2].split(",")) if len(rest) > 2 else ()
        mounts.append(
            Mount(
                mount_point=unescape_octal(fields[4]),
                major=major,
                minor=minor,
                fstype=rest[0],
                source=unescape_octal(rest[1]),
                root=unescape_octal(fields[3]),
                super_options=options,
            )
        )
    return mounts


def read_mountinfo(root: Root) -> list[Mount]:
    return parse_mountinfo(
        root.read_text("/proc/self/mountinfo"), root.join("/proc/self/mountinfo")
    )


def mount_of(mounts: list[Mount], file_path: str) -> Mount | None:
    """The mount holding `file_path`: the longest mount point prefix (last one wins)."""
    best: Mount | None = None
    best_len = -1
    for mount in mounts:
        point = mount.mount_point
        if point == "/" or file_path == point or file_path.startswith(point.rstrip("/") + "/"):
            length = len(point)
            if length >= best_len:
                best, best_len = mount, length
    return best
