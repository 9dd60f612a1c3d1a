"""systemd v261's OOM rulesets: `.oomrule` files, read the way systemd-oomd reads them.

From systemd's source (src/oom/oomd-conf.c ruleset_load_one() and
manager_parse_config_file(), src/oom/oomd-manager.h RULESET_DIRS, commit
00a99cb427b0; oomd.conf(5) "OOM Rulesets"):
- files `*.oomrule` in /etc, /run, /usr/local/lib and /usr/lib `systemd/oomd/rules.d/`
  (conf_files_list: a name in an earlier directory hides it in later ones; an empty
  file or a symlink to /dev/null masks it); the ruleset's name is the file name
  without `.oomrule`, and units name rulesets in `OOMRules=`;
- one section, `[Rule]`: `MemoryPressureAbove=` and `SwapUsageMax=` (percent,
  permille or permyriad, 0-100%), `Action=` (kill-all, kill-by-pgscan, kill-by-swap),
  `LastingSec=` (a time span, default 0: act at once);
- a bad value is a warning and the key keeps its value; a ruleset with neither
  condition, without Action=, or with LastingSec=infinity is ignored with a warning;
- all rulesets are read again on reload (SIGHUP), which restarts their LastingSec
  timers.

zoomd bounds what it reads (MAX_RULE_FILES files of at most MAX_RULE_FILE_BYTES).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from zoomd.systemd.oomdconf import assignments, dropin_files
from zoomd.systemd.values import (
    USEC_INFINITY,
    USEC_PER_SEC,
    parse_permyriad,
    parse_timespan,
    permyriad_to_percent,
)

RULE_DIRS = ("/etc/systemd/oomd/rules.d", "/run/systemd/oomd/rules.d",
             "/usr/local/lib/systemd/oomd/rules.d", "/usr/lib/systemd/oomd/rules.d",
             "/lib/systemd/oomd/rules.d")
SUFFIX = ".oomrule"
ACTIONS = ("kill-all", "kill-by-pgscan", "kill-by-swap")
MAX_RULE_FILES = 1024
MAX_RULE_FILE_BYTES = 64 << 10


@dataclass(frozen=True, slots=True)
class OomRule:
    """One ruleset: its conditions (permyriad, None = not a condition) and action."""

    name: str
    action: str
    memory_pressure_above: int | None = None
    swap_above: int | None = None  # SwapUsageMax=
    lasting_usec: int = 0
    path: str = ""

    def to_json(self) -> dict[str, Any]:
        def pct(v: int | None) -> str | None:
            return None if v is None else permyriad_to_percent(v)

        return {"name": self.name, "file": self.path, "action": self.action,
                "memory_pressure_above": pct(self.memory_pressure_above),
                "swap_usage_max": pct(self.swap_above),
                "lasting_sec": self.lasting_usec / USEC_PER_SEC}


def parse_rule(text: str, path: str) -> tuple[OomRule | None, list[str]]:
    """One file's ruleset (None when systemd would ignore it) and the warnings."""
    name = os.path.basename(path)
    if name.endswith(SUFFIX):
        name = name[: -len(SUFFIX)]
    warnings: list[str] = []
    values: dict[str, Any] = {"memory_pressure_above": None, "swap_above": None,
                              "action": None, "lasting_usec": 0}

    def warn(line: int, message: str) -> None:
        warnings.append(f"{path}:{line}: {message}")

    for line, key, value in assignments(text, "Rule", warn):
        if key in ("MemoryPressureAbove", "SwapUsageMax"):
            field = "memory_pressure_above" if key == "MemoryPressureAbove" else "swap_above"
            try:
                values[field] = parse_permyriad(value)
            except ValueError as exc:
                warn(line, f"{key}={value}: {exc}, ignoring")
        elif key == "Action":
            if value in ACTIONS:
                values["action"] = value
            else:
                warn(line, f"Action={value}: not one of {', '.join(ACTIONS)}, ignoring")
        elif key == "LastingSec":
            try:
                values["lasting_usec"] = parse_timespan(value)
            except ValueError as exc:
                warn(line, f"LastingSec={value}: {exc}, ignoring")
        else:
            warn(line, f"unknown key {key!r} in section 'Rule', ignoring")
    if values["memory_pressure_above"] is None and values["swap_above"] is None:
        warnings.append(f"{path}: ruleset '{name}' has no conditions configured "
                        "(MemoryPressureAbove= or SwapUsageMax=), ignoring")
        return None, warnings
    if values["action"] is None:
        warnings.append(f"{path}: ruleset '{name}' has no Action= configured, ignoring")
        return None, warnings
    if values["lasting_usec"] == USEC_INFINITY:
        warnings.append(f"{path}: ruleset '{name}' has LastingSec=infinity which can "
                        "never be satisfied, ignoring")
        return None, warnings
    return OomRule(name=name, path=path, **values), warnings


def load_rules(root: str = "/") -> tuple[dict[str, OomRule], tuple[str, ...]]:
    """The rulesets of the host under `root` by name, and the warnings."""
    files = dropin_files(root, RULE_DIRS, SUFFIX)
    warnings: list[str] = []
    if len(files) > MAX_RULE_FILES:
        warnings.append(f"{len(files)} {SUFFIX} files: only the first {MAX_RULE_FILES} "
                        "are read")
        files = files[:MAX_RULE_FILES]
    rules: dict[str, OomRule] = {}
    for path in files:
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_RULE_FILE_BYTES + 1)
        except OSError as exc:
            warnings.append(f"{path}: {exc.strerror}")
            continue
        if len(raw) > MAX_RULE_FILE_BYTES:
            warnings.append(f"{path}: larger than {MAX_RULE_FILE_BYTES >> 10} KiB, ignoring")
            continue
        rule, notes = parse_rule(raw.decode("utf-8", errors="replace"), path)
        warnings.extend(notes)
        if rule is not None:
            rules[rule.name] = rule
    return rules, tuple(warnings)
