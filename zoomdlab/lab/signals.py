"""Hold off signals while tearing down, so a second Ctrl-C cannot leak swap or cgroups.

Teardown is short and must run to the end; a signal that arrives during it is
remembered and re-delivered (as KeyboardInterrupt/SystemExit) once it is done.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# SIGALRM too: tests bound themselves with alarm(), and that must not cut a teardown.
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Defer SIGINT/SIGTERM/SIGALRM until the block ends (no-op outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {sig: signal.signal(sig, remember) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending:
        # Re-deliver the first one through the restored handlers.
        signal.raise_signal(pending[0])


def terminate_as_interrupt() -> None:
    """Make SIGTERM unwind like Ctrl-C, so context managers' teardown runs."""

    def raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, raise_interrupt)
