"""Scenarios: set the lab up, run workloads (and optionally a daemon), record, tear down.

- thrash: the production brownout, working set 2.5x the limit, plus a bystander.
- compressible: larger than the limit but highly compressible, hot set fits; + bystander.
- mixed: thrash with a disk swap file (lower priority) active beside zram.

Everything host-wide happens under `lab_lock()`, and every resource is released by a
context manager, so a failure or Ctrl-C leaves no swap, zram or cgroup behind.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import subprocess
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import IO, Any

from zoomd.isolated import module_argv
from zoomdlab import checkout
from zoomdlab.lab.cgroups import LabCgroups, LabChild
from zoomdlab.lab.lock import lab_lock
from zoomdlab.lab.summary import summarize
from zoomdlab.lab.swap import disk_swapfile, zram_swap
from zoomdlab.lab.sysfs import LabError, read_text
from zoomdlab.lab.timeline import Timeline, parse_keyed
from zoomdlab.lab.workloads import MAX_SIZE

SCENARIOS = ("thrash", "compressible", "mixed")
EXIT_GRACE_S = 15.0  # how long a workload gets past --duration before the lab kills it


@dataclass
class ScenarioConfig:
    """What to run; sizes in bytes. Workload sizes default from the limit."""

    scenario: str
    duration: float
    out: str
    limit: int = 512 << 20
    zram: int = 2 << 30
    algorithm: str = "lzo-rle"
    size: int | None = None  # thrash: 2.5x limit; compressible: 2.5x limit
    hot: int | None = None  # compressible: limit / 4
    fill_rate: int = 0  # compressible: bytes/s while filling (0 = as fast as it can)
    bystander: bool = True
    daemon: str | None = None
    swapfile_dir: str = "/var/tmp"
    swapfile_size: int = 1 << 30
    interval: float = 0.1

    def workload_size(self) -> int:
        return min(self.size or int(self.limit * 2.5), MAX_SIZE)


def daemon_argv(template: str, lab: LabCgroups, timeline: str, out: str) -> list[str]:
    """Split the --daemon command, then substitute {v2} {v2abs} {v1abs} {timeline} {out}."""
    values = {
        "{v2}": lab.v2_rel,
        "{v2abs}": lab.v2_path,
        "{v1abs}": lab.v1_path or "",
        "{timeline}": timeline,
        "{out}": out,
    }
    argv = []
    for token in shlex.split(template):
        for key, value in values.items():
            token = token.replace(key, value)
        argv.append(token)
    return argv


def _pump(stream: IO[str], timeline: Timeline, kind: str, name: str, log: IO[str]) -> None:
    """Copy a child's output to its log; JSON progress lines also go into the timeline."""
    for line in stream:
        if log.closed:
            break
        log.write(line)
        log.flush()
        text = line.strip()
        if not text:
            continue
        if kind == "progress" and text.startswith("{"):
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                record = {"line": text}
            record.setdefault("workload", name)
            timeline.event("progress", **record)
        else:
            timeline.event(kind, source=name, line=text)


def _oom_kills(child: LabChild) -> int:
    path = (
        f"{child.v1_path}/memory.oom_control" if child.v1_path else f"{child.v2_path}/memory.events"
    )
    try:
        return parse_keyed(read_text(path), ("oom_kill",)).get("oom_kill", 0)
    except OSError:
        return 0


def _host_oom_kills() -> int:
    return parse_keyed(read_text("/proc/vmstat"), ("oom_kill",)).get("oom_kill", 0)


class _Workload:
    """One started workload and what is needed to say who ended it."""

    def __init__(self, name: str, child: LabChild, proc: subprocess.Popen[str]) -> None:
        self.name = name
        self.child = child
        self.proc = proc
        self.memcg_oom0 = _oom_kills(child)
        self.host_oom0 = _host_oom_kills()
        self.reported = False

    def exit_cause(self, daemon_running: bool) -> str:
        rc = self.proc.returncode
        if rc == 0:
            return "exited (duration reached)"
        if rc is None or rc > 0:
            return f"exited with status {rc}"
        sig = signal.Signals(-rc).name
        if _oom_kills(self.child) > self.memcg_oom0:
            return f"{sig}: kernel OOM killer (cgroup limit)"
        if _host_oom_kills() > self.host_oom0:
            return f"{sig}: kernel OOM killer (host)"
        if daemon_running:
            return f"{sig}: from outside the lab (the daemon under test?)"
        return f"{sig}: from outside the lab"


def _workload_argv(cfg: ScenarioConfig, kind: str) -> list[str]:
    # Isolated (zoomd/isolated.py): the lab runs as root, wherever it is started from.
    base = module_argv("zoomdlab.lab.workload", kind, "--duration", str(cfg.duration),
                       also=(checkout(),))
    if kind == "thrash":
        return [*base, "--size", str(cfg.workload_size())]
    if kind == "compressible":
        hot = cfg.hot or cfg.limit // 4
        size = ["--size", str(cfg.workload_size()), "--hot", str(hot)]
        return [*base, *size, "--fill-rate", str(cfg.fill_rate)]
    return base


