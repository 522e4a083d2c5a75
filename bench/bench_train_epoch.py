"""One training epoch of the STATS 305C VAE: fastvae's C++ loop against three PyTorch peers, in one process,
on the same in-memory MNIST, from the same initial weights, with the same thread count (torch and BLAS):

* the homework's eager loop: torch.nn modules, torch.distributions, DataLoader, per-batch binarization,
  Adam, ``loss.item()`` every step;
* a tuned eager loop: images binarized once, batches by index, ``binary_cross_entropy_with_logits`` and the
  closed-form KL, ``torch.optim.Adam(fused=True)``, ``zero_grad(set_to_none=True)``, no per-step ``.item()``;
* ``torch.compile`` of the tuned loss (forward and backward), with the fused Adam step.

Every side first runs ``--warmup`` updates that are not timed (thread pools, allocator, compilation), then
each repeat times one (partial) epoch of every side in turn; the best of the repeats is kept.

    python bench/bench_train_epoch.py [--data DIR] [--threads 2] [--repeats 2] [--fraction 1.0] [--warmup 20]
                                      [--no-compile] [--write-docs]

Prints each side's epoch time, its ratio to fastvae, the achieved GFLOP/s and the machine's SGEMM rate;
``--write-docs`` also writes that table into docs/benchmarks.md.
"""
import argparse
import os
import platform
import time

import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence

import fastvae
from doc_tables import write_block
from fastvae.datasets import load_mnist


class Encoder(nn.Module):
    def __init__(self, data_dim=784, latent_dim=2, hidden=(512, 256)):
        super().__init__()
        self.fc1 = nn.Linear(data_dim, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc_mu = nn.Linear(hidden[1], latent_dim)
        self.fc_logsigma = nn.Linear(hidden[1], latent_dim)

    def forward(self, x):
        h = F.relu(self.fc2(F.relu(self.fc1(x))))
        return Normal(self.fc_mu(h), torch.exp(self.fc_logsigma(h)))


class Decoder(nn.Module):
    def __init__(self, data_dim=784, latent_dim=2, hidden=(256, 512)):
        super().__init__()
        self.fc1 = nn.Linear(latent_dim, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fcout = nn.Linear(hidden[1], data_dim)

    def forward(self, z):
        return Bernoulli(logits=self.fcout(F.relu(self.fc2(F.relu(self.fc1(z))))))


def elbo(x, encoder, decoder):
    qz, pz = encoder(x), Normal(0.0, 1.0)
    z = qz.rsample()
    return (decoder(z).log_prob(x).sum(axis=1) - kl_divergence(qz, pz).sum(axis=1)).mean()


def homework_epoch(images01, encoder, decoder, optimizer, n_batches):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images01), batch_size=64, shuffle=True)
    train_elbo = 0.0
    for batch_idx, (x,) in enumerate(loader):
        if batch_idx == n_batches:
            break
        x = (x > 0.5).float()  # the homework binarizes each minibatch
        optimizer.zero_grad()
        loss = -elbo(x, encoder, decoder)
        loss.backward()
        train_elbo -= loss.item() * len(x)
        optimizer.step()
    return train_elbo


def copy_weights(model, encoder, decoder):
    """Load fastvae's initial weights into the PyTorch modules, so both start from the same point."""
    with torch.no_grad():
        encoder.fc1.weight.copy_(model.encoder[0].weight), encoder.fc1.bias.copy_(model.encoder[0].bias)
        encoder.fc2.weight.copy_(model.encoder[1].weight), encoder.fc2.bias.copy_(model.encoder[1].bias)
        h = model.encoder_head
        encoder.fc_mu.weight.copy_(h.weight[:2]), encoder.fc_mu.bias.copy_(h.bias[:2])
        encoder.fc_logsigma.weight.copy_(h.weight[2:]), encoder.fc_logsigma.bias.copy_(h.bias[2:])
        for lin, ours in zip([decoder.fc1, decoder.fc2, decoder.fcout], model.decoder):
            lin.weight.copy_(ours.weight), lin.bias.copy_(ours.bias)


