"""Command line: `zoomd status`, `zoomd check`, `zoomd run`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from zoomd import __version__
from zoomd.cli import argtypes
from zoomd.errors import ZoomdError
from zoomd.kernel.root import Root
from zoomd.kinds import ANON_MODES
from zoomd.model.reclaim import ModelParams


def _cmd_status(args: argparse.Namespace) -> int:
    if args.stalls:
        from zoomd.cli.status_stalls import cmd_stalls

        return cmd_stalls(args)
    from zoomd.status import collect, dumps, render_text, status_json

    if args.format == "oomctl":
        from zoomd.systemd.status import render_oomctl

        print(render_oomctl(args.config, Root(args.root)), end="")
        return 0
    params = ModelParams(anon=args.mode)
    root = Root(args.root)
    try:
        snap, est, window = collect(root, args.sample, params, args.page_size)
    except ZoomdError as first:
        from zoomd.diagnose import find_problems

        problems = find_problems(root) or [str(first)]
        for problem in problems:
            print(f"zoomd: {problem}", file=sys.stderr)
        print("zoomd: status cannot be trusted: not shown", file=sys.stderr)
        return first.exit_status
    data = status_json(snap, est, window)
    data["domains"] = _domains_json(root)
    print(dumps(data) if args.json or args.format == "json" else render_text(data))
    return 0


def _domains_json(root: Root) -> dict[str, object]:
    """The memory domains the shipped default's templates would guard here, each with
    its own memory PSI, and the limited groups that cannot be guarded, with why."""
    from zoomd.daemon.domains import discover
    from zoomd.kernel.cgroups import CgroupReader

    try:
        reader = CgroupReader(root)
        found = discover(reader)
        out = []
        for domain in found.domains:
            psi = reader.pressure(domain.path)
            out.append({"path": domain.path, "limit_bytes": domain.limit,
                        "source": domain.source,
                        "memory_pressure_full_avg10": psi.full.avg10
                        if psi is not None and psi.full is not None else None})
    except (OSError, ZoomdError) as exc:
        return {"error": str(exc)}
    return {"limited": out, "unguarded": found.unguarded, "truncated": found.truncated}


def build_parser() -> argparse.ArgumentParser:
    parser = argtypes.OneLineParser(
        prog="zoomd",
        description="Userspace OOM policy for hosts whose swap is RAM-backed (zram).",
        epilog="Exit status: 0 success, 2 bad configuration or kernel input (the message "
               "names the file), 130 interrupted. `zoomd COMMAND --help` shows a "
               "command's options; man zoomd(8) and zoomd.toml(5) have the rest.",
    )
    parser.add_argument("--version", action="version", version=f"zoomd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    status = sub.add_parser("status", help="show what is really reclaimable on this host")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--format", choices=("text", "json", "oomctl"), default="text",
                        help="text (default), json (as --json), or oomctl: the cgroups the "
                             "configuration monitors, as `oomctl dump` shows them")
    status.add_argument("--config", metavar="FILE", default=None,
                        help="configuration whose monitored cgroups --format oomctl shows "
                             "(default: /etc/zoomd/zoomd.toml, else the shipped one)")
    status.add_argument("--root", default="/", metavar="DIR",
                        help="read DIR/proc and DIR/sys (a captured tree) instead of the host")
    status.add_argument("--sample", type=argtypes.seconds(0.0, 600.0), default=1.0,
                        metavar="SECONDS",
                        help="window over which reclaim efficiency is measured (0: none; at "
                             "most 10min)")
    status.add_argument("--mode", choices=ANON_MODES, default="auto",
                        help="anon model used for effective available (default: auto)")
    status.add_argument("--page-size", type=argtypes.page_size, default=None,
                        metavar="BYTES",
                        help="page size of the host the tree came from (default: this host's)")
    status.add_argument("--stalls", action="store_true",
                        help="instead: the processes and cgroups stalling most on memory "
                             "over the --sample window (taskstats; needs CAP_NET_ADMIN)")
    status.add_argument("--enable-delayacct", action="store_true",
                        help="with --stalls: turn kernel.task_delayacct on for the window "
                             "and restore it after")
    status.add_argument("--top", type=argtypes.count(1, 10000), default=10, metavar="N",
                        help="with --stalls: how many processes and cgroups to show "
                             "(default: 10)")
    status.set_defaults(func=_cmd_status)
    _add_daemon_commands(sub)
    from zoomd.cli.trace_commands import add_commands as add_trace_commands

    add_trace_commands(sub)
    _add_hidden_commands(sub)
    return parser


def _add_hidden_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`zoomd manpage` and `zoomd completion`, without help (argparse leaves them out
    of the listing). zoomd.cli.manpage imports the loader (and so pydantic): imported
    only when one of them runs, so that `zoomd run` never loads pydantic."""

    def manpage(args: argparse.Namespace) -> int:
        from zoomd.cli.manpage import render

        print(render(args.section, build_parser()), end="")
        return 0

    def completion(args: argparse.Namespace) -> int:
        from zoomd.cli.completion import render_bash

        print(render_bash(build_parser()), end="")
        return 0

    page = sub.add_parser("manpage", description="print the man page zoomd(8) or "
                          "zoomd.toml(5) as roff")
    page.add_argument("section", choices=("8", "5"), help="8: zoomd(8); 5: zoomd.toml(5)")
    page.set_defaults(func=manpage)
    shell = sub.add_parser("completion", description="print shell completion")
    shell.add_argument("shell", choices=("bash",))
    shell.set_defaults(func=completion)


def _add_daemon_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    try:
        from zoomd.cli.daemon_commands import add_commands
    except ImportError:
        return
    add_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ZoomdError as exc:
        print(f"zoomd: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
