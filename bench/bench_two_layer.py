"""One training epoch of the IWAE paper's two-stochastic-layer VAE (Burda et al. 2016, Sec. 5: q(z1 | x) from
784-200-200 tanh, q(z2 | z1) from 100-100-100 tanh, p(z1 | z2) from 50-100-100 tanh, p(x | z1) from 100-200-200-784
tanh, log-std heads, Bernoulli), batch 20, dynamic binarization, the k = 1 objective (the Monte Carlo ELBO with
one sample of each layer): fastvae's C++ loop against three PyTorch peers in one process, on the same in-memory
MNIST, from the same initial weights, with the same thread count.

The peers:

* the homework-style eager loop: torch.nn modules, ``torch.distributions.Normal`` / ``Bernoulli`` log densities of
  every layer, DataLoader, a Bernoulli draw per batch, Adam, ``loss.item()`` every step;
* a tuned eager loop: batches by index, ``torch.bernoulli`` per batch, the log densities in closed form
  (``binary_cross_entropy_with_logits``, the Gaussians' quadratic forms; the 2 pi terms cancel),
  ``torch.optim.Adam(fused=True)``, ``zero_grad(set_to_none=True)``, no per-step ``.item()``;
* ``torch.compile`` of the tuned loss (forward and backward), with the fused Adam step.

Every side runs ``--warmup`` untimed updates first, then each repeat times one (partial) epoch of every side in
turn; the best of the repeats is kept.

    python bench/bench_two_layer.py [--data DIR] [--threads 2] [--repeats 2] [--fraction 1.0] [--warmup 20]
                                    [--no-compile] [--write-docs]
"""
import argparse
import dataclasses
import os

import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn
from torch.distributions import Bernoulli, Normal

import fastvae
from bench_train_epoch import mlp, report, time_sides, tuned_epoch
from fastvae.datasets import load_mnist

B = 20
PRESET = "iwae_paper_2layer"


class TwoLayer(nn.Module):
    """The four MLPs; each Gaussian head is [mean | log sigma]."""

    def __init__(self, cfg):
        super().__init__()
        z1, z2, eh, dh, uh = (cfg["latent_dim"], cfg["upper_latents"][0], cfg["encoder_hidden"],
                              cfg["decoder_hidden"], cfg["upper_hidden"])
        self.q1 = mlp([cfg["data_dim"], *eh, 2 * z1], "tanh")
        self.q2 = mlp([z1, *uh, 2 * z2], "tanh")
        self.p1 = mlp([z2, *uh, 2 * z1], "tanh")
        self.px = mlp([z1, *dh, cfg["data_dim"]], "tanh")

    def copy_from(self, model):
        """fastvae's initial weights, so that every side starts from the same point."""
        ours = [*model.encoder, model.encoder_head], [*model.decoder], [*model.upper_encoders[0]], \
            [*model.upper_decoders[0]]
        with torch.no_grad():
            for stack, src in zip((self.q1, self.px, self.q2, self.p1), ours):
                for lin, o in zip([m for m in stack if isinstance(m, nn.Linear)], src):
                    lin.weight.copy_(o.weight), lin.bias.copy_(o.bias)


class HomeworkTwoLayer(TwoLayer):
    def elbo(self, x):
        """log p(x | z1) + log p(z1 | z2) + log p(z2) - log q(z1 | x) - log q(z2 | z1), one sample, batch mean."""
        m1, s1 = self.q1(x).chunk(2, 1)
        q1 = Normal(m1, torch.exp(s1))
        z1 = q1.rsample()
        m2, s2 = self.q2(z1).chunk(2, 1)
        q2 = Normal(m2, torch.exp(s2))
        z2 = q2.rsample()
        pm, ps = self.p1(z2).chunk(2, 1)
        log_w = (Bernoulli(logits=self.px(z1)).log_prob(x).sum(1) + Normal(pm, torch.exp(ps)).log_prob(z1).sum(1)
                 + Normal(0.0, 1.0).log_prob(z2).sum(1) - q1.log_prob(z1).sum(1) - q2.log_prob(z2).sum(1))
        return log_w.mean()


