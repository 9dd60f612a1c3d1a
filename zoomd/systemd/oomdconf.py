"""oomd.conf: systemd-oomd's [OOM] settings, read the way systemd reads them.

Main file: the first of /etc, /run, /usr/local/lib, /usr/lib (systemd/oomd.conf);
systemd 252 reads only /etc/systemd/oomd.conf, which comes first anyway. Drop-ins:
`oomd.conf.d/*.conf` from /etc, /run, /usr/local/lib, /usr/lib (and /lib on
split-usr systems); a name in an earlier directory hides the same name in a later
one, a symlink to /dev/null or an empty file masks it, and the survivors are applied
after the main file in name order. A bad value is a warning naming file, line and
key, and the value before it stays, as systemd does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from zoomd.systemd.values import (
    USEC_INFINITY,
    USEC_PER_SEC,
    parse_permyriad,
    parse_timespan,
)

DEFAULT_SWAP_USED_LIMIT = 9000  # permyriad
DEFAULT_PRESSURE_LIMIT = 6000  # permyriad
DEFAULT_PRESSURE_DURATION = 30 * USEC_PER_SEC
DEFAULT_PREKILL_TIMEOUT = 0  # oomd.conf(5), v260: 0 = no hooks are called
MAX_PREKILL_TIMEOUT = 120 * USEC_PER_SEC  # zoomd's cap (systemd has none)

MAIN_FILES = ("/etc/systemd/oomd.conf", "/run/systemd/oomd.conf",
              "/usr/local/lib/systemd/oomd.conf", "/usr/lib/systemd/oomd.conf")
DROPIN_DIRS = ("/etc/systemd/oomd.conf.d", "/run/systemd/oomd.conf.d",
               "/usr/local/lib/systemd/oomd.conf.d", "/usr/lib/systemd/oomd.conf.d",
               "/lib/systemd/oomd.conf.d")


@dataclass(frozen=True)
class OomdConf:
    """The effective [OOM] settings and where they came from."""

    swap_used_limit: int = DEFAULT_SWAP_USED_LIMIT  # permyriad
    pressure_limit: int = DEFAULT_PRESSURE_LIMIT  # permyriad
    pressure_duration_usec: int = DEFAULT_PRESSURE_DURATION
    prekill_timeout_usec: int = DEFAULT_PREKILL_TIMEOUT
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)


def _masked(path: str) -> bool:
    try:
        return os.path.realpath(path) == "/dev/null" or os.path.getsize(path) == 0
    except OSError:
        return True


def _at(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path


def dropin_files(root: str, directories: tuple[str, ...], suffix: str) -> list[str]:
    """systemd's conf_files_list(): `*suffix` files of `directories`, a name in an
    earlier directory hiding it in later ones, masked (empty, or a symlink to
    /dev/null) ones left out, in name order."""
    chosen: dict[str, str] = {}
    seen_dirs: set[str] = set()
    for directory in directories:
        real = _at(root, directory)
        try:
            key = os.path.realpath(real)
            if key in seen_dirs:
                continue  # /lib -> /usr/lib on merged-usr systems
            seen_dirs.add(key)
            names = os.listdir(real)
        except OSError:
            continue
        for name in names:
            if name.endswith(suffix) and name not in chosen:
                chosen[name] = os.path.join(real, name)
    return [chosen[name] for name in sorted(chosen) if not _masked(chosen[name])]


def config_files(root: str = "/") -> list[str]:
    """Main file then drop-ins, in the order systemd applies them (paths under root)."""
    files: list[str] = []
    for main in MAIN_FILES:
        if os.path.isfile(_at(root, main)) or os.path.islink(_at(root, main)):
            if not _masked(_at(root, main)):
                files.append(_at(root, main))
            break
    files.extend(dropin_files(root, DROPIN_DIRS, ".conf"))
    return files


# systemd ends a line at "\n", "\r\n" or "\r" only: str.splitlines() would also split at
# "\x85", "\u2028", "\x0b"..., numbering lines differently and turning the tail of a
# comment into an assignment. Likewise WHITESPACE is ASCII: str.strip() would also drop
# a no-break space and accept "90%\xa0".
_EOL = re.compile(r"\r\n|\r|\n")
_WHITESPACE = " \t\n\r"


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) with backslash continuations joined."""
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(_EOL.split(text), 1):
        if not pending:
            start = number
        if raw.endswith("\\") and not raw.endswith("\\\\"):
            pending += raw[:-1] + " "
            continue
        out.append((start, pending + raw))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def assignments(text: str, section_name: str,
                warn: Callable[[int, str], None]) -> Iterator[tuple[int, str, str]]:
    """(line, key, value) of each assignment in [section_name], as systemd's
    config_parse() reads them: other sections are warned about (X- ones silently) and
    skipped, as are lines outside a section and lines without '='."""
    section: str | None = None
    ignored_section = False
    for line, raw in _logical_lines(text):
        stripped = raw.strip(_WHITESPACE)
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]"):
                warn(line, f"invalid section header {stripped!r}, ignoring")
                continue
            name = stripped[1:-1]
            if name == section_name:
                section, ignored_section = name, False
            else:
                section, ignored_section = None, True
                if not name.startswith("X-"):
                    warn(line, f"unknown section {name!r}, ignoring")
            continue
        if section is None:
            if not ignored_section:
                warn(line, "assignment outside of section, ignoring")
            continue
        key, eq, value = stripped.partition("=")
        if not eq:
            warn(line, "missing '=', ignoring line")
            continue
        yield line, key.strip(_WHITESPACE), value.strip(_WHITESPACE)