def run_scenario(cfg: ScenarioConfig, take_lock: bool = True) -> dict[str, Any]:
    """Run one scenario end to end; returns (and writes to OUT/summary.json) the summary.

    `take_lock=False` is for callers already holding `lab_lock()` (a second flock on a
    new descriptor from the same process would wait for itself).
    """
    if cfg.scenario not in SCENARIOS:
        raise LabError(f"unknown scenario {cfg.scenario!r}; known: {', '.join(SCENARIOS)}")
    os.makedirs(cfg.out, exist_ok=True)
    timeline_path = os.path.join(cfg.out, "timeline.jsonl")
    if os.path.exists(timeline_path):
        os.unlink(timeline_path)  # one run per OUT directory
    kind = "compressible" if cfg.scenario == "compressible" else "thrash"
    group = "compressible" if kind == "compressible" else "workload"
    with ExitStack() as stack:
        if take_lock:
            stack.enter_context(lab_lock())
        zram = stack.enter_context(zram_swap(cfg.zram, cfg.algorithm))
        if cfg.scenario == "mixed":
            path = os.path.join(cfg.swapfile_dir, f"zoomd-lab-{os.getpid()}.swap")
            stack.enter_context(disk_swapfile(path, cfg.swapfile_size))
        lab = stack.enter_context(LabCgroups())
        children = {group: lab.child(group, cfg.limit)}
        if cfg.bystander:
            children["bystander"] = lab.child("bystander")
        tl = stack.enter_context(
            Timeline(
                timeline_path,
                {n: (c.v2_path, c.v1_path) for n, c in children.items()},
                zram.sysfs,
                cfg.interval,
            )
        )
        tl.event(
            "run_start",
            scenario=cfg.scenario,
            workload_name=kind,
            workload_group=group,
            config=asdict(cfg),
            zram=zram.name,
            cgroups={n: {"v2": c.v2_path, "v1": c.v1_path} for n, c in children.items()},
            kernel=platform.release(),
            memory_mode=lab.memory_mode,
        )
        daemon = None
        if cfg.daemon:
            daemon = _start_daemon(stack, cfg, lab, tl, timeline_path)
        workloads: list[_Workload] = []
        pumps: list[threading.Thread] = []
        for name in [kind, "bystander"] if cfg.bystander else [kind]:
            child = children[group if name == kind else "bystander"]
            log = stack.enter_context(open(os.path.join(cfg.out, f"{name}.log"), "w"))
            proc = lab.start(
                child,
                _workload_argv(cfg, name),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            workloads.append(_Workload(name, child, proc))
            tl.event("workload_start", workload=name, pid=proc.pid, cgroup=child.v2_rel)
            assert proc.stdout is not None
            pump = threading.Thread(
                target=_pump, args=(proc.stdout, tl, "progress", name, log), daemon=True
            )
            pump.start()
            pumps.append(pump)
        t_start = time.monotonic()
        interrupted = False
        try:
            _watch(workloads, tl, t_start, cfg.duration, daemon)
            for pump in pumps:
                pump.join(timeout=5)  # the last progress lines ("done", p50/p99) land first
        except KeyboardInterrupt:
            interrupted = True  # tear down (ExitStack), write what we have, then re-raise
        tl.event("run_end", interrupted=interrupted)
    summary = summarize(timeline_path)
    if interrupted:
        summary["interrupted"] = True
    summary["config"] = asdict(cfg)
    summary["host"] = {"kernel": platform.release(), "machine": platform.machine()}
    with open(os.path.join(cfg.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    if interrupted:
        raise KeyboardInterrupt
    return summary


def _watch(
    workloads: list[_Workload],
    tl: Timeline,
    t_start: float,
    duration: float,
    daemon: subprocess.Popen[str] | None,
) -> None:
    """Wait for the workloads' own exit (or kill them after the grace), recording exits."""
    deadline = t_start + duration + EXIT_GRACE_S
    while True:
        for w in workloads:
            if not w.reported and w.proc.poll() is not None:
                w.reported = True
                by = w.exit_cause(daemon is not None and daemon.poll() is None)
                tl.event(
                    "exit",
                    workload=w.name,
                    returncode=w.proc.returncode,
                    by=by,
                )
        if all(w.reported for w in workloads):
            return
        if time.monotonic() > deadline:
            for w in workloads:
                if not w.reported:
                    w.proc.kill()
                    w.proc.wait()
                    w.reported = True
                    tl.event(
                        "exit",
                        workload=w.name,
                        returncode=w.proc.returncode,
                        by=f"lab: still running {EXIT_GRACE_S:.0f} s after --duration",
                    )
            return
        time.sleep(0.05)


def _start_daemon(
    stack: ExitStack, cfg: ScenarioConfig, lab: LabCgroups, tl: Timeline, timeline_path: str
) -> subprocess.Popen[str]:
    """Start the daemon under test (in our own cgroups, not the lab's); stop it at the end."""
    argv = daemon_argv(cfg.daemon or "", lab, timeline_path, cfg.out)
    log = stack.enter_context(open(os.path.join(cfg.out, "daemon.log"), "w"))  # noqa: SIM115
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    tl.event("daemon_start", argv=argv, pid=proc.pid)
    assert proc.stdout is not None
    pump = threading.Thread(
        target=_pump, args=(proc.stdout, tl, "daemon", "daemon", log), daemon=True
    )
    pump.start()
    stack.callback(_stop_daemon, proc, tl, pump)
    return proc


def _stop_daemon(proc: subprocess.Popen[str], tl: Timeline, pump: threading.Thread) -> None:
    """SIGTERM the daemon's own process group, SIGKILL after 5 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    pump.join(timeout=5)
    tl.event("daemon_exit", returncode=proc.returncode)