class TunedVAE(nn.Module):
    """The same network as two nn.Sequential stacks; the encoder's last layer holds [mu, log sigma]."""

    def __init__(self, data_dim=784, latent_dim=2):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(data_dim, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                     nn.Linear(256, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                     nn.Linear(512, data_dim))

    def forward(self, x):
        """Negative ELBO per image, averaged over the batch (Kingma & Welling 2014, analytic Gaussian KL)."""
        mu, log_sigma = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.exp(log_sigma) * torch.randn_like(mu)
        rec = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        kl = 0.5 * (mu * mu + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum()
        return (rec + kl) / len(x)


def tuned_epoch(xb, loss_fn, optimizer, n_batches):
    """xb: binarized float images [N, 784]; the ELBO sum stays a tensor (no host sync per step)."""
    perm = torch.randperm(len(xb))
    total = torch.zeros(())
    for i in range(n_batches):
        x = xb[perm[i * 64:(i + 1) * 64]]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(x)
        loss.backward()
        optimizer.step()
        total -= loss.detach() * len(x)
    return total.item()


def copy_tuned(model, tuned):
    with torch.no_grad():
        ours = [*model.encoder, model.encoder_head]
        for lin, src in zip([tuned.encoder[0], tuned.encoder[2], tuned.encoder[4]], ours):
            lin.weight.copy_(src.weight), lin.bias.copy_(src.bias)
        for lin, src in zip([tuned.decoder[0], tuned.decoder[2], tuned.decoder[4]], model.decoder):
            lin.weight.copy_(src.weight), lin.bias.copy_(src.bias)


def flops_per_image(model):
    """Multiply-adds x 2 of forward (all layers) and backward (weight and input grads, no input grad
    for the first encoder layer)."""
    layers = [*model.encoder, model.encoder_head, *model.decoder]
    macs = sum(lin.in_features * lin.out_features for lin in layers)
    first = model.encoder[0].in_features * model.encoder[0].out_features
    return 2 * (macs + 2 * macs - first)


def sgemm_gflops(n=1024, reps=10):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FASTVAE_DATA"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=1.0, help="fraction of the epoch to time")
    ap.add_argument("--warmup", type=int, default=20, help="untimed updates per side before timing")
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile peer")
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):  # BLAS pools too, so every side gets the same threads
        run(args)


def run(args):
    torch.manual_seed(0)
    images, _ = load_mnist("train", root=args.data)
    images = images.reshape(len(images), -1)
    n_batches = max(1, int(round(args.fraction * -(-len(images) // 64))))
    n_images = min(len(images), n_batches * 64)
    images01 = images.float() / 255
    xb = (images01 > 0.5).float()  # the tuned loops binarize once, as fastvae does (threshold 127 of 255)

    model = fastvae.VAE.from_preset("stats305c")
    encoder, decoder = Encoder(), Decoder()
    copy_weights(model, encoder, decoder)
    hw_opt = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=1e-3)
    tuned = TunedVAE()
    copy_tuned(model, tuned)
    tuned_opt = torch.optim.Adam(tuned.parameters(), lr=1e-3, fused=True)
    sides = {
        "PyTorch, homework's eager loop": lambda nb: homework_epoch(images01[:nb * 64], encoder, decoder, hw_opt, nb),
        "PyTorch, tuned eager loop": lambda nb: tuned_epoch(xb[:nb * 64], tuned, tuned_opt, nb),
    }
    if not args.no_compile:
        compiled = TunedVAE()
        copy_tuned(model, compiled)
        compiled_opt = torch.optim.Adam(compiled.parameters(), lr=1e-3, fused=True)
        compiled_loss = torch.compile(compiled)
        sides["PyTorch, torch.compile of the tuned loop"] = (
            lambda nb: tuned_epoch(xb[:nb * 64], compiled_loss, compiled_opt, nb))
    sides["fastvae C++ loop"] = lambda nb: model.fit(images[:nb * 64], epochs=1, batch_size=64, lr=1e-3,
                                                     threshold=127, progress=False)

    warm = {}
    for name, epoch in sides.items():  # not timed: thread pools, allocator, torch.compile's compilation
        t = time.perf_counter()
        epoch(max(1, args.warmup))
        warm[name] = time.perf_counter() - t
    times = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, epoch in sides.items():
            t = time.perf_counter()
            epoch(n_batches)
            times[name].append(time.perf_counter() - t)
    best = {name: min(ts) for name, ts in times.items()}
    gflop = flops_per_image(model) * n_images / 1e9
    t_fast = best["fastvae C++ loop"]
    sgemm = sgemm_gflops()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"threads {args.threads}")
    print(f"epoch of {n_images} images ({n_batches} updates of 64), best of {args.repeats}, after {args.warmup} "
          f"untimed warm-up updates per side (warm-up took " +
          ", ".join(f"{w:.1f} s" for w in warm.values()) + ")")
    rows = []
    for name, t in best.items():
        print(f"{name:<42s}: {t:8.3f} s  ({gflop / t:6.1f} GFLOP/s)  time / fastvae {t / t_fast:5.2f}x")
        rows.append(f"| {name} | {t:.3f} | {t / t_fast:.2f}x | {gflop / t:.1f} |")
    print(f"SGEMM 1024^3: {sgemm:6.1f} GFLOP/s")
    if args.write_docs:
        write_block("bench_train_epoch", [
            f"Epoch of {n_images:,} images ({n_batches} updates of 64; the full epoch is 938), best of "
            f"{args.repeats} repeats, after {args.warmup} untimed warm-up updates per side. GFLOP/s counts the "
            f"dense-equivalent work of forward and backward ({flops_per_image(model) / 1e6:.1f} MFLOP per image). "
            f"SGEMM rate of the machine in the same run (`torch.mm`, 1024 x 1024): {sgemm:.1f} GFLOP/s.", "",
            "| implementation | epoch time (s) | time / fastvae | GFLOP/s |", "|---|---|---|---|", *rows],
            args.threads)


if __name__ == "__main__":
    main()
