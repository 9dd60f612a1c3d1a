"""The VM lab: the host-wide zram brownout reproduced in a small virtual machine.

A cgroup limit cannot reproduce host-wide direct reclaim; a 1 GiB guest with 1 GiB
of zram and an 1100 MB half-compressible process does. The guest boots a Debian
kernel package under qemu (software emulation) with this machine's root shared
read-only over 9p (virtme-ng), so it runs zoomd, earlyoom and nohang as installed
here.

Modules: `provision` (qemu, kmod, busybox, the kernel package, a venv with zoomd
and virtme-ng), `runner` (one VM run, under the lab lock, with a timeout), `guest`
(runs inside the guest: zram, cgroups, daemon, workload, timeline), `summary`
(brownout, actions, the kernel's retry arithmetic next to zoomd's model), `plot`
and `bench` (`python -m zoomdlab.vmlab bench`).
"""
