"""Hostile-input cases of issue 15, items 1-3 and 11, run against one or two checkouts.

    sudo python benchmarks/hostile_security.py --before /tmp/old-checkout --after .

Each case runs zoomd from the checkout (PYTHONPATH, a console-script-like launcher so
that the working directory is not on the daemon's own import path) on a copy of the
cgroup2-pure fixture tree, never on the live host's cgroups, and prints what happened:
"ran code", "accepted", "exit N", ... Root is needed (chown to uid 65534, the
ownership rule applies to root only). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

NOBODY = 65534
POLICY = ('[[policy]]\nname = "p"\nmonitor = "{monitor}"\n[policy.all]\n'
          'memory_pressure_full_above = "50%"\n')


class Case:
    def __init__(self, checkout: Path, work: Path) -> None:
        self.checkout = checkout.resolve()
        self.work = work
        self.tree = work / "tree"
        shutil.copytree(self.checkout / "tests/fixtures/trees/cgroup2-pure", self.tree)
        self.launcher = work / "bin" / "zoomd"
        self.launcher.parent.mkdir()
        self.launcher.write_text("import sys\nfrom zoomd.cli import main\nsys.exit(main())\n")

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.checkout), **extra}

    def zoomd(self, *argv: str, cwd: Path | None = None, timeout: float = 60,
              ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(self.launcher), *argv], cwd=cwd or self.work,
                              env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start(self, *argv: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        """Start and wait until the daemon (or recorder) is running."""
        proc = subprocess.Popen([sys.executable, str(self.launcher), *argv],
                                cwd=cwd or self.work, env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(2.5)
        return proc

    def config(self, text: str, name: str = "z.toml") -> str:
        path = self.work / name
        path.write_text(text)
        os.chmod(path, 0o644)
        return str(path)

    def run_args(self, config: str | None = None) -> list[str]:
        args = ["run", "--dry-run", "--root", str(self.tree)]
        return args + (["--config", config] if config else [])


def outcome(proc: subprocess.CompletedProcess[str]) -> str:
    if "Traceback" in proc.stderr:
        return f"exit {proc.returncode}, traceback"
    if proc.returncode == 0:
        return "exit 0"
    # Error lines ("zoomd: ..."), not the daemon's log lines ("<6>...") before them.
    errors = [line for line in proc.stderr.splitlines() if line.startswith("zoomd: ")]
    return f"exit {proc.returncode}, {len(errors)} line" + "s" * (len(errors) != 1)


def hostile_dir(case: Case, package: str) -> tuple[Path, Path]:
    d = case.work / f"D-{package}"
    (d / package).mkdir(parents=True)
    marker = case.work / f"PWN-{package}"
    (d / package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    return d, marker


def case_cwd_package(package: str) -> Callable[[Case], str]:
    def run(case: Case) -> str:
        d, marker = hostile_dir(case, package)
        proc = case.zoomd(*case.run_args(), "--duration", "0.5", cwd=d)
        return "ran code (marker written as root)" if marker.exists() else \
            f"not run ({outcome(proc)})"
    return run


def case_reload_from_cwd(case: Case) -> str:
    """The package appears in the daemon's working directory after it started."""
    d = case.work / "D-later"
    d.mkdir()
    proc = case.start(*case.run_args(), "--duration", "30", cwd=d)
    (d / "pydantic").mkdir()
    marker = case.work / "PWN-later"
    (d / "pydantic" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    proc.send_signal(signal.SIGHUP)
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    return "ran code at SIGHUP" if marker.exists() else "not run"


def case_lab_workload(case: Case) -> str:
    d, marker = hostile_dir(case, "zoomd")
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from zoomdlab.lab.scenario import _workload_argv, ScenarioConfig;"
            "import subprocess; subprocess.run(_workload_argv(ScenarioConfig("
            "scenario='thrash', duration=1.0, out='/nonexistent'), 'bystander')[:-2] + ['--help'],"
            " capture_output=True)")
    subprocess.run([sys.executable, "-I", "-c", code, str(case.checkout)], cwd=d,
                   capture_output=True, timeout=60, check=False)
    return "ran code" if marker.exists() else "not run"


