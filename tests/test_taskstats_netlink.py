"""The taskstats netlink client: lazy pyroute2, one-line errors, and the live kernel."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from realkernel import require_real_kernel

from zoomd.kernel.taskstats_netlink import TaskstatsClient, TaskstatsError, _explain

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, *prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-c", code], cwd=REPO, text=True,
                          capture_output=True, timeout=60)


def test_importing_the_daemon_and_cli_does_not_import_pyroute2() -> None:
    done = _python("import sys, zoomd.cli, zoomd.daemon.loop, zoomd.kernel.taskstats_netlink, "
                   "zoomd.stallsampler\n"
                   "print(sorted(m for m in sys.modules if m.startswith('pyroute2')))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_pyroute2_the_error_is_one_line() -> None:
    done = _python("import sys; sys.modules['pyroute2'] = None\n"
                   "from zoomd.kernel.taskstats_netlink import TaskstatsClient, TaskstatsError\n"
                   "try:\n    TaskstatsClient().tgid(1)\n"
                   "except TaskstatsError as e:\n    print(e)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("taskstats needs pyroute2")
    assert done.stdout.count("\n") == 1


class _NetlinkLike(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))
        self.code = code


def test_errors_name_the_cause() -> None:
    assert "CAP_NET_ADMIN" in _explain(_NetlinkLike(errno.EPERM))
    assert "CONFIG_TASKSTATS" in _explain(_NetlinkLike(errno.ENOENT))


@pytest.mark.realkernel
def test_live_query_of_ourselves_and_of_a_gone_pid() -> None:
    require_real_kernel(need_zram=False)
    with TaskstatsClient() as client:
        me = client.pid(os.getpid())
        group = client.tgid(os.getpid())
        child = subprocess.Popen(["true"])
        child.wait()
        gone = client.tgid(child.pid)
    assert me is not None and me.pid == os.getpid() and me.version >= 8
    assert me.comm  # PID replies carry the command name
    assert group is not None and group.tgid == os.getpid()
    assert group.delays["cpu"].count >= me.delays["cpu"].count
    assert gone is None


@pytest.mark.realkernel
def test_live_without_cap_net_admin_is_one_clear_line() -> None:
    require_real_kernel(need_zram=False)
    code = ("import os\nfrom zoomd.kernel.taskstats_netlink import TaskstatsClient, "
            "TaskstatsError\ntry:\n    TaskstatsClient().tgid(os.getpid())\n"
            "except TaskstatsError as e:\n    print(e)")
    done = _python(code, "setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin")
    assert done.returncode == 0, done.stderr
    assert "needs CAP_NET_ADMIN" in done.stdout and done.stdout.count("\n") == 1


def test_error_class_is_a_zoomd_error() -> None:
    from zoomd.errors import ZoomdError

    assert issubclass(TaskstatsError, ZoomdError)
