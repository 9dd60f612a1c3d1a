"""Metrics: the hand-written exposition parses with Prometheus' own parser; the daemon's
families after an action; the HTTP endpoint (loopback) and the atomic textfile."""

from __future__ import annotations

import io
import math
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fakecgroupfs import FakeHost

from zoomd.actions.backend import RecordingBackend
from zoomd.actions.outcome import ActionOutcome
from zoomd.daemon.log import Logger
from zoomd.daemon.loop import Daemon
from zoomd.errors import ZoomdError
from zoomd.kernel.root import Root
from zoomd.metrics.export import MetricsServer, parse_listen, write_textfile
from zoomd.metrics.exposition import Family, Histogram, format_value, render

parser = pytest.importorskip("prometheus_client.parser",
                             reason="metrics tests parse with prometheus-client (test extra)")

TREES = Path(__file__).resolve().parent / "fixtures" / "trees"
MiB = 1 << 20


def parse(text: str) -> dict[str, list]:
    """{family name: [(sample name, labels, value)]} as Prometheus reads the text."""
    return {fam.name: [(s.name, s.labels, s.value) for s in fam.samples]
            for fam in parser.text_string_to_metric_families(text)}


def value(families: dict, family: str, sample: str | None = None, **labels: str) -> float:
    for name, got, val in families[family]:
        if (sample is None or name == sample) and all(got.get(k) == v for k, v in
                                                      labels.items()):
            return val
    raise KeyError(f"{family} {sample} {labels}")


def test_exposition_escapes_and_parses() -> None:
    gauge = Family("zoomd_test_bytes", "gauge", 'help with a \\ backslash\nand "quotes"')
    gauge.add(1.5, cgroup='/odd "name"\\with\nnewline')
    gauge.add(None, cgroup="/absent")  # no evidence: no sample
    gauge.add(2**40, cgroup="/big")
    counter = Family("zoomd_test_total", "counter", "a counter")
    counter.add(3)
    hist = Family("zoomd_test_seconds", "histogram", "a histogram")
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    h.export(hist, policy="p")
    text = render([gauge, counter, hist])
    fams = parse(text)
    assert value(fams, "zoomd_test_bytes", cgroup='/odd "name"\\with\nnewline') == 1.5
    assert value(fams, "zoomd_test_bytes", cgroup="/big") == 2**40
    assert len(fams["zoomd_test_bytes"]) == 2
    assert value(fams, "zoomd_test", "zoomd_test_total") == 3
    assert [value(fams, "zoomd_test_seconds", "zoomd_test_seconds_bucket", le=le)
            for le in ("0.1", "1.0", "+Inf")] == [1, 2, 3]
    assert value(fams, "zoomd_test_seconds", "zoomd_test_seconds_sum") == pytest.approx(5.55)
    assert format_value(math.nan) == "NaN" and format_value(-math.inf) == "-Inf"
    assert render([]) == ""


@pytest.mark.parametrize("text, expected", [
    ("9464", ("127.0.0.1", 9464)), ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("[::1]:9464", ("::1", 9464)), (":9464", ("127.0.0.1", 9464)),
])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["", "http", "host:", "1:99999", "a b:1"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ZoomdError, match="expected PORT or HOST:PORT"):
        parse_listen(text)


def test_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "zoomd.prom"
    path.write_text("old\n")
    write_textfile(str(path), "zoomd_x 1\n")
    assert path.read_text() == "zoomd_x 1\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert os.listdir(tmp_path) == ["zoomd.prom"]  # no temporary file left behind
    with pytest.raises(OSError):
        write_textfile(str(tmp_path / "missing" / "z.prom"), "x 1\n")


