"""Runs inside the guest: `python -m zoomdlab.vmlab.guest SPEC.json`.

Sets up zram swap (and a disk swap device for global-mixed), cgroups of its own
(/harness for this process, /daemon for the daemon under test, /workload), starts
the daemon and waits until it is up, then runs the lab workload for the scenario
and records a timeline in the run folder (a host folder shared read-write):
- the cgroup lab's 10 Hz recorder (zoomdlab.lab.timeline) at the spec's interval:
  host memory PSI, the workload group, /proc/vmstat, zram mm_stat, /proc/swaps;
- a `kview` record per sample: /proc/zoneinfo per zone (free, watermarks, file and
  anon LRU) for the kernel's should_reclaim_retry() arithmetic, and zoomd's own
  reading of the same moment (its host reader, reclaim model and the default
  policy's conditions), whichever daemon runs.
This process (and virtme's script shell above it, whose end powers the guest off)
locks its memory and sets oom_score_adj -1000, so it survives the brownout and the
peer daemons' kills; the workload and the daemon are reset to the default 0. The
guest is disposable: nothing is torn down.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from typing import IO, Any

from zoomd.actions.backend import DryRunBackend
from zoomd.config.load import load_config, shipped_config_path
from zoomd.daemon.engine import Engine
from zoomd.daemon.hostmodel import HostModel
from zoomd.daemon.log import Logger
from zoomd.daemon.pipeline import step
from zoomd.daemon.selfprotect import lock_memory, set_oom_score_adj
from zoomd.errors import ZoomdError
from zoomd.host import HostReader
from zoomd.isolated import module_argv
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root
from zoomdlab import checkout
from zoomdlab.lab.scenario import _pump
from zoomdlab.lab.sysfs import read_text, run, write_text
from zoomdlab.lab.timeline import Timeline, parse_keyed

CGROUP = "/sys/fs/cgroup"
ZONE_FIELDS = (
    "nr_free_pages",
    "nr_zone_inactive_anon",
    "nr_zone_active_anon",
    "nr_zone_inactive_file",
    "nr_zone_active_file",
)
READY_PATTERNS = {
    "zoomd": r"zoomd started",
    "earlyoom": r"mem total|sending SIG",
    "nohang": r"[Mm]onitoring (has )?started",
}
EXIT_GRACE_S = 20.0


def parse_zones(text: str) -> list[dict[str, Any]]:
    """/proc/zoneinfo -> per zone: free, min, low, high, managed, file, anon (pages)."""
    zones: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "Node" and len(parts) >= 4 and parts[2] == "zone":
            cur = {"node": int(parts[1].rstrip(",")), "zone": parts[3]}
            zones.append(cur)
            continue
        if cur is None:
            continue
        if parts[:2] == ["pages", "free"] and len(parts) == 3:
            cur["free"] = int(parts[2])
        elif len(parts) == 2 and parts[0] in ("min", "low", "high", "managed", *ZONE_FIELDS):
            cur.setdefault(parts[0], int(parts[1]))
        elif parts[0] == "protection:":
            cur["protection"] = [int(x) for x in re.findall(r"\d+", line)]
    out = []
    for z in zones:
        if not z.get("managed"):
            continue
        out.append({
            "zone": z["zone"],
            "free": z.get("free", z.get("nr_free_pages", 0)),
            "min": z.get("min", 0),
            "low": z.get("low", 0),
            "high": z.get("high", 0),
            "managed": z["managed"],
            "file": z.get("nr_zone_inactive_file", 0) + z.get("nr_zone_active_file", 0),
            "anon": z.get("nr_zone_inactive_anon", 0) + z.get("nr_zone_active_anon", 0),
            "protection": z.get("protection", []),
        })
    return out


class ModelProbe:
    """zoomd's reading of each moment, as its default policies on the host would see it
    ("stuck": the conditions of at least one of them hold, `for` aside): the daemon's
    own pipeline step (reader -> model -> engine, dry-run, acting on nothing) and the
    verdicts its engine judged."""

    def __init__(self, root: Root | None = None) -> None:
        config, _ = load_config(shipped_config_path(), drop_ins=False)
        # The host's own rules (a template's instances watch limited groups, not "/").
        policies = tuple(p for p in config.policy if p.monitor == "/" and not p.select)
        config = dataclasses.replace(config, policy=policies)
        root = root if root is not None else Root("/")
        self.reader = HostReader(root)
        self.model = HostModel(config.reclaim)
        self.engine = Engine(config, CgroupReader(root), DryRunBackend(),
                             Logger("json", "error", io.StringIO()), dry_run=True,
                             page_size=self.reader.page_size)

    def sample(self, now: float | None = None) -> dict[str, Any]:
        result = step(self.reader.sample(now), self.model, self.engine)
        snap, est = result.host, result.estimate
        self.engine.records.clear()  # dry-run decisions: not what the probe shows
        out: dict[str, Any] = {
            "mem_total": snap.meminfo.total,
            "mem_free": snap.meminfo.free,
            "mem_available": snap.meminfo.available,
            "swap_free": snap.swap_free_bytes,
            "min_free": est.min_free_bytes,
            "kernel_reclaimable": est.kernel_reclaimable,
            "kernel_would_retry": est.kernel_would_retry,
            "file_reclaimable": est.file_reclaimable,
            "anon_reclaimable": est.anon_reclaimable,
            "effective_available": est.effective_available,
            "anon_efficiency_5s": est.anon_efficiency_pct,
        }
        stuck: bool | None = None
        for state in self.engine.states:
            verdict = state.verdict  # as the engine judged it this tick
            if verdict.figures is None:
                continue
            if stuck is None:  # the first (fast) rule's window, as before
                out["window"] = verdict.figures.to_json()
                out["conditions"] = {**verdict.all, **verdict.any}
            out.setdefault("policies", {})[state.policy.name] = verdict.holds
            stuck = bool(stuck) or verdict.holds
        if stuck is not None:
            out["stuck"] = stuck
        return out

    def close(self) -> None:
        self.engine.close()
        self.reader.close()


class GuestTimeline(Timeline):
    """The lab's recorder plus a `kview` record (zoneinfo and zoomd's model) per sample."""

    def __init__(self, path: str, groups: dict[str, tuple[str | None, str | None]],
                 zram_sysfs: str | None, interval: float) -> None:
        super().__init__(path, groups, zram_sysfs, interval)
        self._zoneinfo = os.open("/proc/zoneinfo", os.O_RDONLY | os.O_CLOEXEC)
        self.probe = ModelProbe()

    def sample(self) -> dict[str, Any]:
        record = super().sample()
        zones = parse_zones(os.pread(self._zoneinfo, 65536, 0).decode())
        kview: dict[str, Any] = {"type": "kview", "t": record["t"], "zones": zones}
        try:
            kview["model"] = self.probe.sample()
        except (OSError, ValueError, ZoomdError) as exc:
            kview["model_error"] = str(exc)
        self._write(kview)
        return record


def _load_modules(kroot: str, names: list[str]) -> None:
    for name in names:
        run(["modprobe", "-d", kroot, name])


def _setup_zram(size: int, algorithm: str) -> str:
    sysfs = "/sys/block/zram0"
    write_text(f"{sysfs}/comp_algorithm", algorithm)
    write_text(f"{sysfs}/disksize", size)
    for _ in range(100):
        if os.path.exists("/dev/zram0"):
            break
        time.sleep(0.02)
    run(["mkswap", "/dev/zram0"])
    run(["swapon", "-p", "100", "/dev/zram0"])
    return sysfs


def _disk_device() -> str:
    """The virtio-blk disk virtme-ng attached (by-id link, else the first vdX)."""
    by_id = "/dev/disk/by-id/virtio-virtme_disk_blk_swap"
    if os.path.exists(by_id):
        return by_id
    for _ in range(100):
        found = sorted(n for n in os.listdir("/sys/block") if n.startswith("vd"))
        if found:
            return f"/dev/{found[0]}"
        time.sleep(0.05)
    raise RuntimeError("no virtio disk for the disk swap")


def _setup_cgroups() -> dict[str, str]:
    write_text(f"{CGROUP}/cgroup.subtree_control", "+memory")
    groups = {}
    for name in ("harness", "daemon", "workload"):
        path = f"{CGROUP}/{name}"
        os.makedirs(path, exist_ok=True)
        groups[name] = path
    write_text(f"{CGROUP}/harness/cgroup.procs", os.getpid())
    return groups


def _start_bystander(spec: dict[str, Any], groups: dict[str, str]) -> subprocess.Popen[str]:
    """The lab's bystander (4 MiB touched every 10 ms) in a small group of its own."""
    path = f"{CGROUP}/bystander"
    os.makedirs(path, exist_ok=True)
    groups["bystander"] = path
    argv = module_argv("zoomdlab.lab.workload", "bystander", "--duration",
                       str(spec["duration"]), also=(checkout(),))
    return subprocess.Popen(_in_group(path, argv), stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, text=True)


