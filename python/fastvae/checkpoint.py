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
    epoch_state      the epoch a fit stopped inside: order, done, elbo_sum, seconds (None between epochs)
(optimizer, generator, history and train_options are None before any fit).

Files of earlier releases load too: format_version 1 (``fit_settings`` instead of train_options, fewer config
keys), 2 (no ``kind``: an MLP VAE) and the unversioned ``"fastvae-network-vae-1"`` of models with custom networks
(torch.optim.Adam's state_dict instead of an AdamState). tests/checkpoint/fixtures/checkpoints holds a file of each.

Loading validates every field before the model is touched, and each failure is a :class:`CheckpointError`
(a ValueError) naming the file and the field: format and version, kind, config (the types of the constructor
arguments), state_dict (every key of the model, shapes, dtypes, finite values), optimizer (step an int >= 0,
one pair of moments per parameter, of its shape and dtype, finite, exp_avg_sq >= 0), generator (a uint8 state
``torch.Generator().set_state`` accepts), history (every field of :class:`fastvae.History`, 1-D, float64 or
int64 as History has them; update_rec and update_kl of equal length, the optimizer's step when there is one;
train_elbo, test_elbo, epoch_seconds and epoch_threads of equal length (epoch_threads 0 in files written before
it was recorded); val_update, val_rec and val_kl of equal length, val_update sorted within [0, updates]) and
train_options (:meth:`TrainOptions.from_dict`).

Saving runs the same checks on the model's state before the destination is touched (a model on the meta device,
with NaN or inf weights or with inconsistent training state is refused with a ValueError), then writes with
:func:`fastvae._atomic.atomic_write` (an interrupted or failed save leaves the previous file intact). A symlinked
destination is written through to its target: the link stays a link.
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

# The constructor arguments a checkpoint's config may hold, per kind, with their types ("int", "ints": a list
# of ints, "real", "str", or a tuple of the allowed strings); REQUIRED: those no format omits.
CONFIG_TYPES = {
    "mlp": dict(data_dim="int", latent_dim="int", cond_dim="int", categories="int", encoder_hidden="ints",
                decoder_hidden="ints", upper_latents="ints", upper_hidden="ints", activation="str", posterior="str", mean_activation="str",
                scale_activation="str", likelihood="str", gaussian_scale="str", latent="str",
                negative_slope="real", gaussian_sigma="real", dtype=("float32", "float64")),
    "networks": dict(latent_dim="int", posterior="str", likelihood="str", gaussian_sigma="real",
                     gaussian_scale="str"),
}
REQUIRED_CONFIG = {"mlp": ("data_dim", "latent_dim", "encoder_hidden", "decoder_hidden", "dtype"),
                   "networks": ("latent_dim",)}
# History's fields by group: each group has one length.
HISTORY_GROUPS = (("update_rec", "update_kl"), ("train_elbo", "test_elbo", "epoch_seconds", "epoch_threads"),
                  ("val_update", "val_rec", "val_kl"))


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


# ------------------------------------------------------------------------------------------ field checks
# Each takes ``w``, the message's start ("<where>: '<file>' holds an invalid checkpoint" when loading,
# "<where>: cannot save '<file>'" when saving), and raises TypeError / ValueError "<w>: <field> must be ...,
# got ..."; read and restore turn them into CheckpointError.

