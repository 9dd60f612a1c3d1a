"""Property tests for systemd 260/261's protocol pieces: .oomrule files (parse_rule never
raises; a ruleset it keeps is one systemd would keep, with values in range) and a
prekill hook answering anything at all (every call ends in a known outcome, at the
latest at the deadline, without an exception).

Example counts: tests/fuzzkit.py (ZOOMD_FUZZ_EXAMPLES, ZOOMD_FUZZ_COUNTS).
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import time
from collections.abc import Iterator

import pytest
from fuzzkit import EXAMPLES, FUZZ, count, dump_counts, mutated
from hypothesis import given, settings
from hypothesis import strategies as st

from zoomd.systemd.oomrules import ACTIONS, parse_rule
from zoomd.systemd.prekill import PrekillCalls
from zoomd.systemd.values import USEC_INFINITY

SOCKET_FUZZ = settings(FUZZ, max_examples=max(5, EXAMPLES // 10))
PATH = "/etc/systemd/oomd/rules.d/30-x.oomrule"
VALID_RULE = ("# comment\n[Rule]\nMemoryPressureAbove=10%\nSwapUsageMax=90%\n"
              "Action=kill-by-pgscan\nLastingSec=2s 500ms\n[X-Vendor]\nA=b\n")
OUTCOMES = {"answered", "error", "timed-out", "not-connectible", "disconnected"}


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    dump_counts()


RULE_TEXT = st.one_of(
    mutated(VALID_RULE, max_ops=6),
    st.text(max_size=300),
    st.lists(st.sampled_from(["[Rule]", "MemoryPressureAbove=50%", "SwapUsageMax=101%",
                              "Action=kill-all", "Action=", "LastingSec=infinity",
                              "LastingSec=-1", "MemoryPressureAbove=5‰", "x", "\\",
                              "[Other]", "SwapUsageMax=0.5‱"]), max_size=12)
    .map("\n".join),
)


@FUZZ
@given(RULE_TEXT)
def test_parse_rule_any_text(text: str) -> None:
    count("oomrule texts")
    rule, warnings = parse_rule(text, PATH)
    for warning in warnings:
        assert "\n" not in warning and "\r" not in warning and warning.startswith(PATH)
    if rule is None:
        assert warnings  # ignored rulesets are said to be
        return
    count("oomrule kept")
    assert rule.name == "30-x" and rule.action in ACTIONS
    assert rule.memory_pressure_above is not None or rule.swap_above is not None
    for value in (rule.memory_pressure_above, rule.swap_above):
        assert value is None or (type(value) is int and 0 <= value <= 10000)
    assert type(rule.lasting_usec) is int and 0 <= rule.lasting_usec < USEC_INFINITY
    assert f"Action={rule.action}" in re.sub(r"[ \t]*=[ \t]*", "=", text)
    json.dumps(rule.to_json())


REPLIES = st.one_of(
    st.sampled_from([b'{"parameters":{}}\0', b'{"error":"io.systemd.System"}\0',
                     b'{"error":5}\0', b"[]\0", b"null\0", b"{\0", b"\0", b"", b"{}",
                     b'{"parameters":{}}', b"\xff\xfe\0", b"[" * 5000 + b"\0"]),
    st.binary(max_size=200),
    mutated('{"parameters":{}}', max_ops=4).map(lambda t: t.encode("utf-8", "surrogatepass")
                                                + b"\0"),
)


@pytest.fixture(scope="module")
def hook_listener(tmp_path_factory) -> Iterator[tuple[str, socket.socket]]:
    directory = tmp_path_factory.mktemp("prekill")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.path.join(str(directory), "h.sock"))
    listener.listen(8)
    listener.settimeout(2)
    yield str(directory), listener
    listener.close()


@SOCKET_FUZZ
@given(REPLIES, st.booleans())
def test_prekill_hook_answering_anything(hook_listener, reply: bytes, hang_up: bool) -> None:
    count("prekill replies")
    directory, listener = hook_listener
    calls = PrekillCalls(directory, "/system.slice/x.service", 0.3)
    conn, _ = listener.accept()  # the connect is in the backlog already
    try:
        conn.sendall(reply)
        if hang_up:
            conn.close()
        started = time.monotonic()
        while not calls.poll():
            assert time.monotonic() - started < 3
            poller = select.poll()
            for fd in calls.fds():
                poller.register(fd, select.POLLIN)
            poller.poll(max(1, int((calls.wake_in() or 0) * 1000)))
    finally:
        conn.close()
    (result,) = calls.results
    assert result.outcome in OUTCOMES and result.seconds < 3
    assert result.detail is None or "\n" not in result.detail
    if reply == b'{"parameters":{}}\0':  # hang-up or not: the answer came first
        assert result.outcome == "answered"
    json.dumps(result.to_json())
