"""DD2434 Assignment 1B: a 200-D latent VAE with LeakyReLU MLPs; per-epoch average loss, a test image
and its reconstruction, prior samples."""
import torch

from .. import plotting
from ..models import VAE
from .common import Context, Timer, base_metrics, binary, load, save_model
from .common import train as train_model


def run(ctx: Context) -> dict:
    p = ctx.preset
    train = ctx.train_settings()
    thr, bs = p.data["threshold"], train["batch_size"]
    x_train, _ = load(ctx, "train")
    x_test, _ = load(ctx, "test")
    torch.manual_seed(ctx.seed)
    model = VAE.from_preset(ctx.name)
    timer = Timer()
    model, hist = train_model(ctx, model, x_train, epochs=train["epochs"], test_images=x_test)
    seconds = timer()
    save_model(ctx.out / "model.pt", model)

    n = len(x_train)
    # summed BCE + KL over the epoch = -N * mean ELBO; the homework divided the sum by
    # batch_idx * batch_size of the last batch = N - batch_size (59,900) instead of N
    loss_n = -hist.train_elbo
    div_hw = n - bs if n > bs else n
    loss_hw = loss_n * n / div_hw
    g = torch.Generator().manual_seed(ctx.seed)
    xb = binary(x_test[:8], thr)
    ctx.figure(plotting.reconstruction_pairs(xb, model.reconstruct(xb), "Test images and their reconstructions"),
               "reconstructions.png")
    ctx.figure(plotting.image_grid(model.sample(64, generator=g), 8, "Decoder means for z ~ N(0, I)"),
               "samples.png")
    series = {f"ours, / {n:,}": loss_n, f"ours, / {div_hw:,}": loss_hw}
    if ctx.limit is None:
        series["homework (/ 59,900)"] = p.reported["epoch_loss"]
    ctx.figure(plotting.epoch_series(series, "Average loss per epoch (summed BCE + KL per image)",
                                     "loss (nats per image)"), "loss.png")

    m = base_metrics(ctx, model, train, dict(p.data, n_train=n, n_test=len(x_test)), hist)
    m.update(loss_per_image=loss_n, loss_divisor=n, loss_per_image_homework_divisor=loss_hw,
             homework_divisor=div_hw, total_seconds=seconds)
    m["final"] = {"loss": float(loss_n[-1]), f"loss_div_{div_hw}": float(loss_hw[-1]),
                  "test_elbo": float(hist.test_elbo[-1]), "epochs": len(loss_n)}
    return m