def _tensor(w, name, t, *, dtype=None, dim=None, shape=None, finite=False, nonnegative=False) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{w}: {name} must be a tensor, got {_checks._show(t)}")
    if t.device.type == "meta":
        raise ValueError(f"{w}: {name} must be on a real device, got a tensor on the meta device (shapes only, "
                         "no values)")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{w}: {name} must have dtype {dtype}, got {t.dtype}")
    if dim is not None and t.dim() != dim:
        raise ValueError(f"{w}: {name} must have {dim} dimension{'s' if dim != 1 else ''}, got shape "
                         f"{tuple(t.shape)}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{w}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if finite and (t.is_floating_point() or t.is_complex()):
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ValueError(f"{w}: {name} must be finite, got {bad} NaN or inf "
                             f"entr{'y' if bad == 1 else 'ies'} of {t.numel()}")
    if nonnegative and t.numel() and bool((t < 0).any()):
        raise ValueError(f"{w}: {name} must be >= 0 everywhere, got a minimum of {t.min().item():g}")
    return t


def _dict(w, name, d) -> dict:
    if not isinstance(d, dict):
        raise TypeError(f"{w}: {name} must be a dict, got {_checks._show(d)}")
    return d


def _check_config(w, kind, config) -> None:
    _dict(w, "config", config)
    types = CONFIG_TYPES[kind]
    unknown = sorted(map(str, set(config) - set(types)))
    if unknown:
        raise ValueError(f"{w}: config must hold only the arguments {sorted(types)}, got unknown {unknown}")
    for key in REQUIRED_CONFIG[kind]:
        if key not in config:
            raise ValueError(f"{w}: config must hold {key!r}, got the keys {sorted(config)}")
    for key, value in config.items():
        name, t = f"config.{key}", types[key]
        if t == "int":
            _checks.integer(w, name, value)
        elif t == "ints":
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"{w}: {name} must be a list of integers, got {_checks._show(value)}")
            _checks.integer_sequence(w, name, value)
        elif t == "real":
            _checks.real(w, name, value)
        elif t == "str":
            if not isinstance(value, str):
                raise TypeError(f"{w}: {name} must be a string, got {_checks._show(value)}")
        else:
            _checks.choice(w, name, value, t)


def _check_state_dict(w, sd) -> None:
    _dict(w, "state_dict", sd)
    for key, t in sd.items():
        if not isinstance(key, str):
            raise TypeError(f"{w}: state_dict's keys must be strings, got {_checks._show(key)}")
        _tensor(w, f"state_dict[{key!r}]", t, finite=True)


def _check_optimizer(w, opt) -> None:
    _dict(w, "optimizer", opt)
    if set(opt) != {"step", "exp_avg", "exp_avg_sq"}:
        raise ValueError(f"{w}: optimizer must hold step, exp_avg and exp_avg_sq, got the keys {sorted(opt)}")
    _checks.integer(w, "optimizer.step", opt["step"], min=0)
    for name in ("exp_avg", "exp_avg_sq"):
        if not isinstance(opt[name], (list, tuple)):
            raise TypeError(f"{w}: optimizer.{name} must be a list of tensors, got {_checks._show(opt[name])}")
        for k, t in enumerate(opt[name]):
            _tensor(w, f"optimizer.{name}[{k}]", t, finite=True, nonnegative=name == "exp_avg_sq")
    if len(opt["exp_avg"]) != len(opt["exp_avg_sq"]):
        raise ValueError(f"{w}: optimizer.exp_avg and optimizer.exp_avg_sq must have one tensor per parameter "
                         f"each, got {len(opt['exp_avg'])} and {len(opt['exp_avg_sq'])}")


def _check_generator(w, g) -> None:
    _tensor(w, "generator", g, dtype=torch.uint8, dim=1)
    try:
        torch.Generator().set_state(g)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"{w}: generator must be a state torch.Generator().set_state accepts, got "
                         f"{g.numel()} bytes it refuses ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None


