"""Deep Learning HW7: a conditional VAE (label as one-hot in encoder and decoder).

Trained epoch by epoch (one ``fit(epochs=1)`` call each; Adam's state persists on the model) so that a
10x10 grid of conditional samples can be drawn after epochs 1, 6 and 11. A separately trained MNIST
classifier measures how often a sample is classified as the digit it was conditioned on.
"""
import torch

from .. import VAE, plotting
from .classifier import accuracy, train_classifier
from .common import Context, Timer, base_metrics, binary, epoch_printer, load, save_model

GRID_EPOCHS = (1, 6, 11)
SAMPLES_PER_CLASS = 100  # for the conditional accuracy (the grids show 10 per class)


def conditional_accuracy(model, net, n_per_class: int, generator) -> dict:
    """Per-class fraction of samples z ~ N(0, I), decoded with class c, that ``net`` labels c."""
    per_class = []
    for c in range(10):
        per_class.append(accuracy(net, model.sample(n_per_class, y=c, generator=generator),
                                  torch.full((n_per_class,), c)))
    return {"mean": sum(per_class) / 10, "per_class": per_class}


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
    for e in range(1, E + 1):
        model.fit(x_train, y_train, epochs=1, batch_size=train["batch_size"], n_samples=train["n_samples"],
                  lr=train["lr"], threshold=thr, test_images=x_test, test_labels=y_test, seed=ctx.seed + e,
                  progress=ctx.progress, callback=epoch_printer(ctx, offset=e - 1, total=E))
        if e in grid_epochs:
            ctx.figure(plotting.image_grid(model.sample(100, y=digits, generator=g), 10,
                                           f"Conditional samples after epoch {e} (z ~ N(0, I))",
                                           row_labels=[str(d) for d in range(10)], ylabel="conditioned digit"),
                       f"samples_epoch{e:02d}.png")
            cond_acc[e] = conditional_accuracy(model, net, SAMPLES_PER_CLASS, g)
            cond_acc[e]["posterior_swap"] = posterior_swap_accuracy(model, net, x_bin, y_train, SAMPLES_PER_CLASS, g)
            ctx.log(f"epoch {e}: samples classified as their conditioned digit: {cond_acc[e]['mean']:.4f} "
                    f"(z from other images' posteriors: {cond_acc[e]['posterior_swap']:.4f})")
    seconds = timer()
    save_model(ctx.out / "model.pt", model)
    hist = model.history_
    per_epoch = len(hist.update_rec) // E
    ctx.figure(plotting.loss_curve(-(hist.update_elbo), "CVAE loss per iteration (BCE + KL, minibatch mean)",
                                   marks=[per_epoch * e for e in range(1, E)]), "loss.png")

    m = base_metrics(ctx, model, train, dict(p.data, n_train=len(x_train), n_test=len(x_test)), hist)
    m.update(total_seconds=seconds, classifier={"test_accuracy": clf_acc, "seconds": clf_seconds,
                                                "architecture": "MLP 784-512-256-10, Adam 1e-3, batch 128"},
             conditional_accuracy={str(k): v for k, v in cond_acc.items()}, samples_per_class=SAMPLES_PER_CLASS)
    m["final"] = {"train_elbo": float(hist.train_elbo[-1]), "test_elbo": float(hist.test_elbo[-1]),
                  "conditional_accuracy": cond_acc[E]["mean"], "classifier_accuracy": clf_acc}
    return m
