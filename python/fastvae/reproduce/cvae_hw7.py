"""Deep Learning HW7: a conditional VAE (label as one-hot in encoder and decoder).

Trained epoch by epoch (one ``fit(epochs=1)`` call each; Adam's state persists on the model) so that a
10x10 grid of conditional samples can be drawn after epochs 1, 6 and 11. A separately trained MNIST
classifier measures how often a sample is classified as the digit it was conditioned on.

The homework's loss is BCE plus a KL "regularization" term whose weight it does not give; the preset's
``kl_weight`` (beta, Higgins et al. 2017) is the weight chosen by the sweep in docs/reproductions.md.
"""
import torch

from .. import plotting
from ..api import elbo
from ..models import VAE
from .classifier import accuracy, train_classifier
from .common import (Context, Timer, base_metrics, binary, epoch_printer, load, read_json, resume_point, save_model,
                     write_json)

GRID_EPOCHS = (1, 6, 11)
SAMPLES_PER_CLASS = 100  # for the conditional accuracy (the grids show 10 per class)
# What --resume needs besides the checkpoint, after each epoch: the accuracies and figures of the grid
# epochs so far and the state of the figures' generator (written before the checkpoint of that epoch).
PROGRESS = "cvae_progress.json"


def conditional_accuracy(model, net, n_per_class: int, generator) -> dict:
    """Per-class fraction of samples z ~ N(0, I), decoded with class c, that ``net`` labels c."""
    per_class = []
    for c in range(10):
        per_class.append(accuracy(net, model.sample(n_per_class, y=c, generator=generator),
                                  torch.full((n_per_class,), c)))
    return {"mean": sum(per_class) / 10, "per_class": per_class}


def within_class_spread(samples: torch.Tensor) -> float:
    """Mean Euclidean distance between two different images of one class, float [N, 784] in [0, 1]
    (pixels as units): about 0 when the samples of a digit have collapsed to one image."""
    n = len(samples)
    return float(torch.cdist(samples, samples).sum() / (n * (n - 1)))


def spread_per_class(images: torch.Tensor, labels: torch.Tensor, n_per_class: int) -> float:
    """:func:`within_class_spread` of the first ``n_per_class`` images of each digit, averaged over digits."""
    x = images.reshape(len(images), -1).float()
    x = x / 255 if images.dtype == torch.uint8 else x
    return sum(within_class_spread(x[labels == c][:n_per_class]) for c in range(10)) / 10


def posterior_swap_accuracy(model, net, x_bin, y, n_per_class: int, generator) -> float:
    """Diagnostic: like :func:`conditional_accuracy` but with z drawn from q(z | x, y) of random training
    images of any digit (the aggregate posterior) instead of N(0, I). The homework's sigmoid mean head keeps
    posterior means in (0, 1), so the aggregate posterior and the prior can differ."""
    idx = torch.randint(0, len(x_bin), (n_per_class,), generator=generator)
    mu, sigma = model.encode(x_bin[idx], y[idx])
    z = mu + sigma * torch.randn(mu.shape, generator=generator)
    acc = [accuracy(net, model.decode(z, torch.full((n_per_class,), c)), torch.full((n_per_class,), c))
           for c in range(10)]
    return sum(acc) / 10


