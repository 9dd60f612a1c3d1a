"""A replayed decision record against the live one, field for field."""

from __future__ import annotations

import json
from typing import Any

from zoomd.daemon.decision import Decision

# What a replayed record may differ in from the live one, and why: `time` is the wall
# clock (replay stamps the sample's); `monotonic` the engine rounds to ms while replay
# gives the sample's own stamp (checked equal once rounded); `result.method` names the
# backend that answered (the live dry run, or replay's).
DIFFERS = ("time", "monotonic")


def differences(live: Any, replayed: Any, where: str = "") -> list[str]:
    """The fields that differ, by path (lists element by element)."""
    if isinstance(live, dict) and isinstance(replayed, dict):
        out = []
        for key in sorted(set(live) | set(replayed)):
            out += differences(live.get(key, "<none>"), replayed.get(key, "<none>"),
                               f"{where}.{key}")
        return out
    if isinstance(live, list) and isinstance(replayed, list) and len(live) == len(replayed):
        return [d for i, (a, b) in enumerate(zip(live, replayed, strict=True))
                for d in differences(a, b, f"{where}[{i}]")]
    return [] if live == replayed else [f"{where}: {live!r} != {replayed!r}"]


def assert_same_decisions(live: list[dict[str, Any]], replayed: list[Decision],
                          root: str = "") -> None:
    """Field for field, but for what DIFFERS documents (`root`: a live daemon's root
    that is not /, which its paths carry and replay's, in kernel paths, do not)."""
    assert len(replayed) == len(live)
    for a, decision in zip(live, replayed, strict=True):
        text = json.dumps(a)
        a = json.loads(text.replace(json.dumps(root)[1:-1] + "/", "/") if root else text)
        b = json.loads(json.dumps(decision.to_json()))
        assert a["monotonic"] == round(b["monotonic"], 3)
        assert a["result"].pop("method") == "dry-run"
        assert b["result"].pop("method") == "replay"
        for key in DIFFERS:
            a.pop(key)
            b.pop(key)
        assert differences(a, b) == [], (a, b)
