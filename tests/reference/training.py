"""fit's training loop in plain PyTorch: one loop for every test that compares ``fit`` with a reference run.

It trains a :class:`reference.vae.ReferenceVAE` with torch.optim.Adam and draws from one CPU generator in the
order fastvae.training documents (``fastvae.fit``'s docstring, docs/engine.md): per epoch one ``torch.randperm``
of the training images; per minibatch (``batch_size`` images, the last one smaller, one batch of all images if
``batch_size`` exceeds them) the model's pixels (:class:`Draws.pixels`, fastvae.pixels' rule: p > threshold as
0/1, p / 255, or a fresh x ~ Bernoulli(p / 255) drawn as u < p / 255 with one uniform_ of [batch, D] float32
values in row order), then the noise of the batch, one normal_ of [L, batch, Z] (a categorical latent: one
uniform_ of [L, batch, N * K] clamped to float32's smallest normal number), L = n_samples, or k for the IWAE
objective; after each epoch the test images in chunks of 500, each chunk's pixels then its eval_samples noise.
Pixels and noise are float32, then the model's dtype. The update is one Adam step on the negative objective's
minibatch mean: -mean(rec - kl_weight * warm * kl), warm = min(1, t / kl_warmup) after t optimizer steps, the KL
term sum_j max(free_bits, KL_j) with KL_j the minibatch mean KL of latent dimension j under free bits (Kingma et
al. 2016), the categorical temperature max(temperature_min, temperature * exp(-anneal_rate * t')) with t' = t
rounded down to a multiple of anneal_every (Jang et al. 2017), or -mean(IWAE bound) (Burda et al. 2016) with the
estimator's encoder gradient.
"""
import math
from dataclasses import dataclass, field
from typing import List

import torch

TINY = torch.finfo(torch.float32).tiny  # the categorical noise's floor: -log(-log u) stays finite
EVAL_CHUNK = 500


def pixel_bytes(images):
    """The uint8 intensity of each pixel (fastvae.pixels): bytes as they are, floats x in [0, 1] as round(255 x)
    (half to even, in the images' own precision)."""
    t = torch.as_tensor(images)
    return t if t.dtype == torch.uint8 else torch.round(t * 255).to(torch.uint8)


def threshold_pixels(images, threshold=127):
    """The static binarization rule: intensity p > threshold as 0/1, float32 of the images' shape."""
    return (pixel_bytes(images) > threshold).float()


