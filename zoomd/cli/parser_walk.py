"""What the generated documents read of an argparse parser: its visible subcommands
and documented options (zoomd(8), the bash completion)."""

from __future__ import annotations

import argparse


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """Visible subcommands in order: (name, help, parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return [(choice.dest, choice.help or "", action.choices[choice.dest])
                    for choice in action._choices_actions]
    return []


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Documented actions of a parser: not -h (documented once), not suppressed."""
    return [a for a in parser._actions
            if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
            and not isinstance(a, argparse._SubParsersAction)]


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def metavar(action: argparse.Action) -> str:
    if action.metavar:
        return str(action.metavar)
    if action.choices:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper()
