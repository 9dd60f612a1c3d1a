"""Cgroup path globs: `*` stays within one path component, `**` crosses them."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(compile_glob(p).match(path) for p in patterns)


def relative_to(path: str, base: str) -> str:
    """`path` relative to `base` ("/a/b/c" under "/a" -> "b/c")."""
    if base == "/":
        return path.lstrip("/")
    return path[len(base.rstrip("/")):].lstrip("/")


def is_ancestor_or_self(candidate: str, path: str) -> bool:
    """True when `candidate` is `path` or contains it (killing it would kill `path`)."""
    if candidate == "/":
        return True
    return path == candidate or path.startswith(candidate.rstrip("/") + "/")


def scoped(path: str, scope: str) -> str:
    """Re-root a policy path under `--scope` ("/" stays the scope itself)."""
    if scope in ("", "/"):
        return path
    base = "/" + scope.strip("/")
    return base if path == "/" else base + "/" + path.strip("/")
