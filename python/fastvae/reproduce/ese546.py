"""ESE 546 HW5 Problem 1: a VAE on 14x14 binarized MNIST, 1,000 images per digit, 2 MC samples.

Figures (iii) ELBO terms per update, (iv) images beside reconstructions, (v) prior samples,
(vi) training vs validation reconstruction log-likelihood; plus an IWAE estimate of log p(x).
"""
import torch

from .. import datasets, plotting
from ..api import log_likelihood
from ..models import VAE
from .common import Context, Timer, base_metrics, binary, load, save_model
from .common import train as train_model

EVAL_EVERY = 100   # validation every 100 updates, as (vi) asks
IWAE_K, IWAE_N = 1000, 1000


def run(ctx: Context) -> dict:
    p = ctx.preset
    train, d = ctx.train_settings(), p.data
    thr, size = d["threshold"], d["size"]
    x_all, y_all = load(ctx, "train")
    x_test, y_test = load(ctx, "test")
    n_per_class, n_val_per_class = d["n_per_class"], d["n_validation"] // 10
    if ctx.limit is not None:  # a small run: few images of each digit for training and validation
        n_per_class = n_val_per_class = max(1, min(n_val_per_class, ctx.limit // 50))
    x_tr, y_tr, idx = datasets.balanced_subset(x_all, y_all, n_per_class, seed=ctx.seed)
    x_val, _, _ = datasets.balanced_subset(x_all, y_all, n_val_per_class, seed=ctx.seed + 1, exclude=idx)
    # 28x28 -> 14x14 by averaging 2x2 blocks (the homework leaves the method open), then pixel > 128
    x_tr, x_val, x_te = (datasets.subsample(x, size, method="pool") for x in (x_tr, x_val, x_test))

    torch.manual_seed(ctx.seed)
    model = VAE.from_preset(ctx.name)
    timer = Timer()
    model, hist = train_model(ctx, model, x_tr, epochs=train["epochs"], test_images=x_te,
                              val_images=x_val, eval_every=EVAL_EVERY)
    seconds = timer()
    save_model(ctx.out / "model.pt", model)

    g = torch.Generator().manual_seed(ctx.seed)
    xb_test = binary(x_te[:IWAE_N], thr)
    ctx.figure(plotting.elbo_terms(hist, "(iii) ELBO terms per weight update (minibatch means)"), "elbo_terms.png")
    ctx.figure(plotting.reconstruction_pairs(xb_test[:8], model.reconstruct(xb_test[:8]),
                                             "(iv) test images and their reconstructions"), "reconstructions.png")
    ctx.figure(plotting.image_grid(model.sample(64, generator=g), 8, "(v) decoder means for z ~ N(0, I)"),
               "samples.png")
    ctx.figure(plotting.validation_curves(hist, "(vi) reconstruction log-likelihood: training vs validation"),
               "validation.png")
    ll = log_likelihood(model, xb_test, k=IWAE_K, generator=g)
    with torch.no_grad():
        el = model(xb_test, n_samples=1).elbo

    m = base_metrics(ctx, model, train, dict(d, n_train=len(x_tr), n_validation=len(x_val),
                                             subsample="pool (mean of 2x2 blocks)", eval_every=EVAL_EVERY), hist)
    m.update(val_update=hist.val_update, val_rec=hist.val_rec, val_kl=hist.val_kl, total_seconds=seconds,
             iwae={"k": IWAE_K, "n_images": len(xb_test), "log_px": float(ll.mean()),
                   "elbo_same_images": float(el.mean())})
    m["final"] = {"train_elbo": float(hist.train_elbo[-1]), "test_elbo": float(hist.test_elbo[-1]),
                  "val_rec_first": float(hist.val_rec[0]), "val_rec_last": float(hist.val_rec[-1]),
                  "iwae_log_px": float(ll.mean()), "updates": len(hist.update_rec)}
    return m
