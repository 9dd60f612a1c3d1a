"""Replay every committed trace under every shipped and example configuration, and print
the decisions, policy tracks and the report as one JSON document.

    python benchmarks/same_decisions.py > after.json    # on the changed tree
    git stash; python benchmarks/same_decisions.py > before.json; git stash pop
    cmp before.json after.json && md5sum after.json

A change that claims "behaviour unchanged" (issue 16's refactors) shows it here: the
same bytes before and after. The decision count goes to stderr.
"""

from __future__ import annotations

import glob
import json
import sys

from zoomd.trace.replay import Replayer, load_specs
from zoomd.trace.report import build_report, dumps


def main() -> int:
    configs = sorted(["zoomd/data/zoomd.toml", *glob.glob("policies/*.toml"),
                      *glob.glob("tests/lab_configs/*.toml")])
    traces = sorted(glob.glob("tests/fixtures/**/*.jsonl*", recursive=True))
    out: dict[str, object] = {}
    decisions = 0
    for cfg in configs:
        specs = load_specs([cfg])
        results = []
        for trace in traces:
            result = Replayer(trace, specs).run()
            results.append(result)
            for run in result.runs:
                found = [d.to_json() for d in run.decisions]
                decisions += len(found)
                out[f"{cfg} {trace}"] = {
                    "decisions": found,
                    "tracks": {n: t.intervals for n, t in run.tracks.items()},
                    "error": run.error}
        out[f"{cfg} report"] = json.loads(dumps(build_report(results, specs)))
    sys.stdout.write(json.dumps(out, indent=1, default=str) + "\n")
    print(f"# {len(configs)} configurations x {len(traces)} traces, {decisions} decisions",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
