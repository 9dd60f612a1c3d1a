#!/usr/bin/env python3
"""The brownout lab benchmark: zoomd against the kernel alone and the daemons people use.

    python benchmarks/lab_bench.py --runs 3 --out benchmarks/results/lab

For each scenario (thrash, compressible, mixed) the same lab workload runs under each
configuration: no daemon, zoomd's default policy, systemd-oomd's algorithm expressed in
zoomd's terms (policies/systemd-oomd.toml), earlyoom and nohang from Debian's packages
(installed with apt-get when missing) with their defaults and with their documented
options that fit this lab. Each run writes OUT/<scenario>/<config>/run<N>/ (the lab's
summary.json, timeline.jsonl, logs, and metrics.json: what this script reads out of
them); at the end OUT/RESULTS.md and one PNG timeline per scenario are (re)written.
`--report-only` rebuilds those from the run directories already there; `--resume`
skips runs whose summary.json exists.

Safety: earlyoom and nohang pick victims among *all* processes they can see. Every lab
run therefore happens in a PID namespace of its own (`unshare --pid --fork
--mount-proc`), so the only processes either peer can see, and signal, are the lab's
own: the lab harness (the namespace's init, which the kernel does not let a process of
its own namespace SIGKILL), the workloads, /usr/bin/time and the peer itself. On top of
that, the workloads get distinctive names (comm `zlab-workload`, `zlab-bystander`, set
with prctl) and each peer is told with its own options to prefer the workload and avoid
everything else. `_one` refuses to start a peer unless it is the init of a new PID
namespace. `--dry-check` runs each peer once on `thrash` without acting (earlyoom
--dryrun; nohang, which has no dry-run, only prints its victim table with --tasks).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
SCENARIOS = ("thrash", "compressible", "mixed")
DURATIONS = {"thrash": 60.0, "compressible": 40.0, "mixed": 40.0}
WORKLOAD_COMM = "zlab-workload"  # thrash and compressible alike: one config for both
BYSTANDER_COMM = "zlab-bystander"
# Everything else a peer can see inside the lab's PID namespace.
OTHERS_RE = r"^(zlab-bystander|python.*|time|sh|unshare|earlyoom|nohang)$"
NAMER = (
    "import ctypes, runpy, sys\n"
    "ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME\n"
    "sys.argv = ['zoomdlab.lab.workload', *sys.argv[2:]]\n"
    "runpy.run_module('zoomdlab.lab.workload', run_name='__main__', alter_sys=True)\n"
)
TIME_V = "/usr/bin/time"
NOHANG_CONF = "/etc/nohang/nohang.conf"


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    daemon: str | None  # the lab's --daemon template; {conf} = OUT/configs
    peer: str | None = None  # "earlyoom" / "nohang": host-wide killers
    timed: bool = False  # wrapped in /usr/bin/time -v (zoomd)


def _zoomd(args: str) -> str:
    # GNU time dies on the SIGTERM the lab sends to the daemon's process group without
    # writing its report, so it ignores TERM (inherited); zoomd installs its own handler.
    inner = f"exec {TIME_V} -v -o {{out}}/daemon.time {PY} -m zoomd run {args}"
    return "sh -c " + shlex.quote("trap '' TERM; " + inner)


EARLYOOM_VICTIMS = f"--prefer '^{WORKLOAD_COMM}$' --avoid '{OTHERS_RE}'"


def _nohang(conf: str) -> str:
    inner = (
        f"sed 's|@V2ABS@|{{v2abs}}|g' {{conf}}/{conf} > {{out}}/nohang.conf && "
        "exec nohang --monitor -c {out}/nohang.conf"
    )
    return f"sh -c {shlex.quote(inner)}"


CONFIGS = (
    Config("kernel", "no daemon (kernel alone)", None),
    Config("zoomd", "zoomd default (zoomd run --scope LAB)", _zoomd("--scope {v2}"), timed=True),
    Config(
        "sd-oomd",
        "systemd-oomd's algorithm (zoomd policies/systemd-oomd.toml)",
        _zoomd(f"--config {REPO}/policies/systemd-oomd.toml --scope {{v2}}"),
        timed=True,
    ),
    Config(
        "earlyoom",
        "earlyoom 1.7 defaults (-m 10 -s 10), victims limited to the workload",
        f"earlyoom {EARLYOOM_VICTIMS}",
        peer="earlyoom",
    ),
    Config(
        "earlyoom-swap",
        "earlyoom 1.7 -m 99,99 -s 75,65 (acts on free swap alone), victims limited",
        f"earlyoom -m 99,99 -s 75,65 {EARLYOOM_VICTIMS}",
        peer="earlyoom",
    ),
    Config(
        "nohang",
        "nohang 0.2.0 default config, victims limited to the workload",
        _nohang("nohang-default.conf"),
        peer="nohang",
    ),
    Config(
        "nohang-psi",
        "nohang 0.2.0 PSI on the lab cgroup + zram checks, victims limited",
        _nohang("nohang-psi-zram.conf"),
        peer="nohang",
    ),
)
BY_KEY = {c.key: c for c in CONFIGS}


# ------------------------------------------------------------------------- setup
def _apt_install(packages: list[str]) -> None:
    """apt-get install, without letting the packages start host-wide services."""
    print(f"lab_bench: apt-get install {' '.join(packages)}", file=sys.stderr)
    policy = "/usr/sbin/policy-rc.d"
    added = not os.path.exists(policy)
    if added:  # Debian's earlyoom/nohang would otherwise start guarding the whole host
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)
    finally:
        if added:
            os.unlink(policy)


def ensure_tools(configs: list[Config]) -> None:
    need = {"unshare": "util-linux"}
    if any(c.timed for c in configs):
        need[TIME_V] = "time"
    for c in configs:
        if c.peer:
            need[c.peer] = c.peer
    missing = sorted({pkg for exe, pkg in need.items() if shutil.which(exe) is None})
    if missing:
        _apt_install(missing)
    own_ns = os.readlink("/proc/self/ns/pid")
    for name in ("earlyoom", "nohang"):
        running = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
        host_wide = []
        for pid in running.stdout.split():
            try:  # one of our own lab runs has it in a PID namespace of its own
                if os.readlink(f"/proc/{pid}/ns/pid") == own_ns:
                    host_wide.append(pid)
            except OSError:
                continue
        if host_wide:
            raise SystemExit(
                f"lab_bench: a host-wide {name} is already running (pid {host_wide}); "
                "it would act during every run. Stop it first."
            )


def write_nohang_configs(conf_dir: str) -> None:
    """Two nohang configs from Debian's: defaults, and PSI on the lab + zram checks."""
    with open(NOHANG_CONF) as f:
        base = f.read()
    victims = (
        "\n## lab_bench: only the lab's workload may be chosen (min_badness = 1)\n"
        f"@BADNESS_ADJ_RE_NAME -5000 /// ^(?!{WORKLOAD_COMM}$)\n"
        f"@BADNESS_ADJ_RE_NAME 300 /// ^{WORKLOAD_COMM}$\n"
    )

    def setting(text: str, key: str, value: str) -> str:
        new, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
        if n != 1:
            raise SystemExit(f"lab_bench: {NOHANG_CONF} has no single '{key} =' line")
        return new

    os.makedirs(conf_dir, exist_ok=True)
    with open(os.path.join(conf_dir, "nohang-default.conf"), "w") as f:
        f.write(base + victims)
    psi = base
    for key, value in (
        ("psi_checking_enabled", "True"),
        ("psi_path", "@V2ABS@/memory.pressure"),
        ("zram_checking_enabled", "True"),
        # the lowest values nohang accepts (% of MemTotal, range [10; 90] %)
        ("soft_threshold_max_zram", "10 %"),
        ("hard_threshold_max_zram", "10 %"),
    ):
        psi = setting(psi, key, value)
    with open(os.path.join(conf_dir, "nohang-psi-zram.conf"), "w") as f:
        f.write(psi + victims)


