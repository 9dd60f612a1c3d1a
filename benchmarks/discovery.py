"""What memory domains cost: one discovery, and one tick with an instance per domain.

A synthetic v2 host (benchmarks/synthhost.py, tmpfs when /dev/shm is there) with 1,000
and 10,000 groups, of which 100 and 1,000 carry a memory.max, and the shipped default's
two domain rules (domain-thrash, domain-stuck): every limited group gets two policy
instances. Measured in this process (wall clock, best of the repeats, since other
sessions share the cores):

- discovery: `discover()` + `instances()`: the walk of the tree and the limit reads,
  done every [daemon] discover_interval (5 s by default);
- a tick: `Engine.tick()` with every instance sampling its group (memory.pressure and
  memory.stat kept open and re-read), nothing stalled;
- the daemon's extra CPU share at the default intervals: a discovery every 5 s (or,
  on big trees, every 2.5 ms per group walked) plus a tick every 1 s, as a
  percentage of one core.

    python benchmarks/discovery.py            # writes benchmarks/results/discovery.md
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from synthhost import SynthHost, write  # noqa: E402

from zoomd.actions.backend import RecordingBackend  # noqa: E402
from zoomd.config.load import load_config, shipped_config_path  # noqa: E402
from zoomd.daemon.engine import DISCOVERY_S_PER_GROUP, Engine  # noqa: E402
from zoomd.daemon.hostmodel import HostModel  # noqa: E402
from zoomd.daemon.log import Logger  # noqa: E402
from zoomd.daemon.templates import discover_for, instances  # noqa: E402
from zoomd.host import HostReader  # noqa: E402
from zoomd.kernel.cgroups import CgroupReader  # noqa: E402

SIZES = ((1_000, 100), (10_000, 1_000))


def build(groups: int, limited: int) -> SynthHost:
    host = SynthHost(None, groups, seed=3, procs=True)
    leaves = sorted(p for p in host.groups if p.endswith(".service"))
    step = max(1, len(leaves) // limited)
    for path in leaves[::step][:limited]:
        write(f"{host.cg(path)}/memory.max", f"{512 << 20}\n")
    return host


def measure(groups: int, limited: int, repeats: int) -> dict[str, object]:
    host = build(groups, limited)
    try:
        config = load_config(shipped_config_path())[0]
        templates = [p for p in config.policy if p.select == "limited"]
        reader = CgroupReader(host.root)
        best_discovery = float("inf")
        found = 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            discovery = discover_for(templates, reader)
            made = instances(templates, reader, discovery)
            best_discovery = min(best_discovery, time.perf_counter() - t0)
            found = len(made)
        engine = Engine(config, reader, RecordingBackend(),
                        Logger("json", "error", io.StringIO()), vital_groups=("/init.scope",),
                        page_size=4096)
        hosts = HostReader(host.root, page_size=4096)
        model = HostModel(config.reclaim)
        t = 0.0
        ticks: list[float] = []
        for i in range(max(10, repeats * 5)):
            host.advance(1.0)
            snap = hosts.sample(now=t)
            t += 1.0
            est = model.update(snap)
            t0 = time.perf_counter()
            engine.tick(snap, est)
            if i > 0:  # the first tick also runs the first discovery and opens the files
                ticks.append(time.perf_counter() - t0)
        instances_held = sum(1 for s in engine.states if s.template is not None)
        engine.close()
        hosts.close()
        tick = sorted(ticks)[len(ticks) // 2]
        return {
            "groups": len(host.groups), "limited": limited, "instances": found,
            "instances_held": instances_held,
            "discovery_ms": round(best_discovery * 1e3, 1),
            "tick_median_ms": round(tick * 1e3, 2),
            "discovery_every_s": max(5.0, (discovery.walked if discovery else 0)
                                     * DISCOVERY_S_PER_GROUP),
            "cpu_pct_at_defaults": round(100 * (
                best_discovery / max(5.0, (discovery.walked if discovery else 0)
                                     * DISCOVERY_S_PER_GROUP) + tick / 1.0), 2),
        }
    finally:
        shutil.rmtree(host.base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/discovery.py")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "discovery.md"))
    args = parser.parse_args(argv)
    rows = [measure(g, lim, args.repeats) for g, lim in SIZES]
    lines = [
        "# Memory domains: discovery and evaluation cost",
        "",
        "`python benchmarks/discovery.py` on this machine (2 shared cores, tmpfs tree,",
        "the shipped default's two domain rules: two instances per limited group).",
        "",
        "| groups | limited | instances | discovery (ms) | discovery every (s) | "
        "tick (ms, median) | CPU % of a core at the defaults |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['groups']:,} | {r['limited']:,} | {r['instances']:,} | "
                     f"{r['discovery_ms']} | {r['discovery_every_s']} | {r['tick_median_ms']} | "
                     f"{r['cpu_pct_at_defaults']} |")
    lines += ["", "```json", json.dumps(rows, indent=1), "```", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
