"""One lock and one owner per model.

``fit`` owns the model while it runs: a second ``fit`` on the same model (from another thread, or from inside the
first one's callback) is refused with a clear error instead of interleaving two runs' updates. While it owns the
model, ``fit`` holds the model's lock for each epoch and the bookkeeping that closes it, so the weights, the Adam
state, the history and the generator change together; ``encode``, ``decode``, the objectives and ``save`` take the
same lock, so a reader in another thread waits for the next epoch boundary and sees one consistent state. The lock
and the owner live in weak dictionaries, not on the model, so models still pickle, deep-copy and ``torch.save``."""
import contextlib
import threading
import weakref

import torch

_locks = weakref.WeakKeyDictionary()
_owners = weakref.WeakKeyDictionary()  # model -> (thread ident, phase): "boundary" or "epoch"
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


def refuse_while_fitting(model, where: str) -> None:
    """RuntimeError if a ``fit`` owns the model: its weights must not be replaced under a running fit."""
    with _guard:
        if _owners.get(model) is not None:
            raise RuntimeError(f"{where}: this model is being fitted; change its weights before or after fit")


@contextlib.contextmanager
def owning(model, where: str):
    """Make the calling ``fit`` the model's one owner for the block; RuntimeError if it already has one."""
    with _guard:
        owner = _owners.get(model)
        if owner is not None:
            same = owner[0] == threading.get_ident()
            raise RuntimeError(f"{where}: this model is already being fitted "
                               + ("by this thread (fit was called from inside a fit callback); call fit after it "
                                  "returns" if same else "in another thread; wait for that fit to return"))
        _owners[model] = (threading.get_ident(), "boundary")
    try:
        yield
    finally:
        with _guard:
            _owners.pop(model, None)


@contextlib.contextmanager
def inside_epoch(model):
    """Marks the owner's thread as inside an epoch (its "step" callbacks run there, between boundaries)."""
    _set_phase(model, "epoch")
    try:
        yield
    finally:
        _set_phase(model, "boundary")


def _set_phase(model, phase):
    with _guard:
        owner = _owners.get(model)
        if owner is not None:
            _owners[model] = (owner[0], phase)


def mid_epoch_in_this_thread(model) -> bool:
    """True inside a "step" callback of the model's own fit: its state is between two boundaries there."""
    with _guard:
        owner = _owners.get(model)
    return owner is not None and owner[0] == threading.get_ident() and owner[1] == "epoch"