def run(ctx: Context) -> dict:
    p = ctx.preset
    train = ctx.train_settings()
    thr, E = p.data["threshold"], train["epochs"]
    x_train, y_train = load(ctx, "train")
    x_test, y_test = load(ctx, "test")
    torch.manual_seed(ctx.seed)
    model = VAE.from_preset(ctx.name)
    grid_epochs = sorted({e for e in GRID_EPOCHS if e <= E} | {E})
    timer = Timer()
    net = train_classifier(x_train, y_train, seed=ctx.seed, epochs=4 if ctx.limit is None else 1)
    clf_seconds = timer()
    clf_acc = accuracy(net, x_test, y_test)
    ctx.log(f"classifier test accuracy {clf_acc:.4f} ({clf_seconds:.1f} s)")

    g = torch.Generator().manual_seed(ctx.seed)
    digits = torch.arange(10).repeat_interleave(10)
    x_bin = binary(x_train, thr)
    cond_acc, timer = {}, Timer()
    beta = float(train.get("kl_weight", 1.0))
    saved, progress, start = resume_point(ctx, len(x_train)), {}, 1
    if saved is not None:
        model, start = saved, len(saved.history_.train_elbo) + 1
        progress = read_json(ctx.out / PROGRESS)
        p_done = progress[str(start - 1)]
        cond_acc = {int(k): v for k, v in p_done["cond_acc"].items()}
        ctx.figures.extend(p_done["figures"])
        g.set_state(torch.tensor(p_done["generator"], dtype=torch.uint8))
    for e in range(start, E + 1):
        model.fit(x_train, ctx.train_options(), train_labels=y_train, epochs=1, test_images=x_test, test_labels=y_test,
                  seed=ctx.seed + e, progress=ctx.progress, callback=epoch_printer(ctx, offset=e - 1, total=E))
        if e in grid_epochs:
            ctx.figure(plotting.image_grid(model.sample(100, y=digits, generator=g), 10,
                                           f"Conditional samples after epoch {e} (z ~ N(0, I))",
                                           row_labels=[str(d) for d in range(10)], ylabel="conditioned digit"),
                       f"samples_epoch{e:02d}.png")
            cond_acc[e] = conditional_accuracy(model, net, SAMPLES_PER_CLASS, g)
            labels = torch.arange(10).repeat_interleave(SAMPLES_PER_CLASS)
            cond_acc[e]["sample_spread"] = spread_per_class(model.sample(len(labels), y=labels, generator=g),
                                                            labels, SAMPLES_PER_CLASS)
            cond_acc[e]["posterior_swap"] = posterior_swap_accuracy(model, net, x_bin, y_train, SAMPLES_PER_CLASS, g)
            ctx.log(f"epoch {e}: samples classified as their conditioned digit: {cond_acc[e]['mean']:.4f} "
                    f"(z from other images' posteriors: {cond_acc[e]['posterior_swap']:.4f})")
        progress[str(e)] = {"cond_acc": dict(cond_acc), "figures": list(ctx.figures), "generator": g.get_state().tolist()}
        write_json(ctx.out / PROGRESS, progress)
        model.save(ctx.checkpoint)
    seconds = timer()
    save_model(ctx.out / "model.pt", model)
    hist = model.history_
    per_epoch = len(hist.update_rec) // E
    # the loss the optimizer minimized: BCE + beta KL (the recorded ELBOs stay unweighted)
    ctx.figure(plotting.loss_curve(-(hist.update_rec - beta * hist.update_kl),
                                   f"CVAE loss per iteration (BCE + {beta:g} KL, minibatch mean)",
                                   marks=[per_epoch * e for e in range(1, E)]), "loss.png")

    m = base_metrics(ctx, model, train, dict(p.data, n_train=len(x_train), n_test=len(x_test)), hist)
    m.update(total_seconds=seconds, classifier={"test_accuracy": clf_acc, "seconds": clf_seconds,
                                                "architecture": "MLP 784-512-256-10, Adam 1e-3, batch 128"},
             conditional_accuracy={str(k): v for k, v in cond_acc.items()}, samples_per_class=SAMPLES_PER_CLASS)
    with torch.no_grad():
        terms = elbo(model, binary(x_test, thr), y=y_test, generator=g)
    m["final"] = {"train_elbo": float(hist.train_elbo[-1]), "test_elbo": float(hist.test_elbo[-1]),
                  "test_kl": float(terms.kl.mean()), "test_rec": float(terms.rec.mean()), "kl_weight": beta,
                  "sample_spread": cond_acc[E]["sample_spread"],
                  "test_image_spread": spread_per_class(x_test, y_test, SAMPLES_PER_CLASS),
                  "conditional_accuracy": cond_acc[E]["mean"], "classifier_accuracy": clf_acc}
    return m
