"""Training a :class:`fastvae.networks.NetworkVAE` (the user's own networks) in Python, on whatever device its
parameters live, with fastvae's objective heads; the same TrainOptions, History, callbacks, progress bar,
checkpoints and divergence checks as the C++ loop of :mod:`fastvae.training` (which stays the MLP fast path)."""
import time
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from .options import TrainOptions
from .distributed import DataParallel, resolve_group
from .training import History, TrainingDivergedError, as_pixels, check_run_args, resolve_options

WHERE = "fastvae.fit"
# TrainOptions the Python loop has no use for: their non-default values are refused, never ignored.
_UNSUPPORTED = ("eval_every", "free_bits", "temperature", "temperature_min", "anneal_rate", "anneal_every", "hard")


def _pixels(images_u8: torch.Tensor, opts: TrainOptions, gen: torch.Generator, device, dtype) -> torch.Tensor:
    """What the model sees of uint8 pixels (TrainOptions.pixels): the rule of the C++ loop, with the loop's
    generator drawing the dynamic binarization's uniforms [n, D] on the CPU."""
    x = images_u8.to(torch.float64)
    if opts.pixels == "threshold":
        out = (x > opts.threshold).to(dtype)
    elif opts.pixels == "dynamic":
        out = (torch.rand(x.shape, generator=gen, dtype=torch.float64) < x / 255).to(dtype)
    else:
        out = (x / 255).to(dtype)
    return out.to(device)


def _evaluate(model, images, opts, gen, device, dtype) -> float:
    """Mean test ELBO (eval_samples samples per image, chunks of 500 images), no gradient."""
    total = 0.0
    with torch.no_grad():
        for s in range(0, images.shape[0], 500):
            x = _pixels(images[s:s + 500], opts, gen, device, dtype)
            eps = torch.randn(opts.eval_samples, x.shape[0], model.latent_dim, generator=gen)
            total += float(model.elbo(x, opts.eval_samples, eps=eps, estimator=opts.estimator).elbo.sum())
    return total / images.shape[0]


