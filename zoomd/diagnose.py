"""List every problem of a (captured) tree at once, one line each.

The readers stop at the first bad file; an operator fixing a capture wants all of
them. This runs each reader on its own and collects their errors.
"""

from __future__ import annotations

from collections.abc import Callable

from zoomd.errors import ZoomdError
from zoomd.kernel.blockdev import classify_swap
from zoomd.kernel.meminfo import read_meminfo
from zoomd.kernel.mountinfo import read_mountinfo
from zoomd.kernel.psi import read_pressure
from zoomd.kernel.root import Root
from zoomd.kernel.swaps import read_swaps
from zoomd.kernel.vmstat import read_vmstat
from zoomd.kernel.zoneinfo import read_min_free_bytes
from zoomd.kernel.zram import list_zram, read_zram


def find_problems(root: Root, page_size: int = 4096) -> list[str]:
    problems: list[str] = []

    def attempt(check: Callable[[], object]) -> bool:
        try:
            check()
        except ZoomdError as exc:
            problems.append(str(exc))
            return False
        return True

    attempt(lambda: read_meminfo(root))
    attempt(lambda: read_vmstat(root))
    attempt(lambda: read_min_free_bytes(root, page_size))
    for resource in ("memory", "io", "cpu"):
        if root.exists(f"/proc/pressure/{resource}"):
            attempt(lambda r=resource: read_pressure(root, r))
    # A zram device is found twice: as /sys/block/zramN and as the swap device
    # /dev/zramN classifies through /sys/class/block; its problem is one line.
    unreadable_zram = {name for name in list_zram(root)
                       if not attempt(lambda n=name: read_zram(root, n))}
    try:
        swaps = read_swaps(root)
    except ZoomdError as exc:
        problems.append(str(exc))
        swaps = []
    if any(s.type == "file" for s in swaps):
        attempt(lambda: read_mountinfo(root))
    for swap in swaps:
        if swap.path.rsplit("/", 1)[-1] in unreadable_zram:
            continue
        attempt(lambda s=swap: classify_swap(root, s.path, s.type))
    return problems