def _in_group(group: str, argv: list[str]) -> list[str]:
    """A command that moves itself into `group`, drops the oom_score_adj of -1000 it
    inherits from this harness back to the default 0, then execs argv."""
    script = f'echo $$ > {group}/cgroup.procs && echo 0 > /proc/self/oom_score_adj && exec "$@"'
    return ["/bin/sh", "-c", script, "sh", *argv]


def _protect_parent() -> str | None:
    """oom_score_adj -1000 for virtme's script shell too: when it dies the guest powers off."""
    try:
        with open(f"/proc/{os.getppid()}/oom_score_adj", "w") as f:
            f.write("-1000")
    except OSError as exc:
        return str(exc)
    return None


def _children(pid: int) -> list[int]:
    try:
        text = read_text(f"/proc/{pid}/task/{pid}/children")
    except OSError:
        return []
    return [int(x) for x in text.split()]


class Daemon:
    """The daemon under test, run by /usr/bin/time -v in the /daemon group."""

    def __init__(self, name: str, argv: list[str], out: str, tl: Timeline, group: str) -> None:
        self.name = name
        self.ready = threading.Event()
        self.pattern = re.compile(READY_PATTERNS.get(name.split("-")[0], r"."))
        self.log: IO[str] = open(os.path.join(out, "daemon.log"), "w")  # noqa: SIM115
        timed = ["/usr/bin/time", "-v", "-o", os.path.join(out, "daemon.time"), *argv]
        self.proc = subprocess.Popen(
            _in_group(group, timed), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        tl.event("daemon_start", argv=argv, pid=self.proc.pid, daemon=name)
        self.tl = tl
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            text = line.strip()
            if not text:
                continue
            if self.pattern.search(text):
                self.ready.set()
            self.tl.event("daemon", source=self.name, line=text)
        self.ready.set()

    def stop(self) -> None:
        """SIGTERM the daemon (not /usr/bin/time, which must write its report)."""
        if self.proc.poll() is None:
            for child in _children(self.proc.pid):
                os.kill(child, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.pump.join(timeout=5)
        self.tl.event("daemon_exit", returncode=self.proc.returncode)
        self.log.close()


def _oom_kills() -> int:
    return parse_keyed(read_text("/proc/vmstat"), ("oom_kill",)).get("oom_kill", 0)


def _workload_argv(spec: dict[str, Any]) -> list[str]:
    base = module_argv("zoomdlab.lab.workload", spec["workload"],  # isolated, as in the lab
                       "--duration", str(spec["duration"]), "--size", str(spec["size"]),
                       also=(checkout(),))
    if spec["workload"] == "compressible":
        base += ["--hot", str(spec["hot"]), "--fill-rate", str(spec.get("fill_rate", 0))]
    return base


def run_guest(spec: dict[str, Any]) -> int:
    out = spec["out"]
    notes = {"oom_score_adj": set_oom_score_adj(-1000), "mlock": lock_memory(),
             "parent_oom_score_adj": _protect_parent()}
    os.environ["TMPDIR"] = "/run"
    modules = ["zram"] + (["virtio_blk"] if spec.get("disk_swap") else [])
    _load_modules(spec["kroot"], modules)
    zram = _setup_zram(spec["zram"], spec.get("algorithm", "lzo-rle"))
    if spec.get("disk_swap"):
        dev = _disk_device()
        run(["mkswap", dev])
        run(["swapon", "-p", "10", dev])
    groups = _setup_cgroups()
    tl = GuestTimeline(os.path.join(out, "timeline.jsonl"),
                       {"workload": (groups["workload"], None)}, zram, spec["interval"])
    tl.start()
    daemon = None
    if spec.get("daemon_argv"):
        daemon = Daemon(spec["daemon"], spec["daemon_argv"], out, tl, groups["daemon"])
        if not daemon.ready.wait(spec.get("daemon_ready_timeout", 90)):
            tl.event("daemon_not_ready", daemon=spec["daemon"])
        time.sleep(1.0)
    tl.event(
        "run_start", scenario=spec["scenario"], workload_name=spec["workload"],
        workload_group="host", config=spec, kernel=platform.release(),
        daemon=spec.get("daemon"), notes=notes,
        swaps=read_text("/proc/swaps"), meminfo_total=read_text("/proc/meminfo").split("\n")[0],
    )
    oom0 = _oom_kills()
    bystander = _start_bystander(spec, groups) if spec.get("in_root") else None
    log = open(os.path.join(out, "workload.log"), "w")  # noqa: SIM115
    group = CGROUP if spec.get("in_root") else groups["workload"]
    proc = subprocess.Popen(
        _in_group(group, _workload_argv(spec)), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    t_work = time.monotonic()
    tl.event("workload_start", workload=spec["workload"], pid=proc.pid,
             cgroup="/" if spec.get("in_root") else "/workload")
    assert proc.stdout is not None
    pump = threading.Thread(target=_pump, args=(proc.stdout, tl, "progress", spec["workload"],
                                                 log), daemon=True)
    pump.start()
    time.sleep(0.5)
    with suppress(OSError):
        tl.event("workload_oom_score_adj", value=read_text(f"/proc/{proc.pid}/oom_score_adj")
                 .strip())
    try:
        rc = proc.wait(timeout=spec["duration"] + EXIT_GRACE_S)
        by = _exit_cause(rc, _oom_kills() > oom0, daemon)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
        by = f"lab: still running {EXIT_GRACE_S:.0f} s after --duration"
    tl.event("exit", workload=spec["workload"], returncode=rc, by=by)
    if bystander is not None:
        tl.event("bystander", alive=bystander.poll() is None, returncode=bystander.returncode)
    pump.join(timeout=5)
    # Keep recording a little after a kill: how fast memory comes back.
    time.sleep(min(10.0, max(0.0, spec["duration"] - (time.monotonic() - t_work))))
    if daemon is not None:
        daemon.stop()
    tl.event("run_end", interrupted=False)
    tl.stop()
    log.close()
    print(f"zoomdlab.vmlab.guest: done ({by})", flush=True)
    return 0


def _exit_cause(rc: int, oom: bool, daemon: Daemon | None) -> str:
    if rc == 0:
        return "exited (duration reached)"
    if rc > 0:
        return f"exited with status {rc}"
    sig = signal.Signals(-rc).name
    if oom:
        return f"{sig}: kernel OOM killer (host)"
    if daemon is not None:
        return f"{sig}: from outside the lab (the daemon under test?)"
    return f"{sig}: from outside the lab"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m zoomdlab.vmlab.guest SPEC.json", file=sys.stderr)
        return 2
    with open(args[0]) as f:
        spec = json.load(f)
    return run_guest(spec)


if __name__ == "__main__":
    raise SystemExit(main())