def _users_dir(case: Case) -> Path:
    u = case.work / "home" / "u"
    (u / "a" / "b").mkdir(parents=True)
    (u / "a" / "evil.toml").write_text(POLICY.format(monitor="/").replace('"p"', '"evil"'))
    for p in (u, u / "a", u / "a" / "b", u / "a" / "evil.toml"):
        os.chown(p, NOBODY, NOBODY)
    return u


def case_dotdot(case: Case) -> str:
    u = _users_dir(case)
    etc = case.work / "etc"
    etc.mkdir()
    (etc / "link").symlink_to(u / "a" / "b")
    proc = case.zoomd(*case.run_args("link/../evil.toml"), "--duration", "0.3", cwd=etc)
    if proc.returncode == 0 and "evil" in proc.stdout + proc.stderr:
        return "accepted: ran uid 65534's policy"
    return f"refused, {outcome(proc)}"


def case_shipped_link_dropins(case: Case) -> str:
    u = case.work / "u2"
    (u / "z.toml.d").mkdir(parents=True)
    (u / "z.toml").symlink_to(case.checkout / "zoomd/data/zoomd.toml")
    (u / "z.toml.d" / "evil.toml").write_text(POLICY.format(monitor="/").replace(
        '"p"', '"evil"'))
    for p in (u, u / "z.toml", u / "z.toml.d", u / "z.toml.d" / "evil.toml"):
        os.chown(p, NOBODY, NOBODY, follow_symlinks=False)
    proc = case.zoomd(*case.run_args(str(u / "z.toml")), "--duration", "0.3")
    if proc.returncode == 0 and "evil" in proc.stdout + proc.stderr:
        return "accepted: ran uid 65534's drop-in"
    return f"refused, {outcome(proc)}"


def case_check_shows(case: Case) -> str:
    path = case.config(POLICY.format(monitor="/") + '[taskstats]\nenabled = true\n'
                       '[[hook]]\nname = "h"\ncommand = ["/usr/bin/logger", "x"]\n')
    proc = case.zoomd("check", "--config", path)
    shown = [t for t in ("[[hook]]", "[taskstats]") if t in proc.stdout]
    return f"{outcome(proc)}, shows {' and '.join(shown) or 'neither'}"


def case_check_unsafe(case: Case) -> str:
    path = case.config(POLICY.format(monitor="/"), "unsafe.toml")
    os.chmod(path, 0o666)
    check = case.zoomd("check", "--config", path)
    run = case.zoomd(*case.run_args(path), "--duration", "0.3")
    return f"check {outcome(check)}; run {outcome(run)}"


def _check_and_run(case: Case, text: str, name: str) -> str:
    path = case.config(text, name)
    extra = ["--root", str(case.tree)] if "--root" in case.zoomd("check", "-h").stdout else []
    check = case.zoomd("check", *extra, "--config", path)
    run = case.zoomd(*case.run_args(path), "--duration", "0.5")
    return f"check {outcome(check)}; run {outcome(run)}"


def case_missing_monitor(case: Case) -> str:
    return _check_and_run(case, POLICY.format(monitor="/no-such.slice"), "m.toml")


def case_listen(case: Case) -> str:
    return _check_and_run(case, POLICY.format(monitor="/") +
                          '[metrics]\nlisten = "192.0.2.1:9464"\n', "l.toml")


def case_textfile(case: Case) -> str:
    return _check_and_run(case, POLICY.format(monitor="/") +
                          f'[metrics]\ntextfile = "{case.work}/none/z.prom"\n', "t.toml")


