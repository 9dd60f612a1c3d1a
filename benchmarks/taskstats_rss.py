"""Peak RSS of a daemon-like process with and without taskstats (and so pyroute2).

Run from the repository root, as root (taskstats needs CAP_NET_ADMIN):
    python benchmarks/taskstats_rss.py [--runs 7] [--markdown]
Each case is a fresh `python -c` under /usr/bin/time -v; the figure is the median
"Maximum resident set size" over the runs. Cases:
  daemon            import zoomd.daemon.loop (what `zoomd run` loads before its loop)
  + pyroute2        the same, plus importing the pyroute2 modules the client uses
  + one query       the same, plus one TASKSTATS_CMD_GET of itself (socket, family lookup)
  + sampler /       the same, plus two StallSampler passes over every process of the host
Why: the taskstats client imports pyroute2 lazily so a daemon without taskstats does
not pay for it; this shows what enabling it costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = {
    "daemon": "import zoomd.daemon.loop",
    "daemon + pyroute2 import": (
        "import zoomd.daemon.loop\n"
        "import pyroute2.netlink, pyroute2.netlink.generic, pyroute2.netlink.exceptions"),
    "daemon + one taskstats query": (
        "import os, zoomd.daemon.loop\n"
        "from zoomd.kernel.taskstats_netlink import TaskstatsClient\n"
        "assert TaskstatsClient().tgid(os.getpid()) is not None"),
    "daemon + sampler over every process": (
        "import zoomd.daemon.loop\n"
        "from zoomd.kernel.cgroups import CgroupReader\n"
        "from zoomd.kernel.root import Root\n"
        "from zoomd.kernel.taskstats_netlink import TaskstatsClient\n"
        "from zoomd.stallsampler import StallSampler\n"
        "s = StallSampler(TaskstatsClient(), CgroupReader(Root()), budget=2048)\n"
        "s.sample(['/']); print(s.sample(['/']).queries)"),
}


def peak_rss_kib(code: str) -> tuple[int, float]:
    """(Maximum resident set size in KiB, wall seconds) of one fresh interpreter."""
    started = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", code], cwd=REPO,
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"case failed ({done.returncode}):\n{done.stderr[-2000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if match is None:
        raise SystemExit("no 'Maximum resident set size' in /usr/bin/time -v output")
    return int(match.group(1)), wall


LATENCY = (
    "import os, time\n"
    "from zoomd.kernel.taskstats_netlink import TaskstatsClient\n"
    "c = TaskstatsClient(); c.tgid(1)\n"
    "pids = [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
    "t = time.perf_counter(); n = 0\n"
    "while n < 2000:\n"
    "    for p in pids:\n"
    "        c.tgid(p); n += 1\n"
    "print(n, (time.perf_counter() - t) / n * 1e6)")


def query_latency_us() -> tuple[int, float]:
    """Mean microseconds per TGID query over >= 2000 queries of the host's processes."""
    done = subprocess.run([sys.executable, "-c", LATENCY], cwd=REPO, capture_output=True,
                          text=True, check=True)
    count, micros = done.stdout.split()
    return int(count), float(micros)


def pyroute2_version() -> str:
    done = subprocess.run([sys.executable, "-c", "import pyroute2; print(pyroute2.__version__)"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "not importable"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--markdown", action="store_true", help="a table for results/*.md")
    args = parser.parse_args()
    rows = []
    for name, code in CASES.items():
        samples = [peak_rss_kib(code) for _ in range(args.runs)]
        rss = [s[0] for s in samples]
        rows.append((name, statistics.median(rss), min(rss), max(rss),
                     statistics.median(s[1] for s in samples)))
    base = rows[0][1]
    print(f"python {platform.python_version()}, pyroute2 {pyroute2_version()}, kernel "
          f"{platform.release()} {platform.machine()}, {args.runs} runs per case")
    if args.markdown:
        print("\n| case | peak RSS median (MiB) | min-max (MiB) | vs daemon (MiB) | wall (s) |")
        print("|---|---|---|---|---|")
    for name, med, low, high, wall in rows:
        if args.markdown:
            print(f"| {name} | {med / 1024:.1f} | {low / 1024:.1f}-{high / 1024:.1f} | "
                  f"{(med - base) / 1024:+.1f} | {wall:.2f} |")
        else:
            print(f"{name:<38} {med / 1024:6.1f} MiB (min {low / 1024:.1f}, max "
                  f"{high / 1024:.1f}; {(med - base) / 1024:+.1f} vs daemon), {wall:.2f} s")
    count, micros = query_latency_us()
    print(f"\ntaskstats TGID query: {micros:.0f} us mean over {count} queries "
          f"(a budget of 128 queries: ~{128 * micros / 1000:.0f} ms per daemon tick)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
