"""zoomd's labs: the brownout lab (zoomdlab.lab: zram swap, cgroups, workloads,
timeline) and the VM lab (zoomdlab.vmlab: qemu under a Debian kernel).

They set up swap, reset zram devices and provision VMs, so they live outside the
zoomd package and are never installed with it (not in the wheel nor the .deb): run
them from a source checkout, `python -m zoomdlab.lab ...` and `python -m
zoomdlab.vmlab ...`, with zoomd itself importable (installed, or the checkout).
"""

from __future__ import annotations

import os


def checkout() -> str:
    """The folder holding the zoomdlab package (the source checkout)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
