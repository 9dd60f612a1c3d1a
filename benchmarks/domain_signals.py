#!/usr/bin/env python3
"""Which per-domain signals tell thrashing from compressible, whatever the domain's size.

    python benchmarks/domain_signals.py --limits 512M,2G --out benchmarks/results/domains

Each run puts real programs (stress-ng, memcached with a client of ours) in a child
group of the lab (LabCgroups: a v2 group for PSI, a v1 memory group with the limit on
hybrid hosts, memory.max on pure v2), with zram swap active (zram_swap), under the lab
lock, and samples once a second: the group's memory.pressure, its memory.stat, the
host's /proc/vmstat and PSI, zram's mm_stat and the client's throughput. Each run
writes OUT/runs/<workload>-<limit>-r<N>.jsonl (raw counters and the per-second signals
derived from them); OUT/summary.md is then (re)built from every JSONL file there
(`--report-only` only rebuilds it). Hand-written text above the GENERATED marker in
summary.md is kept.

Workloads (kind in brackets; sizes from the limit, every process <= 2 GiB):
- stress-thrash [thrash]: stress-ng --vm, working set 1.5x the limit, rewritten pass
  after pass (--vm-keep): every page leaves and comes back.
- stress-idle [compressible]: the same working set filled once, then held (--vm-hang 0).
- reread [compressible]: fills 1.5x the limit, idles, rereads a hot set of a quarter
  of the limit once (a burst of refaults), idles again. Must stay under any threshold.
- lab-compressible [compressible]: the lab's own compressible workload (hot set that
  fits, looped; cold set visited slowly).
- memcached-thrash [thrash]: memcached holding 1.5x the limit, random GETs over all keys.
- memcached-fit [fit]: memcached holding 0.4x the limit, the same client.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoomdlab.lab.cgroups import LabCgroups, LabChild
from zoomdlab.lab.lock import lab_lock
from zoomdlab.lab.signals import terminate_as_interrupt
from zoomdlab.lab.swap import zram_swap
from zoomdlab.lab.sysfs import LabError
from zoomdlab.lab.timeline import parse_keyed, parse_mm_stat, parse_psi
from zoomdlab.lab.workloads import parse_size

PAGE = 4096
MAX_PROC = 2 << 30
WINDOW_S = 10
# Ratios are only meaningful with enough traffic under them: below this many pages per
# second in the denominator a ratio reads as 0 (nothing is leaving, nothing to judge).
RATIO_FLOOR = 256
MARKER = "<!-- GENERATED below: benchmarks/domain_signals.py rewrites everything after this -->"
HOST_FIELDS = (
    "workingset_refault_anon", "workingset_refault_file",
    "workingset_activate_anon", "workingset_activate_file",
    "workingset_restore_anon", "workingset_restore_file",
    "pgsteal_anon", "pgsteal_file", "pgscan_anon", "pgscan_file",
    "pswpin", "pswpout", "pgmajfault",
)
KINDS = {
    "stress-thrash": "thrash",
    "stress-idle": "compressible",
    "reread": "compressible",
    "lab-compressible": "compressible",
    "memcached-thrash": "thrash",
    "memcached-fit": "fit",
}


def fmt_size(n: int) -> str:
    return f"{n >> 30}G" if n % (1 << 30) == 0 else f"{n >> 20}M"


# -- the groups' workloads -------------------------------------------------------
@dataclass
class Running:
    """What a workload started, and what the sampler reads from it."""

    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    phase: str = "start"
    ops: int = 0  # client operations so far (memcached)
    steady_t: float | None = None  # monotonic time the steady phase began
    events: list[dict[str, Any]] = field(default_factory=list)


def _split(total: int) -> list[int]:
    """`total` bytes as few workers as possible, each <= 1.8 GiB (a 2 GiB hog bound)."""
    n = max(1, math.ceil(total / (1.8 * (1 << 30))))
    each = (total // n) - (total // n) % PAGE
    return [each] * n


def _stress(lab: LabCgroups, child: LabChild, size: int, duration: float, keep: bool) -> Running:
    run = Running()
    parts = _split(size)
    # prime-0 (a prime-stride walk, every page touched out of order, over and over)
    # thrashes without tripping the memcg OOM killer; rand-set and flip did within 10 s
    # on this kernel. Without --oomable stress-ng restarts a killed worker; the samples
    # count kills (oom_kill) so such a run shows it.
    # stress-ng divides --vm-bytes among the workers: pass the total.
    argv = ["stress-ng", "--vm", str(len(parts)), "--vm-bytes", str(sum(parts)),
            "--timeout", f"{int(duration) + 5}s", "--quiet"]
    argv += (["--vm-keep", "--vm-method", "prime-0"] if keep
             else ["--vm-method", "write64", "--vm-hang", "0"])
    run.procs.append(lab.start(child, argv, stdout=subprocess.DEVNULL))
    run.phase = "run"
    return run


def _me(*args: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), *args]


def _pump(stream: IO[str], run: Running) -> None:
    """The client's JSON lines: phase and cumulative ops."""
    for line in stream:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        run.ops = int(rec.get("ops", run.ops))
        phase = rec.get("phase", run.phase)
        if phase != run.phase:
            run.events.append({"t": time.monotonic(), "phase": phase})
            if phase == "read":
                run.steady_t = time.monotonic()
        run.phase = phase