# ----------------------------------------------------------------- one lab run
def one(argv: list[str]) -> int:
    """Inside the run's PID namespace: the lab with named workloads and the daemon."""
    p = argparse.ArgumentParser(prog="lab_bench.py _one")
    p.add_argument("--scenario", required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--daemon")
    p.add_argument("--peer", action="store_true")
    a = p.parse_args(argv)
    if a.peer and os.getpid() != 1:
        print("lab_bench: refusing to run a host-wide killer outside a PID namespace of "
              "its own", file=sys.stderr)
        return 2
    from zoomdlab.lab import scenario
    from zoomdlab.lab.signals import terminate_as_interrupt

    original = scenario._workload_argv

    def named(cfg: Any, kind: str) -> list[str]:
        argv = original(cfg, kind)
        if argv[1:3] != ["-m", "zoomdlab.lab.workload"]:
            raise RuntimeError(f"unexpected workload command {argv}")
        comm = BYSTANDER_COMM if kind == "bystander" else WORKLOAD_COMM
        return [argv[0], "-c", NAMER, comm, *argv[3:]]

    scenario._workload_argv = named
    # nohang logs with print(): block-buffered into the lab's pipe, its lines (and so the
    # times the lab stamps on them) would arrive late.
    os.environ["PYTHONUNBUFFERED"] = "1"
    terminate_as_interrupt()
    cfg = scenario.ScenarioConfig(
        scenario=a.scenario, duration=a.duration, out=a.out, daemon=a.daemon
    )
    try:
        scenario.run_scenario(cfg)
    except KeyboardInterrupt:
        return 130
    finally:  # the host is shared: how busy it was while this run held the lab
        with open("/proc/loadavg") as f, open(os.path.join(a.out, "host.json"), "w") as g:
            json.dump({"loadavg_at_end": f.read().split()[:3]}, g)
    return 0


def run_one(cfg: Config, scen: str, duration: float, run_dir: str, conf_dir: str,
            daemon: str | None = None) -> int:
    os.makedirs(run_dir, exist_ok=True)
    template = daemon if daemon is not None else cfg.daemon
    # If this script is stopped, unshare passes SIGTERM to the lab (the namespace's
    # init), which then tears its zram, swap and cgroups down before the namespace goes.
    argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM", "--",
            PY, os.path.abspath(__file__), "_one", "--scenario", scen,
            "--duration", str(duration), "--out", run_dir]
    if template:
        argv += ["--daemon", template.replace("{conf}", conf_dir)]
    if cfg.peer:
        argv.append("--peer")
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(os.path.join(run_dir, "lab.log"), "w") as log:
        return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env).returncode


