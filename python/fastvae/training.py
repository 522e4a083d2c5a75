"""Training a :class:`fastvae.VAE` with the C++ loop (whole epochs in C++, GIL released).

The training state of a model is its weights, ``model.optimizer_state_`` (:class:`AdamState`),
``model.generator_state_`` (the loop's random generator) and ``model.history_``; ``VAE.save`` writes all of
it (:mod:`fastvae.checkpoint`), so a saved run continues exactly.
"""
from dataclasses import dataclass, field, replace
from typing import Callable, List, Optional

import numpy as np
import torch
from tqdm import tqdm  # the text bar: works in terminals and notebooks without ipywidgets

from . import _C, _checks, _ops
from ._lock import model_lock
from .distributed import DataParallel, resolve_group
from .options import TrainOptions, names as option_names

WHERE = "fastvae.fit"


class TrainingDivergedError(FloatingPointError):
    """``fit`` met a non-finite loss or gradient; the model keeps the parameters of the last finite update."""


@dataclass
class AdamState:
    """Adam's state (Kingma & Ba 2015, as torch.optim.Adam keeps it) for the parameters of a VAE, in the
    engine's order (``VAE.flat_parameters()``): ``step`` updates done, first and second moment estimates
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
        return cls(step, [a.clone().contiguous() for a in m], [b.clone().contiguous() for b in v])

    def load_state_dict(self, d: dict) -> None:
        other = AdamState.from_state_dict(d, self.exp_avg)
        self.step, self.exp_avg, self.exp_avg_sq = other.step, other.exp_avg, other.exp_avg_sq


@dataclass
class History:
    """What a fit recorded, as plain NumPy arrays.

    update_rec, update_kl: minibatch means of the expected log-likelihood and the KL at every update
        (nats per image, before the update). train_elbo: mean minibatch ELBO over each epoch.
    test_elbo: ELBO on the test images after each epoch (NaN without test images).
    epoch_seconds: wall time of each epoch (training plus test evaluation).
    val_update, val_rec, val_kl: validation log-likelihood and KL every ``eval_every`` updates.

    With ``objective="iwae"``, update_rec holds the minibatch mean of the IWAE bound (k samples), update_kl
    zeros, and train_elbo the epoch mean of that bound; test_elbo and the validation stay the ELBO (with
    ``eval_samples`` and ``estimator``), comparable across objectives.
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


