"""Effectors: what zoomd does to a chosen cgroup or process, apart from deciding it.

Detectors choose; these act (kill, freeze, thaw) through a swappable ActionBackend,
as facebookincubator/oomd separates plugins from its kill backend, so that dry-run
and tests use the same calls as the real daemon.
"""

from zoomd.actions.backend import (
    ActionBackend,
    ActionCall,
    CgroupfsBackend,
    DryRunBackend,
    RecordingBackend,
)
from zoomd.actions.freeze import freeze_cgroup, thaw_cgroup
from zoomd.actions.kill import kill_cgroup, kill_process
from zoomd.actions.outcome import ActionOutcome

__all__ = [
    "ActionBackend",
    "ActionCall",
    "ActionOutcome",
    "CgroupfsBackend",
    "DryRunBackend",
    "RecordingBackend",
    "freeze_cgroup",
    "kill_cgroup",
    "kill_process",
    "thaw_cgroup",
]
