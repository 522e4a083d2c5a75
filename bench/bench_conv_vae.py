"""One training epoch of the convolutional VAE of notebooks/conv_vae.ipynb (continuous Bernoulli, grey-level MNIST,
Z = 16, batch 128): the loss from fastvae's heads against the same loss written in plain PyTorch, and against
torch.compile of the plain model + loss, in one process on the same data, networks, noise and threads.

Sides (each an Adam step per minibatch on -mean ELBO, analytic KL, one sample):
* fastvae heads: the networks in PyTorch, the ELBO by ``fastvae.heads.elbo_terms`` (fused C++ forward/backward);
* fastvae fit: the same through ``model.fit`` (the training driver with the networks' torch stepper, fastvae.models.network_stepper);
* plain PyTorch: the continuous Bernoulli log-density written out (BCE with logits plus its log normaliser,
  Taylor branch near 1/2 as torch.distributions.ContinuousBernoulli) and the closed-form KL;
* torch.compile of the plain forward + loss.

    PYTHONPATH=python python bench/bench_conv_vae.py [--data DIR] [--images 6000] [--threads 2] [--repeats 3]

Prints each side's epoch time (best of --repeats, after one untimed warm-up epoch) and its ratio to the heads.
"""
import argparse
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

import fastvae
from fastvae import datasets, heads

Z, BATCH = 16, 128


class Encoder(nn.Module):  # as notebooks/conv_vae.ipynb
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU())
        self.head = nn.Linear(32 * 7 * 7, 2 * Z)

    def forward(self, x):
        return self.head(self.conv(x.view(-1, 1, 28, 28)).flatten(1))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(Z, 32 * 7 * 7)
        self.deconv = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
                                    nn.ConvTranspose2d(16, 1, 4, 2, 1))

    def forward(self, z):
        return self.deconv(self.fc(z).view(-1, 32, 7, 7)).flatten(1)


def cb_log_norm(a):
    """log C(sigmoid(a)) = log(a / tanh(a / 2)), Taylor series where |a| < 2 artanh(0.002)."""
    small = a.abs() < 4.0000053333e-3
    safe = torch.where(small, torch.ones_like(a), a)
    u2 = a * a / 4
    return torch.where(small, math.log(2) + u2 * (1 / 3 + u2 * (-7 / 90 + u2 * 62 / 2835)),
                       torch.log(safe / torch.tanh(safe / 2)))


def plain_loss(enc, dec, x, eps):
    h = enc(x)
    mu, sigma = h[:, :Z], torch.exp(h[:, Z:] / 2)
    a = dec(mu + sigma * eps)
    rec = (-F.binary_cross_entropy_with_logits(a, x, reduction="none") + cb_log_norm(a)).sum(-1)
    kl = 0.5 * (mu * mu + sigma * sigma - 1).sum(-1) - sigma.log().sum(-1)
    return -(rec - kl).mean()


def heads_loss(enc, dec, x, eps):
    h = enc(x)
    mu, sigma = h[:, :Z], torch.exp(h[:, Z:] / 2)
    z = (mu + sigma * eps).unsqueeze(0)
    out = dec(z[0]).unsqueeze(0)
    return -heads.elbo_terms(x, out, z, mu, sigma, likelihood="continuous_bernoulli").elbo.mean()


def epoch(loss_fn, nets, x, noise):
    opt = torch.optim.Adam([p for n in nets for p in n.parameters()], lr=1e-3)
    t = time.perf_counter()
    for s in range(0, x.shape[0], BATCH):
        loss = loss_fn(*nets, x[s:s + BATCH], noise[s:s + BATCH])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def fresh():
    torch.manual_seed(0)
    return Encoder(), Decoder()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FASTVAE_DATA"))
    ap.add_argument("--images", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images, _ = datasets.load_mnist("train", root=args.data)
    u8 = datasets.flatten(images[:args.images])
    x = u8.float() / 255
    noise = torch.randn(x.shape[0], Z, generator=torch.Generator().manual_seed(1))
    compiled = torch.compile(plain_loss)
    sides = {"fastvae heads": heads_loss, "plain PyTorch": plain_loss, "torch.compile (plain)": compiled}
    best = {name: float("inf") for name in [*sides, "fastvae fit (whole loop)"]}
    for name, fn in sides.items():  # warm-up epoch: allocator, thread pool, compilation
        epoch(fn, fresh(), x, noise)
    for _ in range(args.repeats):
        for name, fn in sides.items():
            best[name] = min(best[name], epoch(fn, fresh(), x, noise))
        model = fastvae.VAE.from_networks(*fresh(), Z, likelihood="continuous_bernoulli")
        t = time.perf_counter()
        model.fit(u8, epochs=1, batch_size=BATCH, lr=1e-3, pixels="intensity", seed=0, progress=False)
        best["fastvae fit (whole loop)"] = min(best["fastvae fit (whole loop)"], time.perf_counter() - t)
    print(f"conv VAE epoch: {args.images} grey-level MNIST images, batch {BATCH}, Z = {Z}, continuous Bernoulli, "
          f"torch {torch.__version__}, {args.threads} threads, best of {args.repeats}")
    for name, t in best.items():
        print(f"  {name:28s} {t:7.3f} s   time / heads {t / best['fastvae heads']:5.2f}x")


if __name__ == "__main__":
    main()
