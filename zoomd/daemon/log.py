"""Logging to stderr in a journald-friendly form ("<N>" priority prefixes) or JSON lines."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

PRIORITIES = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "error": 3}


def _one_line(text: str) -> str:
    """journald starts a new entry at each newline: a cgroup path or a peer's string
    holding one ("x\n<0>forged") must not split an event or forge a priority."""
    return text.replace("\n", "\\n").replace("\r", "\\r")


class Logger:
    """Writes one line per event; never raises (a full disk must not stop the daemon)."""

    def __init__(self, fmt: str = "journal", level: str = "info",
                 stream: TextIO | None = None) -> None:
        self.fmt = fmt
        self.threshold = PRIORITIES[level]
        self.stream = stream or sys.stderr

    def log(self, level: str, message: str, **fields: Any) -> None:
        priority = PRIORITIES[level]
        if priority > self.threshold:
            return
        try:
            if self.fmt == "json":
                record = {"time": round(time.time(), 3), "level": level, "message": message}
                record.update(fields)
                self.stream.write(json.dumps(record, default=str) + "\n")
            else:
                extra = "".join(f" {k}={v}" for k, v in fields.items() if v is not None)
                self.stream.write(f"<{priority}>{_one_line(message + extra)}\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def info(self, message: str, **fields: Any) -> None:
        self.log("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.log("warning", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log("error", message, **fields)

    def record(self, record: dict[str, Any]) -> None:
        """A decision record: the whole structure in JSON mode, a summary plus JSON else."""
        try:
            if self.fmt == "json":
                self.stream.write(json.dumps({"level": "notice", **record}, default=str) + "\n")
            else:
                self.stream.write(f"<5>{_one_line(str(record['summary']))}\n")
                self.stream.write("<6>record " + json.dumps(record, default=str) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass
