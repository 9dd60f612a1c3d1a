"""`zoomd check` and `zoomd run`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from zoomd.cli import argtypes

if TYPE_CHECKING:
    from zoomd.config.runtime import Config


def _cmd_check(args: argparse.Namespace) -> int:
    """Validate as `run` will: the same files, the ownership rule when root, the same
    start-up refusals (zoomd/daemon/preflight.py); print all that `run` would use."""
    import sys

    from zoomd.config.load import dump_config, load_config, root_rule_problem
    from zoomd.config.security import must_check, program_refusal
    from zoomd.daemon.preflight import preflight
    from zoomd.kernel.cgroups import CgroupReader
    from zoomd.kernel.root import Root

    config, files = load_config(args.config, secure=True, on_host=not args.file_only)
    notes = [] if args.file_only else preflight(
        config, lambda: CgroupReader(Root(args.root)), args.scope)
    if not must_check():
        problem = root_rule_problem(args.config)
        if problem is None and not args.file_only:
            problem = next(filter(None, (program_refusal(h.command[0], as_root=True)
                                         for h in config.hook)), None)
        if problem is not None:
            notes.append(f"run as root, `zoomd run` would refuse it: {problem}")
    for note in notes:
        print(f"zoomd: note: {note}", file=sys.stderr)
    print("# zoomd: configuration is valid; read " + ", ".join(files))
    if config.systemd.managed_oom:
        print("# [systemd] managed_oom: on a systemd host, `run` also adds a policy per "
              "unit with ManagedOOM*= settings, as PID 1 reports them")
    if not args.file_only:
        for line in _instance_lines(config, args.root, args.scope):
            print(line)
    print(dump_config(config))
    return 0


def _instance_lines(config: Config, root: str, scope: str) -> list[str]:
    """What each policy template applies to on this host now (as `run` would start)."""
    from zoomd.daemon.templates import instances_now, templates_of
    from zoomd.errors import ZoomdError
    from zoomd.kernel.cgroups import CgroupReader
    from zoomd.kernel.root import Root

    templates = templates_of(config.policy, scope)
    if not templates:
        return []
    try:
        made, discovery = instances_now(templates, CgroupReader(Root(root)))
    except (OSError, ZoomdError) as exc:
        return [f"# templates: cannot look for their groups here: {exc}"]
    lines = [f"# templates: {len(made)} instance(s) on this host now "
             "(made and dropped as groups come and go)"]
    for inst in made:
        limit = f", limit {inst.domain.limit} bytes ({inst.domain.source})" \
            if inst.domain else ""
        lines.append(f"#   {inst.policy.name}{limit}")
    for group, reason in (discovery.unguarded.items() if discovery else ()):
        lines.append(f"#   not guarded: {group}: {reason}")
    return lines


def _cmd_run(args: argparse.Namespace) -> int:
    from zoomd.daemon.loop import Daemon
    from zoomd.kernel.root import Root

    if args.record:
        from zoomd.trace.writer import check_trace_path

        check_trace_path(args.record)  # at start-up, before the configuration is loaded
    systemd = {}
    if args.managed_oom_socket:
        systemd["system_socket"] = args.managed_oom_socket
    if args.managed_oom_user_socket:
        systemd["user_socket"] = args.managed_oom_user_socket
    daemon = Daemon(args.config, root=Root(args.root), scope=args.scope,
                    dry_run=args.dry_run, duration=args.duration, systemd=systemd,
                    record=args.record)
    return daemon.run()


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    check = sub.add_parser("check", help="validate a configuration as `run` would (and refuse "
                           "what it would refuse here) and print all of the effective one")
    check.add_argument("--config", metavar="FILE", default=None,
                       help="configuration file (default: /etc/zoomd/zoomd.toml, "
                            "else the shipped one)")
    check.add_argument("--scope", type=argtypes.cgroup_path, default="/", metavar="CGROUP",
                       help="as for run: the monitored groups checked to exist are "
                            "re-rooted under this v2 cgroup path; default /")
    check.add_argument("--file-only", action="store_true",
                       help="check the files alone, not what `run` would also refuse on "
                            "this host (a monitored group missing, a listen address it "
                            "cannot bind, no textfile directory, a hook program missing or "
                            "not executable, or one root must not run): for a policy meant "
                            "for other hosts")
    check.add_argument("--root", default="/", metavar="DIR", help=argparse.SUPPRESS)
    check.set_defaults(func=_cmd_check)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", metavar="FILE", default=None,
                     help="configuration file (default: /etc/zoomd/zoomd.toml, "
                          "else the shipped one)")
    run.add_argument("--dry-run", action="store_true",
                     help="decide and log, but never kill, freeze or signal")
    run.add_argument("--scope", type=argtypes.cgroup_path, default="/", metavar="CGROUP",
                     help="re-root every policy's monitor and candidates under this v2 "
                          "cgroup path (e.g. a lab subtree); default /")
    run.add_argument("--root", default="/", metavar="DIR", help=argparse.SUPPRESS)
    run.add_argument("--duration", type=argtypes.seconds(0.0, argtypes.YEAR),
                     default=None,
                     metavar="SECONDS",
                     help="stop after this long (tests, labs); default: run until signalled")
    run.add_argument("--managed-oom-socket", metavar="PATH", default=None,
                     help="PID 1's ManagedOOM varlink socket (overrides [systemd] "
                          "system_socket; default: the current, then the systemd 252 path)")
    run.add_argument("--managed-oom-user-socket", metavar="PATH", default=None,
                     help="listen here for user managers' ManagedOOM reports (overrides "
                          "[systemd] user_socket)")
    run.add_argument("--record", metavar="FILE", default=None,
                     help="also record a trace (see `zoomd record`) of every tick and "
                          "decision to FILE (.gz: compressed; rotated past 64M, 3 kept; a "
                          "directory, symlink, FIFO or device is refused)")
    run.set_defaults(func=_cmd_run)
