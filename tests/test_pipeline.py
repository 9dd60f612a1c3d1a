"""One tick: the daemon's loop runs reader -> model -> engine as pipeline.step and
hands observers its TickResult; integrations reach the daemon through its ports
(install_backend; the engine's generation re-arms triggers, removals included)."""

from __future__ import annotations

import io
import time
from pathlib import Path

from fakecgroupfs import FakeHost
from test_metrics import CONFIG
from test_metrics import host as metrics_host

from zoomd.actions.backend import RecordingBackend
from zoomd.actions.outcome import ActionOutcome
from zoomd.config.runtime import Policy
from zoomd.daemon.log import Logger
from zoomd.daemon.loop import Daemon
from zoomd.daemon.pipeline import TickResult
from zoomd.kernel.root import Root

host = metrics_host  # the fixture: a pure-v2 tree with /lab/work thrashing on demand


class Seen:
    def __init__(self) -> None:
        self.results: list[TickResult] = []

    def observe(self, daemon, result: TickResult) -> None:
        self.results.append(result)

    def on_reload(self, daemon) -> None:
        pass

    def close(self) -> None:
        pass


def test_observers_get_each_ticks_result(tmp_path: Path, host: FakeHost) -> None:
    config = tmp_path / "z.toml"
    config.write_text(CONFIG.format(textfile=tmp_path / "zoomd.prom"))
    backend = RecordingBackend({"kill": ActionOutcome("kill", "", True, "cgroup.kill", (4242,),
                                                      0.25, 400 * 2**20, None)})
    daemon = Daemon(str(config), root=Root(host.base), backend=backend,
                    logger=Logger("json", "error", io.StringIO()))
    seen = Seen()
    daemon.observers.append(seen)
    returned = []
    try:
        for _ in range(12):
            host.groups["/lab"].full_us += 80_000
            host.groups["/lab"].some_us += 90_000
            host.write()
            returned.append(daemon.tick())
            time.sleep(0.1)
    finally:
        daemon.shutdown()
    assert seen.results == returned
    decided = [d for r in returned for d in r.decisions]
    assert [(d.policy, d.victim) for d in decided] == [("stuck", "/lab/work")]
    assert all(r.seconds >= 0 and r.estimate is not None for r in returned)
    assert [r.host.monotonic for r in returned] == sorted(r.host.monotonic for r in returned)


def test_install_backend_and_policy_removal_are_seen_by_the_loop(tmp_path: Path,
                                                                 host: FakeHost) -> None:
    config = tmp_path / "z.toml"
    config.write_text(CONFIG.format(textfile=tmp_path / "zoomd.prom"))
    daemon = Daemon(str(config), root=Root(host.base), backend=RecordingBackend(),
                    logger=Logger("json", "error", io.StringIO()))
    try:
        wrapped = RecordingBackend()
        daemon.install_backend(wrapped)
        assert daemon.engine.backend is wrapped and daemon.backend is wrapped
        reloaded = daemon._make_engine(daemon.config)  # as a reload makes it
        assert reloaded.backend is wrapped
        reloaded.close()
        before = daemon.engine.generation
        daemon.engine.add_policy(Policy(name="extra", monitor="/lab/small"))
        daemon.engine.remove_policy("extra")
        assert daemon.engine.generation == before + 2  # removal too: triggers re-armed
    finally:
        daemon.shutdown()


def test_the_vm_probe_reads_the_engines_verdicts() -> None:
    """The VM lab's probe runs the daemon's step on the guest (here a captured tree):
    its "policies" are the engine's verdicts for the shipped host rules."""
    from zoomdlab.vmlab.guest import ModelProbe

    tree = Path(__file__).resolve().parent / "fixtures/trees/zram-only-6.18"
    probe = ModelProbe(Root(str(tree)))
    try:
        first = probe.sample(now=100.0)
        later = probe.sample(now=105.0)
    finally:
        probe.close()
    assert "policies" not in first  # one sample: no window yet, no evidence
    names = [s.policy.name for s in probe.engine.states]
    assert names and list(later["policies"]) == names
    assert later["policies"] == {s.policy.name: s.verdict.holds for s in probe.engine.states}
    assert later["stuck"] is any(later["policies"].values())
    assert later["window"] == probe.engine.states[0].verdict.figures.to_json()
