"""Record -> replay round trips on this machine: the host files unprivileged, a cgroup of
our own (root), and a lab run recorded by the dry-run daemon (real kernel, lab lock),
whose replay must reproduce the daemon's own decisions."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from realkernel import require_real_kernel
from samedecisions import assert_same_decisions

from zoomd.kernel.cgroups import CgroupReader, detect_layout
from zoomd.kernel.root import Root
from zoomd.trace.reader import Sample, TraceReader
from zoomd.trace.replay import Replayer, load_specs
from zoomd.trace.report import build_report
from zoomd.trace.tree import MaterialisedTree

REPO = Path(__file__).resolve().parent.parent
DEFAULT = str(REPO / "zoomd/data/zoomd.toml")
NOBODY = 65534


def zoomd(*args: str, as_nobody: bool = False, timeout: float = 120,
          ) -> subprocess.CompletedProcess[str]:
    prefix: list[str] = []
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if as_nobody:
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        env = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "")}
    return subprocess.run([*prefix, sys.executable, "-m", "zoomd", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd="/")


def can_be_nobody() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                            "--clear-groups", sys.executable, "-c", "import pydantic, zoomd"],
                           capture_output=True, cwd="/", env={"PYTHONPATH": str(REPO)})
    return probe.returncode == 0


@pytest.fixture
def request_cleanup():
    paths: list[Path] = []
    yield paths
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def test_live_host_round_trip(request_cleanup: list[Path]) -> None:
    """Host-wide files need no privilege: record as nobody when we can, else as we are."""
    nobody = can_be_nobody()
    if not os.path.exists("/proc/pressure/memory"):
        pytest.skip("live round trip skipped: no PSI on this kernel")
    where = Path(tempfile.mkdtemp(prefix="zoomd-live-"))  # pytest's tmp is 0700 to nobody
    request_cleanup.append(where)
    os.chmod(where, 0o777)
    out = where / "live.jsonl.gz"
    proc = zoomd("record", "-o", str(out), "--duration", "2", "--interval", "0.2",
                 as_nobody=nobody)
    assert proc.returncode == 0, proc.stderr
    assert "recorded" in proc.stderr and "0 dropped" in proc.stderr
    reader = TraceReader(str(out))
    samples = [e for e in reader.events() if isinstance(e, Sample)]
    assert 2 <= len(samples) <= 11  # 10 at 0.2 s; fewer on a loaded host
    assert samples[0].key and "/proc/meminfo" in samples[0].files
    assert all(b.t > a.t for a, b in itertools.pairwise(samples))
    status = json.loads(zoomd("status", "--json", "--sample", "0").stdout)
    result = Replayer(str(out), load_specs([DEFAULT])).run()
    assert result.samples == len(samples) and not result.warnings
    assert result.skipped_samples == 0 and result.runs[0].skipped_ticks == 0
    # What replay reads from the trace is this host: same watermark, same swap verdicts.
    assert result.timeline["min_free"][-1] == status["memory"]["min_watermark_bytes"]
    with MaterialisedTree() as tree:
        for sample in samples:
            tree.apply(sample)
        verdicts = json.loads(tree.facts["@swap_kinds"])
    assert {p: v[0] for p, v in verdicts.items()} == {
        d["path"]: d["kind"] for d in status["swap"]["devices"]}
    report = build_report([result], load_specs([DEFAULT]))
    assert report["traces"][0]["samples"] == len(samples)


@pytest.fixture
def own_group(tmp_path: Path):
    """A v2 group holding a sleeping process (and its v1 memory group on hybrid hosts)."""
    require_real_kernel(need_zram=False)
    root = Root("/")
    layout = detect_layout(root)
    assert layout.v2 is not None
    name = f"zoomd-trace-test-{os.getpid()}"
    v2 = os.path.join(layout.v2.mount_point, name)
    v1 = os.path.join(layout.v1["memory"].mount_point, name) if layout.hybrid else None
    child = None
    made = []
    try:
        for directory in filter(None, (v2, v1)):
            os.mkdir(directory)
            made.append(directory)
        if v1:
            with open(f"{v1}/memory.limit_in_bytes", "w") as f:
                f.write(str(256 << 20))
        child = subprocess.Popen(["sleep", "60"])
        for directory in filter(None, (v2, v1)):
            with open(f"{directory}/cgroup.procs", "w") as f:
                f.write(str(child.pid))
        yield f"/{name}", child.pid
    finally:
        if child is not None:
            child.kill()
            child.wait()
        time.sleep(0.1)
        for directory in reversed(made):
            for _ in range(50):
                try:
                    os.rmdir(directory)
                    break
                except OSError:
                    time.sleep(0.1)


def test_live_cgroup_round_trip(tmp_path: Path, own_group: tuple[str, int]) -> None:
    group, pid = own_group
    config = tmp_path / "c.toml"
    config.write_text('[[policy]]\nname = "watch"\nmonitor = "/"\n'
                      '[policy.all]\nmemory_pressure_full_above = "90%"\n')
    out = tmp_path / "g.jsonl"
    proc = zoomd("record", "-o", str(out), "--duration", "1.2", "--interval", "0.2",
                 "--scope", group, "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    samples = [e for e in TraceReader(str(out)).events() if isinstance(e, Sample)]
    live = CgroupReader(Root("/"))
    with MaterialisedTree() as tree:
        for sample in samples:
            tree.apply(sample)
        replayed = CgroupReader(tree.root)
        assert replayed.procs(group) == live.procs(group) == [pid]
        mem, live_mem = replayed.memory(group), live.memory(group)
        assert mem is not None and live_mem is not None
        assert (mem.source, mem.limit) == (live_mem.source, live_mem.limit)
        if live.layout.hybrid:
            assert mem.source == f"v1:{group}" and mem.limit == 256 << 20
        assert tree.facts  # the swap verdicts
        assert os.path.exists(tree.root.join(f"/proc/{pid}/cgroup"))
    specs = load_specs([str(config)])
    result = Replayer(str(out), specs).run()
    assert result.samples == len(samples) and not result.warnings
    assert result.runs[0].tracks["watch"].monitor == group  # re-rooted under the scope


@pytest.mark.realkernel
def test_lab_run_record_replays_the_daemons_own_decisions(tmp_path: Path) -> None:
    """zoomd run --dry-run --record on the thrash lab (zram swap, the lab's groups, under
    the lab lock: run_scenario); replay gives the live records, field for field."""
    require_real_kernel()
    from zoomdlab.lab.scenario import ScenarioConfig, run_scenario

    out = tmp_path / "lab"
    daemon = (f"{sys.executable} -m zoomd run --dry-run --scope {{v2}} "
              f"--record {{out}}/trace.jsonl.gz")
    run_scenario(ScenarioConfig(scenario="thrash", duration=15.0, out=str(out),
                                daemon=daemon))
    trace = out / "trace.jsonl.gz"
    reader = TraceReader(str(trace))
    assert reader.header.get("tap") is True  # the daemon's reads, not a second reader
    samples = [e for e in reader.events() if isinstance(e, Sample)]
    specs = load_specs([DEFAULT])
    result = Replayer(str(trace), specs).run()
    report = build_report([result], specs)["traces"][0]
    live = [(d["t"], d["victim"]) for d in report["live_decisions"]]
    replayed = [(d["t"], d["victim"]) for d in report["decisions"]]
    print(json.dumps({"live": live, "replayed": replayed, "samples": result.samples,
                      "bytes": trace.stat().st_size}))
    assert live, "the thrash lab gave the daemon nothing to decide"
    assert replayed == live
    assert all(v.endswith("/workload") for _, v in live)
    assert result.dropped == 0 and not result.warnings
    assert_same_decisions([x["record"] for x in result.live], result.runs[0].decisions)
    # The trace kept every read of every tick (none over the tap's bound).
    with gzip.open(trace, "rt") as handle:
        lines = [json.loads(line) for line in handle]
    assert not any(line.get("over_budget") for line in lines)
    print(json.dumps({"rereads": sum(len(line.get("rereads", {})) for line in lines)}))
    with MaterialisedTree() as tree:
        for sample in samples:
            tree.apply(sample)
        verdicts = json.loads(tree.facts["@swap_kinds"])
    assert any(v[0] == "zram" and v[1] is True for v in verdicts.values()), verdicts


@pytest.mark.realkernel
def test_lab_run_zoomd_record_replays_to_a_decision(tmp_path: Path) -> None:
    """zoomd record (no engine: the readers an engine would call, the tap keeping what
    they read) on the thrash lab; the shipped default, replayed, picks the workload."""
    require_real_kernel()
    from zoomdlab.lab.scenario import ScenarioConfig, run_scenario

    out = tmp_path / "lab"
    daemon = (f"{sys.executable} -m zoomd record -o {{out}}/trace.jsonl.gz --scope {{v2}} "
              "--interval 0.25")
    run_scenario(ScenarioConfig(scenario="thrash", duration=15.0, out=str(out),
                                daemon=daemon))
    trace = out / "trace.jsonl.gz"
    assert TraceReader(str(trace)).header.get("tap") is True
    result = Replayer(str(trace), load_specs([DEFAULT])).run()
    victims = [d.victim for d in result.runs[0].decisions]
    print(json.dumps({"victims": victims, "samples": result.samples}))
    assert result.skipped_samples == 0 and not result.warnings
    assert victims and all(v.endswith("/workload") for v in victims)
