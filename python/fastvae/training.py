"""Training a :class:`fastvae.VAE` with the C++ loop (whole epochs in C++, GIL released)."""
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm  # the text bar: works in terminals and notebooks without ipywidgets

from . import _C, _ops


@dataclass
class History:
    """What a fit recorded, as plain NumPy arrays.

    update_rec, update_kl: minibatch means of the expected log-likelihood and the KL at every update
        (nats per image, before the update). train_elbo: mean minibatch ELBO over each epoch.
    test_elbo: ELBO on the test images after each epoch (NaN without test images).
    epoch_seconds: wall time of each epoch (training plus test evaluation).
    val_update, val_rec, val_kl: validation log-likelihood and KL every ``eval_every`` updates.
    """

    update_rec: np.ndarray = field(default_factory=lambda: np.zeros(0))
    update_kl: np.ndarray = field(default_factory=lambda: np.zeros(0))
    train_elbo: np.ndarray = field(default_factory=lambda: np.zeros(0))
    test_elbo: np.ndarray = field(default_factory=lambda: np.zeros(0))
    epoch_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    val_update: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    val_rec: np.ndarray = field(default_factory=lambda: np.zeros(0))
    val_kl: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def update_elbo(self) -> np.ndarray:
        return self.update_rec - self.update_kl

    def extend(self, other: "History", update_offset: int) -> "History":
        cat = np.concatenate
        return History(cat([self.update_rec, other.update_rec]), cat([self.update_kl, other.update_kl]),
                       cat([self.train_elbo, other.train_elbo]), cat([self.test_elbo, other.test_elbo]),
                       cat([self.epoch_seconds, other.epoch_seconds]),
                       cat([self.val_update, other.val_update + update_offset]),
                       cat([self.val_rec, other.val_rec]), cat([self.val_kl, other.val_kl]))

    def to_dict(self):
        return {k: np.asarray(v).tolist() for k, v in self.__dict__.items()}


def as_pixels(images: torch.Tensor, data_dim: int, name: str = "images") -> torch.Tensor:
    """uint8 [N, D] pixel intensities from uint8 [N, H, W] / [N, D] images or float images in [0, 1]
    (binary float images map to 0 and 255)."""
    t = torch.as_tensor(images)
    if t.dim() > 2:
        t = t.reshape(t.shape[0], -1)
    if t.dim() != 2 or t.shape[1] != data_dim:
        raise ValueError(f"{name} must have {data_dim} pixels per image, got shape {tuple(t.shape)}")
    if t.dtype != torch.uint8:
        if not t.is_floating_point():
            raise TypeError(f"{name} must be uint8 or float in [0, 1], got {t.dtype}")
        if torch.isnan(t).any() or t.min() < 0 or t.max() > 1:
            raise ValueError(f"float {name} must lie in [0, 1] without NaN")
        t = (t * 255).round().to(torch.uint8)
    return t.contiguous()


def _labels(y, n: int, cond_dim: int, name: str) -> Optional[torch.Tensor]:
    if cond_dim == 0:
        if y is not None:
            raise ValueError(f"{name} given to an unconditional VAE")
        return None
    if y is None:
        raise ValueError(f"a conditional VAE needs {name}")
    y = torch.as_tensor(y).long().contiguous()
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape [{n}], got {tuple(y.shape)}")
    return y


