"""Load zoomd.toml plus its drop-in directory, and turn errors into one line each.

Drop-ins (`<config>.d/*.toml`, applied in name order) override tables key by key;
`[[policy]]` entries with the name of an existing policy replace it, new names
are appended, so a host can add or retune one rule without copying the file.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from typing import Any

from zoomd.config.runtime import Config, plain, toml_name
from zoomd.config.schema import Invalid, validate
from zoomd.config.security import check_config_files, must_check, program_refusal
from zoomd.errors import ConfigError

try:
    import tomllib
except ImportError:  # pragma: no cover - Pythons before 3.11
    import tomli as tomllib  # type: ignore[no-redef]

SYSTEM_CONFIG = "/etc/zoomd/zoomd.toml"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def shipped_config_path() -> str:
    """The default configuration installed with the package."""
    return str(resources.files("zoomd") / "data" / "zoomd.toml")


def _is_shipped(path: str) -> bool:
    """The package's own zoomd.toml: as trusted as the code beside it that reads it."""
    try:
        return os.path.samefile(path, shipped_config_path())
    except OSError:
        return False


def default_config_path() -> str:
    return SYSTEM_CONFIG if os.path.exists(SYSTEM_CONFIG) else shipped_config_path()


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(path, None, "no such file") from None
    except PermissionError:
        raise ConfigError(path, None, "permission denied") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "is a directory") from None
    except OSError as exc:  # ENOTDIR, ELOOP, EIO...
        raise ConfigError(path, None, exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, None, "not valid UTF-8") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays/tables
        raise ConfigError(path, None, "not valid TOML: nested too deeply") from None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if key == "policy" and isinstance(value, list) and isinstance(merged.get(key), list):
            policies = list(merged[key])
            for entry in value:
                name = entry.get("name") if isinstance(entry, dict) else None
                for i, old in enumerate(policies):
                    if isinstance(old, dict) and name is not None and old.get("name") == name:
                        policies[i] = _merge(old, entry)
                        break
                else:
                    policies.append(entry)
            merged[key] = policies
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _shown_key(key: object) -> str:
    """A key as TOML would write it: bare, or quoted (so the error stays one line)."""
    text = str(key)
    return text if _BARE_KEY.fullmatch(text) else json.dumps(text)


def _key_path(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int) and isinstance(node, list):
            name = node[item].get("name") if isinstance(node[item], dict) else None
            shown = f"({_shown_key(name)})" if isinstance(name, str) and name else ""
            parts[-1] = f"{parts[-1]}[{item}]" + shown
            node = node[item]
            continue
        item = toml_name(item) if isinstance(item, str) else item
        parts.append(_shown_key(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def _source_of(loc: tuple[Any, ...], sources: list[tuple[str, dict[str, Any]]]) -> str:
    """The last file that set the key a validation error is about."""
    for path, data in reversed(sources):
        node: Any = data
        found = True
        for item in loc:
            item = toml_name(item) if isinstance(item, str) else item
            in_dict = isinstance(node, dict) and item in node
            in_list = isinstance(node, list) and isinstance(item, int) and item < len(node)
            if in_dict or in_list:
                node = node[item]
            else:
                found = False
                break
        if found:
            return path
    return sources[-1][0]


def drop_in_files(config_path: str) -> list[str]:
    directory = config_path + ".d"
    if not os.path.isdir(directory):
        return []
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ConfigError(directory, None, exc.strerror or str(exc)) from None
    return [os.path.join(directory, n) for n in names if n.endswith(".toml")]


def _apply_root_rule(main_path: str, files: list[str], drop_ins: bool) -> str:
    """Raise ConfigError unless only root may change the files (security.py); returns
    the name to read the main file by."""
    directory = main_path + ".d"
    directories = [directory] if drop_ins and os.path.isdir(directory) else []
    if _is_shipped(main_path):
        # Exempt is the shipped file, read by its own name (not through a link that
        # someone else may swap once it was judged); never the drop-ins beside it.
        check_config_files(files, directories)
        return shipped_config_path()
    check_config_files([main_path, *files], directories)
    return main_path


def root_rule_problem(path: str | None = None, drop_ins: bool = True) -> str | None:
    """Why a zoomd running as root would refuse this configuration (`zoomd check` run
    by another user says so), or None."""
    main_path = path or default_config_path()
    try:
        _apply_root_rule(main_path, drop_in_files(main_path) if drop_ins else [], drop_ins)
    except ConfigError as exc:
        return str(exc)
    return None


def load_config(path: str | None = None, drop_ins: bool = True,
                secure: bool = False, on_host: bool = False) -> tuple[Config, list[str]]:
    """Load and validate; returns the config and the files it came from.

    With `secure` (the daemon, `zoomd check`), running as root refuses a file, drop-in
    directory or drop-in that anyone but root could change (zoomd/config/security.py).
    With `on_host` (`run`, a reload, `zoomd check` without --file-only), also what
    cannot run here: a hook whose program is missing, not executable, or (as root) one
    that anyone but root may change.
    """
    main_path = path or default_config_path()
    files = drop_in_files(main_path) if drop_ins else []
    if secure and must_check():
        main_path = _apply_root_rule(main_path, files, drop_ins)
    sources = [(main_path, _read_toml(main_path))]
    sources.extend((p, _read_toml(p)) for p in files)
    merged: dict[str, Any] = {}
    for _, data in sources:
        merged = _merge(merged, data)
    try:
        config = validate(merged)
    except Invalid as exc:
        raise ConfigError(_source_of(exc.loc, sources), _key_path(exc.loc, merged) or None,
                          exc.message) from None
    if on_host:
        for i, hook in enumerate(config.hook):
            reason = program_refusal(hook.command[0])
            if reason is not None:
                loc = ("hook", i, "command")
                raise ConfigError(_source_of(loc, sources), _key_path(loc, merged), reason)
    return config, [p for p, _ in sources]


def toml_value(value: Any) -> str:
    """`value` as TOML (zoomd check's dump, the man page's defaults)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value}"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string, one line


def dump_config(config: Config) -> str:
    """The effective configuration as TOML (for `zoomd check`): every table of the
    schema, so nothing `run` uses ([[hook]], [taskstats]...) goes unshown; loading it
    back gives the same configuration."""
    data = plain(config)
    lines: list[str] = []

    def table(header: str, name: str, body: dict[str, Any]) -> None:
        lines.append(header)
        nested = []
        for key, value in body.items():
            if isinstance(value, dict):
                nested.append((key, value))
            else:
                lines.append(f"{_shown_key(key)} = {toml_value(value)}")
        lines.append("")
        for key, value in nested:
            if value:
                table(f"[{name}.{_shown_key(key)}]", f"{name}.{_shown_key(key)}", value)

    for key, value in data.items():
        if isinstance(value, dict):
            table(f"[{key}]", key, value)
        elif not value:
            lines += [f"# [[{key}]]: none", ""]
        else:
            for entry in value:
                table(f"[[{key}]]", key, entry)
    return "\n".join(lines)