def fit(model, train_images, options: Optional[TrainOptions] = None, *, test_images=None, seed: Optional[int] = None,
        progress: bool = True, callback: Optional[Callable] = None, checkpoint=None,
        checkpoint_every: Optional[int] = None, process_group="auto", **overrides) -> History:
    """Train a NetworkVAE in place with torch.optim.Adam on its own device (a Python loop around the heads).

    Each epoch shuffles (``torch.randperm`` from the loop's CPU generator), cuts minibatches of ``batch_size``,
    turns pixels into the model's input per ``pixels`` (threshold, dynamic, intensity; uint8 [N, D] or [N, H, W]
    images, or floats in [0, 1]), draws the noise [L, B, Z] from the same generator (so a run is the same on every
    device) and takes one Adam step on ``-mean(rec - kl_weight * warm-up * kl)`` (objective "elbo", estimator
    analytic / mc / stl) or ``-mean(bound)`` (objective "iwae" with k samples, iwae_estimator reparam / stl /
    dreg). ``model.optimizer_`` (torch.optim.Adam), ``model.generator_state_`` and ``model.history_`` persist, and
    :meth:`NetworkVAE.save` / ``load`` carry them, so ``fit(2 epochs)`` equals ``fit(1); save; load; fit(1)``.

    Args: as :func:`fastvae.training.fit` (options and their keyword overrides, test_images, seed, progress,
    callback, checkpoint, checkpoint_every, process_group); labels, validation sets, free_bits and the categorical
    options do not apply to a NetworkVAE. Data-parallel training (docs/scaling.md) works as in the C++ loop: every
    rank draws each global minibatch and its noise, trains on its share of the rows, and one all_reduce per
    update sums the gradients and the batch's rec and kl sums; weights, Adam state and generator start from
    rank 0's; rank 0 alone draws the bar and writes the checkpoint.

    Returns: the :class:`fastvae.History` of this call (also appended to ``model.history_``).

    Raises: TypeError / ValueError for bad arguments or options that do not apply; TrainingDivergedError when
    the loss or a gradient is not finite (the parameters and Adam state stay those after the last good update).
    """
    opts = resolve_options(options, overrides)
    default = TrainOptions()
    bad = [n for n in _UNSUPPORTED if getattr(opts, n) != getattr(default, n)]
    if bad:
        raise ValueError(f"{WHERE}: {', '.join(bad)} do not apply to a model with custom networks")
    if opts.pixels == "intensity" and model.likelihood == "bernoulli":
        raise ValueError(f"{WHERE}: pixels='intensity' feeds intensities in [0, 1], which the bernoulli likelihood "
                         "cannot take; use pixels='threshold' or 'dynamic', or a continuous likelihood")
    seed, checkpoint_every = check_run_args(seed, 2**63 - 1, progress, callback, checkpoint, checkpoint_every)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{WHERE}: the model has no trainable parameters")
    if not all(torch.isfinite(p).all() for p in params):
        raise ValueError(f"{WHERE}: parameters contain NaN or inf; fit refuses a model that already diverged")
    device, dtype = model._device(), model._dtype()
    parallel = DataParallel(resolve_group(WHERE, process_group))
    xs = _as_bytes(train_images, "train_images")
    xt = None if test_images is None else _as_bytes(test_images, "test_images", xs.shape[1])

    gen = torch.Generator()
    if seed is not None or getattr(model, "generator_state_", None) is None:
        gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    else:
        gen.set_state(model.generator_state_)
    opt = getattr(model, "optimizer_", None)
    if opt is None:
        opt = torch.optim.Adam(params, lr=opts.lr, betas=opts.betas, eps=opts.eps, weight_decay=opts.weight_decay)
        pending = getattr(model, "_optimizer_state", None)
        if pending is not None:  # a loaded checkpoint's Adam state
            opt.load_state_dict(pending)
            model._optimizer_state = None
        model.optimizer_ = opt
    if parallel.world > 1:  # every rank starts from rank 0's weights, Adam moments and generator
        state = gen.get_state()
        parallel.broadcast_([*params, state, *_adam_tensors(opt, params)])
        gen.set_state(state)
    for group in opt.param_groups:  # this call's settings (the moments carry over)
        group.update(lr=opts.lr, betas=opts.betas, eps=opts.eps, weight_decay=opts.weight_decay)
    model.train_options_ = opts

    n, B = xs.shape[0], min(opts.batch_size, xs.shape[0])
    per_epoch = -(-n // B)
    L = opts.k if opts.objective == "iwae" else opts.n_samples
    rec_log, kl_log, train_elbo, test_elbo, seconds = [], [], [], [], []
    bar = tqdm(total=opts.epochs * per_epoch, unit="update", disable=not (progress and parallel.is_main), leave=False)
    prev = model.history_

    def record():
        hist = History(np.array(rec_log), np.array(kl_log), np.array(train_elbo), np.array(test_elbo),
                       np.array(seconds))
        model.history_ = hist if prev is None else prev.extend(hist, len(prev.update_rec))
        model.generator_state_ = gen.get_state()
        return hist

    try:
        for epoch in range(opts.epochs):
            t0, elbo_sum = time.perf_counter(), 0.0
            perm = torch.randperm(n, generator=gen)
            for b in range(per_epoch):
                idx = perm[b * B:(b + 1) * B]
                x = _pixels(xs[idx], opts, gen, device, dtype)
                nb = x.shape[0]
                eps = torch.randn(L, nb, model.latent_dim, generator=gen)
                # data parallel: this rank's rows [a, a + m) of the global batch, weighted by the global 1 / nb
                a, m = parallel.rank * nb // parallel.world, (parallel.rank + 1) * nb // parallel.world
                m -= a
                opt.zero_grad(set_to_none=True)
                if m == 0:
                    rec = kl = torch.zeros((), dtype=dtype, device=device)
                elif opts.objective == "iwae":
                    bound = model.iwae(x[a:a + m], opts.k, eps=eps[:, a:a + m], estimator=opts.iwae_estimator)
                    rec, kl = bound.sum(), torch.zeros((), dtype=bound.dtype, device=bound.device)
                    (-rec / nb).backward()
                else:
                    terms = model.elbo(x[a:a + m], L, eps=eps[:, a:a + m], estimator=opts.estimator)
                    rec, kl = terms.rec.sum(), terms.kl.sum()
                    warm = min(1.0, _step(opt) / opts.kl_warmup) if opts.kl_warmup > 0 else 1.0
                    (-(rec - opts.kl_weight * warm * kl) / nb).backward()
                sums = torch.stack([rec.detach(), kl.detach()]).to(torch.float64).cpu()
                if parallel.world > 1:
                    sums = _all_reduce(parallel, params, sums)
                r, k = float(sums[0]) / nb, float(sums[1]) / nb
                if not (np.isfinite(r) and np.isfinite(k)):
                    raise TrainingDivergedError(_diverged("loss", _step(opt), epoch))
                if not all(p.grad is None or torch.isfinite(p.grad).all() for p in params):
                    raise TrainingDivergedError(_diverged("gradient", _step(opt), epoch))
                opt.step()
                rec_log.append(r)
                kl_log.append(k)
                elbo_sum += (r - k) * x.shape[0]
                bar.update(1)
                done = len(rec_log)
                if callback is not None and opts.callback_every > 0 and done % opts.callback_every == 0:
                    callback("step", dict(update=done, epoch=epoch, rec=r, kl=k))
            train_elbo.append(elbo_sum / n)
            test_elbo.append(float("nan") if xt is None else _evaluate(model, xt, opts, gen, device, dtype))
            seconds.append(time.perf_counter() - t0)
            hist = record()
            if checkpoint is not None and (len(train_elbo) % checkpoint_every == 0 or epoch + 1 == opts.epochs):
                if parallel.is_main:
                    model.save(checkpoint)
                parallel.barrier()
            if callback is not None:
                callback("epoch", dict(epoch=epoch, train_elbo=train_elbo[-1], test_elbo=test_elbo[-1],
                                       seconds=seconds[-1]))
    finally:
        bar.close()
        hist = record()
    return hist


def _adam_tensors(opt, params):
    """Adam's moment tensors in parameter order (created as zeros first, so that every rank has them)."""
    out = []
    for p in params:
        st = opt.state[p]
        if not st:
            st["step"] = torch.tensor(0.0)
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        out += [st["step"], st["exp_avg"], st["exp_avg_sq"]]
    return out


def _all_reduce(parallel, params, sums):
    """Sum every gradient and the batch's (rec, kl) sums over the ranks with one all_reduce of one buffer."""
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
    flat = torch.cat([g.reshape(-1).to(torch.float64) for g in grads] + [sums.to(grads[0].device)])
    parallel.all_reduce(flat)
    off = 0
    for p, g in zip(params, grads):
        p.grad = flat[off:off + g.numel()].view_as(g).to(g.dtype)
        off += g.numel()
    return flat[off:].cpu()


def _step(opt) -> int:
    """Completed Adam steps (0 before the first)."""
    states = [s for s in opt.state.values() if "step" in s]
    return int(states[0]["step"]) if states else 0


def _diverged(what, step, epoch):
    return (f"{WHERE}: non-finite {what} at update {step + 1} (epoch {epoch + 1} of this fit); parameters are "
            f"those after update {step}; try a smaller learning rate")


def _as_bytes(images, name, data_dim=None):
    """uint8 [N, D] (from uint8 [N, D] or [N, H, W] images, or floats in [0, 1]) on the CPU."""
    if not isinstance(images, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{WHERE}: {name} must be a torch.Tensor or numpy array, got {type(images).__name__}")
    if data_dim is None:
        data_dim = int(np.prod(images.shape[1:])) if len(images.shape) >= 2 else -1
    return as_pixels(images, data_dim, name)
