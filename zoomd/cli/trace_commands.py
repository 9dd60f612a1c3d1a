"""`zoomd record` and `zoomd replay`."""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Callable
from typing import Any

from zoomd.cli import argtypes
from zoomd.errors import ZoomdError


def _cmd_record(args: argparse.Namespace) -> int:
    from zoomd.kernel.root import Root
    from zoomd.trace.recorder import record_for
    from zoomd.trace.writer import check_trace_path

    check_trace_path(args.output, args.keep)  # before anything is read or started
    return record_for(args.output, Root(args.root), interval=args.interval,
                      duration=args.duration, scope=args.scope, config_path=args.config,
                      page_size=args.page_size, max_bytes=args.max_size, keep=args.keep,
                      subtree_every=args.subtree_every, hostname=args.hostname)


def expand_traces(items: list[str]) -> list[str]:
    """Files as given; a directory's trace files (*.jsonl*, sorted); globs expanded."""
    found: list[str] = []
    for item in items:
        if os.path.isdir(item):
            names = sorted(n for n in os.listdir(item) if ".jsonl" in n)
            found.extend(os.path.join(item, n) for n in names
                         if os.path.isfile(os.path.join(item, n)))
        elif not os.path.exists(item) and any(c in item for c in "*?["):
            found.extend(sorted(glob.glob(item)))
        else:
            found.append(item)
    if not found:
        raise ZoomdError(f"no trace found in {' '.join(items)}")
    return found


def replay_all(paths: list[str], specs: list[Any], warn: Callable[[str], None],
               stall_pct: float) -> tuple[list[Any], list[tuple[str, str]]]:
    """Replay each trace; in a fleet a bad one is skipped with a warning (path, error),
    so one damaged file cannot take the report on the others with it. A single trace,
    or a fleet where none replays, is the error itself (one line, exit 2)."""
    from zoomd.trace.replay import Replayer

    results, skipped = [], []
    for path in paths:
        try:
            results.append(Replayer(path, specs, warn, stall_pct=stall_pct).run())
        except ZoomdError as exc:
            if len(paths) == 1:
                raise
            skipped.append((path, str(exc)))
            warn(f"trace skipped: {exc}")
    if not results:
        raise ZoomdError(f"no trace could be replayed ({len(skipped)} skipped)")
    return results, skipped


def _cmd_replay(args: argparse.Namespace) -> int:
    from zoomd.config.load import default_config_path
    from zoomd.trace.replay import load_specs
    from zoomd.trace.report import build_report, dumps, render_text

    specs = load_specs(args.config or [default_config_path()])
    paths = expand_traces(args.traces)

    def warn(message: str) -> None:
        print(f"zoomd: warning: {message}", file=sys.stderr)

    results, skipped = replay_all(paths, specs, warn, args.stall_threshold)
    report = build_report(results, specs, skipped)
    sys.stdout.write(dumps(report) if args.json else render_text(report))
    if args.plot:
        from zoomd.trace.plotting import plot_results

        for written in plot_results(results, args.plot):
            print(f"zoomd: plot written to {written}", file=sys.stderr)
    if args.timing:
        samples = sum(r.samples for r in results)
        seconds = sum(r.replay_seconds for r in results)
        print(f"zoomd: replayed {samples} samples x {len(specs)} configs in {seconds:.2f} s "
              f"({samples / seconds if seconds else 0:.0f} samples/s)", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rec = sub.add_parser("record", help="record what zoomd's readers see into a trace")
    rec.add_argument("-o", "--output", required=True, metavar="FILE",
                     help="trace file (.gz: compressed); an existing one is rotated to FILE.1 "
                          "(a directory, symlink, FIFO or device is refused)")
    rec.add_argument("--interval", type=argtypes.seconds(0.05, 600.0), default=1.0,
                     metavar="S",
                     help="sampling interval, 50ms to 10min (default 1s)")
    rec.add_argument("--duration", type=argtypes.seconds(0.0, argtypes.YEAR),
                     default=None,
                     metavar="S",
                     help="stop after this long (default: until SIGINT/SIGTERM)")
    rec.add_argument("--scope", type=argtypes.cgroup_path, default="/", metavar="CGROUP",
                     help="record the cgroup v2 subtree under CGROUP (default /)")
    rec.add_argument("--config", metavar="FILE", default=None,
                     help="configuration whose monitored groups are recorded every sample "
                          "(default: /etc/zoomd/zoomd.toml, else the shipped one)")
    rec.add_argument("--max-size", type=argtypes.size(64 << 10, 1 << 40), default=64 << 20,
                     metavar="SIZE",
                     help="rotate the trace past this size, 64K to 1T (default 64M)")
    rec.add_argument("--keep", type=argtypes.count(0, 1000), default=3, metavar="N",
                     help="rotated parts kept: FILE.1 .. FILE.N, 0 to 1000 (default 3)")
    rec.add_argument("--subtree-every", type=argtypes.count(1, 1_000_000), default=5,
                     metavar="N",
                     help="record the whole subtree every N samples, and every sample "
                          "while memory stalls (default 5)")
    rec.add_argument("--root", default="/", metavar="DIR", help=argparse.SUPPRESS)
    rec.add_argument("--page-size", type=argtypes.page_size, default=None,
                     help=argparse.SUPPRESS)
    rec.add_argument("--hostname", default=None, help=argparse.SUPPRESS)
    rec.set_defaults(func=_cmd_record)

    rep = sub.add_parser("replay", help="replay traces under one or more configurations")
    rep.add_argument("traces", nargs="+", metavar="TRACE",
                     help="trace files, directories of traces or globs")
    rep.add_argument("--config", action="append", metavar="FILE",
                     help="a configuration to evaluate (repeat to compare; default: "
                          "/etc/zoomd/zoomd.toml, else the shipped one)")
    rep.add_argument("--json", action="store_true", help="machine-readable output")
    rep.add_argument("--plot", metavar="FILE.png", default=None,
                     help="draw a timeline per trace (needs zoomd[report])")
    rep.add_argument("--stall-threshold", type=argtypes.percent, default=10.0, metavar="PCT",
                     help="memory PSI full above which a monitored group counts as "
                          "stalled (default 10)")
    rep.add_argument("--timing", action="store_true",
                     help="print the replay speed on stderr")
    rep.set_defaults(func=_cmd_replay)
