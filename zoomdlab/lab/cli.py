"""`python -m zoomdlab.lab run <scenario> ...` and `python -m zoomdlab.lab summarize TIMELINE`."""

from __future__ import annotations

import argparse
import json
import sys

from zoomd.errors import ZoomdError
from zoomdlab.lab.scenario import SCENARIOS, ScenarioConfig, run_scenario
from zoomdlab.lab.signals import terminate_as_interrupt
from zoomdlab.lab.summary import summarize
from zoomdlab.lab.workloads import parse_size


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zoomdlab.lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one scenario and write OUT/summary.json")
    run.add_argument("scenario", choices=SCENARIOS)
    run.add_argument("--duration", type=float, required=True, help="seconds of workload")
    run.add_argument("--out", required=True, help="directory for timeline, logs, summary")
    run.add_argument("--limit", type=parse_size, default=512 << 20, help="workload RAM limit")
    run.add_argument("--zram", type=parse_size, default=2 << 30, help="zram disksize")
    run.add_argument("--algorithm", default="lzo-rle", help="zram comp_algorithm")
    run.add_argument("--size", type=parse_size, help="workload size (default 2.5x limit)")
    run.add_argument("--hot", type=parse_size, help="compressible hot set (default limit/4)")
    run.add_argument(
        "--fill-rate", type=parse_size, default=0, help="compressible: fill bytes/s (0 = max)"
    )
    run.add_argument("--no-bystander", dest="bystander", action="store_false")
    run.add_argument(
        "--daemon",
        help="command started before the workloads and stopped at the end, not in the "
        "lab cgroups; {v2} = lab v2 root relative to the cgroup2 mount, {v2abs} = its "
        "absolute path, {v1abs} = lab v1 memory dir, {timeline}, {out}",
    )
    run.add_argument("--swapfile-dir", default="/var/tmp", help="mixed: where the swap file goes")
    run.add_argument("--swapfile-size", type=parse_size, default=1 << 30)
    run.add_argument("--interval", type=float, default=0.1, help="sampling interval (s)")
    summ = sub.add_parser("summarize", help="recompute a summary from a timeline file")
    summ.add_argument("timeline")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "summarize":
        print(json.dumps(summarize(args.timeline), indent=2))
        return 0
    terminate_as_interrupt()  # SIGTERM unwinds like Ctrl-C, so teardown always runs
    options = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        summary = run_scenario(ScenarioConfig(**options))
    except ZoomdError as exc:
        print(f"zoomdlab.lab: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("zoomdlab.lab: interrupted; lab torn down (partial summary in OUT)", file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=2))
    return 0
