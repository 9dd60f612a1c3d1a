"""`zoomd status --format oomctl`: the cgroups a configuration monitors, in the layout of
`oomctl dump`. A running zoomd's own view, managed cgroups included, is `oomctl dump`.
"""

from __future__ import annotations

from zoomd.config.load import load_config
from zoomd.config.runtime import is_template
from zoomd.daemon.templates import instances_now, templates_of
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.meminfo import read_meminfo
from zoomd.kernel.root import Root
from zoomd.systemd.dump import Dumper, DumpState
from zoomd.systemd.managed import PRESSURE, ManagedCgroup
from zoomd.systemd.oomdconf import OomdConf, load_oomd_conf
from zoomd.systemd.values import USEC_PER_SEC


def render_oomctl(config_path: str | None, root: Root) -> str:
    """Each policy's monitored cgroup as a memory-pressure monitored one, with the
    policy's avg10 limit where it has one (else oomd.conf's) and its `for`."""
    config, _ = load_config(config_path)
    conf = load_oomd_conf(root.path) \
        if config.systemd.oomd_conf else OomdConf()
    reader = CgroupReader(root)
    seen: dict[str, ManagedCgroup] = {}
    # A template's instances on this host now, each as the group it watches.
    made = [inst.policy for inst in instances_now(templates_of(config.policy), reader)[0]]
    for policy in [p for p in config.policy if not is_template(p)] + made:
        limit = policy.all.memory_pressure_full_avg10_above \
            or policy.any.memory_pressure_full_avg10_above
        entry = ManagedCgroup(policy.monitor, PRESSURE,
                              None if limit is None else round(limit * 100),
                              round(policy.for_ * USEC_PER_SEC), source="config")
        seen.setdefault(policy.monitor, entry)
    state = DumpState(config.daemon.dry_run, conf, [], sorted(seen.values(),
                                                              key=lambda e: e.path))
    return Dumper(reader, config.systemd.dump_format).render(state, read_meminfo(root))
