"""One exception family whose message is the one line an operator reads.

Every parser raises a subclass naming the file and the field, so that the CLI can
print it and exit non-zero instead of showing a traceback, and so that no caller
can mistake a misread value for a real one.
"""

from __future__ import annotations

import signal


class ZoomdError(Exception):
    """Base of every error zoomd reports to an operator; exit status 2."""

    exit_status = 2


class KernelFileError(ZoomdError):
    """A kernel file is missing, unreadable or malformed."""

    def __init__(self, path: str, reason: str, field: str | None = None) -> None:
        self.path = path
        self.field = field
        self.reason = reason
        where = f"{path}: field {field!r}" if field else path
        super().__init__(f"{where}: {reason}")


class ConfigError(ZoomdError):
    """A configuration file is invalid: names the file, the key path and what was expected."""

    def __init__(self, path: str, key: str | None, reason: str) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {reason}")


def exit_status(stopped_by: int | None) -> int:
    """0 when stopped by SIGTERM (systemd's stop) or --duration; 128 + 2 = 130 when by
    SIGINT, as a shell reports a Ctrl-C (the documented "interrupted"). Either way
    zoomd stopped cleanly first."""
    return 128 + signal.SIGINT if stopped_by == signal.SIGINT else 0
