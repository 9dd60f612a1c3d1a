"""Hostile-input cases of issue 15, items 4-7 and 10, run against one or two checkouts.

    sudo python benchmarks/hostile_inputs.py --before /tmp/old-checkout --after .

The sibling of hostile_security.py (items 1-3, 11). Each case runs zoomd from the
checkout (PYTHONPATH) on copies of the fixture trees of the --after checkout, never
on the live host's cgroups (`run` gets --root and --dry-run): `check` and `run` on
configurations that break or never match, command-line numbers, and `status --root`
on impossible trees. It prints a markdown table of what happened ("exit 0", "exit 2,
1 line", "traceback", "hung": killed after the timeout) and the totals. Root is
needed for the hook-ownership case only (skipped otherwise).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TIMEOUT = 15.0
POLICY = ('[daemon]\nmlock = false\n{daemon}\n[systemd]\nmanaged_oom = false\ndbus = false\n'
          '[[policy]]\nname = "p"\nmonitor = "/"\n{policy}\n[policy.all]\n'
          'memory_pressure_full_above = "99%"\n{tables}\n')


class Case:
    def __init__(self, checkout: Path, trees: Path, work: Path) -> None:
        self.checkout = checkout.resolve()
        self.trees = trees
        self.work = work
        self.n = 0

    def zoomd(self, *argv: str, timeout: float = TIMEOUT) -> tuple[str, float]:
        """Run zoomd; (outcome, CPU seconds it used)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        env = {**os.environ, "PYTHONPATH": str(self.checkout)}
        proc = subprocess.Popen([sys.executable, "-m", "zoomd", *argv], cwd=self.work,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return f"hung (killed after {timeout:g} s)", 0.0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return outcome(proc.returncode, err), cpu

    def config(self, daemon: str = "", policy: str = "", tables: str = "") -> str:
        self.n += 1
        path = self.work / f"z{self.n}.toml"
        path.write_text(POLICY.format(daemon=daemon, policy=policy, tables=tables))
        return str(path)

    def tree(self, name: str = "zram-only-6.18") -> Path:
        self.n += 1
        tree = self.work / f"tree{self.n}"
        shutil.copytree(self.trees / name, tree, symlinks=True)
        return tree


def outcome(code: int, err: str) -> str:
    if "Traceback" in err:
        last = err.strip().splitlines()[-1].split(":")[0]
        return f"exit {code}, traceback ({last})"
    if code == 0:
        return "exit 0"
    # Error lines, not log lines; status's closing "not shown" is not counted.
    errors = [line for line in err.splitlines() if line.startswith("zoomd")
              and not line.endswith("status cannot be trusted: not shown")]
    return f"exit {code}, {len(errors)} line" + "s" * (len(errors) != 1)


# -- configuration: `check` (file only) and, where it matters, `run` ------------------
def check(**parts: str) -> Callable[[Case], str]:
    def run(case: Case) -> str:
        return case.zoomd("check", "--file-only", "--config", case.config(**parts))[0]
    return run


def check_on_host(**parts: str) -> Callable[[Case], str]:
    def run(case: Case) -> str:
        config = case.config(**parts)
        tree = str(case.tree("cgroup2-pure"))
        checked = case.zoomd("check", "--root", tree, "--config", config)[0]
        ran = case.zoomd("run", "--dry-run", "--duration", "2", "--root", tree,
                         "--config", config)[0]
        return f"check {checked}; run {ran}"
    return run


def run_for(seconds: float, **parts: str) -> Callable[[Case], str]:
    """`run` for a few seconds: its outcome and its CPU use."""
    def run(case: Case) -> str:
        config = case.config(**parts)
        result, cpu = case.zoomd("run", "--dry-run", "--duration", str(seconds), "--root",
                                 str(case.tree("cgroup2-pure")), "--config", config)
        return f"run {result}" + (f", {cpu / seconds:.0%} of a core"
                                  if result == "exit 0" else "")
    return run


def hook_in_writable_dir(case: Case) -> str:
    if os.geteuid() != 0:
        return "skipped (not root)"
    d = case.work / f"open{case.n}"
    d.mkdir()
    d.chmod(0o777)
    program = d / "hook"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    return check_on_host(tables=f'[[hook]]\nname = "h"\ncommand = ["{program}"]\n')(case)


def hook(command: str, extra: str = "") -> str:
    return f'[[hook]]\nname = "h"\ncommand = {command}\n{extra}'


# -- command line -------------------------------------------------------------------------
def cli(*argv: str, tree: bool = False) -> Callable[[Case], str]:
    def run(case: Case) -> str:
        args = [a.replace("OUT", str(case.work / f"out{case.n}.jsonl")) for a in argv]
        if tree:
            args += ["--root", str(case.tree("cgroup2-pure"))]
        return case.zoomd(*args)[0]
    return run


# -- status --root on impossible trees --------------------------------------------------
def _sub(path: Path, pattern: str, repl: str) -> None:
    path.write_text(re.sub(pattern, repl, path.read_text(), count=1, flags=re.M))


def _swap(path: Path, make: Callable[[Path], object]) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    make(path)


def status(change: Callable[[Path], object]) -> Callable[[Case], str]:
    def run(case: Case) -> str:
        tree = case.tree()
        change(tree)
        return case.zoomd("status", "--sample", "0", "--root", str(tree))[0]
    return run


def _sparse(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate((32 << 20) + 1)


CASES: list[tuple[str, str, Callable[[Case], str]]] = [
    ("4", '`check`, process.protect = ["(unclosed"]',
     check(policy='action = "kill-process"', tables='[policy.process]\nprotect = ["("]\n')),
    ("4", 'process.prefer = ["a{99999999999}"]',
     check(policy='action = "kill-process"',
           tables='[policy.process]\nprefer = ["a{99999999999}"]\n')),
    ("5", "hook argv holding NUL", check(tables=hook('["/bin/true", "a\\u0000b"]'))),
    ("5", "two hooks named h", check(tables=hook('["/bin/true"]') + hook('["/bin/true"]'))),
    ("5", "hook program missing", check_on_host(tables=hook('["/no/such/hook"]'))),
    ("5", "hook program mode 0644", lambda c: check_on_host(
        tables=hook(f'["{_plain_file(c)}"]'))(c)),
    ("5", "hook program in a mode-0777 directory (root)", hook_in_writable_dir),
    ("6", "interval = 0", run_for(3, daemon="interval = 0")),
    ("6", "interval = 1e300", run_for(3, daemon="interval = 1e300")),
    ("6", 'interval = "99999999999h"', run_for(3, daemon='interval = "99999999999h"')),
    ("6", "window = 0", check(policy="window = 0")),
    ("6", 'fast_interval = "5s" (interval 1s)', check(daemon='fast_interval = "5s"')),
    ("6", "textfile_interval = 0", check(tables="[metrics]\ntextfile_interval = 0\n")),
    ("6", 'hook timeout = "99999999999h"',
     check(tables=hook('["/bin/true"]', 'timeout = "99999999999h"\n'))),
    ("6", "`run --duration nan`", cli("run", "--dry-run", "--duration", "nan", tree=True)),
    ("6", "`run --duration -1`", cli("run", "--dry-run", "--duration", "-1", tree=True)),
    ("6", "`record --keep -1`", cli("record", "-o", "OUT", "--duration", "1", "--keep", "-1",
                                     tree=True)),
    ("6", "`record --subtree-every 0`", cli("record", "-o", "OUT", "--duration", "2",
                                             "--subtree-every", "0", tree=True)),
    ("6", "`record --max-size 0`", cli("record", "-o", "OUT", "--duration", "2",
                                        "--max-size", "0", tree=True)),
    ("6", "`status --sample nan`", cli("status", "--sample", "nan", tree=True)),
    ("6", "`status --page-size 0`", cli("status", "--sample", "0", "--page-size", "0",
                                         tree=True)),
    ("7", 'protect = ["system.slice/sshd.service"] (relative)',
     check(policy='protect = ["system.slice/sshd.service"]')),
    ("7", 'candidates = ["/app.slice/*"] (absolute)',
     check(policy='candidates = ["/app.slice/*"]')),
    ("7", 'monitor = "/../unified"', lambda c: c.zoomd(
        "check", "--file-only", "--config", _monitor(c, "/../unified"))[0]),
    ("7", "`run --scope /../x`", cli("run", "--dry-run", "--duration", "1", "--scope",
                                     "/../x", tree=True)),
    ("10", "MemFree above MemTotal", status(lambda t: _sub(
        t / "proc/meminfo", r"^MemFree:.*$", "MemFree: 99999999999 kB"))),
    ("10", "swap Used above Size", status(lambda t: _sub(t / "proc/swaps", "360308",
                                                         "99999999"))),
    ("10", "PSI some avg10=250.00", status(lambda t: _sub(
        t / "proc/pressure/memory", "some avg10=38.72", "some avg10=250.00"))),
    ("10", "PSI io full total above some", status(lambda t: _sub(
        t / "proc/pressure/io", r"^full (.*) total=\d+", r"full \1 total=99999999999999"))),
    ("10", "no full line in memory pressure", status(lambda t: _sub(
        t / "proc/pressure/memory", r"^full .*\n", ""))),
    ("10", "empty vmstat", status(lambda t: (t / "proc/vmstat").write_text(""))),
    ("10", "duplicate MemTotal", status(lambda t: (t / "proc/meminfo").write_text(
        (t / "proc/meminfo").read_text() + "MemTotal: 1 kB\n"))),
    ("10", "zram0 without mm_stat", status(lambda t: (t / "sys/block/zram0/mm_stat").unlink())),
    ("10", "sys/block/zram0 a symlink loop", status(lambda t: _swap(
        t / "sys/block/zram0", lambda p: os.symlink("zram0", p)))),
    ("10", "meminfo -> /proc/meminfo (absolute link in the tree)", status(lambda t: _swap(
        t / "proc/meminfo", lambda p: os.symlink("/proc/meminfo", p)))),
    ("10", "meminfo -> /dev/zero", status(lambda t: _swap(
        t / "proc/meminfo", lambda p: os.symlink("/dev/zero", p)))),
    ("10", "meminfo a FIFO", status(lambda t: _swap(t / "proc/meminfo", os.mkfifo))),
    ("10", "meminfo a 32 MiB sparse file", status(lambda t: _swap(t / "proc/meminfo",
                                                                   _sparse))),
]


def _plain_file(case: Case) -> Path:
    path = case.work / "not-executable"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o644)
    return path


def _monitor(case: Case, monitor: str) -> str:
    path = case.work / f"m{case.n}.toml"
    path.write_text(POLICY.format(daemon="", policy="", tables="").replace(
        'monitor = "/"', f'monitor = "{monitor}"'))
    return str(path)


def results(checkout: Path, trees: Path) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="zoomd-hostile-") as tmp:
        out = []
        for i, (_, _, run) in enumerate(CASES):
            work = Path(tmp) / f"c{i}"
            work.mkdir()
            out.append(run(Case(checkout, trees, work)))
        return out


def crashed(text: str) -> bool:
    return "traceback" in text or "hung" in text


def refused(text: str) -> bool:
    """Every command of the case stopped with exit 2 and one line."""
    return all(re.fullmatch(r"((check|run) )?exit 2, 1 line", part)
               for part in text.split("; "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    args = parser.parse_args()
    trees = args.after.resolve() / "tests" / "fixtures" / "trees"
    started = time.monotonic()
    before, after = results(args.before, trees), results(args.after, trees)
    print("| item | case | before | after |\n|---|---|---|---|")
    for (item, text, _), b, a in zip(CASES, before, after, strict=True):
        print(f"| {item} | {text} | {b} | {a} |")
    for name, column in (("before", before), ("after", after)):
        print(f"\n{name}: {len(column)} cases, {sum(map(refused, column))} refused with one "
              f"line, {sum(map(crashed, column))} crashed or hung")
    print(f"\n({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
