"""The brownout lab: sets up zram swap and cgroups of its own, runs bounded workloads.

Modules: `lock` (one lab per host), `swap` (zram_swap, disk_swapfile), `cgroups`
(LabCgroups), `workloads` (thrash, compressible, bystander; `python -m
zoomdlab.lab.workload`), `timeline` (10 Hz recorder), `scenario` and `summary`
(`python -m zoomdlab.lab run <scenario> --duration S --out DIR`).
"""