class Draws:
    """The run's generator, drawn from in the documented order."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def order(self, n):
        return torch.randperm(n, generator=self.g)

    def pixels(self, images, pixels="threshold", threshold=127):
        """What the model sees of uint8 images [b, D] (fastvae.pixels): float32 [b, D]."""
        p = pixel_bytes(images)
        if pixels == "threshold":
            return threshold_pixels(p, threshold)
        if pixels == "intensity":
            return p.float() / 255
        u = torch.empty(p.shape).uniform_(0, 1, generator=self.g)
        return (u < p.float() / 255).float()

    def noise(self, samples, batch, width, categorical=False):
        e = torch.empty(samples, batch, width)
        if categorical:
            return e.uniform_(0, 1, generator=self.g).clamp_min_(TINY)
        return e.normal_(0, 1, generator=self.g)


def temperature_at(t, temperature, temperature_min, anneal_rate, anneal_every):
    return max(temperature_min, temperature * math.exp(-anneal_rate * (t // anneal_every * anneal_every)))


@dataclass
class Run:
    """What the reference loop recorded, as fit's History names it, plus the temperatures used and how many
    (update, dimension) pairs free bits floored."""

    update_rec: List[float] = field(default_factory=list)
    update_kl: List[float] = field(default_factory=list)
    train_elbo: List[float] = field(default_factory=list)
    test_elbo: List[float] = field(default_factory=list)
    temperatures: List[float] = field(default_factory=list)
    floored: int = 0


def reference_fit(ref, images, labels=None, *, updates=None, epochs=None, batch_size=64, n_samples=1, lr=1e-3,
                  betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, threshold=127, pixels="threshold",
                  estimator="analytic", kl_weight=1.0, kl_warmup=0, free_bits=0.0, objective="elbo", k=5,
                  iwae_estimator="reparam", temperature=1.0, temperature_min=0.5, anneal_rate=0.0, anneal_every=1000,
                  hard=False, test_images=None, eval_samples=1, seed=0) -> Run:
    """Train ``ref`` in place for ``updates`` updates or ``epochs`` epochs (the first reached; one of them
    needed) with fit's options of the same names; returns the :class:`Run`."""
    assert updates is not None or epochs is not None
    images = torch.as_tensor(images).reshape(len(images), -1)
    draws = Draws(seed)
    n = images.shape[0]
    b = min(batch_size, n)
    categorical = ref.latent == "categorical"
    opt = torch.optim.Adam(ref.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    run, step, epoch = Run(), 0, 0
    while (updates is None or step < updates) and (epochs is None or epoch < epochs):
        order = draws.order(n)
        elbo_sum = 0.0
        for s in range(0, n, b):
            rows = order[s:s + b]
            x = draws.pixels(images[rows], pixels, threshold).to(ref.dtype)
            e = draws.noise(k if objective == "iwae" else n_samples, len(rows), ref.noise_dim, categorical)
            e = e.to(ref.dtype)
            y = None if labels is None else labels[rows]
            if objective == "iwae":
                rec, surrogate = ref.iwae(x, e, y, iwae_estimator)
                kl = torch.zeros_like(rec)
                loss = -surrogate.mean()
            else:
                tau = temperature_at(step, temperature, temperature_min, anneal_rate, anneal_every)
                if categorical:
                    run.temperatures.append(tau)
                rec, kl = ref.elbo_terms(x, e, y, estimator, temperature=tau, hard=hard)
                warm = min(1.0, step / kl_warmup) if kl_warmup > 0 else 1.0
                if free_bits > 0:
                    kl_j = ref.kl_per_dim(x, y).mean(0)  # minibatch mean KL per latent dimension
                    run.floored += int((kl_j <= free_bits).sum())
                    kl_term = torch.clamp(kl_j, min=free_bits).sum()  # sum_j max(lambda, KL_j)
                else:
                    kl_term = kl.mean()
                loss = -rec.mean() + kl_weight * warm * kl_term
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            run.update_rec.append(rec.mean().item())
            run.update_kl.append(kl.mean().item())
            elbo_sum += (rec - kl).sum().item()
            if updates is not None and step == updates:
                return run
        run.train_elbo.append(elbo_sum / n)
        if test_images is not None:
            run.test_elbo.append(reference_evaluate(ref, test_images, draws, pixels=pixels, threshold=threshold,
                                                    estimator=estimator, eval_samples=eval_samples))
        epoch += 1
    return run


@torch.no_grad()
def reference_evaluate(ref, images, draws, *, pixels="threshold", threshold=127, estimator="analytic",
                       eval_samples=1):
    """The mean ELBO over uint8 images with ``draws``' next pixels and noise, chunk by chunk (a categorical latent:
    hard samples, the discrete model's ELBO)."""
    images = torch.as_tensor(images).reshape(len(images), -1)
    categorical = ref.latent == "categorical"
    total = 0.0
    for s in range(0, images.shape[0], EVAL_CHUNK):
        x = draws.pixels(images[s:s + EVAL_CHUNK], pixels, threshold).to(ref.dtype)
        e = draws.noise(eval_samples, x.shape[0], ref.noise_dim, categorical).to(ref.dtype)
        total += ref.elbo(x, e, None, estimator, temperature=1.0, hard=categorical).sum().item()
    return total / images.shape[0]


def assert_trained_alike(model, ref, *, max_diff, min_close=0.97, tol=1e-5):
    """The fastvae model's weights after a few updates against the reference loop's from the same start.

    Float32 rounding alone moves the weights by <= 1e-5 here. But the two sides sum in different orders (sparse
    input layer, fused gradients, and a BLAS that picks its kernels by CPU), so a ReLU unit whose pre-activation
    comes within rounding of 0 for an image can take the other slope on one side only; that image's gradient to
    the unit's weights then differs, and so do those weights: with Adam's eps small against the gradients a step
    is about lr whatever the gradient's size, so by up to a step or two (6e-4 at lr 1e-3 seen on an AVX-512
    Xeon). So: at least min_close of each tensor within ``tol``, none beyond max_diff (the callers': a few steps).
    A wrong gradient would move nearly every weight.
    """
    theirs = ref.flat_parameters()
    ours = list(model.flat_parameters())
    assert len(ours) == len(theirs)
    for k, (p, q) in enumerate(zip(ours, theirs)):
        q = q.detach()
        close = torch.isclose(p.detach(), q, rtol=tol, atol=tol)
        assert close.float().mean() >= min_close, f"parameter {k}: {(~close).sum().item()} of {p.numel()} differ"
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=max_diff, msg=lambda m: f"parameter {k}: {m}")


def assert_same_weights(model, ref, **tol):
    """Every parameter of the fastvae model close to the reference's (fastvae's order), with ``tol``."""
    ours, theirs = list(model.flat_parameters()), ref.flat_parameters()
    assert len(ours) == len(theirs)
    for k, (p, q) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(p.detach(), q.detach(), msg=lambda m: f"parameter {k}: {m}", **tol)


__all__ = ["pixel_bytes", "threshold_pixels", "Draws", "Run", "reference_fit", "reference_evaluate", "temperature_at", "assert_trained_alike",
           "assert_same_weights", "TINY"]