def as_pixels(images, data_dim: int, name: str = "images", where: str = WHERE) -> torch.Tensor:
    """uint8 [N, D] pixel intensities from uint8 [N, H, W] / [N, D] images or float images in [0, 1]
    (binary float images map to 0 and 255). Needs at least one image."""
    if not isinstance(images, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{where}: {name} must be a torch.Tensor or numpy array, got {type(images).__name__}")
    t = torch.as_tensor(images)
    if t.dim() > 2:
        t = t.reshape(t.shape[0], -1)
    if t.dim() != 2 or t.shape[1] != data_dim:
        raise ValueError(f"{where}: {name} must have {data_dim} pixels per image, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{where}: {name} must hold at least one image, got shape {tuple(t.shape)}")
    if t.dtype != torch.uint8:
        if not t.is_floating_point():
            raise TypeError(f"{where}: {name} must be uint8 or float in [0, 1], got {t.dtype}")
        if torch.isnan(t).any() or t.min() < 0 or t.max() > 1:
            raise ValueError(f"{where}: float {name} must lie in [0, 1] without NaN")
        t = (t * 255).round().to(torch.uint8)
    return t.contiguous()


def _labels(y, n: int, cond_dim: int, name: str) -> Optional[torch.Tensor]:
    if cond_dim == 0:
        if y is not None:
            raise ValueError(f"{WHERE}: {name} given to an unconditional VAE")
        return None
    if y is None:
        raise ValueError(f"{WHERE}: a conditional VAE needs {name}")
    if not isinstance(y, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{WHERE}: {name} must be a torch.Tensor or numpy array, got {type(y).__name__}")
    y = torch.as_tensor(y)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{WHERE}: {name} must hold integer classes, got {y.dtype}")
    y = y.long().contiguous()
    if y.shape != (n,):
        raise ValueError(f"{WHERE}: {name} must have shape [{n}], got {tuple(y.shape)}")
    return y


def _generator_state(model, seed: Optional[int]) -> torch.Tensor:
    """fit(seed=s) (re)seeds the loop's generator; fit() continues the stored one, or draws a seed."""
    if seed is None and getattr(model, "generator_state_", None) is not None:
        return model.generator_state_
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())  # follows torch.manual_seed
    return torch.Generator().manual_seed(seed).get_state()


def resolve_options(options, overrides) -> TrainOptions:
    """``options`` (a TrainOptions or None) with fit's keyword overrides applied, validated."""
    if options is None:
        options = TrainOptions()
    elif not isinstance(options, TrainOptions):
        raise TypeError(f"{WHERE}: options must be a fastvae.TrainOptions or None, got {_checks._show(options)}")
    unknown = sorted(set(overrides) - set(option_names()))
    if unknown:
        raise TypeError(f"{WHERE}: unexpected keyword argument {unknown[0]!r}; the training options are "
                        f"{list(option_names())}")
    return replace(options, **overrides).validate(WHERE)


def check_run_args(seed, seed_max, progress, callback, checkpoint, checkpoint_every):
    """fit's run arguments, checked the same way by both loops: returns (seed, checkpoint_every)."""
    c = _checks
    if seed is not None:
        seed = c.integer(WHERE, "seed", seed, min=0, max=seed_max)
    c.flag(WHERE, "progress", progress)
    if callback is not None and not callable(callback):
        raise TypeError(f"{WHERE}: callback must be callable or None, got {c._show(callback)}")
    if checkpoint is not None:
        from .checkpoint import check_path
        check_path(WHERE, checkpoint)
        checkpoint_every = 1 if checkpoint_every is None else c.integer(WHERE, "checkpoint_every",
                                                                         checkpoint_every, min=1)
    elif checkpoint_every is not None:
        raise ValueError(f"{WHERE}: checkpoint_every needs a checkpoint path, got checkpoint=None")
    return seed, checkpoint_every


def _network_args(val_images, val_labels, test_labels) -> dict:
    """fit's arguments that a model with custom networks does not take: refused unless left at their defaults."""
    given = [n for n, v in (("val_images", val_images), ("val_labels", val_labels), ("test_labels", test_labels))
             if v is not None]
    if given:
        raise ValueError(f"{WHERE}: {', '.join(given)} do not apply to a model with custom networks yet")
    return {}


def _check_finite_parameters(model) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise ValueError(f"{WHERE}: parameter {name} contains NaN or inf; fit refuses a model that already "
                             "diverged (load a checkpoint or re-initialize)")


def _check_latent_options(model, opts: TrainOptions) -> None:
    """Categorical latents train the ELBO with the analytic KL; the temperature options belong to them only."""
    if getattr(model, "latent", "gaussian") == "categorical":
        if opts.objective != "elbo":
            raise ValueError(f"{WHERE}: a categorical latent trains objective='elbo' only (the IWAE bound needs the "
                             f"density of the relaxed sample), got {opts.objective!r}")
        if opts.estimator != "analytic":
            raise ValueError(f"{WHERE}: a categorical latent has the analytic KL to the uniform prior only; estimator "
                             f"must be 'analytic', got {opts.estimator!r}")
        if opts.free_bits > 0:
            raise ValueError(f"{WHERE}: free_bits applies to Gaussian latents only (one group per latent dimension)")
        return
    default = TrainOptions()
    changed = [n for n in ("temperature", "temperature_min", "anneal_rate", "anneal_every", "hard")
               if getattr(opts, n) != getattr(default, n)]
    if changed:
        raise ValueError(f"{WHERE}: {', '.join(changed)} apply to categorical latents only (this model's latent is "
                         f"'{getattr(model, 'latent', 'gaussian')}')")


def fit(model, train_images, train_labels=None, options: Optional[TrainOptions] = None, *, test_images=None,
        test_labels=None, val_images=None, val_labels=None, seed: Optional[int] = None, progress: bool = True,
        callback: Optional[Callable] = None, checkpoint=None, checkpoint_every: Optional[int] = None,
        process_group="auto", **overrides) -> History:
    """Train ``model`` in place with Adam (torch.optim.Adam's update) on binarized images, in C++.

    Each epoch shuffles the training images (``torch.randperm``), cuts them into minibatches (the last one
    smaller; a ``batch_size`` above the number of images means one batch of all of them), binarizes each
    pixel as ``pixel > threshold`` on the 0..255 scale (127 = rounding x/255, as the homeworks do; 128 is
    ESE 546's "greater than 128"), draws ``n_samples`` reparameterized samples per image (``normal_``, one
    [L, batch, Z] draw per batch) and takes one Adam step on ``-mean(rec - kl_weight * kl)``.

    Training state persists on the model, so successive calls continue training exactly:
    ``model.optimizer_state_`` (:class:`AdamState`), ``model.generator_state_`` (the loop's generator,
    which also draws the noise of the test / validation evaluations), ``model.history_``. Two calls
    ``fit(epochs=1, seed=s); fit(epochs=1)`` give bit-identical parameters to ``fit(epochs=2, seed=s)``, as does
    ``fit(epochs=1, seed=s); save(p); VAE.load(p).fit(epochs=1)`` (same thread count, same data, same settings).

    Threads: the weights change only while ``fit`` holds the model's lock, one epoch at a time;
    ``encode``, ``decode``, ``elbo`` and ``log_likelihood`` take the same lock, so a reader in another
    thread waits for the end of the current epoch and always sees the weights of a completed epoch.
    A ``"step"`` callback runs inside an epoch: there the input layer's weight is not yet written back
    (it is trained transposed), so read the model from ``"epoch"`` callbacks.

    Args:
        train_images: uint8 [N, D] or [N, H, W] intensities (or float in [0, 1]); N >= 1.
        train_labels: int64 [N] classes, for a conditional VAE only.
        options: a :class:`fastvae.TrainOptions` (default ``TrainOptions()``); the keyword ``overrides``
            are its fields (``fit(model, x, epochs=3, lr=1e-4)``) and replace its values:
        epochs: number of passes (int >= 0). batch_size, n_samples: ints >= 1.
        lr (> 0), betas (two numbers in [0, 1)), eps (>= 0), weight_decay (>= 0): Adam's settings, finite.
        threshold: int in [0, 255]. estimator: ``"analytic"``, ``"mc"`` or ``"stl"``.
        pixels: ``"threshold"`` (pixel > threshold, default), ``"dynamic"`` (x ~ Bernoulli(pixel / 255) drawn
            afresh from the loop's generator each time an image is used, as u < pixel / 255 with one
            ``uniform_`` of [batch, D] before the batch's noise; evaluations draw the same way per chunk of
            500 images) or ``"intensity"`` (pixel / 255, needs ``likelihood="continuous_bernoulli"``).
        objective: ``"elbo"`` or ``"iwae"`` (the IWAE bound with ``k`` samples per image and the encoder
            gradient ``iwae_estimator``: ``"reparam"``, ``"stl"`` or ``"dreg"``; see :func:`fastvae.iwae`).
        kl_warmup: updates over which the KL weight rises linearly from 0 to ``kl_weight`` (0: off; ELBO only).
        temperature, temperature_min, anneal_rate, anneal_every, hard: the Gumbel-softmax schedule of a
            categorical latent (see :class:`fastvae.TrainOptions`); each batch then draws uniform noise
            [n_samples, batch, N*K] (``uniform_``, clamped to float32's smallest normal number) instead of
            normal eps; test and validation ELBOs use hard (Gumbel-max) samples, i.e. the discrete model's ELBO.
            ValueError if given to a Gaussian latent, or with objective 'iwae' / estimator other than 'analytic'.
        test_images, test_labels: evaluated after every epoch (test ELBO).
        val_images, val_labels, eval_every: validation log-likelihood and KL whenever the optimizer's
            step count is a multiple of ``eval_every`` (ESE 546 HW5 (vi)); both or neither.
        eval_samples: Monte Carlo samples per image in the evaluations.
        kl_weight: weight beta of the KL in the training objective ``rec - beta * kl`` (1 = the ELBO;
            beta > 1 is the beta-VAE of Higgins et al. 2017). Recorded terms and ELBOs stay unweighted.
        seed: int in [0, 2**64) seeding the loop's generator (shuffling, noise); None continues the
            model's generator (or, on a model never fitted, draws a seed from torch's global generator).
        progress: show a tqdm bar. callback: ``callback(event, info)`` called with ``"step"`` every
            ``callback_every`` updates (0: never) and ``"epoch"`` after each epoch; raising stops training.
        checkpoint, checkpoint_every: save the model (``VAE.save``, atomic) to ``checkpoint`` after every
            ``checkpoint_every``-th epoch (default 1) and after the last one. An interruption leaves
            the last checkpoint intact.
        process_group: data-parallel training (docs/scaling.md). ``"auto"`` (default): when
            torch.distributed is initialised with more than one rank (e.g. under ``torchrun``), train data-parallel
            over the default group; None: this process alone; or a ProcessGroup. Every rank passes the same
            data, options and seed: each trains on its share of every global minibatch (rank r of W: rows
            floor(r n / W) to floor((r + 1) n / W) of a batch of n), gradients are summed with one all_reduce
            per update, and all ranks keep identical parameters, equal to one process's up to the order of
            the sums. Weights, Adam state and generator start from rank 0's. Only rank 0 draws the progress bar
            and writes the checkpoint; callbacks run on every rank. A rank that fails or stops makes the
            others raise (torch.distributed's error, at the latest after the group's timeout).

    Returns:
        :class:`History` of this call (also appended to ``model.history_``).

    Raises:
        TypeError: an argument of the wrong kind (``epochs=1.5``, a string, float labels), a model that
            is not float32 on the CPU. ValueError: a value out of range, empty image sets, labels
            missing or given to an unconditional VAE, parameters already holding NaN or inf.
        TrainingDivergedError (a FloatingPointError): a non-finite loss or gradient; the message names
            the update, the model keeps the parameters after the previous update and ``model.history_``
            the completed updates. RuntimeError: labels out of range (from the C++ checks).
        KeyboardInterrupt: re-raised after a clean stop between two updates; the model and
            ``model.history_`` keep everything done so far.
    """
    from .networks import NetworkVAE
    if isinstance(model, NetworkVAE):  # the user's own networks: the Python loop around the heads
        if train_labels is not None:
            raise ValueError(f"{WHERE}: a model with custom networks is unconditional; got train_labels")
        from .network_training import fit as fit_networks
        return fit_networks(model, train_images, options, test_images=test_images, seed=seed, progress=progress,
                            callback=callback, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                            process_group=process_group, **_network_args(val_images, val_labels, test_labels),
                            **overrides)
    w = model.encoder_head.weight
    if w.dtype != torch.float32 or w.device.type != "cpu":
        raise TypeError(f"{WHERE}: fit trains float32 models on the CPU; convert with model.float()")
    opts = resolve_options(options, overrides)
    if opts.pixels == "intensity" and model.likelihood == "bernoulli":
        raise ValueError(f"{WHERE}: pixels='intensity' feeds intensities in [0, 1], which the bernoulli likelihood "
                         "cannot take; use pixels='threshold' or 'dynamic', or a VAE with a continuous "
                         "likelihood ('continuous_bernoulli' or 'gaussian')")
    _check_latent_options(model, opts)
    epochs, batch_size, eval_every = opts.epochs, opts.batch_size, opts.eval_every
    seed, checkpoint_every = check_run_args(seed, 2**64 - 1, progress, callback, checkpoint, checkpoint_every)
    if (val_images is None) != (eval_every == 0):
        raise ValueError(f"{WHERE}: val_images and eval_every >= 1 go together, got "
                         f"val_images={'None' if val_images is None else 'given'} and eval_every={eval_every}")
    xs = as_pixels(train_images, model.data_dim, "train_images")
    ys = _labels(train_labels, xs.shape[0], model.cond_dim, "train_labels")
    xt = None if test_images is None else as_pixels(test_images, model.data_dim, "test_images")
    if xt is None and test_labels is not None:
        raise ValueError(f"{WHERE}: test_labels given without test_images")
    yt = None if xt is None else _labels(test_labels, xt.shape[0], model.cond_dim, "test_labels")
    xv = None if val_images is None else as_pixels(val_images, model.data_dim, "val_images")
    if xv is None and val_labels is not None:
        raise ValueError(f"{WHERE}: val_labels given without val_images")
    yv = None if xv is None else _labels(val_labels, xv.shape[0], model.cond_dim, "val_labels")
    _check_finite_parameters(model)
    parallel = DataParallel(resolve_group(WHERE, process_group))
    if parallel.world > 1 and opts.free_bits > 0:
        raise ValueError(f"{WHERE}: free_bits needs each minibatch's KL per dimension before the backward pass, "
                         "which data-parallel training does not gather; use free_bits=0 or one process")

    params = model.flat_parameters()
    state = getattr(model, "optimizer_state_", None)
    if state is None:
        state = model.optimizer_state_ = AdamState.zeros(params)
    gen_state = _generator_state(model, seed)
    if parallel.world > 1:
        gen_state = gen_state.clone()
        parallel.broadcast_([*params, *state.exp_avg, *state.exp_avg_sq, gen_state])
        step = torch.tensor([float(state.step)], dtype=torch.float64)
        parallel.broadcast_([step])
        state.step = int(step.item())
    engine_options = replace(opts, epochs=1).engine_dict()  # one epoch per C++ call
    model.train_options_ = opts

    n_images = xs.shape[0]
    per_epoch = -(-n_images // min(batch_size, n_images))
    bar = tqdm(total=epochs * per_epoch, unit="update", disable=not (progress and parallel.is_main), leave=False)
    lock = model_lock(model)
    start_step, prev = state.step, model.history_
    hist = History()
    epoch_info = []

    def on_event(event, info):
        info["update"] = info.get("update", 0) + len(hist.update_rec)
        info["epoch"] += len(hist.train_elbo)
        if event == "step":
            bar.update(info["update"] - bar.n)
            bar.set_postfix(epoch=info["epoch"] + 1, elbo=f"{info['rec'] - info['kl']:.2f}", refresh=False)
            if callback is not None:
                callback(event, info)
        else:  # delivered once the epoch's weights are written back (after the C++ call)
            del info["update"]
            epoch_info.append(info)

    try:
        for _ in range(epochs):
            with lock, torch.no_grad():
                out = _C.train_vae(params, state.exp_avg, state.exp_avg_sq, state.step, model.spec().as_dict(),
                                   xs, ys, xt, yt, xv, yv, engine_options, gen_state, on_event,
                                   **parallel.loop_args())
            state.step = out["step"]
            gen_state = model.generator_state_ = out["generator_state"]
            part = History(out["update_rec"].numpy(), out["update_kl"].numpy(), out["train_elbo"].numpy(),
                           out["test_elbo"].numpy(), out["epoch_seconds"].numpy(),
                           np.asarray(out["val_update"], dtype=np.int64) - start_step - len(hist.update_rec),
                           np.asarray(out["val_rec"]), np.asarray(out["val_kl"]))
            hist = hist.extend(part, len(hist.update_rec))
            model.history_ = hist if prev is None else prev.extend(hist, len(prev.update_rec))
            if out["error"] is not None:
                raise out["error"]
            if out["diverged"] is not None:
                raise TrainingDivergedError(
                    f"{WHERE}: non-finite {out['diverged']} at update {state.step + 1} (epoch "
                    f"{len(hist.train_elbo) + 1} of this fit); parameters are those after update {state.step}; "
                    f"try a smaller learning rate")
            done = len(hist.train_elbo)
            if checkpoint is not None and (done % checkpoint_every == 0 or done == epochs):
                if parallel.is_main:
                    model.save(checkpoint)
                parallel.barrier()
            for info in epoch_info:
                if callback is not None:
                    callback("epoch", info)
            epoch_info.clear()
    finally:
        bar.close()
    return hist
