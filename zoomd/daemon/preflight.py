"""What `zoomd run` refuses at start, beyond the schema: for `zoomd check` to refuse the
same, and for a SIGHUP reload to refuse before it replaces the running configuration.

The checks are the functions run itself calls when it sets up (open_monitor's,
MetricsServer's bind, the textfile's directory), so the two cannot drift apart.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from zoomd.config.runtime import is_template
from zoomd.daemon.engine import scoped
from zoomd.daemon.monitor import check_monitored
from zoomd.errors import ZoomdError
from zoomd.kernel.cgroups import CgroupReader
from zoomd.metrics.export import check_textfile, parse_listen, probe_listen


def preflight(config: Any, reader: Callable[[], CgroupReader], scope: str = "/",
              bound: str | None = None) -> list[str]:
    """Raise the ZoomdError `run` would stop on; return notes on what may differ when
    `run` starts (an address in use now, a port only root may bind).

    `reader` is asked for only when some policy watches a group (a package build's
    chroot may have no cgroup file system); `bound` is the listen address this process
    already holds (a reload keeping it)."""
    for policy in config.policy:
        path = scoped(policy.monitor, scope)
        if path != "/" and not is_template(policy):  # a template's groups come and go
            check_monitored(path, reader())
    notes = []
    metrics = config.metrics
    if metrics.listen and parse_listen(metrics.listen) != (
            parse_listen(bound) if bound else None):
        problem = probe_listen(metrics.listen)
        if problem is not None:
            error, code = problem
            if code == errno.EADDRINUSE:
                notes.append(f"{error}: in use now (by a running zoomd?); "
                             "`zoomd run` will fail unless it is free by then")
            elif code == errno.EACCES:
                notes.append(f"{error}: only a privileged zoomd may bind it")
            else:
                raise error
    if metrics.textfile:
        check_textfile(metrics.textfile)
    return notes


def refusal(config: Any, reader: Callable[[], CgroupReader], scope: str,
            bound: str | None) -> str | None:
    """For a reload: why the new configuration cannot run here, or None."""
    try:
        notes = preflight(config, reader, scope, bound)
    except ZoomdError as exc:
        return str(exc)
    return notes[0] if notes else None
