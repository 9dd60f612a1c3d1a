"""`python -m zoomdlab.vmlab provision|run|summarize|bench|clean|sysvm`."""

from __future__ import annotations

import argparse
import json
import sys

from zoomd.errors import ZoomdError
from zoomdlab.vmlab.provision import default_cache_dir


def _parser() -> argparse.ArgumentParser:
    from zoomdlab.vmlab.runner import DAEMONS, SCENARIOS

    parser = argparse.ArgumentParser(prog="python -m zoomdlab.vmlab", description=__doc__)
    parser.add_argument("--cache", default=None,
                        help=f"kernel, venv and scratch (default {default_cache_dir()})")
    sub = parser.add_subparsers(dest="command", required=True)
    prov = sub.add_parser("provision", help="install packages, fetch the kernel, build the venv")
    prov.add_argument("--no-apt", dest="apt", action="store_false",
                      help="do not apt-get install (fail if something is missing)")
    prov.add_argument("--no-peers", dest="peers", action="store_false",
                      help="skip earlyoom and nohang")
    prov.add_argument("--kernel-package", default=None)
    run = sub.add_parser("run", help="one VM run; writes OUT/summary.json")
    run.add_argument("scenario", choices=sorted(SCENARIOS))
    run.add_argument("--daemon", choices=sorted(DAEMONS), default="kernel")
    run.add_argument("--duration", type=float, default=60.0, help="workload seconds (guest)")
    run.add_argument("--interval", type=float, default=0.25, help="sampling interval (s)")
    run.add_argument("--out", required=True)
    run.add_argument("--timeout", type=float, default=None, help="wall seconds for the VM")
    summ = sub.add_parser("summarize", help="recompute OUT/summary.json from its timeline")
    summ.add_argument("out")
    bench = sub.add_parser("bench", help="every scenario x daemon, N runs; table and plots")
    bench.add_argument("--out", required=True, help="runs (timelines, logs) go here")
    bench.add_argument("--publish", default=None,
                       help="write results.json, table.md, PNGs and per-run summaries here")
    bench.add_argument("--runs", type=int, default=1)
    bench.add_argument("--duration", type=float, default=60.0)
    bench.add_argument("--scenarios", default=",".join(SCENARIOS))
    bench.add_argument("--daemons", default=",".join(DAEMONS))
    bench.add_argument("--report-only", action="store_true",
                       help="only rebuild the table and plots from OUT")
    sub.add_parser("clean", help="remove the cache folder")
    from zoomdlab.vmlab.sysvm import SUITES, VARIANTS

    sysvm = sub.add_parser("sysvm", help="boot a Debian guest with systemd as PID 1 and "
                           "zoomd's .deb installed; run scenarios (zoomdlab.vmlab.sysvm)")
    sysvm.add_argument("--out", required=True, help="results, console and journal go here")
    sysvm.add_argument("--deb", default=None,
                       help="zoomd's .deb (default: build it with packaging/build-deb.sh)")
    sysvm.add_argument("--variant", choices=sorted(VARIANTS), default="dropin")
    sysvm.add_argument("--suite", choices=sorted(SUITES), default="bookworm")
    sysvm.add_argument("--scenarios", default=None,
                       help="comma-separated (default: the variant's own list)")
    sysvm.add_argument("--timeout", type=float, default=900.0,
                       help="wall seconds for the boot and every scenario")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from zoomdlab.vmlab import provision as prov

    if args.command in ("run", "bench", "sysvm"):
        from zoomdlab.lab.signals import terminate_as_interrupt

        terminate_as_interrupt()  # SIGTERM unwinds like Ctrl-C: qemu killed, scratch removed
    try:
        if args.command == "clean":
            print(f"removed {prov.clean(args.cache)}")
            return 0
        if args.command == "summarize":
            from zoomdlab.vmlab.summary import summarize_vm

            print(json.dumps(summarize_vm(args.out), indent=2))
            return 0
        if args.command == "provision":
            tools = prov.provision(args.cache, apt=args.apt, peers=args.peers,
                                   package=args.kernel_package)
            print(json.dumps(tools.to_json(), indent=2))
            return 0
        if args.command == "sysvm":
            from zoomdlab.vmlab import sysvm as sv

            deb = args.deb or sv.build_deb(f"{args.out}/deb", vendor=sv.VENDORED[args.suite])
            scenarios = (args.scenarios.split(",") if args.scenarios
                         else sv.DEFAULT_SCENARIOS[args.variant])
            summary = sv.run_sysvm(sv.SysVmRun(scenarios, args.out, deb, args.variant,
                                               timeout=args.timeout),
                                   sv.provision(suite=args.suite))
            print(json.dumps(sv.brief(summary), indent=2))
            return 0 if sv.passed(summary) else 1
        if args.command == "bench":
            from zoomdlab.vmlab.bench import bench

            return bench(args)
        from zoomdlab.vmlab.runner import VmRun, run_vm

        tools = prov.provision(args.cache, apt=False)
        summary = run_vm(VmRun(args.scenario, args.daemon, args.duration, args.out,
                               interval=args.interval, timeout=args.timeout), tools)
        print(json.dumps(summary, indent=2))
        return 0 if "error" not in summary else 1
    except ZoomdError as exc:
        print(f"zoomdlab.vmlab: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("zoomdlab.vmlab: interrupted; qemu killed, scratch folder removed", file=sys.stderr)
        return 130