def parse_text(text: str, path: str, conf: OomdConf) -> OomdConf:
    """Apply one file's [OOM] assignments on top of `conf`."""
    warnings = list(conf.warnings)

    def warn(line: int, message: str) -> None:
        warnings.append(f"{path}:{line}: {message}")

    for line, key, value in assignments(text, "OOM", warn):
        conf = _assign(conf, key, value, lambda message, ln=line: warn(ln, message))
    return replace(conf, files=(*conf.files, path), warnings=tuple(warnings))


# Keys holding a percentage (permyriad inside), and the OomdConf field each sets.
_PERCENT_KEYS = {"SwapUsedLimit": "swap_used_limit",
                 "DefaultMemoryPressureLimit": "pressure_limit"}


def _assign(conf: OomdConf, key: str, value: str, warn) -> OomdConf:  # type: ignore[no-untyped-def]
    if key in _PERCENT_KEYS:
        name = _PERCENT_KEYS[key]
        try:
            return replace(conf, **{name: parse_permyriad(value)})
        except ValueError as exc:
            warn(f"{key}={value}: {exc}; keeping {getattr(conf, name) / 100:g}%")
            return conf
    if key == "DefaultMemoryPressureDurationSec":
        if not value:
            return replace(conf, pressure_duration_usec=DEFAULT_PRESSURE_DURATION)
        try:
            usec = parse_timespan(value)
        except ValueError as exc:
            warn(f"DefaultMemoryPressureDurationSec={value}: {exc}; keeping "
                 f"{conf.pressure_duration_usec / USEC_PER_SEC:g}s")
            return conf
        if usec == 0:
            return replace(conf, pressure_duration_usec=DEFAULT_PRESSURE_DURATION)
        if usec < USEC_PER_SEC or usec == USEC_INFINITY:
            warn(f"DefaultMemoryPressureDurationSec={value}: must be at least 1s and less "
                 f"than infinity; keeping {conf.pressure_duration_usec / USEC_PER_SEC:g}s")
            return conf
        return replace(conf, pressure_duration_usec=usec)
    if key == "PrekillHookTimeoutSec":
        # systemd (v260, src/oom/oomd-conf.c): config_parse_sec, no lower bound in code
        # (oomd.conf(5) asks for at least 1s); 0 turns the hooks off. "infinity" would
        # let one hung hook hold every kill for ever: zoomd caps it.
        try:
            usec = parse_timespan(value)
        except ValueError as exc:
            warn(f"PrekillHookTimeoutSec={value}: {exc}; keeping "
                 f"{conf.prekill_timeout_usec / USEC_PER_SEC:g}s")
            return conf
        if usec > MAX_PREKILL_TIMEOUT:
            warn(f"PrekillHookTimeoutSec={value}: a kill must not wait that long for "
                 f"hooks; using {MAX_PREKILL_TIMEOUT // USEC_PER_SEC}s")
            usec = MAX_PREKILL_TIMEOUT
        return replace(conf, prekill_timeout_usec=usec)
    warn(f"unknown key {key!r} in section 'OOM', ignoring")
    return conf


def load_oomd_conf(root: str = "/") -> OomdConf:
    """The effective oomd.conf of the host under `root`; unreadable files are warnings."""
    conf = OomdConf()
    for path in config_files(root):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError as exc:
            conf = replace(conf, warnings=(*conf.warnings, f"{path}: {exc.strerror}"))
            continue
        conf = parse_text(text, path, conf)
    return conf
