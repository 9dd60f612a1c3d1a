"""systemd v261's OOM rules: OOMRules elements in recorded ManagedOOM messages (PID 1's
subscription and a user manager's report), .oomrule files, and the rules acted on
(LastingSec, kill-all / kill-by-pgscan / kill-by-swap) through the engine."""

from __future__ import annotations

import io
import json
import os
import socket

import pytest
from builders import GiB, meminfo, snapshot
from fakecgroupfs import FakeHost
from test_systemd_varlink import FakePid1, pump

from zoomd.actions.backend import RecordingBackend
from zoomd.config.runtime import Config
from zoomd.daemon.decision import Decision
from zoomd.daemon.engine import Engine
from zoomd.daemon.log import Logger
from zoomd.kernel.cgroups import CgroupReader
from zoomd.kernel.root import Root
from zoomd.model.reclaim import ModelParams, estimate
from zoomd.systemd.managed import PRESSURE, RULES, SWAP, ManagedCgroup, ManagedSet
from zoomd.systemd.oomrules import OomRule, load_rules, parse_rule
from zoomd.systemd.pid1 import Pid1Client
from zoomd.systemd.rules import RulesGuard
from zoomd.systemd.userside import UserListener, bind_listener

MiB = 1 << 20
APP = "/user.slice/user-1000.slice/user@1000.service/app.slice"

# A v261 PID 1's first reply to SubscribeManagedOOMCGroups, byte for byte as
# sd-varlink writes it: the ControlGroup type of io.systemd.ManagedOOM
# (man/io.systemd.ManagedOOM.xml: mode, path, property, limit?, duration?,
# rules?: []string), the OOMRules= unit setting as property "OOMRules".
RECORDED_V261_SUBSCRIBE_REPLY = (
    b'{"parameters":{"cgroups":['
    b'{"mode":"kill","path":"/system.slice","property":"ManagedOOMMemoryPressure",'
    b'"limit":2576980377},'
    b'{"mode":"kill","path":"/app.slice","property":"OOMRules",'
    b'"rules":["30-desktop-pressure","30-desktop-swap"]},'
    b'{"mode":"kill","path":"/","property":"ManagedOOMSwap"}'
    b']},"continues":true}\0')
# A later update: the unit's OOMRules= emptied (no rules), another unit's set.
RECORDED_V261_UPDATE = (
    b'{"parameters":{"cgroups":['
    b'{"mode":"kill","path":"/app.slice","property":"OOMRules","rules":[]},'
    b'{"mode":"kill","path":"/background.slice","property":"OOMRules",'
    b'"rules":["30-desktop-swap","30-desktop-swap"],"x-future-field":{"a":1}}'
    b']},"continues":true}\0')
# A v261 user manager's oneway report (io.systemd.oom.ReportManagedOOMCGroups).
RECORDED_V261_USER_REPORT = (
    b'{"method":"io.systemd.oom.ReportManagedOOMCGroups","parameters":{"cgroups":['
    b'{"mode":"kill","path":"' + APP.encode() + b'","property":"OOMRules",'
    b'"rules":["30-desktop-pressure"]}]},"oneway":true}\0')


def test_pid1_v261_rules_in_the_subscription_and_updates(tmp_path) -> None:
    fake = FakePid1(str(tmp_path / "io.systemd.ManagedOOM"))
    managed = ManagedSet()
    managed.known_rule = lambda name: name == "30-desktop-pressure"
    logs = io.StringIO()
    client = Pid1Client(managed, Logger(stream=logs), (str(tmp_path / "io.systemd.ManagedOOM"),))
    try:
        client.maintain()
        fake.accept_subscription()
        assert fake.conn is not None
        fake.conn.sendall(RECORDED_V261_SUBSCRIBE_REPLY)
        assert pump(client)
        assert managed.entries[(RULES, "/app.slice")].rules == ("30-desktop-pressure",
                                                                  "30-desktop-swap")
        assert managed.entries[(PRESSURE, "/system.slice")].limit == 6000
        assert (SWAP, "/") in managed.entries
        assert "undefined ruleset(s) 30-desktop-swap" in logs.getvalue()
        fake.conn.sendall(RECORDED_V261_UPDATE)
        assert pump(client)
        assert (RULES, "/app.slice") not in managed.entries  # no rules: not guarded
        # Repeats dropped (strv_uniq), an unknown field ignored (dispatched by name).
        assert managed.entries[(RULES, "/background.slice")].rules == ("30-desktop-swap",)
        assert [e.path for e in managed.rules()] == ["/background.slice"]
    finally:
        client.close()
        fake.sock.close()