VALUE_BYTES = 4000


def _memcached(lab: LabCgroups, child: LabChild, client: LabChild, data: int,
               duration: float) -> Running:
    run = Running()
    parts = _split(data)
    ports = []
    for i, part in enumerate(parts):
        port = 21211 + i
        mb = int(part * 1.15) >> 20  # item memory: the data plus slab overhead
        run.procs.append(lab.start(child, ["memcached", "-u", "root", "-l", "127.0.0.1",
                                           "-p", str(port), "-U", "0", "-t", "1",
                                           "-m", str(mb), "-c", "64"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ports.append(str(port))
    keys = data // VALUE_BYTES
    proc = lab.start(client, _me("_mcclient", "--ports", ",".join(ports), "--keys", str(keys),
                                 "--duration", str(duration)),
                     stdout=subprocess.PIPE, text=True)
    run.procs.append(proc)
    assert proc.stdout is not None
    threading.Thread(target=_pump, args=(proc.stdout, run), daemon=True).start()
    return run


def start_workload(name: str, lab: LabCgroups, child: LabChild, client: LabChild,
                   limit: int, duration: float) -> Running:
    if name == "stress-thrash":
        return _stress(lab, child, int(limit * 1.5), duration, keep=True)
    if name == "stress-idle":
        return _stress(lab, child, int(limit * 1.5), duration, keep=False)
    if name == "reread":
        run = Running(phase="run")
        for part in _split(int(limit * 1.5)):
            run.procs.append(lab.start(child, _me("_reread", "--size", str(part),
                                                  "--hot", str(int(part / 1.5 / 4)),
                                                  "--duration", str(duration))))
        return run
    if name == "lab-compressible":
        run = Running(phase="run")
        for part in _split(int(limit * 1.5)):
            run.procs.append(lab.start(child, [sys.executable, "-m", "zoomdlab.lab.workload",
                                               "compressible", "--size", str(part),
                                               "--hot", str(int(part / 1.5 / 4)),
                                               "--duration", str(duration)],
                                       stdout=subprocess.DEVNULL,
                                       env={**os.environ, "PYTHONPATH": _root()}))
        return run
    if name == "memcached-thrash":
        return _memcached(lab, child, client, int(limit * 1.5), duration)
    if name == "memcached-fit":
        return _memcached(lab, child, client, int(limit * 0.4), duration)
    raise LabError(f"unknown workload {name!r}")


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- sampling ----------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def raw_sample(child: LabChild, zram_sysfs: str, run: Running) -> dict[str, Any]:
    """Every counter the signals come from, as the kernel gave it."""
    mem_dir = child.v1_path or child.v2_path
    stat = parse_keyed(_read(f"{mem_dir}/memory.stat") or "")
    usage_file = "memory.usage_in_bytes" if child.v1_path else "memory.current"
    return {
        "t": time.monotonic(),
        "wall": round(time.time(), 3),
        "psi": parse_psi(_read(f"{child.v2_path}/memory.pressure") or ""),
        "host_psi": parse_psi(_read("/proc/pressure/memory") or ""),
        "stat": stat,
        "usage": int((_read(f"{mem_dir}/{usage_file}") or "0").split()[0]),
        "vmstat": parse_keyed(_read("/proc/vmstat") or "", HOST_FIELDS),
        "zram": parse_mm_stat(_read(f"{zram_sysfs}/mm_stat") or ""),
        "oom_kill": parse_keyed(_read(f"{mem_dir}/memory.oom_control" if child.v1_path
                                      else f"{child.v2_path}/memory.events") or "",
                                ("oom_kill",)).get("oom_kill", 0),
        "phase": run.phase,
        "ops": run.ops,
    }


def _stat(s: dict[str, Any], v1: str, v2: str | None = None) -> int:
    """A memory.stat counter by its v1 name (total_ first), or its v2 name."""
    st = s["stat"]
    for key in (f"total_{v1}", v1, v2):
        if key and key in st:
            return int(st[key])
    return 0


def _ratio(num: float, den: float) -> float:
    return num / den if den >= RATIO_FLOOR else 0.0


def derive(prev: dict[str, Any], cur: dict[str, Any], limit: int) -> dict[str, float]:
    """Per-second signals between two raw samples (rates per second, shares of the limit)."""
    dt = cur["t"] - prev["t"]

    def rate(v1: str, v2: str | None = None) -> float:
        return (_stat(cur, v1, v2) - _stat(prev, v1, v2)) / dt

    def host(key: str) -> float:
        return (cur["vmstat"].get(key, 0) - prev["vmstat"].get(key, 0)) / dt

    def psi(which: str, key: str) -> float:
        return 100.0 * (cur[which].get(key, 0) - prev[which].get(key, 0)) / (dt * 1e6)

    ra, rf = rate("workingset_refault_anon"), rate("workingset_refault_file")
    refault = ra + rf
    pgpgin, pgpgout = rate("pgpgin"), rate("pgpgout")
    majflt, flt = rate("pgmajfault"), rate("pgfault")
    h_ref = host("workingset_refault_anon") + host("workingset_refault_file")
    h_act = host("workingset_activate_anon") + host("workingset_activate_file")
    h_rst = host("workingset_restore_anon") + host("workingset_restore_file")
    h_steal = host("pgsteal_anon") + host("pgsteal_file")
    h_scan = host("pgscan_anon") + host("pgscan_file")
    swap = _stat(cur, "swap")
    if not swap and "swap" not in cur["stat"]:  # v2 has no swap in memory.stat
        swap = 0
    rss, cache = _stat(cur, "rss", "anon"), _stat(cur, "cache", "file")
    z = cur.get("zram") or {}
    out = {
        "psi_some": psi("psi", "some"), "psi_full": psi("psi", "full"),
        "host_psi_some": psi("host_psi", "some"), "host_psi_full": psi("host_psi", "full"),
        "refault_anon": ra, "refault_file": rf, "refault": refault,
        "pgpgin": pgpgin, "pgpgout": pgpgout, "pgmajfault": majflt, "pgfault": flt,
        "swap": swap, "rss": rss, "cache": cache, "usage": cur["usage"],
        "swap_share": swap / limit, "rss_share": rss / limit, "usage_share": cur["usage"] / limit,
        "refault_share": refault * PAGE / limit, "pgpgout_share": pgpgout * PAGE / limit,
        "majfault_share": majflt * PAGE / limit,
        # Swap turnover: the share of what sits in swap that came back this second. A
        # one-time reread brings each swapped page back at most once (<= 1 in total);
        # thrashing brings the same pages back again and again.
        "swap_turnover": refault * PAGE / swap if swap >= RATIO_FLOOR * PAGE else 0.0,
        "refault_per_pgpgout": _ratio(refault, pgpgout),
        "refault_per_majfault": _ratio(refault, majflt),
        "majfault_per_pgfault": _ratio(majflt, flt),
        "h_refault": h_ref, "h_activate": h_act, "h_restore": h_rst,
        "h_pgsteal": h_steal, "h_pgscan": h_scan,
        "h_pswpin": host("pswpin"), "h_pswpout": host("pswpout"),
        "h_activate_per_refault": _ratio(h_act, h_ref),
        "h_refault_per_pgsteal": _ratio(h_ref, h_steal),
        "h_restore_per_refault": _ratio(h_rst, h_ref),
        "h_pswpin_per_pswpout": _ratio(host("pswpin"), host("pswpout")),
        "h_steal_per_scan": _ratio(h_steal, h_scan),
        "zram_orig": z.get("orig_data_size", 0), "zram_used": z.get("mem_used_total", 0),
        "ops": (cur["ops"] - prev["ops"]) / dt,
        "oom_kill": cur["oom_kill"],
    }
    return {k: round(v, 5) for k, v in out.items()}


def run_one(name: str, limit: int, duration: float, rep: int, out_dir: str,
            zram_sysfs: str) -> str:
    """One run in fresh groups; returns the JSONL path. Groups torn down on any exit."""
    path = os.path.join(out_dir, "runs", f"{name}-{fmt_size(limit)}-r{rep}.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with LabCgroups(name=f"zoomd-domsig-{os.getpid()}") as lab, \
            open(path, "w", encoding="utf-8") as f:
        child = lab.child("domain", memory_limit=limit)
        client = lab.child("client")
        t0 = time.monotonic()
        run = start_workload(name, lab, child, client, limit, duration)
        if run.steady_t is None and name not in ("memcached-thrash", "memcached-fit"):
            run.steady_t = t0
        header = {"type": "run", "workload": name, "kind": KINDS[name], "limit": limit,
                  "rep": rep, "duration": duration, "memory_mode": lab.memory_mode,
                  "kernel": os.uname().release, "argv": [p.args for p in run.procs]}
        f.write(json.dumps(header, default=str) + "\n")
        prev = raw_sample(child, zram_sysfs, run)
        next_t = prev["t"] + 1.0
        while time.monotonic() - t0 < duration:
            time.sleep(max(0.0, next_t - time.monotonic()))
            next_t += 1.0
            cur = raw_sample(child, zram_sysfs, run)
            sig = derive(prev, cur, limit)
            rec = {"type": "sample", "s": round(cur["t"] - t0, 2), "phase": cur["phase"],
                   "steady": run.steady_t is not None and cur["t"] >= run.steady_t,
                   "sig": sig, "raw": {k: cur[k] for k in ("psi", "stat", "vmstat", "zram")}}
            f.write(json.dumps(rec) + "\n")
            f.flush()
            prev = cur
            if all(p.poll() is not None for p in run.procs):
                break
        for ev in run.events:
            f.write(json.dumps({"type": "event", "s": round(ev["t"] - t0, 2),
                                "phase": ev["phase"]}) + "\n")
    return path


# -- helper processes (run inside the groups) --------------------------------------
def worker_reread(size: int, hot: int, duration: float) -> int:
    """Fill `size` (compressible, not same-filled pages), idle, reread `hot` once, idle."""
    import mmap

    t_end = time.monotonic() + duration
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    block_pages = 256
    tail = bytes(PAGE - 64)
    for off in range(0, size, block_pages * PAGE):
        n = min(block_pages, (size - off) // PAGE)
        rnd = os.urandom(64 * n)
        buf[off:off + n * PAGE] = b"".join(rnd[i * 64:(i + 1) * 64] + tail for i in range(n))
    time.sleep(max(0.0, min(15.0, t_end - time.monotonic() - 20)))
    total = 0
    for off in range(0, hot, PAGE):  # read one byte per page: every page comes back once
        total += buf[off]
    while time.monotonic() < t_end:
        time.sleep(0.5)
    return 0 if total >= 0 else 1


def _mc_conn(port: int) -> socket.socket:
    deadline = time.monotonic() + 10
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _recv_until(sock: socket.socket, buf: bytearray, token: bytes, count: int) -> bytearray:
    """Read until `token` occurred `count` times; returns what is left after it."""
    seen = 0
    start = 0
    while True:
        idx = buf.find(token, start)
        if idx >= 0:
            seen += 1
            start = idx + len(token)
            if seen == count:
                return buf[start:]
            continue
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("memcached closed the connection")
        buf += chunk


def worker_mcclient(ports: list[int], keys: int, duration: float) -> int:
    """Load `keys` values of VALUE_BYTES (half random, half zero) then random GETs."""
    t_end = time.monotonic() + duration
    socks = [_mc_conn(p) for p in ports]
    rnd = [os.urandom(VALUE_BYTES // 2) for _ in range(512)]
    zeros = bytes(VALUE_BYTES // 2 - 16)
    ops = 0
    last = 0.0

    def emit(phase: str) -> None:
        sys.stdout.write(json.dumps({"phase": phase, "ops": ops}) + "\n")
        sys.stdout.flush()

    emit("load")
    batch = 200
    for start in range(0, keys, batch):
        per: dict[int, list[bytes]] = {}
        for k in range(start, min(keys, start + batch)):
            value = b"%016d" % k + rnd[k % 512] + zeros
            per.setdefault(k % len(socks), []).append(
                b"set k%d 0 0 %d\r\n%s\r\n" % (k, len(value), value))
        for i, cmds in per.items():
            socks[i].sendall(b"".join(cmds))
        pending = [bytearray() for _ in socks]
        for i, cmds in per.items():
            pending[i] = _recv_until(socks[i], pending[i], b"STORED\r\n", len(cmds))
        ops += batch
        if time.monotonic() - last >= 1.0:
            last = time.monotonic()
            emit("load")
        if time.monotonic() > t_end:
            return 0
    emit("read")
    rng = random.Random(1)
    leftovers = [bytearray() for _ in socks]
    while time.monotonic() < t_end:
        for i, sock in enumerate(socks):
            ks = [rng.randrange(i, keys, len(socks)) if keys > i else 0 for _ in range(16)]
            sock.sendall(b"get " + b" ".join(b"k%d" % k for k in ks) + b"\r\n")
        for i, sock in enumerate(socks):
            leftovers[i] = _recv_until(sock, leftovers[i], b"END\r\n", 1)
            ops += 16
        if time.monotonic() - last >= 1.0:
            last = time.monotonic()
            emit("read")
    emit("done")
    return 0


# -- summary ------------------------------------------------------------------------
SIGNALS = (
    ("psi_full", "PSI full %", "group"),
    ("psi_some", "PSI some %", "group"),
    ("refault_per_pgpgout", "refaults/pgpgout", "group"),
    ("refault_per_majfault", "refaults/pgmajfault", "group"),
    ("refault_share", "refaults x 4K / limit per s", "group"),
    ("pgpgout_share", "pgpgout x 4K / limit per s", "group"),
    ("refault", "refaults pages/s", "group"),
    ("pgmajfault", "pgmajfault /s", "group"),
    ("swap_share", "swap / limit", "group"),
    ("swap_turnover", "refaults x 4K / swap per s", "group"),
    ("usage_share", "usage / limit", "group"),
    ("h_activate_per_refault", "host activate/refault", "host"),
    ("h_refault_per_pgsteal", "host refault/pgsteal", "host"),
    ("h_restore_per_refault", "host restore/refault", "host"),
    ("h_pswpin_per_pswpout", "host pswpin/pswpout", "host"),
    ("ops", "client GETs/s", "group"),
)
THRESHOLD_SIGNALS = ("psi_full", "psi_some", "refault_per_pgpgout", "swap_turnover",
                     "refault_share", "pgpgout_share", "refault_per_majfault",
                     "h_activate_per_refault", "h_restore_per_refault",
                     "h_refault_per_pgsteal")


def load_runs(out_dir: str) -> list[dict[str, Any]]:
    runs = []
    rdir = os.path.join(out_dir, "runs")
    for name in sorted(os.listdir(rdir)) if os.path.isdir(rdir) else []:
        if not name.endswith(".jsonl"):
            continue
        head: dict[str, Any] | None = None
        samples = []
        with open(os.path.join(rdir, name), encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("type") == "run":
                    head = rec
                elif rec.get("type") == "sample":
                    samples.append(rec)
        if head and samples:
            runs.append({**head, "file": name, "samples": samples})
    return runs


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def steady(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The phase the thresholds are about. Thrash: from the first second the working set
    is all allocated (swap in use and growing by < 1% of the limit a second; memcached:
    after its load), as fills take 2 s at 512M and 30 s at 6G. Compressible and fit:
    the whole run, fill included (the strictest case)."""
    out = [s for s in run["samples"] if s["steady"]]
    if run["kind"] != "thrash":
        return out
    limit = run["limit"]
    for i in range(1, len(out)):
        swap, before = out[i]["sig"].get("swap", 0.0), out[i - 1]["sig"].get("swap", 0.0)
        if swap > 0 and abs(swap - before) < 0.01 * limit:
            return out[i:]
    return []


def windows(samples: list[dict[str, Any]], key: str, n: int = WINDOW_S) -> list[float]:
    """`key` over every n-second window: a mean for levels, sum/sum for ratios."""
    out = []
    ratio_parts = {
        "refault_per_pgpgout": ("refault", "pgpgout"),
        "refault_per_majfault": ("refault", "pgmajfault"),
        "h_activate_per_refault": ("h_activate", "h_refault"),
        "h_refault_per_pgsteal": ("h_refault", "h_pgsteal"),
        "h_restore_per_refault": ("h_restore", "h_refault"),
        "h_pswpin_per_pswpout": ("h_pswpin", "h_pswpout"),
    }
    for i in range(0, max(0, len(samples) - n + 1)):
        w = samples[i:i + n]
        if key == "swap_turnover":
            # refaults over the window / the most the window saw in swap: a total, not a
            # mean, and against the largest swap so a swap still filling cannot inflate it
            swap = max(s["sig"].get("swap", 0.0) for s in w)
            refaulted = sum(s["sig"].get("refault", 0.0) for s in w) * PAGE
            out.append(refaulted / swap if swap >= RATIO_FLOOR * PAGE else 0.0)
        elif key in ratio_parts:
            num, den = ratio_parts[key]
            top = sum(s["sig"].get(num, 0.0) for s in w) / n
            out.append(_ratio(top, sum(s["sig"].get(den, 0.0) for s in w) / n))
        else:
            out.append(sum(s["sig"].get(key, 0.0) for s in w) / n)
    return out


def _f(v: float) -> str:
    if v != v:  # nan
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"


def summarize(out_dir: str) -> str:
    runs = load_runs(out_dir)
    lines = [f"Runs: {len(runs)} JSONL files in runs/. Steady phase: thrash once the working "
             "set is allocated (swap growing < 1% of the limit a second; memcached: after the "
             "load), compressible and fit over the whole run (fill included, the strictest "
             f"case). Windows are {WINDOW_S} s means (ratios: sum "
             f"of numerator / sum of denominator; a denominator under {RATIO_FLOOR} pages/s "
             "reads as 0).", ""]
    by_group: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        by_group.setdefault((r["workload"], r["limit"]), []).append(r)
    order = sorted(by_group, key=lambda k: (k[1], list(KINDS).index(k[0])))
    lines.append("## Per-second signals: median / p90 over the steady phase")
    lines.append("")
    for chunk in (SIGNALS[:7], SIGNALS[7:]):
        lines.append("| workload | kind | limit | runs | " + " | ".join(c[1] for c in chunk) + " |")
        lines.append("|---" * (4 + len(chunk)) + "|")
        for key in order:
            rs = by_group[key]
            st = [s for r in rs for s in steady(r)]
            cells = []
            for sig, _, _ in chunk:
                vals = [s["sig"].get(sig, 0.0) for s in st]
                med = _f(statistics.median(vals)) if vals else "-"
                cells.append(f"{med} / {_f(pct(vals, 0.9))}")
            lines.append(f"| {key[0]} | {rs[0]['kind']} | {fmt_size(key[1])} | {len(rs)} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"## {WINDOW_S} s windows: thrash minimum (p10) vs compressible/fit maximum")
    lines.append("")
    lines.append("For a threshold `signal >= T` to separate, T must lie above the highest window "
                 "any compressible/fit run ever reached and below what thrash runs hold. "
                 "`margin` = thrash p10 / non-thrash max (> 1 separates).")
    lines.append("")
    lines.append("| signal | limit | thrash p10 | thrash median | compressible/fit max | "
                 "max from | margin |")
    lines.append("|---|---|---|---|---|---|---|")
    limits = sorted({r["limit"] for r in runs})
    for sig in THRESHOLD_SIGNALS:
        for lim in [*limits, None]:
            rs = [r for r in runs if lim is None or r["limit"] == lim]
            th = [v for r in rs if r["kind"] == "thrash" for v in windows(steady(r), sig)]
            worst, src = float("-inf"), "-"
            for r in rs:
                if r["kind"] == "thrash":
                    continue
                w = windows(r["samples"], sig)
                if w and max(w) > worst:
                    worst, src = max(w), f"{r['workload']} {fmt_size(r['limit'])}"
            lo = pct(th, 0.1)
            margin = lo / worst if worst > 0 else float("inf") if lo > 0 else float("nan")
            label = fmt_size(lim) if lim else "all"
            lines.append(f"| {sig} | {label} | {_f(lo)} | {_f(pct(th, 0.5))} | "
                         f"{_f(worst) if worst > float('-inf') else '-'} | {src} | "
                         f"{'inf' if margin == float('inf') else _f(margin)} |")
    lines.append("")
    lines.append(rule_section(runs))
    return "\n".join(lines) + "\n"


# Candidate rules checked against every run. A rule is (conditions, sustain): each
# condition (signal, threshold, window s) must hold over the window ending at a second,
# and all of them for `sustain` consecutive seconds. swap_turnover is a total, so its
# window may be shorter than asked while history is short (that only lowers it); every
# other window must be full. The "proposed" pair is what summary.md proposes: either
# rule acting is enough.
FAST = (("psi_full", 20.0, 10), ("refault_per_pgpgout", 0.5, 10))
RULES: dict[str, tuple[tuple[tuple[str, float, int], ...], int]] = {
    "A: fast+turnover": ((*FAST, ("swap_turnover", 1.0, 60)), 1),
    "B: fast held 20 s": (FAST, 20),
    "fast alone": (FAST, 1),
    "PSI full >= 10 alone": ((("psi_full", 10.0, 10),), 1),
}


def fires(samples: list[dict[str, Any]], rule: tuple[tuple[str, float, int], ...],
          sustain: int = 1) -> list[int]:
    """Indices of the samples at which the rule holds (see RULES)."""
    series = []
    for key, threshold, n in rule:
        if key == "swap_turnover":  # value at end e over min(n, e + 1) seconds
            vals = [windows(samples[max(0, e - n + 1):e + 1], key, min(n, e + 1))[0]
                    for e in range(len(samples))]
        else:
            w = windows(samples, key, n)
            vals = [w[e - n + 1] if e - n + 1 >= 0 else float("-inf")
                    for e in range(len(samples))]
        series.append((vals, threshold))
    ok = [all(v[e] >= t for v, t in series) for e in range(len(samples))]
    return [e for e in range(len(samples))
            if e - sustain + 1 >= 0 and all(ok[e - sustain + 1:e + 1])]


def rule_section(runs: list[dict[str, Any]]) -> str:
    out = ["## Candidate rules against every run", ""]
    for name, (rule, sustain) in RULES.items():
        cond = " AND ".join(f"{k} >= {t:g} over {n} s" for k, t, n in rule)
        held = f", held {sustain} s in a row" if sustain > 1 else ""
        out.append(f"- **{name}**: {cond}{held}")
    out += ["", "Cells: first second the rule holds (s from the run's start; memcached: the "
            "load comes first) / seconds it holds; `-` never.", "",
            "`PSI>=10 from`: first second the group's PSI full was >= 10% (where a brownout "
            "starts, as issue 14 measures it); `turnover 60 s max`: the most the run's "
            "refaults over any 60 s (or shorter, at the start) reached as a share of its swap.",
            "",
            "| run | kind | PSI>=10 from | turnover 60 s max | " + " | ".join(RULES) + " |",
            "|---|---|---|---|" + "---|" * len(RULES)]
    for r in runs:
        smp = r["samples"]
        start = next((x["s"] for x in smp if x["sig"].get("psi_full", 0.0) >= 10), None)
        turn = max((windows(smp[max(0, e - 59):e + 1], "swap_turnover", min(60, e + 1))[0]
                    for e in range(len(smp))), default=0.0)
        cells = [_f(start) if start is not None else "-", _f(turn)]
        for rule, sustain in RULES.values():
            f = fires(r["samples"], rule, sustain)
            cells.append(f"{_f(r['samples'][f[0]]['s'])} / {len(f)}" if f else "-")
        out.append(f"| {r['file'].removesuffix('.jsonl')} | {r['kind']} | "
                   + " | ".join(cells) + " |")
    out.append("")
    for name, (rule, sustain) in RULES.items():
        hit = {k: [r for r in runs if (r["kind"] == "thrash") == k
                   and fires(r["samples"], rule, sustain)] for k in (True, False)}
        total = {k: sum(1 for r in runs if (r["kind"] == "thrash") == k) for k in (True, False)}
        out.append(f"- {name}: acts on {len(hit[True])} of {total[True]} thrash runs and "
                   f"{len(hit[False])} of {total[False]} compressible/fit runs")
    return "\n".join(out)


def write_summary(out_dir: str) -> str:
    path = os.path.join(out_dir, "summary.md")
    kept = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if MARKER in text:
            kept = text.split(MARKER)[0]
    if not kept:
        kept = "# Per-domain signals: thrashing vs compressible\n\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(kept + MARKER + "\n\n" + summarize(out_dir))
    return path


# -- command line --------------------------------------------------------------------
def _limits(text: str) -> list[int]:
    try:
        out = [parse_size(x) for x in text.split(",") if x]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"--limits: {exc}") from None
    if not out or any(x < 64 << 20 for x in out):
        raise argparse.ArgumentTypeError("--limits: sizes of at least 64M, comma-separated")
    return out


def _workloads(text: str) -> list[str]:
    names = list(KINDS) if text == "all" else [x for x in text.split(",") if x]
    bad = [n for n in names if n not in KINDS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"--workloads: unknown {bad}; known: {list(KINDS)}")
    return names


def _duration(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--duration: not a number: {text!r}") from None
    if not 5 <= v <= 60:
        raise argparse.ArgumentTypeError("--duration: 5..60 seconds")
    return v


def main(argv: Iterable[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "_reread":
        p = argparse.ArgumentParser()
        p.add_argument("--size", type=int, required=True)
        p.add_argument("--hot", type=int, required=True)
        p.add_argument("--duration", type=float, required=True)
        a = p.parse_args(args_list[1:])
        return worker_reread(min(a.size, MAX_PROC), a.hot, a.duration)
    if args_list and args_list[0] == "_mcclient":
        p = argparse.ArgumentParser()
        p.add_argument("--ports", required=True)
        p.add_argument("--keys", type=int, required=True)
        p.add_argument("--duration", type=float, required=True)
        a = p.parse_args(args_list[1:])
        return worker_mcclient([int(x) for x in a.ports.split(",")], a.keys, a.duration)

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(_root(), "benchmarks/results/domains"))
    p.add_argument("--limits", type=_limits, default=_limits("512M,2G"))
    p.add_argument("--workloads", type=_workloads, default=list(KINDS))
    p.add_argument("--duration", type=_duration, default=60.0, help="seconds per run (<= 60)")
    p.add_argument("--reps", type=int, default=1, choices=range(1, 6))
    p.add_argument("--first-rep", type=int, default=1, help="number of the first repetition")
    p.add_argument("--zram", type=parse_size, default=parse_size("6G"), help="zram disksize")
    p.add_argument("--report-only", action="store_true", help="only rebuild summary.md")
    args = p.parse_args(args_list)
    if not args.report_only:
        missing = [t for t in ("stress-ng", "memcached", "mkswap", "swapon")
                   if not any(os.access(os.path.join(d, t), os.X_OK)
                              for d in os.environ.get("PATH", "").split(":"))]
        if missing:
            print(f"domain_signals: missing programs {missing} (apt-get install stress-ng "
                  "memcached)", file=sys.stderr)
            return 2
        terminate_as_interrupt()
        try:
            with lab_lock(), zram_swap(args.zram) as zram:
                for rep in range(args.first_rep, args.first_rep + args.reps):
                    for limit in args.limits:
                        for name in args.workloads:
                            path = run_one(name, limit, args.duration, rep, args.out,
                                           zram.sysfs)
                            print(f"domain_signals: {path}", flush=True)
        except (LabError, OSError, TimeoutError) as exc:
            print(f"domain_signals: {exc}", file=sys.stderr)
            return 1
    print(f"domain_signals: summary in {write_summary(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