def _check_history(w, h, step: Optional[int]) -> None:
    _dict(w, "history", h)
    names = History.names()
    missing = [n for n in names if n not in h]
    if missing:
        raise ValueError(f"{w}: history must hold every field of fastvae.History, got none for {missing}")
    unknown = sorted(map(str, set(h) - set(names)))
    if unknown:
        raise ValueError(f"{w}: history must hold only the fields {list(names)}, got unknown {unknown}")
    for n in names:
        _tensor(w, f"history.{n}", h[n], dtype=torch.from_numpy(np.zeros(0, History.dtype(n))).dtype, dim=1)
    for group in HISTORY_GROUPS:
        lengths = {n: len(h[n]) for n in group}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{w}: history.{', history.'.join(group)} must have one length, got "
                             + ", ".join(f"{n}: {v}" for n, v in lengths.items()))
    updates = len(h["update_rec"])
    if step is not None and updates != step:
        raise ValueError(f"{w}: history.update_rec must have one entry per update, the optimizer's step "
                         f"{step}, got {updates}")
    v = h["val_update"]
    if len(v) and (bool((v[1:] < v[:-1]).any()) or int(v.min()) < 0 or int(v.max()) > updates):
        raise ValueError(f"{w}: history.val_update must be sorted within [0, {updates}] (the updates done), got "
                         f"{_checks._show(v.tolist())}")


def _check_record(w, r: Record) -> None:
    """Every check that needs no model."""
    _checks.choice(w, "kind", r.kind, KINDS)
    _check_config(w, r.kind, r.config)
    if r.preset is not None and not isinstance(r.preset, str):
        raise TypeError(f"{w}: preset must be a string or None, got {_checks._show(r.preset)}")
    _check_state_dict(w, r.state_dict)
    if r.optimizer is not None:
        _check_optimizer(w, r.optimizer)
    if r.generator is not None:
        _check_generator(w, r.generator)
    if r.history is not None:
        _check_history(w, r.history, None if r.optimizer is None else int(r.optimizer["step"]))
    if r.train_options is not None:
        _dict(w, "train_options", r.train_options)
        TrainOptions.from_dict(r.train_options, f"{w}: train_options")
    if r.epoch_state is not None:
        _check_epoch_state(w, r.epoch_state, None if r.history is None else len(r.history["update_rec"]))


def _check_epoch_state(w, e, updates: Optional[int]) -> None:
    """The epoch a fit stopped inside: its order (a permutation of the training rows), the updates done in it (at
    most the updates recorded), the ELBO sum so far (finite) and its seconds (>= 0)."""
    _dict(w, "epoch_state", e)
    if set(e) != {"order", "done", "elbo_sum", "seconds"}:
        raise ValueError(f"{w}: epoch_state must hold order, done, elbo_sum and seconds, got the keys {sorted(e)}")
    order = _tensor(w, "epoch_state.order", e["order"], dtype=torch.int64, dim=1)
    if not torch.equal(torch.sort(order).values, torch.arange(len(order))):
        raise ValueError(f"{w}: epoch_state.order must be a permutation of the {len(order)} training rows")
    _checks.integer(w, "epoch_state.done", e["done"], min=0, max=len(order) if updates is None else min(len(order),
                                                                                                      updates))
    _checks.real(w, "epoch_state.elbo_sum", e["elbo_sum"])
    _checks.real(w, "epoch_state.seconds", e["seconds"], min=0.0)