def test_user_manager_v261_report_with_rules(tmp_path) -> None:
    managed = ManagedSet()
    listener = UserListener(managed, Logger(stream=io.StringIO()),
                            [bind_listener(str(tmp_path / "io.systemd.ManagedOOM"))])
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        peer.connect(str(tmp_path / "io.systemd.ManagedOOM"))
        peer.sendall(RECORDED_V261_USER_REPORT)
        import select

        for _ in range(6):
            fds = listener.fds()
            ready = select.poll()
            for fd, mask in fds.items():
                ready.register(fd, mask)
            for fd, mask in ready.poll(500):
                listener.on_event(fd, mask)
            if managed.rules():
                break
        (entry,) = managed.rules()
        assert (entry.path, entry.rules, entry.source) == (APP, ("30-desktop-pressure",),
                                                           "uid:0")
    finally:
        peer.close()
        listener.close()


@pytest.mark.parametrize("rules", [
    "30-x",  # not a list
    [1],  # not strings
    ["a/b"],  # not a file name
    [""],
    ["x" * 256],
    [f"r{i}" for i in range(65)],  # more than MAX_RULES
])
def test_malformed_rules_skip_the_element_and_keep_the_rest(rules) -> None:
    managed = ManagedSet()
    notes = managed.apply({"cgroups": [
        {"mode": "kill", "path": "/a.slice", "property": RULES, "rules": rules},
        {"mode": "kill", "path": "/b.slice", "property": RULES, "rules": ["ok"]},
    ]}, uid=0, source="system")
    assert notes == ["cgroups[0]: malformed, skipped"]
    assert [e.path for e in managed.rules()] == ["/b.slice"]


# -- .oomrule files ---------------------------------------------------------------------

