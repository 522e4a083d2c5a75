"""Checkpoints of a :class:`fastvae.VAE` and its training state (``VAE.save`` / ``VAE.load``).

A checkpoint is one ``torch.save``'d dict of tensors, numbers and strings only, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs when a file is opened):

    format           "fastvae.checkpoint" and format_version (FORMAT_VERSION), fastvae_version
    config           the VAE's constructor arguments (dtype as a string)
    state_dict       the weights (model.state_dict())
    optimizer        AdamState.state_dict(): step, exp_avg, exp_avg_sq (None before any fit)
    generator        the training loop's generator state, uint8 (None before any fit)
    history          History fields as tensors (None before any fit)
    train_options    TrainOptions.to_dict() of the last fit (None before any fit)

Format 1 (before TrainOptions) stored ``fit_settings``, a dict of the same fields less epochs and
callback_every; it still loads (the missing fields take their defaults).

Written with :func:`fastvae._atomic.atomic_write`: an interrupted save leaves the previous file intact.
"""
import os
from pathlib import Path

import numpy as np
import torch

from ._atomic import atomic_write

FORMAT = "fastvae.checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointError(ValueError):
    """A file that is not a readable fastvae checkpoint (corrupt, truncated, another format or version)."""


def _path(where: str, path, *, must_exist: bool) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if str(path) == "" or p.is_dir():
        raise ValueError(f"{where}: path must name a file, got the folder {str(path)!r}")
    if must_exist and not p.is_file():
        raise FileNotFoundError(f"{where}: no checkpoint file {str(p)!r}")
    if not must_exist and not p.parent.is_dir():
        raise FileNotFoundError(f"{where}: the folder of {str(p)!r} does not exist")
    return p


def check_path(where: str, path) -> Path:
    """A writable checkpoint path: str or PathLike, not a folder, in an existing folder."""
    return _path(where, path, must_exist=False)


def config(model) -> dict:
    """The constructor arguments that rebuild ``model``'s architecture."""
    return dict(data_dim=model.data_dim, latent_dim=model.latent_dim, encoder_hidden=list(model.encoder_hidden),
                decoder_hidden=list(model.decoder_hidden), activation=model.activation,
                negative_slope=model.negative_slope, posterior=model.posterior,
                mean_activation=model.mean_activation, scale_activation=model.scale_activation,
                likelihood=model.likelihood, gaussian_sigma=model.gaussian_sigma,
                gaussian_scale=model.gaussian_scale, cond_dim=model.cond_dim, dtype=str(model.encoder_head.weight.dtype).replace("torch.", ""),
                latent=model.latent, categories=model.categories)


def save(model, path) -> Path:
    """Write ``model`` and its training state to ``path`` atomically; returns the path."""
    from . import __version__

    p = check_path("fastvae.VAE.save", path)
    state = getattr(model, "optimizer_state_", None)
    hist = getattr(model, "history_", None)
    opts = getattr(model, "train_options_", None)
    data = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fastvae_version": __version__,
        "config": config(model), "preset": getattr(model, "preset", None),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": None if state is None else state.state_dict(),
        "generator": getattr(model, "generator_state_", None),
        "history": None if hist is None else {k: torch.from_numpy(np.array(v)) for k, v in hist.__dict__.items()},
        "train_options": None if opts is None else opts.to_dict(),
    }
    return atomic_write(p, lambda f: torch.save(data, f))


def load(cls, path):
    """Rebuild a model of class ``cls`` with its training state from the checkpoint at ``path``."""
    from .options import TrainOptions
    from .training import AdamState, History

    where = "fastvae.VAE.load"
    p = _path(where, path, must_exist=True)
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a zip, pickled code refused by weights_only ...
        raise CheckpointError(f"{where}: {str(p)!r} is not a readable checkpoint (corrupt or truncated?): "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{where}: {str(p)!r} is not a fastvae checkpoint (a plain state_dict loads with "
                              "model.load_state_dict(torch.load(path)))")
    version = data.get("format_version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{where}: {str(p)!r} has checkpoint format {version!r}; this "
                              f"fastvae reads formats {', '.join(map(str, READABLE_VERSIONS))}")
    try:
        cfg = dict(data["config"])
        cfg["dtype"] = getattr(torch, cfg["dtype"])
        model = cls(**cfg)
        model.load_state_dict(data["state_dict"])
        if data.get("preset") is not None:
            model.preset = data["preset"]
        if data["optimizer"] is not None:
            model.optimizer_state_ = AdamState.from_state_dict(data["optimizer"], model.flat_parameters())
        gen = data["generator"]
        if gen is not None:
            torch.Generator().set_state(gen)  # validates size and dtype
            model.generator_state_ = gen
        if data["history"] is not None:
            model.history_ = History(**{k: v.numpy() for k, v in data["history"].items()})
        opts = data["train_options"] if version >= 2 else data["fit_settings"]
        model.train_options_ = None if opts is None else TrainOptions.from_dict(opts, where)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{where}: {str(p)!r} holds an invalid checkpoint: {type(e).__name__}: {e}") from e
    return model


__all__ = ["CheckpointError", "save", "load", "check_path", "config", "FORMAT_VERSION"]