def test_textfile_mode_is_set_on_the_descriptor_not_through_a_swapped_name(
        tmp_path: Path, monkeypatch) -> None:
    """Someone who may write the directory swaps the temporary file for a symlink to a
    root-only file while zoomd writes it: chmod by name made that file 0644."""
    victim = tmp_path / "secret"
    victim.write_text("s\n")
    victim.chmod(0o600)
    directory = tmp_path / "textfiles"
    directory.mkdir()
    real_fsync = os.fsync

    def swap_then_fsync(fd: int) -> None:
        for name in os.listdir(directory):
            if name.endswith(".prom.tmp"):
                os.unlink(directory / name)
                os.symlink(victim, directory / name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", swap_then_fsync)
    write_textfile(str(directory / "zoomd.prom"), "zoomd_x 1\n")
    assert victim.stat().st_mode & 0o777 == 0o600


def test_textfile_through_link_dotdot_is_written_where_the_kernel_goes(
        tmp_path: Path) -> None:
    """`link/../z.prom`: the temporary file goes beside the kernel's z.prom (a lexical
    dirname put it beside the link, on another filesystem: EXDEV)."""
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's tmp_path")
    (tmp_path / "sub").mkdir()
    link = os.path.join(shm, f"zoomd-test-link-{os.getpid()}")
    os.symlink(tmp_path / "sub", link)
    try:
        write_textfile(f"{link}/../z.prom", "zoomd_x 1\n")
    finally:
        os.unlink(link)
    assert (tmp_path / "z.prom").read_text() == "zoomd_x 1\n"
    assert sorted(os.listdir(tmp_path)) == ["sub", "z.prom"]


def test_http_endpoint_is_loopback_and_serves_metrics() -> None:
    server = MetricsServer("0", lambda: "zoomd_up 1\n")
    try:
        host, port = server.address
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert parse(resp.read().decode()) == {"zoomd_up": [("zoomd_up", {}, 1.0)]}
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
        assert err.value.code == 404
    finally:
        server.close()


CONFIG = """
[daemon]
psi_triggers = false
mlock = false
[systemd]
managed_oom = false
dbus = false
[metrics]
listen = "0"
textfile = "{textfile}"
textfile_interval = "1s"  # the least allowed; the final write is on shutdown
[[policy]]
name = "stuck"
monitor = "/lab"
window = "400ms"
for = "0s"
post_action_delay = "30s"
rank = ["memory"]
[policy.all]
memory_pressure_full_above = "40%"
"""


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    base = tmp_path / "host"
    shutil.copytree(TREES / "cgroup2-pure" / "proc", base / "proc", symlinks=True)
    shutil.copytree(TREES / "cgroup2-pure" / "sys", base / "sys", symlinks=True)
    shutil.rmtree(base / "sys" / "fs" / "cgroup")
    lab = FakeHost(str(base))
    lab.add("/lab", pids=[], current=600 * MiB)
    lab.add("/lab/work", pids=[4242], current=500 * MiB, anon=480 * MiB)
    lab.add("/lab/small", pids=[4243], current=20 * MiB, anon=10 * MiB)
    return lab


def test_daemon_metrics_after_an_action(tmp_path: Path, host: FakeHost) -> None:
    textfile = tmp_path / "zoomd.prom"
    config = tmp_path / "z.toml"
    config.write_text(CONFIG.format(textfile=textfile))
    backend = RecordingBackend({"kill": ActionOutcome("kill", "", True, "cgroup.kill", (4242,),
                                                      0.25, 400 * MiB, None)})
    daemon = Daemon(str(config), root=Root(host.base), backend=backend,
                    logger=Logger("json", "error", io.StringIO()))
    metrics = next(o for o in daemon.observers if hasattr(o, "metrics"))
    try:
        for _ in range(12):
            host.groups["/lab"].full_us += 80_000  # 80% of each 100 ms
            host.groups["/lab"].some_us += 90_000
            host.write()
            daemon.tick()
            time.sleep(0.1)
        assert [c.method for c in backend.calls] == ["kill_cgroup"]
        _, port = metrics.server.address
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            fams = parse(resp.read().decode())
    finally:
        daemon.shutdown()
    assert value(fams, "zoomd_actions", "zoomd_actions_total", policy="stuck",
                 action="kill", mode="acted", result="ok") == 1
    effect = value(fams, "zoomd_trigger_to_effect_seconds",
                   "zoomd_trigger_to_effect_seconds_sum", policy="stuck")
    assert 0.25 <= effect < 2.0
    assert value(fams, "zoomd_memory_pressure_seconds", "zoomd_memory_pressure_seconds_total",
                 cgroup="/lab", kind="full") == pytest.approx(0.96)
    assert value(fams, "zoomd_memory_pressure_window_ratio", policy="stuck", cgroup="/lab",
                 kind="full") > 0.4
    assert value(fams, "zoomd_swap_devices", kind="zram", ram_backed="true") == 1
    ratio = value(fams, "zoomd_zram_compression_ratio", device="zram0")
    assert 3.0 < ratio < 4.0
    for mode in ("kernel", "ram-backed", "efficiency", "compression", "auto"):
        assert value(fams, "zoomd_effective_available_bytes", mode=mode) > 0
        value(fams, "zoomd_anon_reclaimable_bytes", mode=mode)
    assert value(fams, "zoomd_kernel_would_retry") == 1
    assert value(fams, "zoomd_loop_iteration_seconds", "zoomd_loop_iteration_seconds_count") \
        == 12
    assert value(fams, "zoomd_resident_memory_bytes") > 10 * MiB
    # The textfile: written from its own thread, and once more on shutdown.
    final = parse(textfile.read_text())
    assert value(final, "zoomd_ticks", "zoomd_ticks_total") == 12
    assert metrics.server is None  # the endpoint is closed with the daemon


def test_run_record_and_metrics_on_a_tree(tmp_path: Path, host: FakeHost) -> None:
    """`zoomd run --record` writes the ticks and the decision into one trace."""
    import subprocess
    import sys

    from zoomd.trace.reader import Record, Sample, TraceReader

    config = tmp_path / "z.toml"
    config.write_text(CONFIG.format(textfile=tmp_path / "zoomd.prom")
                      .replace('for = "0s"', 'for = "0s"\ndry_run = true'))
    trace = tmp_path / "run.jsonl.gz"
    proc = subprocess.Popen([sys.executable, "-m", "zoomd", "run", "--root", host.base,
                             "--config", str(config), "--duration", "3", "--record",
                             str(trace)], stderr=subprocess.PIPE, text=True)
    for _ in range(25):
        host.groups["/lab"].full_us += 90_000
        host.groups["/lab"].some_us += 90_000
        host.write()
        time.sleep(0.1)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    events = list(TraceReader(str(trace)).events())
    samples = [e for e in events if isinstance(e, Sample)]
    records = [e for e in events if isinstance(e, Record)]
    assert len(samples) >= 3
    assert [r.record["victim"] for r in records] == ["/lab/work"]
    assert records[0].record["dry_run"] is True
    assert "trace closed" in err and "Traceback" not in err
