"""The checkpoint format of every fastvae model kind (``model.save`` / ``VAE.load`` / ``NetworkVAE.load``).

A checkpoint is one ``torch.save``'d dict of tensors, numbers and strings only, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs when a file is opened):

    format, format_version   "fastvae.checkpoint", FORMAT_VERSION; fastvae_version
    kind             the model kind: "mlp" (fastvae.VAE) or "networks" (a VAE around the user's networks, whose
                     code is not saved: NetworkVAE.load takes the networks)
    config           the model's constructor arguments (dtype as a string)
    preset           the preset's name, or None
    state_dict       the weights (model.state_dict())
    optimizer        AdamState.state_dict() over model.flat_parameters(): step, exp_avg, exp_avg_sq
    generator        the training run's generator state, uint8
    history          History fields as tensors
    train_options    TrainOptions.to_dict() of the last fit
    epoch_state      the epoch a fit stopped inside (order, done, elbo_sum, seconds), which the next fit finishes
(those five None before any fit, epoch_state None between epochs).

Files of earlier releases load too: format_version 1 (``fit_settings`` instead of train_options, fewer config
keys), 2 (no ``kind``: an MLP VAE) and the unversioned ``"fastvae-network-vae-1"`` of models with custom networks
(torch.optim.Adam's state_dict instead of an AdamState). tests/checkpoint/fixtures/checkpoints holds a file of each.

Written with :func:`fastvae._atomic.atomic_write`: an interrupted save leaves the previous file intact.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from . import _checks
from ._atomic import atomic_write
from ._version import __version__
from .options import TrainOptions
from .types import AdamState, CheckpointError, History

FORMAT = "fastvae.checkpoint"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
NETWORK_FORMAT_1 = "fastvae-network-vae-1"  # models with custom networks before format 3
KINDS = ("mlp", "networks")


@dataclass
class Record:
    """A checkpoint's contents in today's format, whatever format the file had."""

    kind: str
    config: dict
    preset: Optional[str]
    state_dict: dict
    optimizer: Optional[dict]
    generator: Optional[torch.Tensor]
    history: Optional[dict]
    train_options: Optional[dict]
    epoch_state: Optional[dict] = None


def save(model, path, where: str) -> "Path":  # noqa: F821
    """Write ``model`` (any kind: it gives ``_checkpoint_kind`` and ``_checkpoint_config()``) and its training
    state to ``path`` atomically; returns the path."""
    p = _checks.file_path(where, path, must_exist=False)
    state, hist, opts = model.optimizer_state_, model.history_, model.train_options_
    data = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fastvae_version": __version__,
        "kind": model._checkpoint_kind, "config": model._checkpoint_config(),
        "preset": getattr(model, "preset", None),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": None if state is None else state.state_dict(),
        "generator": model.generator_state_,
        "history": None if hist is None else {k: torch.from_numpy(np.array(v)) for k, v in hist.__dict__.items()},
        "train_options": None if opts is None else opts.to_dict(),
        "epoch_state": model.epoch_state_,
    }
    return atomic_write(p, lambda f: torch.save(data, f))


def _network_format_1(data: dict) -> Record:
    """A NetworkVAE file of format "fastvae-network-vae-1": torch.optim.Adam's state_dict becomes an AdamState
    over the parameters in order (that format trained every parameter)."""
    opt = data["optimizer"]
    optimizer = None
    if opt is not None:
        states = [opt["state"][i] for i in sorted(opt["state"])]
        optimizer = {"step": int(states[0]["step"]) if states else 0,
                     "exp_avg": [s["exp_avg"] for s in states], "exp_avg_sq": [s["exp_avg_sq"] for s in states]}
    return Record("networks", dict(data["config"]), None, data["state_dict"], optimizer, data["generator_state"],
                  data["history"], None)


def _versioned(data: dict, version: int) -> Record:
    if version == 1:  # fit_settings: TrainOptions less epochs and callback_every
        options = data["fit_settings"]
    else:
        options = data["train_options"]
    return Record(data.get("kind", "mlp") if version >= 3 else "mlp", dict(data["config"]), data.get("preset"),
                  data["state_dict"], data["optimizer"], data["generator"], data["history"], options,
                  data["epoch_state"] if version >= 3 else None)


def read(path, kind: str, where: str) -> Record:
    """The checkpoint at ``path`` in today's format; CheckpointError (naming the file) for a file that is not a
    readable fastvae checkpoint of this model ``kind``, FileNotFoundError for a missing file."""
    p = _checks.file_path(where, path, must_exist=True)
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a zip, pickled code refused by weights_only ...
        raise CheckpointError(f"{where}: {str(p)!r} is not a readable checkpoint (corrupt or truncated?): "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if not isinstance(data, dict) or data.get("format") not in (FORMAT, NETWORK_FORMAT_1):
        raise CheckpointError(f"{where}: {str(p)!r} is not a fastvae checkpoint (a plain state_dict loads with "
                              "model.load_state_dict(torch.load(path)))")
    version = data.get("format_version")
    if data["format"] == FORMAT and version not in READABLE_VERSIONS:
        raise CheckpointError(f"{where}: {str(p)!r} has checkpoint format {version!r}; this "
                              f"fastvae reads formats {', '.join(map(str, READABLE_VERSIONS))}")
    try:
        record = _network_format_1(data) if data["format"] == NETWORK_FORMAT_1 else _versioned(data, version)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{where}: {str(p)!r} holds an invalid checkpoint: {type(e).__name__}: {e}") from e
    if record.kind != kind:
        names = {"mlp": "fastvae.VAE.load", "networks": "fastvae.NetworkVAE.load (with your networks)"}
        raise CheckpointError(f"{where}: {str(p)!r} holds a model of kind {record.kind!r}; load it with "
                              f"{names.get(record.kind, 'another fastvae')}")
    return record


def restore(model, record: Record, path, where: str):
    """Load ``record``'s weights and training state into ``model`` (built from ``record.config``); returns it.
    CheckpointError naming the file for weights or state that do not fit the model."""
    try:
        model.load_state_dict(record.state_dict)
        if record.preset is not None:
            model.preset = record.preset
        if record.optimizer is not None:
            model.optimizer_state_ = AdamState.from_state_dict(record.optimizer, model.flat_parameters())
        if record.generator is not None:
            torch.Generator().set_state(record.generator)  # validates size and dtype
            model.generator_state_ = record.generator
        if record.history is not None:
            model.history_ = History(**{k: v.numpy() for k, v in record.history.items()})
        if record.train_options is not None:
            model.train_options_ = TrainOptions.from_dict(record.train_options, where)
        model.epoch_state_ = record.epoch_state
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{where}: {str(path)!r} holds an invalid checkpoint: {type(e).__name__}: {e}") from e
    return model


__all__ = ["CheckpointError", "save", "read", "restore", "Record", "FORMAT_VERSION", "KINDS"]
