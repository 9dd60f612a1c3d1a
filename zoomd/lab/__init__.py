"""The brownout lab: sets up zram swap and cgroups of its own, runs bounded workloads.

Modules: `lock` (one lab per host), `swap` (zram_swap, disk_swapfile), `cgroups`
(LabCgroups), `workloads` (thrash, compressible, bystander; `python -m
zoomd.lab.workload`), `timeline` (10 Hz recorder), `scenario` and `summary`
(`python -m zoomd.lab run <scenario> --duration S --out DIR`).
"""
