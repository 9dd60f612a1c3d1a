"""Ask the kernel for one task's delays: TASKSTATS_CMD_GET over generic netlink.

pyroute2 is imported only here, on first use, so a daemon that never enables
taskstats does not pay for it (benchmarks/results/taskstats-rss.md). We keep
pyroute2's socket, family lookup and attribute parsing, but take the
TASKSTATS_TYPE_STATS attribute as raw bytes and decode them with
zoomd.kernel.taskstats, because pyroute2's own decoder stops short of the memory
delays on v16 structs. TASKSTATS_CMD_GET needs CAP_NET_ADMIN; without it the
kernel answers EPERM, which becomes one line naming the capability.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from zoomd.errors import ZoomdError
from zoomd.kernel.taskstats import TaskStats, decode

TASKSTATS_CMD_GET = 1
_PYROUTE2: _Pyroute2 | None = None


class TaskstatsError(ZoomdError):
    """Taskstats cannot be used here (capability, namespace, library); one line."""


@dataclass(frozen=True, slots=True)
class _Pyroute2:
    """What we use of pyroute2, imported once, on first use."""

    request: type
    reply: type
    socket: type
    netlink_error: type[Exception]
    nlm_f_request: int


def _pyroute2() -> _Pyroute2:
    global _PYROUTE2
    if _PYROUTE2 is not None:
        return _PYROUTE2
    try:
        from pyroute2.netlink import NLM_F_REQUEST, genlmsg, nla
        from pyroute2.netlink.exceptions import NetlinkError
        from pyroute2.netlink.generic import GenericNetlinkSocket
    except ImportError as exc:
        raise TaskstatsError(f"taskstats needs pyroute2, which does not import ({exc})") \
            from None

    class TaskstatsRequest(genlmsg):  # type: ignore[misc, valid-type]
        nla_map = (
            ("TASKSTATS_CMD_ATTR_UNSPEC", "none"),
            ("TASKSTATS_CMD_ATTR_PID", "uint32"),
            ("TASKSTATS_CMD_ATTR_TGID", "uint32"),
        )

    class TaskstatsReply(genlmsg):  # type: ignore[misc, valid-type]
        # Lower case: nla_map names a nested attribute class by its attribute name.
        class aggr(nla):  # type: ignore[misc, valid-type]
            nla_map = (
                ("TASKSTATS_TYPE_UNSPEC", "none"),
                ("TASKSTATS_TYPE_PID", "uint32"),
                ("TASKSTATS_TYPE_TGID", "uint32"),
                ("TASKSTATS_TYPE_STATS", "cdata"),  # raw bytes: decoded by us
            )

        nla_map = (
            ("TASKSTATS_TYPE_UNSPEC", "none"),
            ("TASKSTATS_TYPE_PID", "uint32"),
            ("TASKSTATS_TYPE_TGID", "uint32"),
            ("TASKSTATS_TYPE_STATS", "cdata"),
            ("TASKSTATS_TYPE_AGGR_PID", "aggr"),
            ("TASKSTATS_TYPE_AGGR_TGID", "aggr"),
            ("TASKSTATS_TYPE_NULL", "none"),
        )

    _PYROUTE2 = _Pyroute2(TaskstatsRequest, TaskstatsReply, GenericNetlinkSocket,
                          NetlinkError, NLM_F_REQUEST)
    return _PYROUTE2


def _explain(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if code == errno.EPERM or isinstance(exc, PermissionError):
        return "permission denied: TASKSTATS_CMD_GET needs CAP_NET_ADMIN"
    if "TASKSTATS" in str(exc) or code == errno.ENOENT:
        return "no TASKSTATS generic netlink family (kernel without CONFIG_TASKSTATS?)"
    return f"{type(exc).__name__}: {exc}"


class TaskstatsClient:
    """One generic netlink socket, opened on first query; not thread-safe."""

    def __init__(self) -> None:
        self._sock: Any = None
        self.queries = 0  # answered or not: what the budget counts

    def _socket(self) -> Any:
        if self._sock is None:
            lib = _pyroute2()
            sock = lib.socket()
            try:
                sock.bind("TASKSTATS", lib.reply)
            except Exception as exc:
                sock.close()
                raise TaskstatsError(f"netlink TASKSTATS: {_explain(exc)}") from None
            self._sock = sock
        return self._sock

    def raw(self, attr: str, ident: int) -> tuple[str, int, bytes] | None:
        """One TASKSTATS_CMD_GET: (PID or TGID, the id it was tagged with, raw struct
        bytes), or None when the task is gone. `attr` is TASKSTATS_CMD_ATTR_PID/_TGID."""
        lib = _pyroute2()
        sock = self._socket()
        msg = lib.request()
        msg["cmd"] = TASKSTATS_CMD_GET
        msg["version"] = 1
        msg["attrs"].append([attr, ident])
        self.queries += 1
        try:
            replies = list(sock.nlm_request(msg, sock.prid, msg_flags=lib.nlm_f_request))
        except lib.netlink_error as exc:
            # ESRCH: no such task; EINVAL: the task is exiting.
            if getattr(exc, "code", None) in (errno.ESRCH, errno.EINVAL):
                return None
            kind = attr.rsplit("_", 1)[1]
            raise TaskstatsError(f"netlink TASKSTATS {kind} {ident}: {_explain(exc)}") \
                from None
        for reply in replies:
            for kind in ("PID", "TGID"):
                aggr = reply.get_attr(f"TASKSTATS_TYPE_AGGR_{kind}")
                raw = None if aggr is None else aggr.get_attr("TASKSTATS_TYPE_STATS")
                if raw is not None:
                    return kind, int(aggr.get_attr(f"TASKSTATS_TYPE_{kind}") or ident), \
                        bytes(raw)
        return None

    def _query(self, attr: str, ident: int) -> TaskStats | None:
        answer = self.raw(attr, ident)
        if answer is None:
            return None
        kind, tagged, payload = answer
        return decode(payload, pid=tagged) if kind == "PID" else decode(payload, tgid=tagged)

    def pid(self, pid: int) -> TaskStats | None:
        """Delays of one thread; None if it no longer exists."""
        return self._query("TASKSTATS_CMD_ATTR_PID", pid)

    def tgid(self, tgid: int) -> TaskStats | None:
        """Delays summed over a thread group (live threads and exited ones); None if gone."""
        return self._query("TASKSTATS_CMD_ATTR_TGID", tgid)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> TaskstatsClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
