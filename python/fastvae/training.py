"""The one training driver of every fastvae model kind.

:func:`fit` owns everything a training run shares: options (validated once, :mod:`fastvae.options`), the data
(images to bytes, labels), the data order (``torch.randperm`` each epoch), the run's generator, epochs,
callbacks and the progress bar, checkpoint cadence, the :class:`fastvae.History`, divergence handling and the
torch.distributed setup. A model kind supplies a *stepper* (``model._stepper(options, data, state, parallel)``)
that runs one epoch's updates and evaluates data sets: the fused C++ trainer for the MLP VAE
(``fastvae._C.MlpTrainer``), a torch step for users' networks. The stepper declares the options it implements
(``model._traits(world)``, a :class:`fastvae.options.Traits`); the others are refused here, before any stepper
is built, by the rules of :mod:`fastvae.options`.

The training state of a model is its weights, ``model.optimizer_state_`` (:class:`fastvae.AdamState`),
``model.generator_state_`` (the run's generator), ``model.history_`` and ``model.train_options_``;
``model.save`` writes all of it (:mod:`fastvae.checkpoint`), so a saved run continues exactly.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from . import _checks, options as options_module, pixels
from ._interrupts import deferred_sigint
from ._lock import inside_epoch, model_lock, owning
from .distributed import DataParallel, resolve_group
from .options import TrainOptions
from .types import AdamState, History, TrainingDivergedError

WHERE = "fastvae.fit"


@dataclass
class TrainData:
    """A fit's data as the steppers take it: uint8 [N, D] images on the CPU and int64 [N] labels (None for an
    unconditional model), for training, test and validation."""

    x: torch.Tensor
    y: Optional[torch.Tensor]
    test_x: Optional[torch.Tensor] = None
    test_y: Optional[torch.Tensor] = None
    val_x: Optional[torch.Tensor] = None
    val_y: Optional[torch.Tensor] = None


@dataclass
class EpochResult:
    """What a stepper's epoch did: ``step`` (Adam's step count after it), per-update ``update_rec`` and
    ``update_kl`` (float64 arrays) of the updates it did, ``completed``, validations (``val_done``: after how many of the epoch's updates, counted from its start), and why it stopped
    early: ``interrupted`` (the SIGINT flag was set; also possible after a completed epoch's last update),
    ``diverged`` ("loss", "gradient" or "parameters" at update step + 1, the update dropped whole) or ``error``
    (an exception from a callback). ``elbo_sum``: sum over the epoch's images so far of the minibatch ELBO (the
    epoch's train ELBO is elbo_sum / N once completed). ``threads``: the thread count the updates ended with."""

    step: int
    update_rec: np.ndarray
    update_kl: np.ndarray
    completed: bool
    elbo_sum: float = 0.0
    interrupted: bool = False
    val_done: tuple = ()
    val_rec: tuple = ()
    val_kl: tuple = ()
    diverged: Optional[str] = None
    error: Optional[BaseException] = None
    threads: int = 0


class _Column:
    """A growing float64 / int64 column: appends are amortised O(1) (the long runs record millions of updates), and
    ``view()`` is the part written so far, which later appends never touch."""

    def __init__(self, dtype, initial=()):
        self.dtype = dtype
        initial = np.asarray(initial, dtype=dtype)
        self.buf = np.empty(max(16, 2 * len(initial)), dtype=dtype)
        self.buf[:len(initial)] = initial
        self.n = len(initial)

    def add(self, values):
        v = np.asarray(values, dtype=self.dtype).reshape(-1)
        need = self.n + len(v)
        if need > len(self.buf):
            grown = np.empty(max(need, 2 * len(self.buf)), dtype=self.dtype)
            grown[:self.n] = self.buf[:self.n]
            self.buf = grown
        self.buf[self.n:need] = v
        self.n = need

    def view(self) -> np.ndarray:
        return self.buf[:self.n]


class _Recorder:
    """The model's History: what earlier fits recorded, then this fit's updates, validations and epochs."""

    def __init__(self, previous: Optional[History]):
        self.columns = {n: _Column(History.dtype(n),
                                   () if previous is None else getattr(previous, n)) for n in History.names()}
        self.updates = 0 if previous is None else len(previous.update_rec)

    def add(self, name, values):
        self.columns[name].add(values)

    def history(self) -> History:
        return History(**{n: c.view() for n, c in self.columns.items()})


def _run_args(seed, progress, callback, checkpoint, checkpoint_every):
    """fit's run arguments, each checked by its constraint; returns (seed, checkpoint_every)."""
    if seed is not None:
        seed = _checks.integer(WHERE, "seed", seed, min=0, max=2**64 - 1)
    _checks.flag(WHERE, "progress", progress)
    if callback is not None and not callable(callback):
        raise TypeError(f"{WHERE}: callback must be callable or None, got {_checks._show(callback)}")
    if checkpoint is not None:
        _checks.file_path(WHERE, checkpoint, must_exist=False)
        checkpoint_every = 1 if checkpoint_every is None else _checks.integer(WHERE, "checkpoint_every",
                                                                              checkpoint_every, min=1)
    elif checkpoint_every is not None:
        raise ValueError(f"{WHERE}: checkpoint_every needs a checkpoint path, got checkpoint=None")
    return seed, checkpoint_every


def _data(model, train_images, train_labels, test_images, test_labels, val_images, val_labels) -> TrainData:
    """The images as bytes [N, D] (D: the model's ``data_dim``, or the images' own for models with custom
    networks) and labels checked against the model's condition (``cond_dim`` classes, 0: unconditional)."""
    d, cond = getattr(model, "data_dim", None), getattr(model, "cond_dim", 0)
    if isinstance(train_images, torch.utils.data.Dataset):
        train_images, dataset_labels = pixels.from_dataset(train_images, WHERE, "train_images")
        if dataset_labels is not None and cond:  # an unconditional model has no use for a dataset's labels
            if train_labels is not None:
                raise ValueError(f"{WHERE}: train_labels given with a dataset of (image, label) pairs")
            train_labels = dataset_labels

    def labels(y, n, name):
        if not cond:
            if y is not None:
                raise ValueError(f"{WHERE}: {name} given to an unconditional model")
            return None
        if y is None:
            raise ValueError(f"{WHERE}: a conditional VAE needs {name}")
        y = pixels.as_labels(y, n, name, WHERE)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= cond):
            raise ValueError(f"{WHERE}: {name} must lie in [0, {cond}), got values in [{int(y.min())}, "
                             f"{int(y.max())}]")
        return y

    def images(x, y, name):
        if x is None:
            if y is not None:
                raise ValueError(f"{WHERE}: {name.replace('images', 'labels')} given without {name}")
            return None, None
        x = pixels.as_images(x, d, name, WHERE)
        return x, labels(y, x.shape[0], name.replace("images", "labels"))

    x, y = images(train_images, train_labels, "train_images")
    d = x.shape[1]
    return TrainData(x, y, *images(test_images, test_labels, "test_images"),
                     *images(val_images, val_labels, "val_images"))


def _generator(model, seed: Optional[int]) -> torch.Generator:
    """fit(seed=s) (re)seeds the run's generator; fit() continues the model's, or draws a seed."""
    gen = torch.Generator()
    if seed is None and getattr(model, "generator_state_", None) is not None:
        gen.set_state(model.generator_state_)
    else:
        gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    return gen


def fit(model, train_images, options: Optional[TrainOptions] = None, *, train_labels=None, test_images=None,
        test_labels=None, val_images=None, val_labels=None, seed: Optional[int] = None, progress: bool = True,
        callback: Optional[Callable] = None, checkpoint=None, checkpoint_every: Optional[int] = None,
        process_group="auto", **overrides) -> History:
    """Train ``model`` in place with Adam (torch.optim.Adam's update, Kingma & Ba 2015); ``fastvae.fit`` and every
    model's ``fit`` method. ``model`` is a :class:`fastvae.VAE` (its C++ trainer) or a model with custom networks
    (``VAE.from_networks``: a torch step on the networks' device).

    Each epoch shuffles the training images (``torch.randperm`` from the run's generator), cuts them into
    minibatches of ``batch_size`` (the last one smaller; a ``batch_size`` above the number of images means one
    batch of all of them), turns each image into the model's input by ``pixels`` (:mod:`fastvae.pixels`), draws
    the reparameterization noise of the batch from the same generator and takes one Adam step on the negative
    objective's minibatch mean.

    Training state persists on the model, so successive calls continue training exactly:
    ``model.optimizer_state_`` (:class:`fastvae.AdamState`), ``model.generator_state_`` (the run's generator, which
    also draws the noise of the test / validation evaluations), ``model.history_``. ``fit(epochs=1, seed=s);
    fit(epochs=1)`` gives bit-identical parameters to ``fit(epochs=2, seed=s)``, as does ``fit(epochs=1, seed=s);
    save(p); load(p).fit(epochs=1)`` (same thread count, same data, same settings).

    State: the weights, Adam state, step, history and generator change together, at update boundaries only. A
    parameter with ``requires_grad=False`` is not updated (as with torch.optim). Threads: a model has one owner; the
    model's objectives, ``encode``, ``decode`` and ``save`` in another thread wait for the next epoch boundary. A
    ``"step"`` callback runs inside an epoch: read or save the model from ``"epoch"`` callbacks.

    Args:
        train_images: uint8 [N, D] or [N, H, W] intensities, or floats in [0, 1] (p = round(255 x)); a tensor, a
            numpy array, or a ``torch.utils.data.Dataset`` of images or (image, label) pairs (stacked in memory;
            its labels go to a conditional VAE and are ignored by an unconditional one). N >= 1.
        options: a :class:`fastvae.TrainOptions` (default ``TrainOptions()``); the keyword ``overrides`` are its
            fields (``fit(model, x, epochs=3, lr=1e-4)``) and replace its values. Options a model kind does not
            implement, or that do not apply to its latent or likelihood, are a ValueError (:data:`fastvae.options.RULES`).
        train_labels: keyword-only; int64 [N] classes in [0, cond_dim), for a conditional VAE only.
        test_images, test_labels: evaluated after every epoch (test ELBO, ``eval_samples`` samples per image).
        val_images, val_labels: validation log-likelihood and KL whenever the optimizer's step count is a multiple
            of ``eval_every`` (ESE 546 HW5 (vi)); both or neither. MLP VAEs only.
        seed: int in [0, 2**64) seeding the run's generator; None continues the model's generator (or, on a model
            never fitted, draws a seed from torch's global generator).
        progress: show a tqdm bar (``tqdm.auto``: a widget in Jupyter, text in a terminal).
        callback: ``callback(event, info)``, called with ``"step"`` every ``callback_every`` updates (info:
            update and epoch counted in this fit, rec, kl) and ``"epoch"`` after each epoch (epoch, train_elbo,
            test_elbo, seconds, threads); raising stops training at the last update boundary.
        checkpoint, checkpoint_every: save the model (``model.save``, atomic) to ``checkpoint`` after every
            ``checkpoint_every``-th epoch (default 1) and after the last one; an interruption leaves the last
            checkpoint intact.
        process_group: data-parallel training (docs/scaling.md). ``"auto"`` (default): the default group when
            torch.distributed is initialised with more than one rank (e.g. under ``torchrun``); None: this process
            alone; or a ProcessGroup. Every rank passes the same data, options and seed and trains on its share of
            each global minibatch (rank r of W: rows floor(r n / W) to floor((r + 1) n / W) of a batch of n);
            gradients are summed with one all_reduce per update; weights, Adam state and generator start from rank
            0's; only rank 0 draws the progress bar and writes the checkpoint.

    Returns:
        :class:`fastvae.History` of this call (also appended to ``model.history_``).

    Raises:
        TypeError: an argument of the wrong kind (``epochs=1.5``, a string, float labels, labels passed
            positionally), a model that is not a fastvae model. ValueError: a value out of range, options that do
            not apply, a real option that is inf or 0 in the model's arithmetic (``lr=1e308`` in float32), empty
            image sets, labels missing or given to an unconditional model, parameters already holding NaN or inf,
            other training images than the epoch in progress has (pass ``seed=`` to start anew).
        RuntimeError: the model is already being fitted (in another thread, or this is a fit's callback).
        TrainingDivergedError (a FloatingPointError): a non-finite loss, gradient or result of the Adam step; the
            update is dropped and the model is exactly a run stopped after the previous update (weights, Adam
            state, history, generator); the message names the update and the cause.
        KeyboardInterrupt: Ctrl-C (in the main thread) stops the fit at the next update boundary and is raised
            once the model is whole; ``model.epoch_state_`` keeps the epoch in progress, which the next ``fit``
            (without a seed) finishes first, so the run continues exactly.
    """
    opts = options_module.resolve(options, overrides, WHERE)
    seed, checkpoint_every = _run_args(seed, progress, callback, checkpoint, checkpoint_every)
    if (val_images is None) != (opts.eval_every == 0):
        raise ValueError(f"{WHERE}: val_images and eval_every >= 1 go together, got "
                         f"val_images={'None' if val_images is None else 'given'} and eval_every={opts.eval_every}")
    data = _data(model, train_images, train_labels, test_images, test_labels, val_images, val_labels)
    model._check_trainable(WHERE)
    parallel = DataParallel(resolve_group(WHERE, process_group))
    options_module.check_rules(opts, model._traits(parallel.world), WHERE)
    with owning(model, WHERE), deferred_sigint(raise_at_exit=False) as sigint:
        with model_lock(model), torch.no_grad():
            params = model.flat_parameters()
            state = model.optimizer_state_ if model.optimizer_state_ is not None else AdamState.zeros(params)
            gen = _generator(model, seed)
            pending = _resume_point(model, seed, data.x.shape[0])
            stepper = model._stepper(opts, data, state, parallel, sigint.flag)
            if parallel.world > 1:  # every rank starts from rank 0's weights, Adam state and generator
                gen_state = gen.get_state()
                step = torch.tensor([float(state.step)], dtype=torch.float64)
                parallel.broadcast_([*params, *state.exp_avg, *state.exp_avg_sq, gen_state, step])
                gen.set_state(gen_state)
                state.step = int(step.item())
            model.optimizer_state_ = state
            model.train_options_ = opts
        run = _Run(model, stepper, data, opts, state, gen, parallel, pending, sigint)
        history = run.epochs(progress, callback, checkpoint, checkpoint_every)
    if run.interrupted:  # the model is whole at its last update boundary
        raise KeyboardInterrupt
    return history


def _resume_point(model, seed, n):
    """The epoch a previous fit stopped inside (Ctrl-C, divergence, a callback's exception), to be finished first:
    its order, updates done, ELBO sum and seconds; None to start a new epoch. fit(seed=s) starts a new run stream
    and drops it."""
    pending = model.epoch_state_
    if pending is None or seed is not None:
        model.epoch_state_ = None
        return None
    if pending["order"].shape[0] != n:
        raise ValueError(f"{WHERE}: this model's last fit stopped inside an epoch over {pending['order'].shape[0]} "
                         f"images; fit continues that epoch, so pass the same training images (got {n}), or pass "
                         "seed= to start a new run")
    return pending


class _Run:
    """The epochs of one fit: order, the stepper's updates, test evaluation, History, callbacks, checkpoints. What
    the model shows (weights, Adam state, step, history, generator, the epoch in progress) changes under the model's
    lock, at update boundaries only."""

    def __init__(self, model, stepper, data, opts, state, gen, parallel, pending, sigint):
        self.model, self.stepper, self.data, self.opts = model, stepper, data, opts
        self.state, self.gen, self.parallel, self.pending, self.sigint = state, gen, parallel, pending, sigint
        self.record = _Recorder(model.history_)
        self.first_update = self.record.updates
        self.this_fit = _Recorder(None)
        self.lock = model_lock(model)
        self.done = 0  # updates of this fit
        self.interrupted = False
        self.threads = torch.get_num_threads()  # shown in the progress bar; each epoch reports its own

    def commit(self, name, values):
        self.record.add(name, values)
        self.this_fit.add(name, values if name != "val_update" else np.asarray(values) - self.first_update)

    def publish(self, epoch_state):
        """The bookkeeping of the boundary the stepper stopped at (under the lock)."""
        self.model.generator_state_ = self.gen.get_state()
        self.model.epoch_state_ = epoch_state
        self.model.history_ = self.record.history()

    def epochs(self, progress, callback, checkpoint, checkpoint_every) -> History:
        opts, data, state, parallel = self.opts, self.data, self.state, self.parallel
        n = data.x.shape[0]
        per_epoch = -(-n // min(opts.batch_size, n))
        bar = tqdm(total=opts.epochs * per_epoch, unit="update", disable=not (progress and parallel.is_main),
                   leave=False)
        try:
            if data.val_x is not None and state.step == 0:  # the validation curve starts before the first update
                with self.lock:
                    rec, kl = self.stepper.evaluate(data.val_x, data.val_y, self.gen)
                    self.commit("val_update", [self.record.updates])
                    self.commit("val_rec", [rec])
                    self.commit("val_kl", [kl])
                    self.publish(self.model.epoch_state_)
            for epoch in range(opts.epochs):
                if self.sigint.requested:
                    self.interrupted = True
                    break
                if not self.epoch(epoch, bar, callback):
                    break
                if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == opts.epochs):
                    if parallel.is_main:
                        self.model.save(checkpoint)
                    parallel.barrier()
                if callback is not None:
                    callback("epoch", self.epoch_info)
        finally:
            bar.close()
        return self.this_fit.history()

    def epoch(self, epoch, bar, callback) -> bool:
        """One epoch (or the rest of the one in progress); False if it stopped at an update boundary (Ctrl-C).
        Raises the stepper's divergence or a callback's exception once the model is whole."""
        opts, data, state = self.opts, self.data, self.state
        n = data.x.shape[0]
        t0 = time.perf_counter()
        if self.pending is not None:
            order, start, elbo_sum, seconds = (self.pending[k] for k in ("order", "done", "elbo_sum", "seconds"))
            self.pending = None
        else:
            order = torch.randperm(n, generator=self.gen) if opts.shuffle else torch.arange(n)
            start, elbo_sum, seconds = 0, 0.0, 0.0
        before = self.done

        def on_step(k, rec, kl):
            bar.update(before + k - start - bar.n)
            bar.set_postfix(epoch=epoch + 1, elbo=f"{rec - kl:.2f}", threads=self.threads, refresh=False)
            if callback is not None:
                callback("step", {"update": before + k - start, "epoch": epoch, "rec": rec, "kl": kl})

        with self.lock:
            with inside_epoch(self.model):
                out = self.stepper.epoch(order, self.gen, state.step, on_step, start, elbo_sum)
            state.step = out.step
            self.threads = out.threads
            self.commit("update_rec", out.update_rec)
            self.commit("update_kl", out.update_kl)
            self.commit("val_update", self.record.updates - start + np.asarray(out.val_done, dtype=np.int64))
            self.commit("val_rec", out.val_rec)
            self.commit("val_kl", out.val_kl)
            self.record.updates += len(out.update_rec)
            self.done += len(out.update_rec)
            seconds += time.perf_counter() - t0
            self.publish(None if out.completed else
                         {"order": order, "done": start + len(out.update_rec), "elbo_sum": out.elbo_sum,
                          "seconds": seconds})
        if out.error is not None:
            raise out.error
        if out.diverged is not None:
            raise TrainingDivergedError(_diverged_message(out.diverged, state.step, epoch))
        if not out.completed:
            self.interrupted = True
            return False
        t1 = time.perf_counter()
        with self.lock:
            test_elbo = float("nan")
            if data.test_x is not None:
                rec, kl = self.stepper.evaluate(data.test_x, data.test_y, self.gen)
                test_elbo = rec - kl
            seconds += time.perf_counter() - t1
            train_elbo = out.elbo_sum / n
            self.commit("train_elbo", [train_elbo])
            self.commit("test_elbo", [test_elbo])
            self.commit("epoch_seconds", [seconds])
            self.commit("epoch_threads", [out.threads])
            self.publish(None)
        self.epoch_info = {"epoch": epoch, "train_elbo": train_elbo, "test_elbo": test_elbo, "seconds": seconds,
                           "threads": out.threads}
        if out.interrupted:  # Ctrl-C after the epoch's last update: the epoch is whole, stop here
            self.interrupted = True
            return False
        return True


def _diverged_message(what, step, epoch):
    why = {"loss": "loss", "gradient": "gradient",
           "parameters": "parameters or Adam moments after the update (a learning rate or weight decay that "
                         "overflows, or eps=0 with a zero second moment)"}[what]
    return (f"{WHERE}: non-finite {why} at update {step + 1} (epoch {epoch + 1} of this fit); the model keeps the "
            f"parameters, Adam state and generator after update {step}; try a smaller learning rate")


__all__ = ["fit", "TrainData", "EpochResult", "WHERE"]
