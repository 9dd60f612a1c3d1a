#!/usr/bin/env python3
"""What zoomd itself costs: per-tick time, ranking time, idle CPU, RSS, start-up.

    python benchmarks/cost.py tick      # per-tick and ranking, synthetic trees on tmpfs
    python benchmarks/cost.py real      # the same on real empty v2 cgroups (root)
    python benchmarks/cost.py idle      # CPU of `zoomd run` over a minute, 3 configurations
    python benchmarks/cost.py rss       # peak (/usr/bin/time -v) and steady RSS
    python benchmarks/cost.py startup   # exec to READY=1
    python benchmarks/cost.py trace     # per tick with `--record` (the tap) and without
    python benchmarks/cost.py all --json results.json

Per-tick time is one daemon tick as the loop runs it (HostReader.sample, the host
model, Engine.tick) with no policy firing: the reads done every tick. Ranking is what
a policy does only when it fires (Engine._fire): walk the monitored subtree, read and
exclude every group, rank the candidates. Both are timed with time.perf_counter and
reported as medians (and p90) over many ticks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

from synthhost import SynthHost  # noqa: E402

from zoomd.actions.backend import RecordingBackend  # noqa: E402
from zoomd.config.load import shipped_config_path  # noqa: E402
from zoomd.config.runtime import Config, Policy  # noqa: E402
from zoomd.config.schema import validate  # noqa: E402
from zoomd.daemon import candidates as cand_mod  # noqa: E402
from zoomd.daemon.engine import SHOWN_CANDIDATES, Engine  # noqa: E402
from zoomd.daemon.hostmodel import HostModel  # noqa: E402
from zoomd.daemon.log import Logger  # noqa: E402
from zoomd.host import HostReader  # noqa: E402
from zoomd.kernel import hotfile  # noqa: E402
from zoomd.kernel.cgroups import CgroupReader  # noqa: E402
from zoomd.kernel.root import Root  # noqa: E402

SIZES = (1, 100, 1000, 10_000)
CALM = {"memory_pressure_full_above": "40%"}  # never holds on a calm host


def context() -> dict[str, Any]:
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {"python": platform.python_version(), "kernel": platform.release(),
            "cpus": os.cpu_count(), "loadavg_at_start": " ".join(load),
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def stats_ms(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered) * 1e3, 4),
            "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1e3, 4),
            "n": len(ordered)}


def policies(monitors: list[str]) -> Config:
    return validate({"policy": [
        {"name": f"p{i}", "monitor": m, "window": "2s", "for": "1s", "all": CALM}
        for i, m in enumerate(monitors)]})


def time_ticks(root: Root, config: Config, ticks: int, scope: str = "/",
               advance=None, fd_budget: hotfile.FdBudget | None = None) -> dict[str, Any]:
    """Median tick (and its parts) over `ticks` ticks after 20 of warm-up."""
    reader = HostReader(root, page_size=4096)
    engine = Engine(config, CgroupReader(root), RecordingBackend(),
                    Logger("json", "warning", open(os.devnull, "w")),  # noqa: SIM115
                    scope=scope, vital_groups=("/init.scope",), page_size=4096,
                    fd_budget=fd_budget)
    model = HostModel(config.reclaim)
    total, sample, engine_t = [], [], []
    t = 0.0
    try:
        for i in range(ticks + 20):
            t += 1.0
            if advance:
                advance(1.0)
            a = time.perf_counter()
            snap = reader.sample(now=t)
            b = time.perf_counter()
            est = model.update(snap)
            c = time.perf_counter()
            engine.tick(snap, est)
            d = time.perf_counter()
            if i >= 20:
                total.append(d - a)
                sample.append(b - a)
                engine_t.append(d - c)
    finally:
        engine.close()
        reader.close()
    return {"tick": stats_ms(total), "host_sample": stats_ms(sample),
            "engine": stats_ms(engine_t)}


def watched_every_group(root: Root, leaves: list[str], n: int) -> dict[str, Any]:
    """One policy per leaf, ticks timed; and how many of their files stayed open under
    the descriptor budget (past it they are read open-read-close every tick)."""
    ticks = 300 if n <= 100 else 40 if n <= 1000 else 10
    budget = hotfile.process_budget()
    out = time_ticks(root, policies(leaves), ticks, fd_budget=budget)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    out["descriptors"] = {"soft_limit": soft, "budget": budget.limit,
                          "read_once_per_tick": budget.refused // (ticks + 20)}
    return out


def time_ranking(reader: CgroupReader, monitor: str, runs: int) -> dict[str, Any]:
    """collect (walk, read, exclude) + deltas + rank, as a firing policy does."""
    policy = validate({"name": "p", "monitor": monitor, "all": CALM,
                       "rank": ("refaults", "memory")}, Policy)
    ex = cand_mod.Exclusions(("/init.scope",), ("/init.scope",))
    walk, full = [], []
    found: list = []
    skipped: dict = {}
    for _ in range(runs):
        a = time.perf_counter()
        cand_mod.walk_candidates(reader, monitor)
        b = time.perf_counter()
        found, skipped = cand_mod.collect(reader, policy, monitor, ex,
                                          check_kthreads=False)
        baseline = {c.path: c for c in found}
        cand_mod.apply_deltas(found, baseline)
        ranked = cand_mod.rank(found, policy.rank)
        cand_mod.drop_kernel_thread_holders(reader, ranked, skipped, SHOWN_CANDIDATES)
        c = time.perf_counter()
        walk.append(b - a)
        full.append(c - b)
    return {"walk": stats_ms(walk), "collect_and_rank": stats_ms(full),
            "candidates": len(found), "skipped": len(skipped)}


# -- synthetic trees -----------------------------------------------------------------------
def bench_tick(sizes=SIZES) -> dict[str, Any]:
    out: dict[str, Any] = {"context": context(), "synthetic": {}}
    for n in sizes:
        host = SynthHost(None, n, procs=True)
        try:
            leaves = [p for p in host.groups if p.endswith(".service")]
            row: dict[str, Any] = {"groups": len(host.groups)}
            row["host_only"] = time_ticks(host.root, policies(["/"]), 300)
            row["typical"] = time_ticks(host.root, policies(["/", *SynthHost.SLICES]), 300)
            row["every_group_monitored"] = watched_every_group(host.root, leaves, n)
            row["ranking"] = time_ranking(CgroupReader(host.root), "/",
                                          runs=15 if n <= 1000 else 5)
            out["synthetic"][str(n)] = row
            print(json.dumps({n: row}), file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(host.base, ignore_errors=True)
    return out


# -- tracing ----------------------------------------------------------------------------------
def time_traced_ticks(root: Root, config: Config, ticks: int, mode: str,
                      rank_every: int = 0) -> dict[str, Any]:
    """Ticks as the loop runs them with `zoomd run --record` in `mode`: "off" (no trace)
    or "tap" (the readers' own reads kept). (The capturer that re-read the files after
    the sampler until the tap: benchmarks/results/trace-tap.md, measured before it went.)
    With `rank_every`, every so many ticks also walk and rank the whole tree (what a
    firing policy reads: the tap keeps it too). The writer thread runs meanwhile, so
    the GIL it takes is in the figures; ticks are 20 ms apart to give it its turn."""
    from zoomd.kernel import tap
    from zoomd.trace.recorder import TapRecorder

    where = tempfile.mkdtemp(prefix="zoomd-cost-trace-", dir="/dev/shm")
    file_tap = tap.start(root.path if not root.is_live else "/") if mode == "tap" else None
    reader = HostReader(root, page_size=4096)
    cgroups = CgroupReader(root)
    engine = Engine(config, cgroups, RecordingBackend(),
                    Logger("json", "warning", open(os.devnull, "w")),  # noqa: SIM115
                    scope="/", vital_groups=("/init.scope",), page_size=4096)
    model = HostModel(config.reclaim)
    recorder = None
    if file_tap is not None:
        recorder = TapRecorder(f"{where}/t.jsonl", file_tap, scope="/", page_size=4096)
    policy = Policy(name="p", monitor="/", all=CALM, rank=("refaults", "memory"))
    ex = cand_mod.Exclusions(("/init.scope",), ("/init.scope",))
    total, ranking = [], []
    t = 0.0
    try:
        for i in range(ticks + 20):
            t += 1.0
            a = time.perf_counter()
            if file_tap is not None:
                file_tap.begin()
            snap = reader.sample(now=t)
            est = model.update(snap)
            records = engine.tick(snap, est)
            ranks = bool(rank_every) and i % rank_every == 0
            if ranks:
                found, _ = cand_mod.collect(cgroups, policy, "/", ex)
                cand_mod.rank(found, policy.rank)
            if recorder is not None:
                recorder.tick(snap, records)
            d = time.perf_counter()
            if i >= 20:
                (ranking if ranks else total).append(d - a)
            # The loop's ticks are >= 250 ms apart: the writer thread has its turn.
            time.sleep(0.2 if ranks else 0.02)
    finally:
        engine.close()
        reader.close()
        if recorder is not None:
            recorder.close()
        tap.stop(file_tap)
        size = os.path.getsize(f"{where}/t.jsonl") if mode != "off" else 0
        shutil.rmtree(where, ignore_errors=True)
    out = {"tick": stats_ms(total), "trace_bytes": size}
    if ranking:
        out["ranking_tick"] = stats_ms(ranking)
    return out


def bench_trace(sizes=(1, 100, 1000)) -> dict[str, Any]:
    """Per-tick cost of `zoomd run --record`: none, and the tap; calm
    ticks (typical policies), and ticks that also rank the whole tree (every 5th)."""
    out: dict[str, Any] = {"context": context(), "synthetic": {}}
    for n in sizes:
        host = SynthHost(None, n, procs=True)
        try:
            row: dict[str, Any] = {"groups": len(host.groups)}
            config = policies(["/", *SynthHost.SLICES])
            ticks = 200 if n <= 100 else 100
            for mode in ("off", "tap"):
                row[mode] = time_traced_ticks(host.root, config, ticks, mode)
                row[f"{mode}_ranking"] = time_traced_ticks(host.root, config, ticks, mode,
                                                           rank_every=5)
            out["synthetic"][str(n)] = row
            print(json.dumps({n: row}), file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(host.base, ignore_errors=True)
    return out


# -- real empty v2 cgroups -------------------------------------------------------------------
def bench_real(sizes=SIZES) -> dict[str, Any]:
    from zoomdlab.lab.sysfs import cgroup2_mount

    mount = cgroup2_mount()
    if mount is None or os.geteuid() != 0:
        return {"skipped": "needs root and a cgroup2 mount"}
    base_rel = f"/zoomd-bench-{os.getpid()}"
    base = mount.point + base_rel
    out: dict[str, Any] = {"context": context(), "base": base, "real": {}}
    made: list[str] = []
    try:
        os.mkdir(base)
        made.append(base)
        slices = []
        for sl in ("system.slice", "user.slice", "machine.slice"):
            os.mkdir(f"{base}/{sl}")
            made.append(f"{base}/{sl}")
            slices.append(f"{base_rel}/{sl}")
        count = 0
        for n in sizes:
            while count < n:
                sl = slices[count % 3]
                parent = f"{mount.point}{sl}/part{count // 100}.slice"
                if not os.path.isdir(parent):
                    os.mkdir(parent)
                    made.append(parent)
                leaf = f"{parent}/unit{count}.service"
                os.mkdir(leaf)
                made.append(leaf)
                count += 1
            root = Root("/")
            reader = CgroupReader(root)
            leaves = [m[len(mount.point):] for m in made if m.endswith(".service")]
            row: dict[str, Any] = {"groups": len(made)}
            row["host_only"] = time_ticks(root, policies(["/"]), 300)
            row["typical"] = time_ticks(root, policies(["/", *slices]), 300)
            row["every_group_monitored"] = watched_every_group(root, leaves, n)
            row["ranking"] = time_ranking(reader, base_rel, runs=15 if n <= 1000 else 5)
            out["real"][str(n)] = row
            print(json.dumps({n: row}), file=sys.stderr, flush=True)
    finally:
        for path in reversed(made):
            try:
                os.rmdir(path)
            except OSError as exc:
                print(f"cannot remove {path}: {exc}", file=sys.stderr)
    out["removed"] = not os.path.exists(base)
    return out


# -- the daemon process: idle CPU, RSS, start-up ---------------------------------------------
def write_config(directory: str, daemon: dict[str, Any], extra: str = "") -> str:
    """The shipped zoomd.toml with [daemon] keys overridden by a drop-in."""
    path = os.path.join(directory, "zoomd.toml")
    shutil.copy(shipped_config_path(), path)
    os.chmod(path, 0o644)
    os.makedirs(path + ".d", exist_ok=True)
    body = "[daemon]\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in daemon.items()) + extra
    with open(os.path.join(path + ".d", "50-bench.toml"), "w") as f:
        f.write(body)
    return path


def start_daemon(config: str, env: dict[str, str] | None = None,
                 argv_prefix: list[str] | None = None) -> subprocess.Popen:
    argv = [*(argv_prefix or []), sys.executable, "-m", "zoomd", "run", "--dry-run",
            "--config", config]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, **(env or {})), cwd=REPO)


def cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def wakeups(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[2])


def psi_some_us() -> int:
    with open("/proc/pressure/memory") as f:
        return int(f.readline().rsplit("total=", 1)[1])


def bench_idle(seconds: float = 60.0) -> dict[str, Any]:
    cases = {
        "psi_triggers_interval_1s (shipped default)": {"interval": "1s",
                                                        "psi_triggers": True},
        "psi_triggers_interval_10s": {"interval": "10s", "psi_triggers": True},
        "polling_1s_no_triggers": {"interval": "1s", "psi_triggers": False},
    }
    out: dict[str, Any] = {"context": context(), "seconds": seconds, "idle": {}}
    tmp = tempfile.mkdtemp(prefix="zoomd-bench-")
    procs = {}
    try:
        for name, daemon in cases.items():
            d = os.path.join(tmp, name.split()[0])
            os.makedirs(d)
            procs[name] = start_daemon(write_config(d, daemon))
        time.sleep(5.0)  # start-up is measured apart
        first = {n: (cpu_ns(p.pid), wakeups(p.pid)) for n, p in procs.items()}
        psi0, t0 = psi_some_us(), time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        for name, p in procs.items():
            ns, wk = cpu_ns(p.pid) - first[name][0], wakeups(p.pid) - first[name][1]
            out["idle"][name] = {"cpu_pct_of_one_core": round(100 * ns / 1e9 / elapsed, 4),
                                 "cpu_ms": round(ns / 1e6, 2), "wakeups": wk}
        out["host_memory_psi_some_ms_during"] = round((psi_some_us() - psi0) / 1e3, 1)
        with open("/proc/loadavg") as f:
            out["loadavg_at_end"] = " ".join(f.read().split()[:3])
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _rss_of(config: str, seconds: float = 20.0) -> dict[str, Any]:
    p = start_daemon(config, argv_prefix=["/usr/bin/time", "-v"])
    try:
        time.sleep(seconds)
        # /usr/bin/time's child is the daemon
        child = int(subprocess.check_output(["pgrep", "-P", str(p.pid)]).split()[0])
        status = {}
        with open(f"/proc/{child}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                status[key] = value.strip()
        os.kill(child, signal.SIGTERM)  # /usr/bin/time reports once its child exits
        _, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
    peak = next(int(line.split()[-1]) for line in err.decode().splitlines()
                if "Maximum resident set size" in line)
    # The kernel gives /usr/bin/time the larger of the daemon's peak and its reaped
    # children's: since the configuration is validated in a short child (pydantic),
    # "peak_kib_time_v" is that child's peak; the daemon's own is VmHWM.
    return {"peak_kib_time_v": peak, "vmhwm_kib": int(status["VmHWM"].split()[0]),
            "steady_vmrss_kib": int(status["VmRSS"].split()[0]),
            "steady_rss_anon_kib": int(status["RssAnon"].split()[0]),
            "steady_rss_file_kib": int(status["RssFile"].split()[0])}


def bench_rss() -> dict[str, Any]:
    from zoomdlab.lab.sysfs import cgroup2_mount

    out: dict[str, Any] = {"context": context(), "rss": {}}
    tmp = tempfile.mkdtemp(prefix="zoomd-bench-")
    # With taskstats: a policy whose condition is the stall of a group it protects, a
    # group of ours holding one `sleep`, so the sampler queries taskstats (and imports
    # pyroute2) every tick. kernel.task_delayacct is switched on for the run and put
    # back by zoomd on exit.
    mount = cgroup2_mount()
    group_rel = f"/zoomd-bench-{os.getpid()}-taskstats"
    group = f"{mount.point}{group_rel}" if mount else None
    sleeper = None
    try:
        if group:
            os.mkdir(group)
            sleeper = subprocess.Popen(["/bin/sh", "-c",
                                        f'echo $$ > "{group}/cgroup.procs" && exec sleep 120'])
        with_taskstats = (
            "[taskstats]\nenabled = true\nenable_delay_accounting = true\n"
            f'[[policy]]\nname = "bystanders"\nmonitor = "/"\nprotect = ["{group_rel}"]\n'
            '[policy.all]\nprotected_stall_above = "90%"\n')
        for name, extra in (("without taskstats", ""), ("with taskstats", with_taskstats)):
            d = os.path.join(tmp, name.replace(" ", "-"))
            os.makedirs(d)
            out["rss"][name] = _rss_of(write_config(d, {}, extra))
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        if group:
            for _ in range(100):
                try:
                    os.rmdir(group)
                    break
                except OSError:
                    time.sleep(0.05)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def bench_startup(runs: int = 5) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="zoomd-bench-")
    ready, version, check = [], [], []
    try:
        config = write_config(tmp, {})
        sock_path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(30)
        for _ in range(runs):
            start = time.monotonic()
            p = start_daemon(config, env={"NOTIFY_SOCKET": sock_path})
            while not sock.recv(4096).startswith(b"READY=1"):
                pass
            ready.append(time.monotonic() - start)
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=15)
            for argv, into in ((["--version"], version), (["check", "--config", config], check)):
                start = time.monotonic()
                subprocess.run([sys.executable, "-m", "zoomd", *argv], check=True,
                               stdout=subprocess.DEVNULL, cwd=REPO)
                into.append(time.monotonic() - start)
        sock.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"context": context(), "runs": runs,
            "exec_to_ready_s": round(statistics.median(ready), 3),
            "exec_to_ready_all_s": [round(x, 3) for x in ready],
            "zoomd_version_s": round(statistics.median(version), 3),
            "zoomd_check_s": round(statistics.median(check), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["tick", "real", "idle", "rss", "startup", "trace",
                                           "all"])
    parser.add_argument("--json", metavar="FILE", help="write the results here too")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--seconds", type=float, default=60.0, help="idle: how long")
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    hotfile.raise_fd_limit(hotfile.process_budget())  # as the daemon does at start
    results: dict[str, Any] = {}
    if args.what in ("tick", "all"):
        results["tick"] = bench_tick(sizes)
    if args.what in ("real", "all"):
        results["real"] = bench_real(sizes)
    if args.what in ("trace", "all"):
        results["trace"] = bench_trace(tuple(n for n in sizes if n <= 1000))
    if args.what in ("idle", "all"):
        results["idle"] = bench_idle(args.seconds)
    if args.what in ("rss", "all"):
        results["rss"] = bench_rss()
    if args.what in ("startup", "all"):
        results["startup"] = bench_startup()
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
