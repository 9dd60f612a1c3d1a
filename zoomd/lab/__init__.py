"""The brownout lab: sets up zram swap and cgroups of its own, runs bounded workloads."""
