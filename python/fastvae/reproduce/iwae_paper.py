"""Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders" (arXiv 1509.00519), Table 1, MNIST,
one stochastic layer: train with the paper's schedule and report the test log p(x) estimated with k = 5000.

Schedule (section 5): 3^i epochs at learning rate 1e-3 * 10^(-i/7) for i = 0..7, 3,280 epochs in all; Adam's
moments carry over from stage to stage. ``--epochs N`` keeps the first N epochs of that schedule (a
shortened run for smoke tests). The training images are binarized afresh each time they are used
(``pixels="dynamic"``), as are the test images of the per-epoch test ELBO; for the final k = 5000
estimate of log p(x) the test images are binarized once, from the run's seed, so that runs with the same
seed (k = 1 and k = 5, say) are compared on the same draw. The model starts as the authors' code starts it
(the preset's ``init``: Glorot uniform weights, zero biases, the output bias at the logits of the pixel means).
"""
import math

import torch

from .. import _machine, plotting
from .._atomic import atomic_write
from ..api import log_likelihood
from ..diagnostics import active_units
from .common import Context, Timer, base_metrics, epoch_printer, load, new_model, resume_point, save_model

STAGES = 8  # i = 0..7
PER_IMAGE = "test_log_px.pt"  # float64 [n_test]: each test image's k = 5000 estimate of log p(x)


def schedule(epochs: int):
    """[(first epoch, epochs, learning rate)] of the paper's stages, cut to ``epochs`` epochs in all."""
    out, start = [], 0
    for i in range(STAGES):
        n = min(3 ** i, epochs - start)
        if n <= 0:
            break
        out.append((start, n, 1e-3 * 10 ** (-i / 7)))
        start += n
    return out


def objective_label(options) -> str:
    """The training objective of ``options`` (a :class:`fastvae.TrainOptions`) with its own settings, as tables and
    titles name it: "iwae", "miwae M = 2", "ciwae beta = 0.5" (k is given beside it)."""
    extra = {"miwae": f" M = {options.groups}", "piwae": f" M = {options.groups}",
             "ciwae": f" beta = {options.ciwae_beta}"}.get(options.objective, "")
    return options.objective + extra


def test_binarization(images: torch.Tensor, seed: int) -> torch.Tensor:
    """float32 [N, 784] 0/1: one draw x ~ Bernoulli(pixel / 255) per test image from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    p = images.reshape(len(images), -1).to(torch.float32) / 255
    return torch.bernoulli(p, generator=g)


def run(ctx: Context) -> dict:
    p = ctx.preset
    train = ctx.train_settings()
    total = int(train["epochs"])
    x_train, _ = load(ctx, "train")
    x_test, _ = load(ctx, "test")
    torch.manual_seed(ctx.seed)
    model = new_model(ctx, x_train)
    saved = resume_point(ctx, len(x_train))
    done = 0
    if saved is not None:
        model, done = saved, len(saved.history_.train_elbo)
    options = ctx.train_options()
    timer = Timer()
    for first, n, lr in schedule(total):
        todo = min(first + n, total) - max(first, done)
        if todo <= 0:
            continue
        model.fit(x_train, options, epochs=todo, lr=lr, seed=ctx.seed if done == 0 else None,
                  test_images=x_test, checkpoint=ctx.checkpoint, progress=ctx.progress, callback=epoch_printer(ctx, done, total))
        done += todo
    seconds = timer()
    save_model(ctx.out / "model.pt", model)
    hist = model.history_

    eval_k = int(p.data["eval_k"])
    xt = test_binarization(x_test, ctx.seed + 1)
    timer = Timer()
    ll = log_likelihood(model, xt, k=eval_k, batch_size=5, generator=torch.Generator().manual_seed(ctx.seed + 2))
    eval_seconds = timer()
    # per image, so that two runs on the same test binarization can be compared image by image (paired)
    atomic_write(ctx.out / PER_IMAGE, lambda f: torch.save(ll.detach().to(torch.float64), f))
    nll = -float(ll.mean())
    nll_se = float(ll.std()) / math.sqrt(len(ll)) if len(ll) > 1 else float("nan")
    objective, k = train["objective"], int(train["k"])
    # Table 1 has the VAE (the ELBO) and IWAE rows; Rainforth et al.'s objectives have no number there
    table = p.reported.get({"iwae": "iwae_nll", "elbo": "vae_nll"}.get(objective), {})
    label = objective_label(options)

    g = torch.Generator().manual_seed(ctx.seed)
    ctx.figure(plotting.elbo_curves(hist, f"IWAE paper model, {label}, k = {k}: training bound per epoch",
                                    per_update=False), "training_bound.png")
    ctx.figure(plotting.image_grid(model.sample(64, generator=g), 8, "Decoder means for z ~ N(0, I)"),
               "samples.png")
    ctx.figure(plotting.reconstruction_pairs(xt[:8], model.reconstruct(xt[:8]),
                                             "Test images (one binarization) and their reconstructions"),
               "reconstructions.png")

    m = base_metrics(ctx, model, train, dict(p.data, n_train=len(x_train), n_test=len(x_test)), hist)
    m.update(total_seconds=seconds, eval_seconds=eval_seconds,
             machine=_machine.describe(),
             schedule=[{"first_epoch": a, "epochs": n, "lr": lr} for a, n, lr in schedule(total)])
    # Burda et al. 2016, Sec. 5.2: units with Cov_x(E_q[z_u | x]) > 1e-2, on the test images, per stochastic layer
    layers = 1 + len(model.upper_latents)
    units = [active_units(model, xt, layer=n, generator=torch.Generator().manual_seed(ctx.seed + 3))[0]
             for n in range(1, layers + 1)]
    m["final"] = {"test_nll": nll, "test_nll_stderr": nll_se, "test_log_px": -nll, "eval_k": eval_k,
                  "active_units": units,
                  "objective": objective, "objective_label": label, "k": k, "epochs": len(hist.train_elbo),
                  "paper_test_nll": table.get(k), "paper_epochs": 3280}
    ctx.log(f"active units per stochastic layer: {units}")
    ctx.log(f"test log p(x) (k = {eval_k}): {-nll:.2f} +- {nll_se:.2f} nats"
            + (f"; Burda et al. 2016 report {-table[k]:.2f} for {objective} k = {k}" if k in table else ""))
    return m
