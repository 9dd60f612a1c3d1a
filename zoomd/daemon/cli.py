"""`zoomd check` and `zoomd run`."""

from __future__ import annotations

import argparse

from zoomd.config.load import dump_config, load_config


def _cmd_check(args: argparse.Namespace) -> int:
    config, files = load_config(args.config)
    print("# zoomd: configuration is valid; read " + ", ".join(files))
    print(dump_config(config))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    check = sub.add_parser("check", help="validate a configuration and print the effective one")
    check.add_argument("--config", metavar="FILE", default=None,
                       help="configuration file (default: /etc/zoomd/zoomd.toml, "
                            "else the shipped one)")
    check.set_defaults(func=_cmd_check)
