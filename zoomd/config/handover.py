"""Load zoomd.toml for the daemon without pydantic in the daemon's process.

The daemon runs `python -m zoomd.config.handover` as a short-lived child: the child
reads and validates the configuration with the pydantic schema, exactly as
`zoomd check` does, and hands back zoomd/config/runtime.py's plain dataclasses
(pickled over a pipe between the daemon and its own child). Pydantic and its
validators (~18 MiB resident) live and die with the child. The child's errors come
back as the same one-line ConfigError, naming the file and the key.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

from zoomd.config import runtime
from zoomd.errors import ConfigError, ZoomdError

CHILD_TIMEOUT_S = 60.0  # a host deep in reclaim can take a while to start Python


def _child_path() -> str:
    """The daemon's own import path, in its order, for the child (a vendored pydantic
    ahead of the system's, as the .deb's launcher puts it), and zoomd's folder."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    folders = [*(p for p in sys.path if p and os.path.isdir(p)), package_parent]
    return os.pathsep.join(dict.fromkeys(folders))


def load_runtime_config(path: str | None = None, drop_ins: bool = True,
                        secure: bool = False) -> tuple[runtime.Config, list[str]]:
    """Validate in a child interpreter; returns the plain configuration and its files."""
    argv = [sys.executable, "-m", "zoomd.config.handover"]
    if path is not None:
        argv += ["--config", path]
    if not drop_ins:
        argv.append("--no-drop-ins")
    if secure:
        argv.append("--secure")
    # Not the daemon's systemd hand-offs: the child must never notify or listen.
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
           and not k.startswith("LISTEN_")}
    env["PYTHONPATH"] = _child_path()
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=CHILD_TIMEOUT_S, env=env,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ZoomdError(f"configuration: cannot run the validating child: {exc}") from None
    if proc.returncode != 0 or not proc.stdout:
        last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ZoomdError(f"configuration: the validating child failed "
                         f"(exit {proc.returncode}): {last[0]}")
    try:
        answer = pickle.loads(proc.stdout)
    except Exception as exc:
        raise ZoomdError(f"configuration: unreadable answer from the validating child: "
                         f"{exc}") from None
    return _unpack(answer)


def _unpack(answer: object) -> tuple[runtime.Config, list[str]]:
    if isinstance(answer, tuple) and answer and answer[0] == "ok":
        _, config, files = answer
        if isinstance(config, runtime.Config):
            return config, list(files)
    elif isinstance(answer, tuple) and answer and answer[0] == "config-error":
        _, path, key, reason = answer
        raise ConfigError(path, key, reason)
    elif isinstance(answer, tuple) and answer and answer[0] == "error":
        raise ZoomdError(str(answer[1]))
    raise ZoomdError("configuration: unexpected answer from the validating child")


def _child(argv: list[str]) -> int:
    """Validate and write the pickled answer to stdout."""
    import argparse

    from zoomd.config.load import load_config
    from zoomd.config.schema import to_runtime

    parser = argparse.ArgumentParser(prog="python -m zoomd.config.handover")
    parser.add_argument("--config", default=None)
    parser.add_argument("--no-drop-ins", action="store_true")
    parser.add_argument("--secure", action="store_true")
    args = parser.parse_args(argv)
    answer: tuple[object, ...]
    try:
        config, files = load_config(args.config, drop_ins=not args.no_drop_ins,
                                    secure=args.secure)
        answer = ("ok", to_runtime(config), files)
    except ConfigError as exc:
        answer = ("config-error", exc.path, exc.key, exc.reason)
    except ZoomdError as exc:
        answer = ("error", str(exc))
    sys.stdout.buffer.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
