"""The shipped default against real programs in a memory-limited group, run as a user
runs it (no --scope): does it end thrash, how fast, and does it leave the rest alone?

Each run: fresh lab groups, one workload from benchmarks/domain_signals.py (stress-ng,
memcached with our client, a one-time reread, the lab's compressible workload) in a
child with the limit, a bystander whose v2 group is its own but whose memory cgroup
is the runner's (an ancestor of the limited one), and `zoomd run` on the shipped
zoomd.toml with one drop-in: the host rules ("/") dry-run, since this machine is
shared and "/" holds processes this script did not start. 60 s at most, one look a
second at the limited group's PSI (the stall's onset: the first second with PSI full
>= 10%) and at whether its processes are still there.

    python benchmarks/domain_default.py                # writes results/domains/default.md
    python benchmarks/domain_default.py --limits 512M --workloads stress-thrash

Needs root, PSI, zram, stress-ng and memcached (apt-get install stress-ng memcached).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import domain_signals as ds  # noqa: E402

from zoomd.config.load import shipped_config_path  # noqa: E402
from zoomdlab.lab.cgroups import LabCgroups  # noqa: E402
from zoomdlab.lab.lock import lab_lock  # noqa: E402
from zoomdlab.lab.swap import zram_swap  # noqa: E402
from zoomdlab.lab.workloads import parse_size  # noqa: E402

RUN_S = 60.0
DEFAULT_RUNS = ("stress-thrash", "memcached-thrash", "stress-idle", "reread",
                "lab-compressible", "memcached-fit")
DROP_IN = ('[daemon]\nlog_format = "json"\n\n'
           '[[policy]]\nname = "stuck-memory"\ndry_run = true\n\n'
           '[[policy]]\nname = "sustained-thrash"\ndry_run = true\n\n'
           '[[policy]]\nname = "host-stuck"\ndry_run = true\n')


def _config(directory: str) -> str:
    path = os.path.join(directory, "zoomd.toml")
    shutil.copyfile(shipped_config_path(), path)
    os.makedirs(path + ".d", exist_ok=True)
    with open(os.path.join(path + ".d", "10-shared-lab.toml"), "w") as f:
        f.write(DROP_IN)
    return path


def _psi_full_us(v2_dir: str) -> int | None:
    try:
        with open(f"{v2_dir}/memory.pressure") as f:
            for line in f:
                if line.startswith("full"):
                    return int(line.rsplit("total=", 1)[1])
    except OSError:
        return None
    return None


def _populated(v2_dir: str) -> bool:
    try:
        with open(f"{v2_dir}/cgroup.events") as f:
            return "populated 1" in f.read()
    except OSError:
        return False


def run_one(name: str, limit: int, work: str) -> dict[str, object]:
    config = _config(work)
    log_path = os.path.join(work, f"{name}-{limit >> 20}M.log")
    out: dict[str, object] = {"workload": name, "kind": ds.KINDS[name], "limit_mib": limit >> 20}
    with LabCgroups() as lab:
        box = lab.child("box", limit)
        client = lab.child("client")
        shared = dataclasses.replace(lab.child("bystander"), v1_path=None)
        with open(log_path, "w") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "zoomd", "run", "--config",
                                       config, "--duration", str(RUN_S + 10)],
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(2.0)
            by = lab.start(shared, [sys.executable, "-m", "zoomdlab.lab.workload", "bystander",
                                    "--duration", str(RUN_S + 5)], stdout=subprocess.DEVNULL)
            started = time.monotonic()
            ds.start_workload(name, lab, box, client, limit, RUN_S)
            prev, prev_t = _psi_full_us(box.v2_path) or 0, time.monotonic()
            onset = ended = None
            while time.monotonic() - started < RUN_S:
                time.sleep(1.0)
                now, full = time.monotonic(), _psi_full_us(box.v2_path)
                if full is not None and onset is None and \
                        (full - prev) / ((now - prev_t) * 1e6) >= 0.10:
                    onset = round(now - started, 1)
                prev, prev_t = full or prev, now
                if not _populated(box.v2_path):
                    ended = round(now - started, 1)
                    break
            out["stall_onset_s"] = onset
            out["group_ended_s"] = ended
            out["bystander_alive"] = by.poll() is None
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    with open(log_path) as f:
        lines = [json.loads(x) for x in f if x.startswith("{")]
    records = [x for x in lines if x.get("level") == "notice" and "victim" in x]
    acted = [r for r in records if not r["dry_run"]]
    out["acted"] = [(r["policy"].split("@")[0], r["victim"].rsplit("/", 1)[-1]) for r in acted]
    out["host_would"] = [r["policy"] for r in records if r["dry_run"]]
    out["brownout_s"] = (round(float(out["group_ended_s"]) - float(onset), 1)  # type: ignore[arg-type]
                         if ended is not None and onset is not None else None)
    return out


def write_report(rows: list[dict[str, object]], path: str) -> None:
    lines = [
        "# The shipped default on real programs in a limited group (no --scope)",
        "",
        "`python benchmarks/domain_default.py` (root, zram 6 GiB, this machine's 6.18",
        "hybrid cgroups; the host rules dry-run by a drop-in, the domain rules acting).",
        "Brownout: from the first second the group's PSI full was >= 10% to the second",
        "its processes were gone; `-` where nothing was done (right for compressible/fit).",
        "",
        "| workload | kind | limit | stall onset (s) | ended (s) | brownout (s) | acted | "
        "host rules would | bystander alive |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acted = ", ".join(f"{p} on {v}" for p, v in r["acted"]) or "-"  # type: ignore[attr-defined]
        lines.append(
            f"| {r['workload']} | {r['kind']} | {r['limit_mib']}M | {r['stall_onset_s'] or '-'} "
            f"| {r['group_ended_s'] or '-'} | {r['brownout_s'] or '-'} | {acted} | "
            f"{', '.join(r['host_would']) or '-'} | {r['bystander_alive']} |")  # type: ignore[arg-type]
    thrash = [r for r in rows if r["kind"] == "thrash"]
    other = [r for r in rows if r["kind"] != "thrash"]
    lines += ["",
              f"- thrash ended: {sum(1 for r in thrash if r['acted'])} of {len(thrash)}",
              f"- compressible/fit acted on: {sum(1 for r in other if r['acted'])} of "
              f"{len(other)}",
              f"- bystanders killed: {sum(1 for r in rows if not r['bystander_alive'])}",
              "", "```json", json.dumps(rows, indent=1), "```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/domain_default.py")
    p.add_argument("--limits", default="512M,2G")
    p.add_argument("--workloads", default=",".join(DEFAULT_RUNS))
    p.add_argument("--out", default=os.path.join(HERE, "results", "domains", "default.md"))
    args = p.parse_args(argv)
    missing = [t for t in ("stress-ng", "memcached") if shutil.which(t) is None]
    if missing:
        print(f"domain_default: missing {missing} (apt-get install stress-ng memcached)",
              file=sys.stderr)
        return 2
    limits = [parse_size(x) for x in args.limits.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as work, lab_lock(), zram_swap(6 << 30):
        os.chmod(work, 0o755)
        for limit in limits:
            for name in args.workloads.split(","):
                if name == "memcached-fit" and limit > 512 << 20:
                    continue
                row = run_one(name, limit, work)
                print(json.dumps(row), flush=True)
                rows.append(row)
    write_report(rows, args.out)
    print(f"domain_default: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
