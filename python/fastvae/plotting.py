"""Matplotlib figures of the homework reproductions; every helper returns the Figure.

Each figure is titled and every axis labelled. Images are shown with the ``gray_r`` colormap
(ink dark on white) on the range [0, 1] (Bernoulli means or binary pixels). :func:`save_figure`
writes a PNG atomically, so a crashed save never leaves a partial file behind.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from ._atomic import atomic_write

__all__ = ["image_grid", "elbo_curves", "elbo_terms", "latent_scatter", "interpolation_grid",
           "reconstruction_pairs", "validation_curves", "loss_curve", "epoch_series", "save_figure", "tile"]


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _side(d: int) -> int:
    s = int(round(math.sqrt(d)))
    if s * s != d:
        raise ValueError(f"images with {d} pixels are not square; pass [N, H, W] images")
    return s


def _square_images(images) -> np.ndarray:
    """[N, H, W] float array from [N, D] (D = 784 or 196, any square) or [N, H, W] input."""
    a = _as_numpy(images)
    if a.ndim == 2:
        s = _side(a.shape[1])
        a = a.reshape(a.shape[0], s, s)
    if a.ndim != 3:
        raise ValueError(f"images must be [N, D] or [N, H, W], got shape {list(a.shape)}")
    if a.shape[0] == 0:
        raise ValueError("no images to draw")
    return a


def tile(images, nrow: int, pad: int = 1) -> np.ndarray:
    """One [rows*(H+pad)-pad, nrow*(W+pad)-pad] mosaic of the images, row by row (padding = 1.0)."""
    a = _square_images(images)
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    n, h, w = a.shape
    rows = -(-n // nrow)
    out = np.ones((rows * (h + pad) - pad, nrow * (w + pad) - pad))
    for i in range(n):
        r, c = divmod(i, nrow)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = a[i]
    return out


def image_grid(images, nrow: int, title: str, *, row_labels: Optional[Sequence[str]] = None,
               xlabel: str = "sample", ylabel: str = "row", figsize=None) -> Figure:
    """The images tiled ``nrow`` per row into one picture.

    Args:
        images: [N, D] with D a square (784 -> 28x28, 196 -> 14x14) or [N, H, W], values in [0, 1].
        nrow: images per row. title: figure title.
        row_labels: optional tick label per row (e.g. the conditioned digit).

    Raises:
        ValueError: non-square D, empty input, nrow < 1.
    """
    a = _square_images(images)
    mosaic = tile(a, nrow)
    h = a.shape[1]
    fig = Figure(figsize=figsize or (max(3.0, 0.45 * nrow + 1), max(3.0, 0.45 * (-(-len(a) // nrow)) + 1)))
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([c * (h + 1) + h / 2 - 0.5 for c in range(nrow)], [str(c + 1) for c in range(nrow)],
                  fontsize=7)
    rows = -(-len(a) // nrow)
    ax.set_yticks([r * (h + 1) + h / 2 - 0.5 for r in range(rows)],
                  list(row_labels) if row_labels is not None else [str(r + 1) for r in range(rows)], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def elbo_curves(history, title: str = "ELBO per epoch", *, per_update: bool = False,
                reported: Optional[dict] = None) -> Figure:
    """Train and test ELBO (nats per image) after each epoch; optionally a second panel with the
    minibatch ELBO of every update. ``reported`` ({"train_elbo": v, "test_elbo": v}) draws the
    homework's final numbers as dotted horizontal lines."""
    train = np.asarray(history.train_elbo)
    if train.size == 0:
        raise ValueError("history has no epochs")
    epochs = np.arange(1, train.size + 1)
    fig = Figure(figsize=(11 if per_update else 6, 4))
    ax = fig.add_subplot(1, 2 if per_update else 1, 1)
    ax.plot(epochs, train, "o-", label="train (mean over minibatches)")
    test = np.asarray(history.test_elbo)
    if test.size and np.isfinite(test).any():
        ax.plot(epochs, test, "s-", label="test")
    for key, style in (("train_elbo", "C0"), ("test_elbo", "C1")):
        if reported and key in reported:
            ax.axhline(reported[key], color=style, ls=":", label=f"homework {key.split('_')[0]}: {reported[key]}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per image)")
    ax.set_title("per epoch")
    ax.legend(fontsize=8)
    if per_update:
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.plot(np.arange(1, len(history.update_rec) + 1), history.update_elbo, lw=0.5)
        ax2.set_xlabel("update")
        ax2.set_ylabel("minibatch ELBO (nats per image)")
        ax2.set_title("per update")
        lo = np.percentile(history.update_elbo, 2) if len(history.update_rec) else None
        if lo is not None:
            ax2.set_ylim(bottom=lo)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def elbo_terms(history, title: str = "ELBO terms per weight update") -> Figure:
    """The two ELBO terms of every update: expected log-likelihood E_q log p(x|z) and
    KL(q(z|x) || N(0, I)), minibatch means in nats per image (ESE 546 HW5 (iii))."""
    rec, kl = np.asarray(history.update_rec), np.asarray(history.update_kl)
    if rec.size == 0:
        raise ValueError("history has no updates")
    upd = np.arange(1, rec.size + 1)
    fig = Figure(figsize=(11, 4))
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    a1.plot(upd, rec, lw=0.6)
    a1.set_xlabel("weight update")
    a1.set_ylabel("E_q log p(x|z) (nats per image)")
    a1.set_title("expected log-likelihood")
    a2.plot(upd, kl, lw=0.6, color="C1")
    a2.set_xlabel("weight update")
    a2.set_ylabel("KL(q(z|x) || p(z)) (nats per image)")
    a2.set_title("KL divergence")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curve(losses, title: str, *, xlabel: str = "iteration", ylabel: str = "loss (nats per image)",
               marks: Optional[Sequence[int]] = None, mark_label: str = "epoch end") -> Figure:
    """A loss against iterations (e.g. HW7's loss per minibatch); ``marks`` draws vertical lines."""
    y = _as_numpy(losses).ravel()
    if y.size == 0:
        raise ValueError("no losses to draw")
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.plot(np.arange(1, y.size + 1), y, lw=0.6)
    for i, m in enumerate(marks or ()):
        ax.axvline(m, color="gray", ls=":", lw=0.8, label=mark_label if i == 0 else None)
    if marks:
        ax.legend(fontsize=8)
    ax.set_ylim(top=np.percentile(y, 99.5))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def epoch_series(series: dict, title: str, ylabel: str) -> Figure:
    """Several per-epoch curves on one axis, e.g. our loss beside a homework's reported one.
    series: label -> values (epoch 1, 2, ...)."""
    if not series:
        raise ValueError("no series to draw")
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for i, (label, values) in enumerate(series.items()):
        v = _as_numpy(values).ravel()
        ax.plot(np.arange(1, v.size + 1), v, "os^dv"[i % 5] + "-", ms=4, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def latent_scatter(mu, labels, title: str = "Posterior means of the training images") -> Figure:
    """2-D posterior means coloured by digit label (STATS 305C 3f). mu: [N, 2]; labels: [N] ints."""
    m, lab = _as_numpy(mu), np.asarray(_as_numpy(labels), dtype=np.int64)
    if m.ndim != 2 or m.shape[1] != 2:
        raise ValueError(f"mu must be [N, 2] (a 2-D latent space), got shape {list(m.shape)}")
    if lab.shape != (m.shape[0],):
        raise ValueError(f"labels must be [N] = [{m.shape[0]}], got {list(lab.shape)}")
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab10"]
    sc = ax.scatter(m[:, 0], m[:, 1], c=lab, cmap=cmap, vmin=-0.5, vmax=9.5, s=1, alpha=0.5, rasterized=True)
    cb = fig.colorbar(sc, ax=ax, ticks=range(10))
    cb.set_label("digit label")
    ax.set_xlabel("posterior mean, z1")
    ax.set_ylabel("posterior mean, z2")
    ax.set_title(title)
    fig.tight_layout()
    return fig


@torch.no_grad()
def interpolation_grid(model, n_rows: int = 8, steps: int = 10, generator: Optional[torch.Generator] = None,
                       title: str = "Linear interpolations between prior draws", y=None) -> Figure:
    """``n_rows`` interpolations z = (1-t) z_a + t z_b, t = 0..1 in ``steps`` steps, between pairs of
    prior draws z_a, z_b ~ N(0, I), decoded to Bernoulli means (STATS 305C 3g)."""
    if n_rows < 1 or steps < 2:
        raise ValueError(f"need n_rows >= 1 and steps >= 2, got {n_rows}, {steps}")
    dtype = model.encoder_head.weight.dtype
    za = torch.randn(n_rows, model.latent_dim, generator=generator, dtype=dtype)
    zb = torch.randn(n_rows, model.latent_dim, generator=generator, dtype=dtype)
    t = torch.linspace(0, 1, steps, dtype=dtype)
    z = (za[:, None] * (1 - t)[None, :, None] + zb[:, None] * t[None, :, None]).reshape(-1, model.latent_dim)
    images = model.decode(z, y)
    fig = image_grid(images, steps, title, xlabel="interpolation step (z_a -> z_b)",
                     ylabel="pair of prior draws")
    return fig


def reconstruction_pairs(x, recon, title: str = "Images and their reconstructions") -> Figure:
    """Originals (top row) above their reconstructions (bottom row). x, recon: [N, D] or [N, H, W]."""
    a, b = _square_images(x), _square_images(recon)
    if a.shape != b.shape:
        raise ValueError(f"x and recon differ in shape: {list(a.shape)} vs {list(b.shape)}")
    n = a.shape[0]
    fig = Figure(figsize=(max(3.0, 1.0 * n + 1), 3))
    for row, (imgs, name) in enumerate(((a, "original"), (b, "reconstruction"))):
        for i in range(n):
            ax = fig.add_subplot(2, n, row * n + i + 1)
            ax.imshow(imgs[i], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name, fontsize=8)
            if row == 1:
                ax.set_xlabel(f"image {i + 1}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def validation_curves(history, title: str = "Reconstruction log-likelihood: training vs validation") -> Figure:
    """Training minibatch E_q log p(x|z) after every update beside the validation one (held-out images)
    every ``eval_every`` updates (ESE 546 HW5 (vi))."""
    rec = np.asarray(history.update_rec)
    vu, vr = np.asarray(history.val_update), np.asarray(history.val_rec)
    if rec.size == 0 or vu.size == 0:
        raise ValueError("history needs per-update terms and validation evaluations (fit with val_images, eval_every)")
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.plot(np.arange(1, rec.size + 1), rec, lw=0.5, alpha=0.7, label="training minibatch (every update)")
    ax.plot(vu, vr, "o-", ms=3, color="C3", label="validation (every %d updates)" % int(np.diff(vu).min())
            if vu.size > 1 else "validation")
    ax.set_ylim(bottom=np.percentile(np.concatenate([rec, vr]), 1))
    ax.set_xlabel("weight update")
    ax.set_ylabel("E_q log p(x|z) (nats per image)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path, dpi: int = 100) -> str:
    """Write ``fig`` as a PNG at ``path`` atomically: a temp file in the same folder, then os.replace.
    A failed save leaves neither a partial file nor the temp file; an existing file stays intact.

    Returns: the path as a string. Raises whatever ``savefig`` or the filesystem raises.
    """
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    return os.fspath(path)