def case_reload_listen(case: Case) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = case.config(POLICY.format(monitor="/") + f'[metrics]\nlisten = "{port}"\n',
                       "r.toml")
    proc = case.start(*case.run_args(path), "--duration", "30")
    case.config(POLICY.format(monitor="/") + '[metrics]\nlisten = "192.0.2.1:9464"\n',
                "r.toml")
    proc.send_signal(signal.SIGHUP)
    time.sleep(2.5)
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    return "kept running (reload refused)" if alive else \
        f"daemon stopped, exit {proc.returncode}"


def case_reload_adds_metrics(case: Case) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = case.config(POLICY.format(monitor="/"), "a.toml")
    proc = case.start(*case.run_args(path), "--duration", "30")
    case.config(POLICY.format(monitor="/") + f'[metrics]\nlisten = "{port}"\n', "a.toml")
    proc.send_signal(signal.SIGHUP)
    time.sleep(2.5)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            served = True
    except OSError:
        served = False
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    return "metrics served" if served else "metrics not started"


def case_signal(command: str, signum: int) -> Callable[[Case], str]:
    def run(case: Case) -> str:
        if command == "run":
            argv = [*case.run_args(), "--duration", "60"]
        else:
            argv = ["record", "-o", str(case.work / f"t-{signum}.jsonl"), "--root",
                    str(case.tree), "--interval", "0.1", "--duration", "60"]
        proc = case.start(*argv)
        proc.send_signal(signum)
        proc.communicate(timeout=30)
        return f"exit {proc.returncode}"
    return run


CASES: list[tuple[str, str, Callable[[Case], str]]] = [
    ("1", "`zoomd run --dry-run` from a cwd holding zoomd/__init__.py",
     case_cwd_package("zoomd")),
    ("1", "`zoomd run --dry-run` from a cwd holding pydantic/__init__.py",
     case_cwd_package("pydantic")),
    ("1", "SIGHUP reload, daemon started from a cwd holding pydantic/", case_reload_from_cwd),
    ("1", "lab workload child started from a cwd holding zoomd/", case_lab_workload),
    ("2", "`run --config link/../evil.toml`, link -> uid 65534's a/b", case_dotdot),
    ("2", "`run --config` uid 65534's link to the shipped zoomd.toml + its drop-in",
     case_shipped_link_dropins),
    ("3", "`check` of a config with [[hook]] and [taskstats]", case_check_shows),
    ("3", "`check`/`run` as root, config mode 0666", case_check_unsafe),
    ("3", "`check`/`run`, monitor = \"/no-such.slice\"", case_missing_monitor),
    ("3", "`check`/`run`, listen = \"192.0.2.1:9464\" (not an address of ours)",
     case_listen),
    ("3", "`check`/`run`, textfile in a directory that does not exist", case_textfile),
    ("3", "SIGHUP reload to listen = \"192.0.2.1:9464\"", case_reload_listen),
    ("3", "SIGHUP reload that adds listen = PORT to a daemon started without",
     case_reload_adds_metrics),
    ("11", "`run`, SIGINT", case_signal("run", signal.SIGINT)),
    ("11", "`run`, SIGTERM", case_signal("run", signal.SIGTERM)),
    ("11", "`record`, SIGINT", case_signal("record", signal.SIGINT)),
]


def results(checkout: Path) -> list[str]:
    out = []
    for _, _, fn in CASES:
        with tempfile.TemporaryDirectory(prefix="zoomd-hostile-") as tmp:
            os.chmod(tmp, 0o755)
            try:
                out.append(fn(Case(checkout, Path(tmp))))
            except Exception as exc:  # a case that cannot run says so in the table
                out.append(f"case failed: {type(exc).__name__}: {exc}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (chown, the root-only ownership rule)", file=sys.stderr)
        return 2
    before, after = results(args.before), results(args.after)
    print("| item | case | before | after |\n|---|---|---|---|")
    for (item, text, _), b, a in zip(CASES, before, after, strict=True):
        print(f"| {item} | {text} | {b} | {a} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
