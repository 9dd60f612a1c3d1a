"""kernel.task_delayacct: the switch without which memory delays stay at zero.

Since 5.14 delay accounting is off by default (it costs a clock read per event)
and /proc/sys/kernel/task_delayacct turns it on. While it is off the kernel still
answers taskstats queries, with zeros for blkio, swapin, freepages, thrashing,
compact, wpcopy and irq; those zeros are not facts, so callers must say "delay
accounting is off" instead of ranking on them. Tasks accrue delays only while it
is on: a window must start after the switch. (The cpu delay comes from
schedstats/sched_info and is filled either way.) Kernels before 5.14 have no
switch and account unless booted with `nodelayacct`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from zoomd.errors import KernelFileError
from zoomd.kernel.root import Root

SYSCTL = "/proc/sys/kernel/task_delayacct"


@dataclass(frozen=True, slots=True)
class DelayacctState:
    """Whether the kernel is accounting delays now, and how we know."""

    on: bool
    switch: bool  # False: no sysctl (kernel < 5.14 or no CONFIG_TASK_DELAY_ACCT)

    @property
    def describe(self) -> str:
        if not self.switch:
            return "no kernel.task_delayacct switch (kernel < 5.14: on unless booted " \
                   "with nodelayacct)"
        return "delay accounting is on" if self.on else "delay accounting is off"


def read_state(root: Root) -> DelayacctState:
    """The switch as it is now; a kernel without the sysctl is taken as accounting."""
    text = root.read_optional(SYSCTL)
    if text is None:
        return DelayacctState(on=True, switch=False)
    value = text.strip()
    if value not in ("0", "1"):
        raise KernelFileError(root.join(SYSCTL), f"expected 0 or 1, got {value!r}",
                              "task_delayacct")
    return DelayacctState(on=value == "1", switch=True)


def _write(root: Root, value: int) -> None:
    path = root.join(SYSCTL)
    try:
        with open(path, "w") as handle:
            handle.write(f"{value}\n")
    except PermissionError:
        raise KernelFileError(path, "permission denied (writing it needs CAP_SYS_ADMIN "
                                    "and a writable /proc/sys)", "task_delayacct") from None
    except OSError as exc:
        raise KernelFileError(path, f"cannot write {value} ({exc.strerror or exc})",
                              "task_delayacct") from None


class DelayAccounting:
    """Turn delay accounting on for a block (if asked) and put the old value back after.

    `enable=False` only reads the state, so callers can say "off" instead of showing
    zeros. The previous value is restored only if we changed it and nobody else
    changed it meanwhile (another tool that turned it off keeps its choice).
    """

    def __init__(self, root: Root, enable: bool) -> None:
        self.root = root
        self.enable = enable
        self.before: DelayacctState | None = None
        self.changed = False

    def __enter__(self) -> DelayAccounting:
        self.before = read_state(self.root)
        if self.enable and self.before.switch and not self.before.on:
            _write(self.root, 1)
            self.changed = True
        return self

    @property
    def state(self) -> DelayacctState:
        return read_state(self.root)

    def restore(self) -> None:
        """Put back the value found on entry; idempotent."""
        if not self.changed:
            return
        self.changed = False
        now = read_state(self.root)
        if now.switch and now.on:
            _write(self.root, 0)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()