class TunedTwoLayer(TwoLayer):
    def forward(self, x):
        """The negative ELBO, batch mean, in closed form (the 2 pi terms of the four Gaussians cancel)."""
        m1, s1 = self.q1(x).chunk(2, 1)
        e1 = torch.randn_like(m1)
        z1 = m1 + torch.exp(s1) * e1
        m2, s2 = self.q2(z1).chunk(2, 1)
        e2 = torch.randn_like(m2)
        z2 = m2 + torch.exp(s2) * e2
        pm, ps = self.p1(z2).chunk(2, 1)
        rec = F.binary_cross_entropy_with_logits(self.px(z1), x, reduction="sum")
        log_pz1 = (-0.5 * ((z1 - pm) * torch.exp(-ps)) ** 2 - ps).sum()
        log_q = (-0.5 * e1 * e1 - s1).sum() + (-0.5 * e2 * e2 - s2).sum()
        return (rec - log_pz1 + 0.5 * (z2 * z2).sum() + log_q) / len(x)


def homework_epoch(images01, net, optimizer, n_batches):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images01), batch_size=B, shuffle=True)
    total = 0.0
    for i, (x,) in enumerate(loader):
        if i == n_batches:
            break
        x = torch.bernoulli(x)
        optimizer.zero_grad()
        loss = -net.elbo(x)
        loss.backward()
        total -= loss.item() * len(x)
        optimizer.step()
    return total


def flops_per_image(model):
    """Multiply-adds x 2 of forward and backward (weight and input gradients; none for the first layer's input)."""
    layers = [*model.encoder, model.encoder_head, *model.decoder, *model.upper_encoders[0], *model.upper_decoders[0]]
    macs = sum(lin.in_features * lin.out_features for lin in layers)
    first = model.encoder[0].in_features * model.encoder[0].out_features
    return 2 * (3 * macs - first)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FASTVAE_DATA"))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=1.0, help="share of an epoch timed (1.0: the whole epoch)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        run(args)


def run(args):
    cfg = fastvae.presets.get(PRESET).model
    torch.manual_seed(0)
    images, _ = load_mnist("train", root=args.data)
    images = images.reshape(len(images), -1)
    n_batches = max(1, int(round(args.fraction * -(-len(images) // B))))
    n_images = min(len(images), n_batches * B)
    images01 = images.float() / 255
    model = fastvae.VAE.from_preset(PRESET)
    homework, tuned = HomeworkTwoLayer(cfg), TunedTwoLayer(cfg)
    for net in (homework, tuned):
        net.copy_from(model)
    hw_opt = torch.optim.Adam(homework.parameters(), lr=1e-3)
    tuned_opt = torch.optim.Adam(tuned.parameters(), lr=1e-3, fused=True)
    sides = {
        "PyTorch, homework-style eager loop": lambda nb: homework_epoch(images01[:nb * B], homework, hw_opt, nb),
        "PyTorch, tuned eager loop": lambda nb: tuned_epoch(images01[:nb * B], None, tuned, tuned_opt, nb, B,
                                                            "dynamic"),
    }
    if not args.no_compile:
        compiled = TunedTwoLayer(cfg)
        compiled.copy_from(model)
        compiled_opt = torch.optim.Adam(compiled.parameters(), lr=1e-3, fused=True)
        compiled_loss = torch.compile(compiled)
        sides["PyTorch, torch.compile of the tuned loop"] = (
            lambda nb: tuned_epoch(images01[:nb * B], None, compiled_loss, compiled_opt, nb, B, "dynamic"))
    options = dataclasses.replace(fastvae.TrainOptions(**fastvae.presets.get(PRESET).train), epochs=1)
    sides["fastvae C++ loop"] = lambda nb: model.fit(images[:nb * B], options, progress=False)

    best, warm = time_sides(sides, n_batches, args.warmup, args.repeats)
    report(args, best, warm,
           model_line=f"model: {PRESET} (Burda et al. 2016, two stochastic layers), batch {B}, dynamic binarization, "
                      "k = 1",
           model_sentence=f"Model: the IWAE paper's two-stochastic-layer VAE (`{PRESET}`), batch {B}, dynamic "
                          "binarization, the k = 1 objective.",
           flop=flops_per_image(model), mflop_digits=2, n_images=n_images, n_batches=n_batches, batch=B,
           full=-(-len(images) // B), block="bench_two_layer", script="bench_two_layer")

if __name__ == "__main__":
    main()