def fit(model, train_images, train_labels=None, *, epochs: int = 1, batch_size: int = 64, n_samples: int = 1,
        lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
        threshold: int = 127, estimator: str = "analytic", kl_weight: float = 1.0, test_images=None, test_labels=None,
        val_images=None, val_labels=None, eval_every: int = 0, eval_samples: int = 1,
        seed: Optional[int] = None, progress: bool = True, callback: Optional[Callable] = None,
        callback_every: int = 20) -> History:
    """Train ``model`` in place with Adam (torch.optim.Adam's update) on binarized images, in C++.

    Each epoch shuffles the training images, cuts them into minibatches (the last one smaller),
    binarizes each pixel as ``pixel > threshold`` on the 0..255 scale (127 = rounding x/255, as the
    homeworks do; 128 is ESE 546's "greater than 128"), draws ``n_samples`` reparameterized samples per
    image and takes one Adam step on ``-mean ELBO``. Optimizer state persists on the model, so
    successive calls continue training.

    Args:
        train_images: uint8 [N, D] or [N, H, W] intensities (or float in [0, 1]).
        train_labels: int64 [N] classes, for a conditional VAE only.
        test_images, test_labels: evaluated after every epoch (test ELBO).
        val_images, val_labels, eval_every: validation log-likelihood and KL every ``eval_every``
            updates (ESE 546 HW5 (vi)).
        eval_samples: Monte Carlo samples per image in the evaluations.
        kl_weight: weight beta of the KL in the training objective ``rec - beta * kl`` (1 = the ELBO;
            beta > 1 is the beta-VAE of Higgins et al. 2017). Recorded terms and ELBOs stay unweighted.
        seed: seed of the loop's generator (shuffling, noise); None draws one from torch.
        progress: show a tqdm bar. callback: ``callback(event, info)`` called with ``"step"`` every
            ``callback_every`` updates and ``"epoch"`` after each epoch; raising stops training.

    Returns:
        :class:`History` of this call (also appended to ``model.history_``).

    Raises:
        ValueError / TypeError: bad images, labels or settings. KeyboardInterrupt: re-raised after a
        clean stop between two updates; the model and ``model.history_`` keep everything done so far.
    """
    w = model.encoder_head.weight
    if w.dtype != torch.float32 or w.device.type != "cpu":
        raise TypeError("fit trains float32 models on the CPU; convert with model.float()")
    if estimator not in _ops.ESTIMATORS:
        raise ValueError(f"estimator must be one of {sorted(_ops.ESTIMATORS)}, got {estimator!r}")
    if not (kl_weight >= 0 and np.isfinite(kl_weight)):
        raise ValueError(f"kl_weight must be finite and >= 0, got {kl_weight}")
    if not 0 <= int(threshold) <= 255:
        raise ValueError(f"threshold is on the 0..255 scale, got {threshold}")
    if epochs < 0 or batch_size < 1 or n_samples < 1 or eval_samples < 1 or eval_every < 0:
        raise ValueError("need epochs >= 0, batch_size >= 1, n_samples >= 1, eval_samples >= 1, eval_every >= 0")
    if not (lr > 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1 and eps >= 0 and weight_decay >= 0):
        raise ValueError(f"invalid Adam settings lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
    xs = as_pixels(train_images, model.data_dim, "train_images")
    ys = _labels(train_labels, xs.shape[0], model.cond_dim, "train_labels")
    xt = None if test_images is None else as_pixels(test_images, model.data_dim, "test_images")
    yt = None if xt is None else _labels(test_labels, xt.shape[0], model.cond_dim, "test_labels")
    xv = None if val_images is None else as_pixels(val_images, model.data_dim, "val_images")
    yv = None if xv is None else _labels(val_labels, xv.shape[0], model.cond_dim, "val_labels")

    params = model.flat_parameters()
    if model._adam is None:
        model._adam = {"step": 0, "exp_avg": [torch.zeros_like(p) for p in params],
                       "exp_avg_sq": [torch.zeros_like(p) for p in params]}
    state = model._adam
    opts = _C.TrainOptions()
    opts.epochs, opts.batch_size, opts.n_samples = int(epochs), int(batch_size), int(n_samples)
    opts.estimator, opts.threshold, opts.kl_weight = _ops.ESTIMATORS[estimator], int(threshold), float(kl_weight)
    opts.callback_every, opts.eval_every, opts.eval_samples = int(callback_every), int(eval_every), int(eval_samples)
    opts.lr, opts.beta1, opts.beta2, opts.eps, opts.weight_decay = float(lr), float(betas[0]), float(betas[1]), \
        float(eps), float(weight_decay)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())

    per_epoch = -(-xs.shape[0] // batch_size)
    bar = tqdm(total=epochs * per_epoch, unit="update", disable=not progress, leave=False)

    def on_event(event, info):
        if event == "step":
            bar.update(info["update"] - bar.n)
            bar.set_postfix(epoch=info["epoch"] + 1, elbo=f"{info['rec'] - info['kl']:.2f}", refresh=False)
        if callback is not None:
            callback(event, info)

    with torch.no_grad():
        out = _C.train_vae(params, state["exp_avg"], state["exp_avg_sq"], state["step"], model.arch,
                           model.negative_slope, xs, ys, xt, yt, xv, yv, opts, seed, on_event)
    bar.close()
    state["step"] = out["step"]
    hist = History(out["update_rec"].numpy(), out["update_kl"].numpy(), out["train_elbo"].numpy(),
                   out["test_elbo"].numpy(), out["epoch_seconds"].numpy(),
                   np.asarray(out["val_update"], dtype=np.int64), np.asarray(out["val_rec"]),
                   np.asarray(out["val_kl"]))
    prev = model.history_
    model.history_ = hist if prev is None else prev.extend(hist, len(prev.update_rec))
    if out["error"] is not None:
        raise out["error"]
    return hist
