"""A deadline for tests of calls that must not block (a FIFO opened without a writer waits forever)."""
import contextlib
import signal


@contextlib.contextmanager
def deadline(seconds=10):
    """Raise TimeoutError in the block after ``seconds`` instead of hanging (SIGALRM; main thread only)."""
    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