def _check_fits(w, r: Record, model) -> None:
    """The weights and the Adam state against ``model``: every key, shape and dtype."""
    own = model.state_dict()
    missing = [k for k in own if k not in r.state_dict]
    if missing:
        raise ValueError(f"{w}: state_dict must hold every weight of the model, got none for {missing[:5]}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    unknown = [k for k in r.state_dict if k not in own]
    if unknown:
        raise ValueError(f"{w}: state_dict must hold only the model's weights, got unknown {unknown[:5]}")
    for k, t in own.items():
        _tensor(w, f"state_dict[{k!r}]", r.state_dict[k], dtype=t.dtype, shape=t.shape)
    if r.optimizer is not None:
        params = model.flat_parameters()
        for name in ("exp_avg", "exp_avg_sq"):
            if len(r.optimizer[name]) != len(params):
                raise ValueError(f"{w}: optimizer.{name} must hold one tensor per parameter ({len(params)}), got "
                                 f"{len(r.optimizer[name])}")
            for k, (p, t) in enumerate(zip(params, r.optimizer[name])):
                _tensor(w, f"optimizer.{name}[{k}]", t, dtype=p.dtype, shape=p.shape)


# ------------------------------------------------------------------------------------------ save

def _record_of(model) -> Record:
    state, hist, opts = model.optimizer_state_, model.history_, model.train_options_
    return Record(
        kind=model._checkpoint_kind, config=model._checkpoint_config(), preset=getattr(model, "preset", None),
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        optimizer=None if state is None else state.state_dict(),
        generator=model.generator_state_,
        history=None if hist is None else {k: torch.from_numpy(np.array(v)) for k, v in hist.__dict__.items()},
        train_options=None if opts is None else opts.to_dict(), epoch_state=model.epoch_state_)


def save(model, path, where: str) -> "Path":  # noqa: F821
    """Write ``model`` (any kind: it gives ``_checkpoint_kind`` and ``_checkpoint_config()``) and its training
    state to ``path`` atomically; returns the path.

    The state is first checked as loading checks it (weights on a real device and finite, Adam state and
    history consistent): a ValueError (TypeError for a field of the wrong kind) refuses it before the
    destination is touched. A symlink at ``path`` is written through (its target is replaced atomically)."""
    p = _checks.file_path(where, path, must_exist=False)
    w = f"{where}: cannot save {str(p)!r}"
    record = _record_of(model)
    _check_record(w, record)
    _check_fits(w, record, model)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "fastvae_version": __version__,
            **{k: getattr(record, k) for k in Record.__dataclass_fields__}}
    atomic_write(p, lambda f: torch.save(data, f))  # through a symlink; never onto a FIFO or a device
    return p


# ------------------------------------------------------------------------------------------ load

def _field(w, data: dict, key: str):
    if key not in data:
        raise ValueError(f"{w}: the checkpoint must hold the field {key!r}, got the fields {sorted(map(str, data))}")
    return data[key]


def _network_format_1(w, data: dict) -> Record:
    """A NetworkVAE file of format "fastvae-network-vae-1": torch.optim.Adam's state_dict becomes an AdamState
    over the parameters in order (that format trained every parameter)."""
    opt = _field(w, data, "optimizer")
    optimizer = None
    if opt is not None:
        try:
            states = [opt["state"][i] for i in sorted(opt["state"])]
            optimizer = {"step": int(states[0]["step"]) if states else 0,
                         "exp_avg": [s["exp_avg"] for s in states], "exp_avg_sq": [s["exp_avg_sq"] for s in states]}
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            raise ValueError(f"{w}: optimizer must be a torch.optim.Adam state_dict, got one that fails with "
                             f"{type(e).__name__}: {e}") from None
    return Record("networks", _dict(w, "config", _field(w, data, "config")), None, _field(w, data, "state_dict"),
                  optimizer, _field(w, data, "generator_state"), _older_history(_field(w, data, "history")), None)


def _older_history(h):
    """History of a file from before epoch_threads was recorded: 0 (unknown) for each of its epochs."""
    if isinstance(h, dict) and "epoch_threads" not in h and isinstance(h.get("train_elbo"), torch.Tensor):
        h = dict(h, epoch_threads=torch.zeros(len(h["train_elbo"]), dtype=torch.int64))
    return h


def _versioned(w, data: dict, version: int) -> Record:
    options = _field(w, data, "fit_settings" if version == 1 else "train_options")  # 1: TrainOptions less a few
    return Record(data.get("kind", "mlp") if version >= 3 else "mlp", _dict(w, "config", _field(w, data, "config")),
                  data.get("preset"), _field(w, data, "state_dict"), _field(w, data, "optimizer"),
                  _field(w, data, "generator"),
                  _field(w, data, "history") if version >= 3 else _older_history(_field(w, data, "history")), options,
                  _field(w, data, "epoch_state") if version >= 3 else None)