# ---------------------------------------------------------------- run analysis
ACTION_PATTERNS = (
    # earlyoom: sending SIGTERM to process 123 uid 0 "zlab-workload": badness 1300, ...
    re.compile(r'sending (?P<sig>SIG\w+) to process (?P<pid>\d+) uid \d+ "(?P<name>[^"]+)"'),
    # nohang: "[ OK ] Sending SIGTERM to zlab-workload" (after "Sending SIGTERM to the victim")
    re.compile(r"\[ OK \] Sending (?P<sig>SIG\w+) to (?P<name>\S+?):?\s"),
)


def _target(name: str, workload: str) -> str:
    name = name.rstrip("/").rsplit("/", 1)[-1]
    if name in (WORKLOAD_COMM, "workload", "compressible"):
        return workload
    if name in (BYSTANDER_COMM, "bystander"):
        return "bystander"
    return f"other:{name}"


def daemon_actions(records: list[dict[str, Any]], t0: float, workload: str) -> list[dict]:
    """Every action a daemon reported: t (s since start), target, what, dry."""
    out: list[dict[str, Any]] = []
    nohang_pending: float | None = None
    for rec in records:
        if rec.get("type") != "daemon":
            continue
        line, t = rec.get("line", ""), rec["t"] - t0
        if line.startswith("<6>record "):
            r = json.loads(line[len("<6>record "):])
            if isinstance(r.get("monotonic"), int | float):
                t = r["monotonic"] - t0  # when zoomd decided (the line comes after the act)
            out.append({"t": round(t, 2), "target": _target(r["victim"], workload),
                        "what": r["action"], "dry": bool(r.get("dry_run")),
                        "effective_available_bytes":
                            r.get("reclaim", {}).get("effective_available_bytes")})
            continue
        if re.search(r"Sending SIG\w+ to the victim", line):
            nohang_pending = t
            continue
        for pat in ACTION_PATTERNS:
            m = pat.search(line + " ")
            if m:
                when = nohang_pending if nohang_pending is not None else t
                nohang_pending = None
                if pat is ACTION_PATTERNS[1] and any(
                    a["what"] == m["sig"] and a["t"] == round(when, 2) for a in out
                ):
                    break  # nohang reprints its statistics; one action, one record
                out.append({"t": round(when, 2), "target": _target(m["name"], workload),
                            "what": m["sig"], "dry": "dry" in line.lower()})
                break
    return out


def parse_time_v(path: str) -> dict[str, float] | None:
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    fields = {}
    for key, pat in (("user_s", r"User time \(seconds\): ([\d.]+)"),
                     ("sys_s", r"System time \(seconds\): ([\d.]+)"),
                     ("max_rss_kib", r"Maximum resident set size \(kbytes\): (\d+)")):
        m = re.search(pat, text)
        if m:
            fields[key] = float(m.group(1))
    if "user_s" not in fields:
        return None
    return {"cpu_s": round(fields["user_s"] + fields.get("sys_s", 0.0), 2),
            "max_rss_mib": round(fields.get("max_rss_kib", 0) / 1024, 1)}


def sdoomd_estimate(samples: list[dict[str, Any]], t0: float, group: str,
                   limit: float = 60.0, duration: float = 30.0) -> float | None:
    """When real systemd-oomd would first kill: the kernel's full avg10 (recomputed from
    `total` every 2 s, as the kernel does) above `limit` for `duration` seconds."""
    import math

    decay = math.exp(-2.0 / 10.0)
    avg, last, above_since = 0.0, None, None
    for s in samples:
        p = s.get("psi", {}).get(group)
        if p is None:
            continue
        if last is None:
            last = (s["t"], p["full_total"])
            continue
        if s["t"] - last[0] < 2.0:
            continue
        pct = 100.0 * (p["full_total"] - last[1]) / ((s["t"] - last[0]) * 1e6)
        last = (s["t"], p["full_total"])
        avg = avg * decay + pct * (1 - decay)
        if avg > limit:
            above_since = s["t"] if above_since is None else above_since
            if s["t"] - above_since >= duration:
                return round(s["t"] - t0, 1)
        else:
            above_since = None
    return None


