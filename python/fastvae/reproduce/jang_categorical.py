"""Jang, Gu & Poole 2017, "Categorical Reparameterization with Gumbel-Softmax" (arXiv 1611.01144), the VAE of
section 4: 20 categorical variables of 10 classes, encoder 784-512-256 and decoder 256-512-784 (ReLU), Bernoulli
likelihood, Adam 1e-3, batch 100, the Gumbel-softmax temperature annealed as tau = max(0.5, exp(-r t)) with
r = 3e-5, updated every 1,000 updates. Binarized MNIST: the training images are binarized afresh each time
they are used (``pixels="dynamic"``), and so are the test images of each epoch's test ELBO. The test ELBO is
that of the discrete model (hard Gumbel-max samples into the decoder), the quantity the paper's table reports
as a negative number ("test loss")."""
import torch

from .. import plotting
from ..api import elbo
from ..models import VAE
from .common import Context, Timer, base_metrics, load, save_model
from .common import train as train_model


def traversal(model, x_image: torch.Tensor, n_vars: int = 10) -> torch.Tensor:
    """Decoder means [n_vars * K, 784]: the posterior mode code of one image, with variable n (row) set to each
    of the K classes in turn (columns)."""
    N, K = model.latent_dim, model.categories
    log_q, _ = model.encode(x_image.reshape(1, -1))
    mode = torch.nn.functional.one_hot(log_q[0].argmax(-1), K).to(torch.float32)  # [N, K]
    codes = []
    for n in range(min(n_vars, N)):
        for k in range(K):
            c = mode.clone()
            c[n] = 0
            c[n, k] = 1
            codes.append(c.reshape(-1))
    return model.decode(torch.stack(codes))


def run(ctx: Context) -> dict:
    p = ctx.preset
    train = ctx.train_settings()
    x_train, _ = load(ctx, "train")
    x_test, _ = load(ctx, "test")
    torch.manual_seed(ctx.seed)
    model = VAE.from_preset(ctx.name)
    timer = Timer()
    model, hist = train_model(ctx, model, x_train, epochs=train["epochs"], test_images=x_test)
    seconds = timer()
    save_model(ctx.out / "model.pt", model)

    g = torch.Generator().manual_seed(ctx.seed)
    xt = torch.bernoulli(x_test.reshape(len(x_test), -1).float() / 255, generator=g)
    opts = model.train_options_
    step = model.optimizer_state_.step
    tau = max(opts.temperature_min, opts.temperature * torch.exp(torch.tensor(
        -opts.anneal_rate * (step // opts.anneal_every * opts.anneal_every))).item())
    with torch.no_grad():  # the relaxed objective at the final temperature, as the training loss measures it
        relaxed = torch.cat([elbo(model, xt[s:s + 1000], temperature=tau, generator=g).elbo
                             for s in range(0, len(xt), 1000)]).mean().item()
    ctx.figure(plotting.elbo_curves(hist, "Categorical VAE (20 x 10): ELBO per epoch", per_update=True),
               "elbo_curves.png")
    ctx.figure(plotting.image_grid(model.sample(64, generator=g), 8, "Decoder means of uniform one-hot codes"),
               "samples.png")
    ctx.figure(plotting.reconstruction_pairs(xt[:8], model.reconstruct(xt[:8]),
                                             "Test images and the decoding of their posterior mode"),
               "reconstructions.png")
    ctx.figure(plotting.image_grid(traversal(model, xt[0]), model.categories,
                                   "Traversal: variable n (row) set to class k (column)",
                                   row_labels=[f"n = {n}" for n in range(10)], xlabel="class", ylabel="variable"),
               "traversal.png")

    m = base_metrics(ctx, model, train, dict(p.data, n_train=len(x_train), n_test=len(x_test)), hist)
    m["total_seconds"] = seconds
    m["final"] = {"test_elbo": float(hist.test_elbo[-1]), "train_elbo": float(hist.train_elbo[-1]),
                  "test_elbo_relaxed": relaxed, "temperature": tau, "epochs": len(hist.train_elbo),
                  "paper_test_neg_elbo": p.reported["test_neg_elbo"]}
    ctx.log(f"test -ELBO {-hist.test_elbo[-1]:.2f} nats (discrete model) after {len(hist.test_elbo)} epochs; "
            f"Jang et al. 2017 report {p.reported['test_neg_elbo']} for the Gumbel-softmax estimator")
    return m
