"""Notice SIGTERM the moment it arrives, without taking over the server's own handling of it.

uvicorn (alone, or inside a gunicorn worker) owns SIGTERM and SIGINT: it stops accepting, lets
in-flight requests finish, then runs the lifespan's shutdown. Readiness must turn 503 when the
signal arrives, not at that last step, so this chains a handler in front of the server's.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGINT)
Handler = Callable[[int, FrameType | None], object] | int | None


@contextmanager
def on_termination(
    callback: Callable[[], None], signals: tuple[signal.Signals, ...] = TERMINATION_SIGNALS
) -> Iterator[None]:
    """While inside, a termination signal runs `callback` first, then the handler it replaced."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Only the main thread may set signal handlers (a server in a thread has none).
        return
    previous: dict[int, Handler] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        callback()
        chained = previous.get(signum)
        if callable(chained):
            chained(signum, frame)
        elif chained == signal.SIG_DFL:
            # The default action (termination) is what the process would have done without us.
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for sig in signals:
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            # Leave a handler someone installed after ours in place.
            if signal.getsignal(signum) is handle:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
