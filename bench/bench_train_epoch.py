"""One training epoch of the STATS 305C VAE: fastvae's C++ loop against the homework's plain PyTorch
eager loop (torch.nn modules, torch.distributions, DataLoader, Adam), in one process, on the same
in-memory MNIST, from the same initial weights, with the same thread count.

    python bench/bench_train_epoch.py [--data DIR] [--threads 2] [--repeats 2] [--fraction 1.0]

Prints the best-of-repeats epoch time of each side, the ratio, the achieved GFLOP/s and the machine's
measured SGEMM rate.
"""
import argparse
import os
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence

import fastvae
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


def torch_epoch(images01, encoder, decoder, optimizer, n_batches):
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    images, _ = load_mnist("train", root=args.data)
    images = images.reshape(len(images), -1)
    n_batches = max(1, int(round(args.fraction * -(-len(images) // 64))))
    n_images = min(len(images), n_batches * 64)
    images01 = images.float() / 255

    model = fastvae.VAE.from_preset("stats305c")
    encoder, decoder = Encoder(), Decoder()
    copy_weights(model, encoder, decoder)
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=1e-3)

    t_torch, t_fast = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        torch_epoch(images01[:n_images], encoder, decoder, optimizer, n_batches)
        t_torch.append(time.perf_counter() - t)
        t = time.perf_counter()
        model.fit(images[:n_images], epochs=1, batch_size=64, lr=1e-3, threshold=127, progress=False)
        t_fast.append(time.perf_counter() - t)
    tt, tf = min(t_torch), min(t_fast)
    gflop = flops_per_image(model) * n_images / 1e9
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"threads {args.threads}")
    print(f"epoch of {n_images} images ({n_batches} updates of 64), best of {args.repeats}")
    print(f"pytorch eager loop : {tt:8.3f} s  ({gflop / tt:6.1f} GFLOP/s)")
    print(f"fastvae C++ loop   : {tf:8.3f} s  ({gflop / tf:6.1f} GFLOP/s)")
    print(f"speedup            : {tt / tf:8.2f}x")
    print(f"SGEMM 1024^3       : {sgemm_gflops():6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
