#!/usr/bin/env python3
"""Run the property-based tests with many examples and write how many each one ran.

    python benchmarks/fuzz.py --examples 2000 --markdown benchmarks/results/fuzz.md

Each hypothesis test counts the examples it actually executed (tests/fuzzkit.py,
ZOOMD_FUZZ_COUNTS); CI runs the same tests with the default of 150 examples each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FILES = ["tests/test_fuzz_kernel.py", "tests/test_fuzz_cgroups.py", "tests/test_fuzz_config.py",
         "tests/test_fuzz_systemd_trace.py", "tests/test_candidates_random.py"]

WHAT = {
    "psi": "PSI (/proc/pressure/*, memory.pressure)",
    "vmstat/memory.stat": "name-value files: /proc/vmstat, memory.stat, cgroup.events",
    "memory.stat picked": "memory.stat fields picked for ranking and monitoring",
    "meminfo": "/proc/meminfo",
    "octal": "/proc/swaps and mountinfo octal escapes",
    "swaps": "/proc/swaps",
    "mountinfo": "/proc/self/mountinfo",
    "zoneinfo": "/proc/zoneinfo",
    "mm_stat": "zram mm_stat",
    "proc cgroup": "/proc/PID/cgroup",
    "cgroup v2": "cgroup v2 files through CgroupReader (fake tree)",
    "cgroup v1": "v1 memory files and /proc/PID/cgroup through CgroupReader (hybrid tree)",
    "config": "zoomd.toml and drop-ins through load_config",
    "oomd.conf": "oomd.conf and systemd's time spans and percentages (parse_text)",
    "varlink": "ManagedOOM varlink: message decoding, cgroup elements, PID 1's client and "
               "the user listener (one property over a socket, at a tenth of the examples)",
    "trace": "recorded traces, plain and gzip, through TraceReader",
    "random trees": "victim choice over generated trees (tmpfs, real xattrs)",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--markdown", metavar="FILE")
    args = parser.parse_args()
    counts_file = tempfile.mktemp(prefix="zoomd-fuzz-", suffix=".json")
    env = dict(os.environ, ZOOMD_FUZZ_EXAMPLES=str(args.examples),
               ZOOMD_FUZZ_COUNTS=counts_file)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *FILES], cwd=REPO, env=env, capture_output=True, text=True,
                          check=False)
    wall = time.monotonic() - start
    summary = (proc.stdout.strip().splitlines() or ["?"])[-1]
    with open(counts_file) as f:
        counts: dict[str, int] = json.load(f)
    os.unlink(counts_file)
    total = sum(counts.values())
    print(json.dumps({"counts": counts, "total": total, "pytest": summary,
                      "wall_s": round(wall, 1)}, indent=1))
    if args.markdown:
        import hypothesis

        lines = [
            "# Property-based tests: examples run",
            "",
            "Command (repository root):",
            "",
            f"    python benchmarks/fuzz.py --examples {args.examples} "
            f"--markdown benchmarks/results/fuzz.md",
            "",
            f"Hypothesis {hypothesis.__version__}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, load {load} at start; "
            f"{wall:.0f} s; pytest: `{summary}`.",
            "",
            f"Every test was asked for {args.examples} examples; the counts are the times "
            "each test body ran (tests/fuzzkit.py counts them). Some exceed the request: "
            "when a draw inside the body runs out of hypothesis's buffer, the example is "
            "abandoned and not counted towards the limit, but the body did run. CI runs "
            "the same tests at 150 examples each (`ZOOMD_FUZZ_EXAMPLES`).",
            "",
            "The properties: only zoomd's own errors (ZoomdError) escape a parser; a "
            "numeric field replaced by something that is no kernel number (`1_000`, "
            "`٣`, `²`, `+5`, `nan`, `1e3`, `0x10`, a negative where unsigned...) is "
            "refused, never read as a number; any number a parser returns was written "
            "in the input (nothing missing becomes 0); what the kernel prints (octal "
            "escapes included) parses back to what was printed; a configuration that "
            "loads holds no NaN, infinite or out-of-range value. oomd.conf never raises: "
            "a bad value is a warning naming file:line and key and the value before it "
            "stays, and what systemd prints parses back; a varlink message raises only "
            "VarlinkError (the link is dropped) and a malformed cgroup element is skipped, "
            "so nothing is guarded from a misread value; a trace raises only TraceError "
            "or warns about a truncated end, and holds only finite numbers.",
            "",
            "| property | examples |",
            "|---|---|",
        ]
        for name in sorted(counts):
            lines.append(f"| {name} | {counts[name]} |")
        lines += ["", f"**Total: {total} examples.**", "", "Parsers covered: " +
                  "; ".join(WHAT.values()) + ".", ""]
        # The hand-written list of bugs found stays across runs.
        kept = ""
        if os.path.exists(args.markdown):
            with open(args.markdown) as f:
                old = f.read()
            if BUGS_HEADING in old:
                kept = old[old.index(BUGS_HEADING):]
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + ("\n" + kept if kept else ""))
    return proc.returncode


BUGS_HEADING = "## Bugs these tests found"


if __name__ == "__main__":
    raise SystemExit(main())