def analyze(run_dir: str, cfg: Config) -> dict[str, Any]:
    """metrics.json of one run, from its summary.json, timeline and daemon records."""
    from zoomdlab.lab.summary import _after_kill
    from zoomdlab.lab.timeline import read_timeline

    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    records = list(read_timeline(os.path.join(run_dir, "timeline.jsonl")))
    start = next(r for r in records if r.get("type") == "run_start")
    t0, workload = start["t"], start.get("workload_name", "thrash")
    samples = [r for r in records if r.get("type") == "sample"]
    actions = daemon_actions(records, t0, workload)
    exits = summary.get("exits", {})
    # The kernel acts too: an OOM kill shows in the exit cause.
    for name, e in exits.items():
        if "kernel OOM" in (e.get("by") or ""):
            actions.append({"t": e["at_s"], "target": name, "what": "kernel OOM kill",
                            "dry": False})
    real = [a for a in actions if not a["dry"]]
    onset = summary.get("brownout_onset_s")
    on_main = [a for a in real if a["target"] == workload]
    m: dict[str, Any] = {
        "scenario": summary.get("scenario"),
        "config": cfg.key,
        "brownout_s": summary.get("brownout_s"),
        "brownout_onset_s": onset,
        "brownout_open_at_end_s": summary.get("brownout_open_at_end_s"),
        "bystander_p50_ms": (summary.get("bystander") or {}).get("p50_ms"),
        "bystander_p99_ms": (summary.get("bystander") or {}).get("p99_ms"),
        "actions": actions,
        "exits": exits,
        "lab_onset_to_kill_s": summary.get("onset_to_kill_s"),
        "lab_kill_to_zram_released_s": summary.get("kill_to_zram_released_s"),
    }
    if on_main:
        first = on_main[0]["t"]
        m["onset_to_action_s"] = round(first - onset, 2) if onset is not None else None
        m["action_to_zram_released_s"] = _after_kill(samples, t0 + first, t0, onset)[
            "kill_to_zram_released_s"]
    else:
        m["onset_to_action_s"] = None
        m["action_to_zram_released_s"] = None
    false = [a for a in real if a["target"] != workload or workload == "compressible"]
    for name, e in exits.items():
        spoiled = e.get("by") != "exited (duration reached)" or (
            e.get("at_s", 0) < summary["config"]["duration"] - 1)
        if (spoiled and name in ("bystander", "compressible")
                and not any(a["target"] == name for a in false)):
            false.append({"t": e.get("at_s"), "target": name, "what": e.get("by")})
    m["false_actions"] = len(false)
    m["false_action_details"] = false
    m["daemon_resources"] = parse_time_v(os.path.join(run_dir, "daemon.time"))
    m["workload_killed_by"] = summary.get("workload_killed_by")
    m["real_sdoomd_would_kill_at_s"] = sdoomd_estimate(
        samples, t0, start.get("workload_group", "workload"))
    try:
        with open(os.path.join(run_dir, "host.json")) as f:
            m["loadavg_1m_at_end"] = float(json.load(f)["loadavg_at_end"][0])
    except (OSError, ValueError, KeyError):
        m["loadavg_1m_at_end"] = None
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(m, f, indent=2)
        f.write("\n")
    return m


# ------------------------------------------------------------------- reporting
def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) else None