def write(root, path: str, text: str) -> str:
    full = os.path.join(str(root), path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(text)
    return full


def test_oomrule_files_are_found_masked_and_parsed_like_systemd(tmp_path) -> None:
    write(tmp_path, "/usr/lib/systemd/oomd/rules.d/30-desktop-pressure.oomrule",
          "[Rule]\nMemoryPressureAbove=10%\nAction=kill-by-pgscan\nLastingSec=2s\n")
    write(tmp_path, "/etc/systemd/oomd/rules.d/30-desktop-pressure.oomrule",
          "[Rule]\nMemoryPressureAbove=25%\nAction=kill-by-pgscan\nLastingSec=5s\n")
    write(tmp_path, "/usr/lib/systemd/oomd/rules.d/30-desktop-swap.oomrule",
          "[Rule]\nSwapUsageMax=90%\nAction=kill-by-swap\nLastingSec=2s\n")
    write(tmp_path, "/etc/systemd/oomd/rules.d/40-masked.oomrule", "")
    write(tmp_path, "/usr/lib/systemd/oomd/rules.d/40-masked.oomrule",
          "[Rule]\nSwapUsageMax=50%\nAction=kill-all\n")
    write(tmp_path, "/etc/systemd/oomd/rules.d/50-noaction.oomrule",
          "[Rule]\nSwapUsageMax=50%\nAction=kill-some\n")
    write(tmp_path, "/etc/systemd/oomd/rules.d/51-nocondition.oomrule",
          "[Rule]\nAction=kill-all\nMemoryPressureAbove=120%\n")
    write(tmp_path, "/etc/systemd/oomd/rules.d/52-forever.oomrule",
          "[Rule]\nSwapUsageMax=5‰\nAction=kill-all\nLastingSec=infinity\nColour=red\n")
    write(tmp_path, "/etc/systemd/oomd/rules.d/README", "[Rule]\nAction=kill-all\n")
    rules, warnings = load_rules(str(tmp_path))
    assert sorted(rules) == ["30-desktop-pressure", "30-desktop-swap"]
    pressure = rules["30-desktop-pressure"]  # /etc hides /usr/lib
    assert (pressure.memory_pressure_above, pressure.swap_above, pressure.action,
            pressure.lasting_usec) == (2500, None, "kill-by-pgscan", 5_000_000)
    assert rules["30-desktop-swap"].swap_above == 9000
    text = "\n".join(warnings)
    assert "50-noaction.oomrule:3: Action=kill-some: not one of" in text
    assert "ruleset '50-noaction' has no Action= configured, ignoring" in text
    assert "51-nocondition.oomrule:3: MemoryPressureAbove=120%" in text
    assert "ruleset '51-nocondition' has no conditions configured" in text
    assert "52-forever.oomrule:5: unknown key 'Colour'" in text
    assert "ruleset '52-forever' has LastingSec=infinity" in text
    assert "40-masked" not in text


def test_oversized_rule_file_is_refused_without_reading_it_all(tmp_path) -> None:
    write(tmp_path, "/etc/systemd/oomd/rules.d/big.oomrule",
          "[Rule]\nAction=kill-all\nSwapUsageMax=50%\n" + "#" * (70 << 10))
    rules, warnings = load_rules(str(tmp_path))
    assert rules == {} and "larger than 64 KiB" in warnings[0]


def test_parse_rule_takes_the_name_from_the_file() -> None:
    rule, warnings = parse_rule("[Rule]\nSwapUsageMax=80%\nAction=kill-all\n",
                                "/etc/systemd/oomd/rules.d/zz.oomrule")
    assert rule is not None and rule.name == "zz" and not warnings
    assert rule.to_json()["swap_usage_max"] == "80.00%"


# -- acting on them ---------------------------------------------------------------------

def pressure(host: FakeHost, path: str, avg10: float) -> None:
    with open(f"{host.dir(path)}/memory.pressure", "w") as f:
        f.write(f"some avg10={avg10:.2f} avg60=0.00 avg300=0.00 total=1\n"
                f"full avg10={avg10:.2f} avg60=0.00 avg300=0.00 total=1\n")


@pytest.fixture
def app(tmp_path) -> FakeHost:
    h = FakeHost(str(tmp_path))
    h.add("/user.slice", current=3 * GiB)
    h.add(APP, current=3 * GiB)
    h.add(f"{APP}/scanned.scope", pids=[200], current=1 * GiB, swap=100 * MiB,
          pgscan=90_000)
    h.add(f"{APP}/fat.scope", pids=[201], current=2 * GiB, swap=900 * MiB, pgscan=10)
    h.add(f"{APP}/idle.scope", pids=[202], current=0, pgscan=0)
    return h


def engine_for(host: FakeHost) -> tuple[Engine, RecordingBackend]:
    backend = RecordingBackend()
    return Engine(Config(), CgroupReader(Root(host.base)), backend,
                  Logger(stream=io.StringIO())), backend


def host_at(t: float, swap_free: int = 4 * GiB):
    mem = meminfo(8 * GiB, 1 * GiB, anon=6 * GiB, file=200 * MiB, swap_total=4 * GiB,
                  swap_free=swap_free)
    return snapshot(mem, (), t=t)


PRESSURE_RULE = OomRule("30-desktop-pressure", "kill-by-pgscan",
                        memory_pressure_above=1000, lasting_usec=2_000_000)
SWAP_RULE = OomRule("30-desktop-swap", "kill-by-swap", swap_above=9000)
ALL_RULE = OomRule("kill-everything", "kill-all", memory_pressure_above=5000)
RULESETS = {r.name: r for r in (PRESSURE_RULE, SWAP_RULE, ALL_RULE)}


def run(guard, engine, entries, times, swap_free=4 * GiB, mode="strict"):
    out = []
    for t in times:
        host = host_at(t, swap_free)
        record = guard.tick(engine, host, estimate(host, None, ModelParams()), entries,
                            RULESETS, mode)
        if record is not None:
            assert record.kind == "oom-rule" and Decision.from_json(record.to_json()) == record
            out.append((t, record.to_json()))
    return out


def test_pressure_rule_waits_lasting_sec_then_kills_the_most_scanned(app) -> None:
    engine, backend = engine_for(app)
    guard = RulesGuard(Logger(stream=io.StringIO()))
    entries = [ManagedCgroup(APP, RULES, rules=("30-desktop-pressure",))]
    pressure(app, APP, 5.0)  # under 10%: nothing
    assert run(guard, engine, entries, [0, 1, 2, 3]) == []
    pressure(app, APP, 30.0)
    acted = run(guard, engine, entries, [4, 5, 6, 7])
    assert [t for t, _ in acted] == [6]  # held from 4 s, LastingSec=2s
    record = acted[0][1]
    assert record["victim"] == f"{APP}/scanned.scope" and record["reason"] == \
        "rule 30-desktop-pressure"
    assert record["policy"] == f"systemd-rule:30-desktop-pressure:{APP}"
    assert record["oom_rule"]["figures"]["memory_pressure_full_avg10_pct"] == 30.0
    assert f"{APP}/idle.scope" not in [c["path"] for c in record["candidates"]]
    assert [c.target.endswith("scanned.scope") for c in backend.calls] == [True]
    # After the action LastingSec starts again (from 7 s, the next look) and no rule acts during
    # the post-action delay (15 s): the next kill comes when the delay is over.
    assert run(guard, engine, entries, [8, 12, 20]) == []
    assert guard.start_times == {("30-desktop-pressure", APP): 7}
    assert [t for t, _ in run(guard, engine, entries, [21, 22, 23])] == [21]


def test_a_dip_restarts_lasting_sec(app) -> None:
    engine, _ = engine_for(app)
    guard = RulesGuard(Logger(stream=io.StringIO()))
    entries = [ManagedCgroup(APP, RULES, rules=("30-desktop-pressure",))]
    pressure(app, APP, 30.0)
    assert run(guard, engine, entries, [0, 1]) == []
    pressure(app, APP, 0.0)
    assert run(guard, engine, entries, [1.5]) == []
    pressure(app, APP, 30.0)
    assert [t for t, _ in run(guard, engine, entries, [2, 3, 4, 5])] == [4]


def test_swap_rule_kills_the_largest_swap_user_at_once(app) -> None:
    engine, _ = engine_for(app)
    guard = RulesGuard(Logger(stream=io.StringIO()))
    entries = [ManagedCgroup(APP, RULES, rules=("30-desktop-swap",))]
    assert run(guard, engine, entries, [0], swap_free=1 * GiB) == []  # 75% used
    acted = run(guard, engine, entries, [1], swap_free=300 * MiB)  # > 90% used
    assert acted and acted[0][1]["victim"] == f"{APP}/fat.scope"
    assert acted[0][1]["ranked_by"] == ["swap", "memory"]


def test_kill_all_kills_the_cgroup_itself_but_never_the_root(app) -> None:
    engine, backend = engine_for(app)
    logs = io.StringIO()
    guard = RulesGuard(Logger("json", "debug", logs))
    pressure(app, APP, 60.0)
    pressure(app, "/", 60.0)
    acted = run(guard, engine, [ManagedCgroup(APP, RULES, rules=("kill-everything",))], [0])
    assert acted and acted[0][1]["victim"] == APP
    assert backend.calls[-1].target.endswith("/app.slice")
    guard = RulesGuard(Logger("json", "debug", logs))
    assert run(guard, engine, [ManagedCgroup("/", RULES, rules=("kill-everything",))],
               [0, 1]) == []
    refused = [json.loads(x) for x in logs.getvalue().splitlines()
               if "cannot act" in x]
    assert len(refused) == 1 and "kill-all on / is not supported by zoomd" in \
        refused[0]["error"]


def test_undefined_rules_and_dropped_entries_do_nothing(app) -> None:
    engine, backend = engine_for(app)
    guard = RulesGuard(Logger(stream=io.StringIO()))
    pressure(app, APP, 60.0)
    assert run(guard, engine, [ManagedCgroup(APP, RULES, rules=("nope",))], [0, 5]) == []
    entries = [ManagedCgroup(APP, RULES, rules=("30-desktop-pressure",))]
    run(guard, engine, entries, [10])
    assert guard.start_times  # its timer runs
    run(guard, engine, [], [11])
    assert guard.start_times == {} and backend.calls == []


# -- end to end: PID 1's recorded v261 reply -> a rule -> prekill hooks -> the kill -------

E2E_CONFIG = '''
[daemon]
interval = "50ms"
fast_interval = "50ms"
log_format = "json"
mlock = false
[[policy]]
name = "never"
monitor = "/system.slice"
[policy.all]
memory_pressure_full_above = 99
'''


def test_daemon_acts_on_pid1s_rules_with_prekill_hooks(tree_path, tmp_path) -> None:
    import dataclasses
    import shutil
    import threading

    from test_systemd_prekill import RECORDED_V260_REPLY, Hook

    from zoomd.daemon.loop import Daemon

    tree = tmp_path / "tree"
    shutil.copytree(tree_path("cgroup2-pure"), tree)
    with open(tree / "sys/fs/cgroup/user.slice/memory.pressure", "w") as f:
        f.write("some avg10=70.00 avg60=50.00 avg300=20.00 total=90118447\n"
                "full avg10=60.00 avg60=40.00 avg300=10.00 total=70331902\n")
    reply = RECORDED_V261_SUBSCRIBE_REPLY.replace(b'"/app.slice"', b'"/user.slice"')
    pid1_path = str(tmp_path / "io.systemd.ManagedOOM")
    fake = FakePid1(pid1_path)

    def serve() -> None:
        fake.accept_subscription()
        assert fake.conn is not None
        fake.conn.sendall(reply)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    hook = Hook(str(hooks / "notify.sock"), lambda _m: RECORDED_V260_REPLY)
    cfg = tmp_path / "zoomd.toml"
    cfg.write_text(E2E_CONFIG)
    stream = io.StringIO()
    backend = RecordingBackend()
    daemon = Daemon(str(cfg), root=Root(str(tree)), backend=backend, duration=2.0,
                    logger=Logger("json", "debug", stream),
                    systemd={"managed_oom": True, "system_socket": pid1_path,
                             "user_socket": "", "oomd_conf": False, "dbus": False})
    (integration,) = [e for e in daemon.extensions if hasattr(e, "managed")]
    integration.rules = {PRESSURE_RULE.name: dataclasses.replace(
        PRESSURE_RULE, lasting_usec=0)}
    integration.conf = dataclasses.replace(integration.conf, prekill_timeout_usec=2_000_000)
    integration.backend.directory = str(hooks)
    try:
        assert daemon.run() == 0
    finally:
        server.join(5)
        hook.close()
        fake.sock.close()
        if fake.conn is not None:
            fake.conn.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    records = [x for x in lines if "summary" in x and "result" in x]
    assert records, [x.get("message") for x in lines]
    first = records[0]
    assert first["policy"] == "systemd-rule:30-desktop-pressure:/user.slice"
    assert first["reason"] == "rule 30-desktop-pressure"
    assert first["victim"].startswith("/user.slice/")
    assert [h["outcome"] for h in first["result"]["prekill_hooks"]] == ["answered"]
    sent = json.loads(hook.received[0][:-1])
    assert sent == {"method": "io.systemd.oom.Prekill.Notify",
                    "parameters": {"cgroup": first["victim"]}}
    assert len(records) == 1  # the post-action delay (15 s) holds the rest
