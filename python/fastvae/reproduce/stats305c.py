"""STATS 305C HW6 Problem 3: a 2-D latent VAE on all of binarized MNIST (figures 3e, 3f, 3g)."""
import torch

from .. import plotting
from ..models import VAE
from .common import Context, Timer, base_metrics, binary, load, save_model
from .common import train as train_model


def run(ctx: Context) -> dict:
    p = ctx.preset
    train = ctx.train_settings()
    thr = p.data["threshold"]
    x_train, y_train = load(ctx, "train")
    x_test, _ = load(ctx, "test")
    torch.manual_seed(ctx.seed)
    model = VAE.from_preset(ctx.name)
    timer = Timer()
    model, hist = train_model(ctx, model, x_train, epochs=train["epochs"], test_images=x_test)
    seconds = timer()
    save_model(ctx.out / "model.pt", model)

    g = torch.Generator().manual_seed(ctx.seed)
    ctx.figure(plotting.elbo_curves(hist, "STATS 305C: ELBO per epoch", per_update=True, reported=p.reported),
               "elbo_curves.png")
    ctx.figure(plotting.image_grid(model.sample(64, generator=g), 8, "3e: decoder means for z ~ N(0, I)"),
               "samples.png")
    mu, _ = model.encode(binary(x_train, thr))
    ctx.figure(plotting.latent_scatter(mu, y_train, "3f: posterior means of the training images"),
               "latent_scatter.png")
    ctx.figure(plotting.interpolation_grid(model, 8, 10, generator=g,
                                           title="3g: interpolations between prior draws"), "interpolations.png")

    m = base_metrics(ctx, model, train, dict(p.data, n_train=len(x_train), n_test=len(x_test)), hist)
    m["total_seconds"] = seconds
    m["final"] = {"train_elbo": float(hist.train_elbo[-1]), "test_elbo": float(hist.test_elbo[-1]),
                  "epochs": len(hist.train_elbo)}
    return m
