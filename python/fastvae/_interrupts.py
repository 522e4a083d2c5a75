"""Ctrl-C at update boundaries only: while a fit or an atomic write runs, SIGINT is recorded instead of raised
wherever Python happens to be, so that no update, history entry or file is left half-done; the work stops at its
next boundary (training steppers poll :attr:`Deferral.flag`; the C++ trainer reads it without the GIL) and
KeyboardInterrupt is raised once the state is whole. A second Ctrl-C meanwhile is recorded too, never lost and
never raised in the middle of the clean-up.

Signal handlers belong to the main thread: elsewhere (a fit in a worker thread) nothing is deferred, and Ctrl-C
reaches the main thread as usual."""
import contextlib
import signal
import threading

import torch

_active = []  # the deferrals in force, innermost last (main thread only)


class Deferral:
    """The state of one deferral: ``flag`` (int32 [1], set to 1 by the first SIGINT) and ``count``."""

    def __init__(self):
        self.flag = torch.zeros(1, dtype=torch.int32)
        self.count = 0

    @property
    def requested(self) -> bool:
        return self.count > 0


def _handler(signum, frame):
    for d in _active:  # the outermost deferral owns the interrupt; every level sees the flag
        d.count += 1
        d.flag[0] = 1


@contextlib.contextmanager
def deferred_sigint(raise_at_exit: bool = True):
    """Record SIGINT instead of raising it inside the block; yields a :class:`Deferral`. At the end of the
    outermost deferral an interrupt that arrived is raised as KeyboardInterrupt (unless another exception is
    already leaving the block, or ``raise_at_exit`` is False and the caller raises it itself). Nested deferrals
    share the outermost one's interrupt."""
    d = Deferral()
    if threading.current_thread() is not threading.main_thread():
        yield d
        return
    outermost = not _active
    previous = signal.signal(signal.SIGINT, _handler) if outermost else None
    _active.append(d)
    try:
        yield d
    finally:
        _active.remove(d)
        if outermost:  # a handler installed outside Python reads as None: Python's own takes its place
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if outermost and d.requested and raise_at_exit:
        raise KeyboardInterrupt


__all__ = ["deferred_sigint", "Deferral"]