def read(path, kind: str, where: str) -> Record:
    """The checkpoint at ``path`` in today's format; CheckpointError (naming the file and the field) for a
    file that is not a readable, valid fastvae checkpoint of this model ``kind`` (a FIFO, a device, a folder
    included: refused without reading), FileNotFoundError for a missing file."""
    try:
        p = _checks.file_path(where, path, must_exist=False)  # TypeError for the path's type
        f = _checks.open_regular(where, p, error=CheckpointError)
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: no checkpoint file {str(path)!r}") from None
    except (ValueError, IsADirectoryError) as e:  # a folder, a FIFO, a device ...
        raise CheckpointError(str(e)) from None
    w = f"{where}: {str(p)!r} holds an invalid checkpoint"
    with f:
        try:
            data = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated zip, not a zip, pickled code refused by weights_only ...
            raise CheckpointError(f"{where}: {str(p)!r} is not a readable checkpoint (corrupt or truncated?): "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    fmt = data.get("format") if isinstance(data, dict) else None
    if not isinstance(fmt, str) or fmt not in (FORMAT, NETWORK_FORMAT_1):
        raise CheckpointError(f"{where}: {str(p)!r} is not a fastvae checkpoint (a plain state_dict loads with "
                              "model.load_state_dict(torch.load(path)))")
    version = data.get("format_version")
    if fmt == FORMAT and (type(version) is not int or version not in READABLE_VERSIONS):
        raise CheckpointError(f"{where}: {str(p)!r} has checkpoint format {version!r}; this "
                              f"fastvae reads formats {', '.join(map(str, READABLE_VERSIONS))}")
    try:
        if "fastvae_version" in data and not isinstance(data["fastvae_version"], str):
            raise TypeError(f"{w}: fastvae_version must be a string, got {_checks._show(data['fastvae_version'])}")
        record = _network_format_1(w, data) if fmt == NETWORK_FORMAT_1 else _versioned(w, data, version)
        _checks.choice(w, "kind", record.kind, KINDS)
    except (TypeError, ValueError) as e:
        raise CheckpointError(str(e)) from e
    if record.kind != kind:
        names = {"mlp": "fastvae.VAE.load", "networks": "fastvae.NetworkVAE.load (with your networks)"}
        raise CheckpointError(f"{where}: {str(p)!r} holds a model of kind {record.kind!r}; load it with "
                              f"{names.get(record.kind, 'another fastvae')}")
    try:
        _check_record(w, record)
    except (TypeError, ValueError) as e:
        raise CheckpointError(str(e)) from e
    return record


def restore(model, record: Record, path, where: str):
    """Load ``record``'s weights and training state into ``model`` (built from ``record.config``); returns it.
    Everything is checked against the model before the model is changed: CheckpointError naming the file and
    the field for weights or state that do not fit it."""
    w = f"{where}: {str(path)!r} holds an invalid checkpoint"
    try:
        _check_fits(w, record, model)
        optimizer = None if record.optimizer is None else \
            AdamState.from_state_dict(record.optimizer, model.flat_parameters())
        history = None if record.history is None else History(**{k: v.numpy() for k, v in record.history.items()})
        options = None if record.train_options is None else TrainOptions.from_dict(record.train_options,
                                                                                   f"{w}: train_options")
        model.load_state_dict(record.state_dict)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        if isinstance(e, CheckpointError):
            raise
        text = str(e) if str(e).startswith(where) else f"{w}: {type(e).__name__}: {e}"
        raise CheckpointError(text) from e
    if record.preset is not None:
        model.preset = record.preset
    if optimizer is not None:
        model.optimizer_state_ = optimizer
    if record.generator is not None:
        model.generator_state_ = record.generator
    if history is not None:
        model.history_ = history
    if options is not None:
        model.train_options_ = options
    model.epoch_state_ = record.epoch_state
    return model


__all__ = ["CheckpointError", "save", "read", "restore", "Record", "FORMAT_VERSION", "KINDS"]
