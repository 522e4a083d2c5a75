"""The types every layer shares: an objective's per-image terms, Adam's state, what a fit recorded, and the
errors of training and checkpoints. Nothing here imports another fastvae module, so every layer may use them."""
from dataclasses import dataclass, field, fields
from typing import List, NamedTuple

import numpy as np
import torch

from . import _checks


class ELBO(NamedTuple):
    """Per-image ELBO and its two terms, each a tensor of shape [B] (nats)."""

    elbo: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor


class PIWAEBounds(NamedTuple):
    """The two objectives of PIWAE (Rainforth et al. 2018, ICML) per image, on one set of M*K samples
    (:func:`fastvae.heads.piwae_bounds`): ``encoder_bound`` [B] = MIWAE(M, K), for the inference network's
    parameters; ``decoder_bound`` [B] = IWAE(M*K), for the generative network's (nats); ``weights`` [M*K, B], the
    normalised importance weights within each group of K, detached (the DReG hook's multipliers)."""

    encoder_bound: torch.Tensor
    decoder_bound: torch.Tensor
    weights: torch.Tensor


class TrainingDivergedError(FloatingPointError):
    """``fit`` met a non-finite loss or gradient; the model keeps the parameters of the last finite update."""


class CheckpointError(ValueError):
    """A file that is not a readable fastvae checkpoint (corrupt, truncated, another format or version)."""


@dataclass
class AdamState:
    """Adam's state (Kingma & Ba 2015, as torch.optim.Adam keeps it) for a model's trainable parameters, in the
    model's order (``model.flat_parameters()``): ``step`` updates done, first and second moment estimates
    ``exp_avg``, ``exp_avg_sq`` (tensors of the parameters' shapes and dtype)."""

    step: int
    exp_avg: List[torch.Tensor]
    exp_avg_sq: List[torch.Tensor]

    @classmethod
    def zeros(cls, params) -> "AdamState":
        return cls(0, [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params])

    def state_dict(self) -> dict:
        return {"step": int(self.step), "exp_avg": [t.clone() for t in self.exp_avg],
                "exp_avg_sq": [t.clone() for t in self.exp_avg_sq]}

    @classmethod
    def from_state_dict(cls, d: dict, params) -> "AdamState":
        """Validated against ``params`` (count, shapes, dtype); ValueError / TypeError otherwise."""
        step = _checks.integer("AdamState", "step", d["step"], min=0)
        m, v = list(d["exp_avg"]), list(d["exp_avg_sq"])
        if not (len(m) == len(v) == len(params)):
            raise ValueError(f"AdamState: {len(m)} moment tensors for {len(params)} parameters")
        for k, (p, a, b) in enumerate(zip(params, m, v)):
            for t in (a, b):
                _checks.tensor("AdamState", f"moment {k}", t, dtypes=[p.dtype])
                if t.shape != p.shape:
                    raise ValueError(f"AdamState: moment {k} has shape {tuple(t.shape)}, its parameter "
                                     f"{tuple(p.shape)}")
        return cls(step, [a.detach().clone().contiguous() for a in m], [b.detach().clone().contiguous() for b in v])

    def load_state_dict(self, d: dict) -> None:
        other = AdamState.from_state_dict(d, self.exp_avg)
        self.step, self.exp_avg, self.exp_avg_sq = other.step, other.exp_avg, other.exp_avg_sq


def _empty(dtype=np.float64):
    return field(default_factory=lambda: np.zeros(0, dtype=dtype))


@dataclass
class History:
    """What the fits of a model recorded, as plain NumPy arrays.

    update_rec, update_kl: minibatch means of the expected log-likelihood and the KL at every update
        (nats per image, before the update). train_elbo: mean minibatch ELBO over each epoch.
    test_elbo: ELBO on the test images after each epoch (NaN without test images).
    epoch_seconds: wall time of each epoch (training plus test evaluation).
    epoch_threads: the thread count the epoch's updates ended with (``TrainOptions.threads``: by default fastvae
        times its updates at one thread and at torch's count and keeps the faster, docs/engine.md); 0 in
        histories loaded from files written before it was recorded.
    val_update, val_rec, val_kl: validation log-likelihood and KL, taken after ``val_update`` updates (counted
        over all the model's fits, as ``update_rec`` is indexed).

    With an importance-weighted objective (``"iwae"``, ``"miwae"``, ``"ciwae"``, ``"piwae"``), update_rec holds the
    minibatch mean of that bound (PIWAE: of the decoder's IWAE(M k)), update_kl zeros, and train_elbo the epoch mean
    of that bound; test_elbo and the validation stay the ELBO (with
    ``eval_samples`` and ``estimator``), comparable across objectives.
    """

    update_rec: np.ndarray = _empty()
    update_kl: np.ndarray = _empty()
    train_elbo: np.ndarray = _empty()
    test_elbo: np.ndarray = _empty()
    epoch_seconds: np.ndarray = _empty()
    epoch_threads: np.ndarray = _empty(np.int64)
    val_update: np.ndarray = _empty(np.int64)
    val_rec: np.ndarray = _empty()
    val_kl: np.ndarray = _empty()

    @property
    def update_elbo(self) -> np.ndarray:
        return self.update_rec - self.update_kl

    def to_dict(self):
        return {k: np.asarray(v).tolist() for k, v in self.__dict__.items()}

    @classmethod
    def names(cls):
        return tuple(f.name for f in fields(cls))

    @classmethod
    def dtype(cls, name: str) -> np.dtype:
        """The NumPy dtype of field ``name`` (int64 for counts, float64 for the rest)."""
        return getattr(cls(), name).dtype


__all__ = ["ELBO", "PIWAEBounds", "AdamState", "History", "TrainingDivergedError", "CheckpointError"]
