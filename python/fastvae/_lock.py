"""One lock per model: ``fit`` holds it while the C++ loop updates the weights (one epoch at a time) and
``encode``, ``decode``, ``elbo`` and ``log_likelihood`` hold it while they read them, so a reader thread
waits for the end of the current epoch instead of seeing half-updated weights. The lock lives in a
weak dictionary, not on the model, so models still pickle, deep-copy and ``torch.save`` as before."""
import contextlib
import threading
import weakref

import torch

_locks = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def model_lock(model) -> threading.RLock:
    """The model's re-entrant lock (created on first use); a fit callback may read the model."""
    with _guard:
        lock = _locks.get(model)
        if lock is None:
            lock = _locks[model] = threading.RLock()
        return lock


def reading(model):
    """Context manager for a read of the weights; no lock while torch.compile traces (fullgraph)."""
    if torch.compiler.is_compiling():
        return contextlib.nullcontext()
    return model_lock(model)
