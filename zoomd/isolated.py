"""Python children that run zoomd's own code and nothing else.

`python -m zoomd.x` puts the working directory first on the child's import path
(and honours PYTHONPATH, PYTHONSTARTUP, the user's site-packages...): a zoomd/ or
pydantic/ directory wherever root happens to start zoomd would run as root. So a
child is started as `python -I -c BOOT`: isolated mode (no working directory, no
user site, no PYTHON* variables), with BOOT putting the daemon's own import path
back explicitly, the folder holding the very zoomd package the parent runs first,
and then running the module as `-m` would.
"""

from __future__ import annotations

import json
import os
import sys

import zoomd

# argv after -c BOOT: the import path (JSON), the module, the module's own arguments.
_BOOT = (
    "import json, runpy, sys\n"
    "path = json.loads(sys.argv[1])\n"
    "sys.path[:] = path + [p for p in sys.path if p not in path]\n"
    "module = sys.argv[2]\n"
    "del sys.argv[1:3]\n"
    "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
)

# What a child keeps of the parent's environment: the locale and a lookup path.
_KEPT = ("PATH", "LANG", "LANGUAGE", "TZ")


def package_parent() -> str:
    """The folder holding the zoomd package this process runs."""
    return os.path.dirname(os.path.dirname(os.path.abspath(zoomd.__file__)))


def import_path() -> list[str]:
    """zoomd's own folder, then this process's absolute import folders in order (a
    vendored pydantic ahead of the system's, as the .deb's launcher puts it), minus
    the working directory: `python -m` put it there, not the operator."""
    here = os.path.realpath(os.getcwd())
    parent = package_parent()
    folders = [parent]
    for entry in sys.path:
        if not entry or not os.path.isabs(entry) or not os.path.isdir(entry):
            continue  # "" and relative entries are the working directory again
        if os.path.realpath(entry) == here and entry != parent:
            continue
        folders.append(entry)
    return list(dict.fromkeys(folders))


def module_argv(module: str, *args: str, also: tuple[str, ...] = ()) -> list[str]:
    """argv running `module` as `python -m` would, isolated (see the module's doc);
    `also`: folders put on the child's import path after this process's own (the
    labs' checkout, which holds a package zoomd's install does not)."""
    path = list(dict.fromkeys([*import_path(), *also]))
    return [sys.executable, "-I", "-c", _BOOT, json.dumps(path), module, *args]


def child_env(drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The parent's locale and PATH only (absolute PATH entries: an empty or relative
    one is the working directory), minus `drop`."""
    env = {k: v for k, v in os.environ.items()
           if (k in _KEPT or k.startswith("LC_")) and k not in drop}
    if "PATH" in env:
        env["PATH"] = safe_path(env["PATH"])
    return env


DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def safe_path(path: str | None) -> str:
    """A PATH with only absolute entries: execvp and shutil.which read an empty or
    relative entry (and an empty PATH) as the working directory."""
    kept = [p for p in (path or "").split(os.pathsep) if p.startswith("/")]
    return os.pathsep.join(kept) or DEFAULT_PATH
