"""The trace format: header fields, line kinds and the one error a bad trace raises.

Lines, after the header:
  {"t": monotonic s, "wall": epoch s, "files": {path: text | null}, "key": true?,
   "dropped": n?}  a sample: texts that changed since the previous sample (null:
                   the file is gone); a keyframe ("key") holds every file
  {"t": ..., "record": {...}}  a decision record of the live daemon
Paths are kernel paths; names starting with "@" are zoomd's own facts (swap device
verdicts), not files.

A trace written by `zoomd run --record` (header "tap": true) holds what the daemon's
readers read (zoomd/kernel/tap.py), with the tick's stamp unrounded; a sample may
also hold "over_budget": n (reads of the tick not kept: its memory bound was spent)
and "rereads": {path: [text, ...]} (a file read again in the tick with other text:
"files" has its first read, this every later one in order, which replay serves to
the readers in turn). Readers of version 1 ignore both (they replay such a file as
its first read): the version is unchanged.
"""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from zoomd.errors import ZoomdError

FORMAT = "zoomd-trace"
VERSION = 1
SWAP_KINDS = "@swap_kinds"  # JSON {swap path: [kind, ram_backed, block_device, via]}


class TraceError(ZoomdError):
    """A trace that cannot be read; the message is one line naming the file."""


def make_header(*, page_size: int, scope: str, started_wall: float,
                hostname: str | None = None, kernel: str | None = None,
                **extra: Any) -> dict[str, Any]:
    """The first line of every trace file (each rotated part starts with one too)."""
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "hostname": hostname if hostname is not None else socket.gethostname(),
        "kernel": kernel if kernel is not None else platform.release(),
        "page_size": page_size,
        "scope": scope,
        "started_wall": round(started_wall, 3),
    }
    header.update(extra)
    return header


def check_header(data: object, where: str) -> dict[str, Any]:
    """The header if `data` is one this zoomd understands; TraceError otherwise."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TraceError(f"{where}: not a zoomd trace (the first line is not a "
                         f"{FORMAT!r} header)")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TraceError(f"{where}: header has no valid version")
    if version > VERSION:
        raise TraceError(f"{where}: trace format version {version} is newer than this "
                         f"zoomd reads (up to {VERSION})")
    for key, kind in (("page_size", int), ("scope", str)):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise TraceError(f"{where}: header field {key!r} missing or not {kind.__name__}")
    # Replay turns pages into bytes with page_size and never kills a vital group: a
    # page_size of 0 or a vital_groups of 5 or "abc" would be misread, not refused.
    if data["page_size"] <= 0:
        raise TraceError(f"{where}: header field 'page_size' is not positive")
    vital = data.get("vital_groups", [])
    if not isinstance(vital, list) or not all(isinstance(g, str) for g in vital):
        raise TraceError(f"{where}: header field 'vital_groups' is not a list of paths")
    return data


def trace_name(path: str) -> str:
    """A short name for reports: the file name without .jsonl/.gz."""
    name = os.path.basename(path)
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name or path