def _fmt(values: list[Any], unit: str = "", never: str = "never", nd: int = 1) -> str:
    """Median (min-max) over runs; non-numbers (never / none) count as +inf."""
    if not values:
        return "-"
    n_none = sum(1 for v in values if _num(v) is None)
    keyed = sorted(values, key=lambda v: (_num(v) is None, _num(v) or 0.0))
    nums = [_num(v) for v in keyed]

    def one(x: float | None) -> str:
        return never if x is None else f"{x:.{nd}f}{unit}"

    med = keyed[(len(keyed) - 1) // 2] if len(keyed) % 2 else None
    if med is None:  # even count: mean of the middle two when both are numbers
        a, b = nums[len(nums) // 2 - 1], nums[len(nums) // 2]
        med_s = one(None if a is None or b is None else (a + b) / 2)
    else:
        med_s = one(_num(med))
    if n_none == len(values):
        return never
    spread = f" ({one(nums[0])}–{one(nums[-1])})" if len(values) > 1 else ""
    tail = f" [{never} in {n_none}/{len(values)}]" if 0 < n_none < len(values) else ""
    return med_s + spread + tail


def _brownout_cell(ms: list[dict]) -> str:
    cell = _fmt([m["brownout_s"] if m["brownout_onset_s"] is not None else 0.0 for m in ms],
                " s")
    open_for = [m["brownout_open_at_end_s"] for m in ms if m.get("brownout_open_at_end_s")]
    if open_for:
        cell += f"; open at end after {min(open_for):.0f}–{max(open_for):.0f} s"
    return cell


def collect(out: str) -> dict[str, dict[str, list[dict]]]:
    found: dict[str, dict[str, list[dict]]] = {}
    for scen in SCENARIOS:
        for cfg in CONFIGS:
            base = os.path.join(out, scen, cfg.key)
            if not os.path.isdir(base):
                continue
            for run in sorted(os.listdir(base)):
                rd = os.path.join(base, run)
                if not _complete(rd):
                    continue  # never finished, or interrupted (by Ctrl-C or SIGTERM)
                if os.path.exists(os.path.join(rd, "timeline.jsonl")):
                    m = analyze(rd, cfg)
                else:
                    with open(os.path.join(rd, "metrics.json")) as f:
                        m = json.load(f)
                m["run"] = run
                found.setdefault(scen, {}).setdefault(cfg.key, []).append(m)
    return found


def table(scen: str, by_cfg: dict[str, list[dict]]) -> list[str]:
    lines = [
        "| configuration | runs | brownout | onset → action | action → zram released "
        "| bystander p50 | bystander p99 | false actions | what acted | daemon CPU / peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cfg in CONFIGS:
        ms = by_cfg.get(cfg.key)
        if not ms:
            continue
        acted = sorted({f"{a['what']}→{a['target']}" for m in ms for a in m["actions"]
                        if not a.get("dry")})
        res = [m["daemon_resources"] for m in ms if m.get("daemon_resources")]
        resources = (
            _fmt([r["cpu_s"] for r in res], " s", nd=2) + " / "
            + _fmt([r["max_rss_mib"] for r in res], " MiB")
            if res else "not measured"
        )
        lines.append(
            f"| {cfg.label} | {len(ms)} | {_brownout_cell(ms)} "
            f"| {_fmt([m['onset_to_action_s'] for m in ms], ' s', never='no action')} "
            f"| {_fmt([m['action_to_zram_released_s'] for m in ms], ' s', never='-')} "
            f"| {_fmt([m['bystander_p50_ms'] for m in ms], ' ms', never='?', nd=2)} "
            f"| {_fmt([m['bystander_p99_ms'] for m in ms], ' ms', never='?', nd=2)} "
            f"| {', '.join(str(m['false_actions']) for m in ms)} "
            f"| {'; '.join(acted) or 'nothing'} | {resources} |"
        )
    return lines


def _median_num(values: list[Any]) -> float:
    nums = [_num(v) if _num(v) is not None else float("inf") for v in values]
    return statistics.median(nums) if nums else float("nan")


def goal_statement(found: dict[str, dict[str, list[dict]]]) -> list[str]:
    out = []
    z = found.get("thrash", {}).get("zoomd", [])
    sd = found.get("thrash", {}).get("sd-oomd", [])
    if z:
        zb = _median_num([m["brownout_s"] for m in z])
        worst = max(_num(m["brownout_s"]) or float("inf") for m in z)
        ok = zb < 10
        out.append(
            f"- Brownout under 10 s in `thrash` with the default policy: "
            f"{'**holds**' if ok else '**does not hold**'} (median {zb:.1f} s, worst "
            f"{'never' if worst == float('inf') else f'{worst:.1f} s'} over {len(z)} runs)."
        )
        if sd:
            sb = _median_num([m["brownout_s"] for m in sd])
            opened = [m.get("brownout_open_at_end_s") for m in sd
                      if m.get("brownout_open_at_end_s")]
            if sb == float("inf"):
                lower = min(opened) if opened else float("nan")
                ratio = lower / zb if zb else float("inf")
                out.append(
                    f"- Several times shorter than systemd-oomd's algorithm: "
                    f"{'**holds**' if ratio >= 3 else '**does not hold**'}: under systemd-"
                    f"oomd's algorithm the brownout had not ended when the run did (still "
                    f"open after ≥ {lower:.0f} s), so the ratio is at least {ratio:.1f}x "
                    "(a lower bound: the run's length caps it)."
                )
            else:
                ratio = sb / zb if zb else float("inf")
                out.append(
                    f"- Several times shorter than systemd-oomd's algorithm: "
                    f"{'**holds**' if ratio >= 3 else '**does not hold**'} "
                    f"(median {sb:.1f} s vs {zb:.1f} s: {ratio:.1f}x)."
                )
        est = [(m["brownout_onset_s"], m.get("real_sdoomd_would_kill_at_s"))
               for k in ("kernel", "sd-oomd") for m in found.get("thrash", {}).get(k, [])]
        if est:
            hits = [f"{w - o:.0f} s" for o, w in est if w is not None and o is not None]
            out.append(
                "- Caveat on systemd-oomd's algorithm as modelled: its figures need a full "
                "30 s `window` of zoomd's own history before the 30 s `for` can start, so it "
                "cannot act before about 61 s after zoomd starts; real systemd-oomd counts "
                "its 30 s from when full avg10 first exceeds 60%. Recomputing the kernel's "
                "avg10 from the same `thrash` timelines (kernel alone and systemd-oomd runs, "
                f"{len(est)} in all), real systemd-oomd would have killed "
                + (f"in {len(hits)} of them, {', '.join(hits)} after the onset"
                   if hits else "in none of them")
                + (f", and not within the run in the other {len(est) - len(hits)}"
                   if hits and len(hits) < len(est) else "")
                + "."
            )
            gaps = [w - o for o, w in est if w is not None and o is not None]
            if gaps and zb:
                out[-1] += (f" Against the earliest of those estimates zoomd's median "
                            f"brownout is {min(gaps) / zb:.1f}x shorter.")
    zc = found.get("compressible", {}).get("zoomd", [])
    if zc:
        falses = sum(m["false_actions"] for m in zc)
        out.append(
            f"- Zero false actions in `compressible` with the default policy: "
            f"{'**holds**' if falses == 0 else '**does not hold**'} ({falses} over "
            f"{len(zc)} runs)."
        )
    for cfg in CONFIGS:
        if cfg.key in ("zoomd", "kernel"):
            continue
        runs = {scen: by.get(cfg.key, []) for scen, by in found.items()}
        acted = {scen: sum(1 for m in ms if any(not a.get("dry") for a in m["actions"]))
                 for scen, ms in runs.items() if ms}
        falses = {scen: sum(1 for m in ms if m["false_actions"])
                  for scen, ms in runs.items() if ms}
        if not acted:
            continue
        if not any(acted.values()):
            out.append(f"- {cfg.label}: did nothing in any scenario ("
                       + ", ".join(f"{len(runs[s])} {s} runs" for s in acted) + ").")
        else:
            out.append(f"- {cfg.label}: acted in "
                       + ", ".join(f"{acted[s]}/{len(runs[s])} {s}" for s in acted)
                       + " runs; false actions in "
                       + ", ".join(f"{falses[s]}/{len(runs[s])} {s}" for s in falses) + ".")
    return out


def plot(scen: str, by_cfg: dict[str, list[dict]], out: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoomdlab.lab.timeline import read_timeline

    cfgs = [c for c in CONFIGS if by_cfg.get(c.key)]
    if not cfgs:
        return None
    fig, axes = plt.subplots(len(cfgs), 1, figsize=(11, 2.1 * len(cfgs) + 0.8), sharex=True,
                             squeeze=False)
    for ax, cfg in zip(axes[:, 0], cfgs, strict=True):
        m = by_cfg[cfg.key][0]
        path = os.path.join(out, scen, cfg.key, m["run"], "timeline.jsonl")
        if not os.path.exists(path):
            continue
        recs = list(read_timeline(path))
        start = next(r for r in recs if r.get("type") == "run_start")
        group = start.get("workload_group", "workload")
        t0 = start["t"]
        xs, full, host = [], [], []
        prev: dict[str, tuple[float, int]] = {}
        for r in recs:
            if r.get("type") != "sample":
                continue
            for name, dest in ((group, full), ("host", host)):
                p = r.get("psi", {}).get(name)
                if p is None:
                    if name == group:
                        dest.append(float("nan"))
                    continue
                tot = p["full_total"]
                last = prev.get(name)
                prev[name] = (r["t"], tot)
                pct = 100.0 * (tot - last[1]) / ((r["t"] - last[0]) * 1e6) if last else 0.0
                dest.append(max(0.0, min(100.0, pct)))
            xs.append(r["t"] - t0)
        host = host[: len(xs)]
        ax.plot(xs, full, lw=0.8, color="tab:blue", label=f"{group} PSI full %")
        if len(host) == len(xs):
            ax.plot(xs, host, lw=0.6, color="tab:gray", alpha=0.7, label="host PSI full %")
        ax.axhline(10, color="tab:blue", ls=":", lw=0.6)
        if m.get("brownout_onset_s") is not None:
            end = m["brownout_s"]
            stop = m["brownout_onset_s"] + end if _num(end) is not None else xs[-1]
            ax.axvspan(m["brownout_onset_s"], stop, color="tab:red", alpha=0.08,
                       label="brownout")
        for a in m["actions"]:
            color = "tab:red" if a["target"] != "bystander" else "tab:purple"
            ax.axvline(a["t"], color=color, lw=1.2, ls="--" if a.get("dry") else "-")
            text = f"{a['what']} {a['target']}"
            eff = a.get("effective_available_bytes")
            if eff is not None:
                text += f"\nhost eff. avail {eff / 2**20:.0f} MiB"
            ax.text(a["t"], 95, text, fontsize=7, va="top", ha="left", color=color)
        for name, e in m["exits"].items():
            if e.get("by") != "exited (duration reached)":
                ax.plot([e["at_s"]], [2], marker="v", color="black", ms=5)
                ax.text(e["at_s"], 5, f"{name} exit", fontsize=6, rotation=90)
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(f"{cfg.label} ({m['run']})", fontsize=8, loc="left")
        if ax is axes[0, 0]:
            ax.legend(fontsize=6, loc="upper right")
    axes[-1, 0].set_xlabel("seconds since the run's start")
    fig.suptitle(f"zoomd lab: {scen} — memory PSI full (from `total` deltas) and actions",
                 fontsize=10)
    fig.tight_layout()
    png = os.path.join(out, f"{scen}.png")
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def machine() -> list[str]:
    with open("/proc/meminfo") as f:
        mem = next(line.split(":")[1].strip() for line in f if line.startswith("MemTotal"))
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":")[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return [
        f"- kernel: `{os.uname().release}` ({os.uname().machine})",
        f"- CPUs: {os.cpu_count()} ({cpu}); MemTotal: {mem}",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def _versions() -> str:
    def ver(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    return (f"earlyoom: `{ver(['earlyoom', '-v'])}`; nohang: "
            f"`{ver(['dpkg-query', '-W', '-f=${Version}', 'nohang'])}` (Debian package)")


PEER_NOTES = f"""## How the peers were run, and what they cannot do here

- **Safety.** earlyoom and nohang choose victims among all the processes they can see,
  host-wide. Every run (all configurations alike) therefore runs in a PID namespace of
  its own (`unshare --pid --fork --mount-proc`): inside it the only processes are the
  lab harness (the namespace's init, which a process of the namespace cannot SIGKILL),
  the two workloads, `/usr/bin/time` and the peer itself, so neither peer can see or
  signal anything outside the lab. The workloads are renamed with prctl (comm
  `{WORKLOAD_COMM}` for thrash and compressible alike, `{BYSTANDER_COMM}`), and each
  peer is also told with its own options to prefer the workload and avoid the rest.
- **earlyoom 1.7** watches host-wide MemAvailable and SwapFree only: it has no PSI
  option and no cgroup option, so it cannot be pointed at the lab's cgroup. Its
  `--prefer`/`--avoid` regexes (on /proc/PID/comm) only add/subtract 300 to oom_score;
  1.7 has no `--ignore`, so they do not exclude anything by themselves: the namespace
  does. Defaults (`-m 10 -s 10`): both memory *and* swap must be low, and a 512 MiB
  cgroup thrashing on a 24 GiB host never makes host memory low. The second
  configuration (`-m 99,99 -s 75,65`) makes the memory condition always true, so it
  acts on free swap alone: SIGTERM under 75% free swap, SIGKILL under 65%. Swap use
  counts slots, not RAM: it cannot tell thrash from compressible.
- **nohang 0.2.0** (Debian) with its default config (`/etc/nohang/nohang.conf`):
  host-wide MemAvailable/SwapFree thresholds, PSI and zram checks off. The second
  configuration turns on `psi_checking_enabled` with `psi_path` = the lab's v2 root
  `memory.pressure` (defaults otherwise: `full_avg10`, SIGTERM above 40 / SIGKILL
  above 90 for `psi_excess_duration` = 30 s) and `zram_checking_enabled` with
  `soft/hard_threshold_max_zram` at the lowest value nohang accepts, 10 % of
  MemTotal (2.4 GiB): zram's memory here never gets near that (its device is 2 GiB
  before compression), so the zram rule cannot fire in this lab. Nor can the PSI
  rule: nohang 0.2.0 reads PSI only once host-wide MemAvailable is under one of its
  `*_threshold_min_mem` values, and acts on it only under the soft/hard ones
  (`check_psi_ex()` in /usr/sbin/nohang; those thresholds accept at most 50 % of
  MemTotal), while a stall confined to a 512 MiB cgroup leaves over 90 % of this
  host's memory available. Both configs add
  `@BADNESS_ADJ_RE_NAME -5000 /// ^(?!{WORKLOAD_COMM}$)` and `+300` for the workload,
  so with `min_badness = 1` nothing else is ever eligible. nohang also reads only
  `/sys/block/zram0` (the lab's device is zram0 when it is free).
- **systemd-oomd's algorithm** is zoomd running `policies/systemd-oomd.toml` (full
  avg10 > 60% for 30 s with reclaim activity, 1 s polling), not systemd-oomd itself.
- Brownout, onset and the bystander's latencies come from the lab's summary.json;
  "onset → action" is from the first second with the workload's PSI full ≥ 10% to the
  first action a daemon logged on the workload (or the kernel's OOM kill);
  "action → zram released" is from that action until zram's `mem_used_total` is under
  10% of what it held then. A false action is anything done to `compressible` or the
  bystander, or either of them ending before its time. Daemon CPU and peak RSS are
  from `/usr/bin/time -v` around zoomd (not measured for the peers).
"""


SCENARIO_NOTES = {
    "thrash": "The workload is the production brownout: it should be ended, fast.",
    "compressible": "Here the right answer is to do nothing: \"brownout\" is the "
    "compressible workload's own stall while it fills its cold set into zram, and any "
    "action on it is a false action.",
    "mixed": "thrash with a 1 GiB disk swap file beside zram: not all swap is RAM-backed.",
}


def dry_run_notes(out: str) -> list[str]:
    """What each peer would have picked in the --dry-check runs."""
    base = os.path.join(out, "dryrun")
    if not os.path.isdir(base):
        return []
    lines = ["## Dry-run check of the peers (`--dry-check`, thrash, nothing acted on)", ""]
    for cfg in CONFIGS:
        log = os.path.join(base, cfg.key, "daemon.log")
        if not cfg.peer or not os.path.exists(log):
            continue
        with open(log, errors="replace") as f:
            text = f.read()
        if cfg.peer == "earlyoom":
            picks = re.findall(r'sending (SIG\w+) to process \d+ uid \d+ "([^"]+)"', text)
            seen = sorted({f"{sig} → {name}" for sig, name in picks})
            lines.append(f"- {cfg.label}: " + (
                f"would have sent {', '.join(seen)} ({len(picks)} times)" if seen
                else "never reached its thresholds (would have done nothing)"))
        else:
            seen = sorted({line.split()[-1] for line in text.splitlines()
                           if re.match(r"#\s*\d+\s+\d+\s+-?\d+\s", line)})
            picks = sorted(set(re.findall(r"PID: \d+, Name: (\S+), badness: (-?\d+)", text)))
            lines.append(
                f"- {cfg.label}: no dry-run mode, so `nohang --tasks` ran twice mid-run with "
                f"the same config: besides the lab harness (init) and itself it saw only "
                f"{', '.join(seen) or '?'}, and ranked first "
                + (", ".join(f"{n} (badness {b})" for n, b in picks) or "nothing")
                + "; everything else had badness 0, under min_badness.")
    return [*lines, ""]


def keep_timelines(out: str, found: dict[str, dict[str, list[dict]]]) -> None:
    """One representative timeline per scenario (zoomd default, run1), gzipped."""
    for scen, by_cfg in found.items():
        runs = by_cfg.get("zoomd")
        if not runs:
            continue
        src = os.path.join(out, scen, "zoomd", runs[0]["run"], "timeline.jsonl")
        dst = os.path.join(out, scen, f"timeline-zoomd-{runs[0]['run']}.jsonl.gz")
        if os.path.exists(src):
            with open(src, "rb") as f, gzip.open(dst, "wb") as g:
                shutil.copyfileobj(f, g)


def report(out: str, argv: list[str], notes: str) -> None:
    os.makedirs(out, exist_ok=True)
    found = collect(out)
    lines = ["# zoomd lab benchmark", "", *machine(), f"- {_versions()}", "",
             "Reproduce (as root, on a host with zram and PSI; takes the lab lock):", "",
             "```sh", "python benchmarks/lab_bench.py " + " ".join(argv), "```", ""]
    lines += ["## Where the goal holds", "", *goal_statement(found), ""]
    if notes:
        lines += [notes, ""]
    lines += [PEER_NOTES, *dry_run_notes(out)]
    for scen in SCENARIOS:
        if scen not in found:
            continue
        d = found[scen]
        dur = next(iter(d.values()))[0]
        lines += [f"## {scen}", ""]
        with open(os.path.join(out, scen, next(iter(d)), dur["run"], "summary.json")) as f:
            c = json.load(f)["config"]
        lines.append(
            f"Workload limit {c['limit'] >> 20} MiB, size "
            f"{(c['size'] or c['limit'] * 5 // 2) >> 20} MiB, zram {c['zram'] >> 20} MiB "
            f"({c['algorithm']}), {c['duration']:.0f} s of "
            "workload plus the bystander. Medians with (min–max) over the runs; false "
            "actions per run.")
        lines[-1] += " " + SCENARIO_NOTES[scen]
        loads = [m["loadavg_1m_at_end"] for ms in d.values() for m in ms
                 if m.get("loadavg_1m_at_end") is not None]
        if loads:
            lines[-1] += (f" The host is shared (2 CPUs): its 1-min load average at the end of "
                          f"these runs was {min(loads):.1f}–{max(loads):.1f}.")
        lines += ["", *table(scen, d), "", f"![{scen} timeline]({scen}.png)", ""]
        plot(scen, d, out)
    keep_timelines(out, found)
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_one"]:
        return one(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "lab"))
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--configs", default=",".join(c.key for c in CONFIGS),
                   help="comma list of: " + ", ".join(c.key for c in CONFIGS))
    p.add_argument("--duration", action="append", default=[], metavar="SCENARIO=S",
                   help="seconds of workload (default " +
                   ", ".join(f"{k}={v:.0f}" for k, v in DURATIONS.items()) + ")")
    p.add_argument("--resume", action="store_true", help="skip runs with a summary.json")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--dry-check", action="store_true",
                   help="run each peer once on thrash without acting; no report")
    p.add_argument("--notes", default="", help="markdown file appended under the goal")
    a = p.parse_args(argv)
    out = os.path.abspath(a.out)
    scens = [s for s in a.scenarios.split(",") if s]
    cfgs = [BY_KEY[k] for k in a.configs.split(",") if k]
    durations = dict(DURATIONS)
    for item in a.duration:
        k, _, v = item.partition("=")
        durations[k] = float(v)
    notes = ""
    if a.notes:
        with open(a.notes) as f:
            notes = f.read().strip()
    conf_dir = os.path.join(out, "configs")
    if a.report_only:
        report(out, _repro(a), notes)
        return 0
    if os.geteuid() != 0:
        raise SystemExit("lab_bench: the lab needs root (zram, swapon, cgroups)")
    ensure_tools(cfgs)
    write_nohang_configs(conf_dir)
    if a.dry_check:
        return dry_check(out, conf_dir, durations["thrash"])
    total = len(scens) * len(cfgs) * a.runs
    done = 0
    for scen in scens:
        for run in range(1, a.runs + 1):
            for cfg in cfgs:
                done += 1
                rd = os.path.join(out, scen, cfg.key, f"run{run}")
                if a.resume and _complete(rd):
                    continue
                t = time.monotonic()
                rc = run_one(cfg, scen, durations[scen], rd, conf_dir)
                status = "ok"
                if rc == 0 and os.path.exists(os.path.join(rd, "summary.json")):
                    m = analyze(rd, cfg)
                    status = (f"brownout {m['brownout_s']} onset->action "
                              f"{m['onset_to_action_s']} false {m['false_actions']}")
                else:
                    status = f"lab exit {rc} (see {rd}/lab.log)"
                print(f"[{done}/{total}] {scen} {cfg.key} run{run}: {status} "
                      f"({time.monotonic() - t:.0f} s)", flush=True)
    report(out, _repro(a), notes)
    print(f"lab_bench: wrote {out}/RESULTS.md", flush=True)
    return 0


def _complete(run_dir: str) -> bool:
    """A run that ended by itself: summary.json written and not marked interrupted."""
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            return not json.load(f).get("interrupted")
    except (OSError, ValueError):
        return False


def _repro(a: argparse.Namespace) -> list[str]:
    args = ["--runs", str(a.runs), "--out", os.path.relpath(os.path.abspath(a.out), REPO)]
    if a.scenarios != ",".join(SCENARIOS):
        args += ["--scenarios", a.scenarios]
    if a.configs != ",".join(c.key for c in CONFIGS):
        args += ["--configs", a.configs]
    for item in a.duration:
        args += ["--duration", item]
    return args


def dry_check(out: str, conf_dir: str, duration: float) -> int:
    """Each peer configuration once on thrash, not acting: what would it pick?"""
    base = os.path.join(out, "dryrun")
    for cfg in CONFIGS:
        if not cfg.peer or cfg.daemon is None:
            continue
        if cfg.peer == "earlyoom":
            daemon = cfg.daemon.replace("earlyoom ", "earlyoom --dryrun ", 1)
        else:  # nohang has no dry-run: print its victim table (badness) twice mid-run
            inner = (
                f"sed 's|@V2ABS@|{{v2abs}}|g' {{conf}}/{_conf_name(cfg)} > {{out}}/nohang.conf"
                " && sleep 15 && nohang --tasks -c {out}/nohang.conf"
                " && sleep 15 && nohang --tasks -c {out}/nohang.conf && sleep 600"
            )
            daemon = f"sh -c {shlex.quote(inner)}"
        rd = os.path.join(base, cfg.key)
        rc = run_one(cfg, "thrash", duration, rd, conf_dir, daemon=daemon)
        print(f"dry-check {cfg.key}: lab exit {rc}; daemon log {rd}/daemon.log", flush=True)
    return 0


def _conf_name(cfg: Config) -> str:
    return "nohang-psi-zram.conf" if cfg.key == "nohang-psi" else "nohang-default.conf"


if __name__ == "__main__":
    raise SystemExit(main())
