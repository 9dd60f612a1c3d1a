"""The checks of single keys of zoomd.toml that a type cannot say: globs that can never
match, regexes that do not compile, cgroup paths, addresses, argv lists. Pure
functions, each returning the value (perhaps normalised) or raising ValueError with
the reason; zoomd/config/runtime.py attaches them to their fields (units.Check)."""

from __future__ import annotations

import re
import unicodedata


def _can_start_with_slash(pattern: str) -> bool:
    """Whether the glob can match some text that begins with "/": "*" may match
    nothing, "**" may match "/", "?" and any other character are not "/"."""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i) or pattern[i] == "/":
            return True
        if pattern[i] != "*":
            return False
        i += 1
    return False


def check_globs(patterns: tuple[str, ...], absolute: bool) -> tuple[str, ...]:
    """Refuse a cgroup glob that can never match (zoomd/daemon/globs.py): an absolute
    one (protect, prefer, avoid) is matched against paths such as
    "/system.slice/sshd.service", a relative one (candidates) against paths below the
    monitor such as "app.slice/x.service"; neither kind of path has an empty, "." or
    ".." component or ends in "/"."""
    for pattern in patterns:
        if "\0" in pattern:
            raise ValueError(f"{pattern!r}: a cgroup path holds no NUL")
        starts = _can_start_with_slash(pattern)
        if absolute and not starts:
            raise ValueError(f"{pattern!r} is matched against absolute cgroup paths and "
                             f"can never match; write \"/{pattern}\" (or \"**/{pattern}\")")
        if not absolute and pattern.startswith("/"):
            raise ValueError(f"{pattern!r}: candidates are globs relative to the monitor "
                             f"and this one can never match; write "
                             f"\"{pattern.lstrip('/') or '**'}\"")
        if absolute and pattern == "/":
            raise ValueError("\"/\" is the root cgroup, which is never acted on anyway; "
                             "to match every group write \"/**\"")
        parts = pattern.split("/")[1:] if pattern.startswith("/") else pattern.split("/")
        if pattern in ("", "/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{pattern!r} can never match: a cgroup path has no empty, "
                             f"\".\" or \"..\" component and does not end in \"/\"")
    return patterns


def absolute_globs(patterns: tuple[str, ...]) -> tuple[str, ...]:
    return check_globs(patterns, absolute=True)


def relative_globs(patterns: tuple[str, ...]) -> tuple[str, ...]:
    return check_globs(patterns, absolute=False)


def one_or_many(value: object) -> object:
    """A single string where a list is expected is a list of one."""
    return (value,) if isinstance(value, str) else value


def regexes(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """Compile each regex now, so that a bad one is refused at load and not raised
    when a process must be chosen (zoomd/daemon/processes.py compiles them again)."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except (re.error, OverflowError, RecursionError, ValueError, MemoryError) as exc:
            raise ValueError(f"{pattern[:60]!r} is not a valid regular expression: "
                             f"{exc}") from None
    return patterns


def cgroup_path(value: str) -> str:
    """An absolute cgroup path, without a trailing "/"."""
    if not value.startswith("/"):
        raise ValueError(f"expected an absolute cgroup path such as \"/user.slice\", "
                         f"got {value!r}")
    path = "/" + value.strip("/") if value != "/" else "/"
    # "/../unified" or "/a/./b" name a group by a name no glob or record uses.
    parts = path.split("/")[1:] if path != "/" else []
    if "\0" in path or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"expected a cgroup path without NUL or empty, \".\" or "
                         f"\"..\" components, got {value!r}")
    return path


def listen_address(value: str) -> str:
    if value and not re.fullmatch(r"(\d+|[^\s\[\]]*:\d+|\[[0-9a-fA-F:.]+\]:\d+)",
                                  value.strip()):
        raise ValueError(f"expected \"PORT\" (loopback) or \"HOST:PORT\", got {value!r}")
    return value.strip()


def not_a_shell_string(value: object) -> object:
    if isinstance(value, str):
        raise ValueError("expected an argv list such as [\"/usr/bin/logger\", \"-t\", "
                         "\"zoomd\"], not a shell string")
    return value


def argv(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value[0].startswith("/"):
        raise ValueError(f"the program must be an absolute path, got {value[0]!r}")
    for i, arg in enumerate(value):
        if "\0" in arg:  # execve() cannot pass it: the hook would fail when it runs
            raise ValueError(f"argument {i} holds a NUL character: {arg!r}")
    return value


MAX_NAME = 128


def _printable_name(value: str, what: str) -> str:
    """Names go into log lines (journal key=value and JSON), metrics labels, records
    and hooks' environment: a control character would split or forge a line."""
    if len(value) > MAX_NAME:
        raise ValueError(f"a {what} name is at most {MAX_NAME} characters, got {len(value)}")
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")),
               None)
    if bad is not None:
        raise ValueError(f"a {what} name holds no control character, got {value!r}")
    return value


def hook_name(value: str) -> str:
    return _printable_name(value, "hook")


def policy_name(value: str) -> str:
    """Besides printable: no '@', which names a template's instances (NAME@/group)."""
    if "@" in value:
        raise ValueError(f"a policy name holds no '@' (template instances are named "
                         f"NAME@/group), got {value!r}")
    return _printable_name(value, "policy")
