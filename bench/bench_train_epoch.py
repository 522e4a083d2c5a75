"""One training epoch of an MLP VAE: fastvae's C++ loop against three PyTorch peers, in one process,
on the same in-memory MNIST, from the same initial weights, with the same thread count (torch and BLAS).
``--model`` picks the model (see MODELS):

* ``stats305c``: the STATS 305C VAE (784-512-256-(2+2), 2-256-512-784 relu, Bernoulli, batch 64, images
  binarized at 127);
* ``iwae_paper``: the IWAE paper's one-stochastic-layer model (Burda et al. 2016: 784-200-200-(50+50),
  50-200-200-784 tanh, Bernoulli, batch 20), dynamic binarization (a fresh Bernoulli(p / 255) draw of every
  image each time it is used) in every peer, ELBO with one sample (the k = 1 run);
* ``cb``: the STATS 305C shape with the continuous Bernoulli likelihood on intensities p / 255
  (Loaiza-Ganem & Cunningham 2019), batch 64;
* ``categorical``: the categorical VAE of Jang, Gu & Poole 2017 (20 variables of 10 classes, 784-512-256-200
  logits, 200-256-512-784 relu, Bernoulli, batch 100, images binarized at 127), Gumbel-softmax samples at a
  fixed temperature 1 in every side (the preset anneals it; a fixed value times the same work).

The peers:

* the homework's eager loop: torch.nn modules, torch.distributions, DataLoader, per-batch binarization,
  Adam, ``loss.item()`` every step;
* a tuned eager loop: images binarized once (or drawn per batch with ``torch.bernoulli`` for dynamic
  binarization), batches by index, ``binary_cross_entropy_with_logits`` (the continuous Bernoulli: the same
  plus its closed-form log normaliser) and the closed-form KL, ``torch.optim.Adam(fused=True)``,
  ``zero_grad(set_to_none=True)``, no per-step ``.item()``; for categorical latents the homework loop uses
  ``RelaxedOneHotCategorical.rsample`` and the KL of ``Categorical`` to the uniform prior, the tuned loop
  ``log_softmax``, Gumbel noise ``-log(-log U)``, ``softmax((logits + g) / tau)`` and the closed-form KL
  ``sum q (log q + log K)``;
* ``torch.compile`` of the tuned loss (forward and backward), with the fused Adam step.

Every side first runs ``--warmup`` updates that are not timed (thread pools, allocator, compilation), then
each repeat times one (partial) epoch of every side in turn; the best of the repeats is kept.

    python bench/bench_train_epoch.py [--model stats305c] [--data DIR] [--threads 2] [--repeats 2]
                                      [--fraction 1.0] [--warmup 20] [--no-compile] [--busy N]
                                      [--busy-sweep 0,1,2,4] [--write-docs]

``--busy N`` keeps N processes spinning on the cores while every side is timed (a machine shared with other
work). ``--busy-sweep`` times, for each count of spinning processes in the list, fastvae at its default
settings (the thread count chosen by timing, ``TrainOptions.threads=None``), at one thread and at ``--threads``,
and the tuned eager loop and torch.compile at ``--threads`` (torch's default on this machine) and at one
thread; it writes the block ``bench_train_epoch_<model>_shared`` with ``--write-docs``.

Prints each side's epoch time, its ratio to fastvae, the achieved GFLOP/s and the machine's SGEMM rate;
``--write-docs`` also writes that table into docs/benchmarks.md (one block per model,
``bench_train_epoch`` for stats305c and ``bench_train_epoch_<model>`` for the others). A new model is one
entry of MODELS (and a marker pair in docs/benchmarks.md).
"""
import argparse
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn
from torch.distributions import (Bernoulli, Categorical, ContinuousBernoulli, Normal, RelaxedOneHotCategorical,
                                 kl_divergence)

import fastvae
from doc_tables import cpu_name, write_block
from fastvae.datasets import load_mnist

# The benchmarked models: layer sizes, activation, likelihood, batch size and what the model sees of a pixel
# (fastvae.TrainOptions.pixels). Every side uses the log-std posterior and the analytic KL with one sample.
# A categorical model (Jang et al. 2017) has latent = N variables of `categories` = K classes and a fixed
# Gumbel-softmax `temperature`; its peers branch on "categories".
MODELS = {
    "stats305c": dict(title="the STATS 305C VAE", enc=(512, 256), dec=(256, 512), latent=2, act="relu",
                      likelihood="bernoulli", batch=64, pixels="threshold"),
    "iwae_paper": dict(title="the IWAE paper's model (Burda et al. 2016), dynamic binarization", enc=(200, 200),
                       dec=(200, 200), latent=50, act="tanh", likelihood="bernoulli", batch=20, pixels="dynamic"),
    "cb": dict(title="the STATS 305C shape with the continuous Bernoulli likelihood on intensities",
               enc=(512, 256), dec=(256, 512), latent=2, act="relu", likelihood="continuous_bernoulli", batch=64,
               pixels="intensity"),
    "categorical": dict(title="the categorical VAE of Jang et al. 2017 (20 x 10), Gumbel-softmax at temperature 1",
                        enc=(512, 256), dec=(256, 512), latent=20, categories=10, temperature=1.0, act="relu",
                        likelihood="bernoulli", batch=100, pixels="threshold"),
}
ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(sizes, act):
    """nn.Sequential of Linear layers with `act` between them (none after the last)."""
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), ACTS[act]()]
    return nn.Sequential(*layers[:-1])


def code_dim(cfg):
    """Width of the decoder's input: N * K one-hot (relaxed) entries, or the Gaussian latent's dimension."""
    return cfg["latent"] * cfg.get("categories", 1)


def head_dim(cfg):
    """Width of the encoder's output: N * K logits, or [mu, log sigma]."""
    return code_dim(cfg) if cfg.get("categories") else 2 * cfg["latent"]


class Encoder(nn.Module):
    def __init__(self, cfg, data_dim=784):
        super().__init__()
        hidden, z = cfg["enc"], cfg["latent"]
        self.body = nn.Sequential(mlp([data_dim, *hidden], cfg["act"]), ACTS[cfg["act"]]())
        self.fc_mu = nn.Linear(hidden[-1], z)
        self.fc_logsigma = nn.Linear(hidden[-1], z)

    def forward(self, x):
        h = self.body(x)
        return Normal(self.fc_mu(h), torch.exp(self.fc_logsigma(h)))


class CategoricalEncoder(nn.Module):
    """q(z | x): N independent categoricals of K classes, relaxed at a fixed temperature (Jang et al. 2017)."""

    def __init__(self, cfg, data_dim=784):
        super().__init__()
        self.shape, self.tau = (cfg["latent"], cfg["categories"]), cfg["temperature"]
        self.body = nn.Sequential(mlp([data_dim, *cfg["enc"]], cfg["act"]), ACTS[cfg["act"]]())
        self.fc_logits = nn.Linear(cfg["enc"][-1], code_dim(cfg))

    def forward(self, x):
        logits = self.fc_logits(self.body(x)).reshape(len(x), *self.shape)
        return RelaxedOneHotCategorical(torch.tensor(self.tau), logits=logits)


class Decoder(nn.Module):
    def __init__(self, cfg, data_dim=784):
        super().__init__()
        self.net = mlp([code_dim(cfg), *cfg["dec"], data_dim], cfg["act"])
        self.dist = ContinuousBernoulli if cfg["likelihood"] == "continuous_bernoulli" else Bernoulli

    def forward(self, z):
        return self.dist(logits=self.net(z))


def elbo(x, encoder, decoder):
    qz = encoder(x)
    if isinstance(qz, RelaxedOneHotCategorical):  # relaxed sample into the decoder, KL of the categoricals
        z = qz.rsample()
        q, pz = Categorical(logits=qz.logits), Categorical(logits=torch.zeros_like(qz.logits))
        return (decoder(z.flatten(1)).log_prob(x).sum(axis=1) - kl_divergence(q, pz).sum(axis=1)).mean()
    pz = Normal(0.0, 1.0)
    z = qz.rsample()
    return (decoder(z).log_prob(x).sum(axis=1) - kl_divergence(qz, pz).sum(axis=1)).mean()


def homework_pixels(x, pixels):
    """What the homework-shaped loop does to each minibatch of intensities in [0, 1]."""
    if pixels == "threshold":
        return (x > 0.5).float()  # the homework binarizes each minibatch
    if pixels == "dynamic":
        return torch.bernoulli(x)
    return x


def homework_epoch(images01, encoder, decoder, optimizer, n_batches, batch, pixels):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images01), batch_size=batch, shuffle=True)
    train_elbo = 0.0
    for batch_idx, (x,) in enumerate(loader):
        if batch_idx == n_batches:
            break
        x = homework_pixels(x, pixels)
        optimizer.zero_grad()
        loss = -elbo(x, encoder, decoder)
        loss.backward()
        train_elbo -= loss.item() * len(x)
        optimizer.step()
    return train_elbo


def fastvae_layers(model):
    return [*model.encoder, model.encoder_head], [*model.decoder]


def copy_weights(model, encoder, decoder):
    """Load fastvae's initial weights into the PyTorch modules, so both start from the same point."""
    enc, dec = fastvae_layers(model)
    z = model.latent_dim
    with torch.no_grad():
        for lin, ours in zip([m for m in encoder.body.modules() if isinstance(m, nn.Linear)], enc[:-1]):
            lin.weight.copy_(ours.weight), lin.bias.copy_(ours.bias)
        h = enc[-1]
        if isinstance(encoder, CategoricalEncoder):
            encoder.fc_logits.weight.copy_(h.weight), encoder.fc_logits.bias.copy_(h.bias)
        else:
            encoder.fc_mu.weight.copy_(h.weight[:z]), encoder.fc_mu.bias.copy_(h.bias[:z])
            encoder.fc_logsigma.weight.copy_(h.weight[z:]), encoder.fc_logsigma.bias.copy_(h.bias[z:])
        for lin, ours in zip([m for m in decoder.net if isinstance(m, nn.Linear)], dec):
            lin.weight.copy_(ours.weight), lin.bias.copy_(ours.bias)


def cb_log_norm(a):
    """log C of the continuous Bernoulli at logits a: log(a / tanh(a / 2)) (Loaiza-Ganem & Cunningham 2019,
    eq. 7), and its Taylor series log 2 + a^2/12 - a^4/1440 near a = 0 where the ratio is 0/0."""
    small = a.abs() < 1e-2
    safe = torch.where(small, torch.ones_like(a), a)
    a2 = a * a
    return torch.where(small, math.log(2.0) + a2 / 12 - a2 * a2 / 1440, torch.log(safe / torch.tanh(safe / 2)))


class TunedVAE(nn.Module):
    """The same network as two nn.Sequential stacks; the encoder's last layer holds [mu, log sigma]."""

    def __init__(self, cfg, data_dim=784):
        super().__init__()
        self.encoder = mlp([data_dim, *cfg["enc"], head_dim(cfg)], cfg["act"])
        self.decoder = mlp([code_dim(cfg), *cfg["dec"], data_dim], cfg["act"])
        self.cb = cfg["likelihood"] == "continuous_bernoulli"
        self.categories, self.tau = cfg.get("categories", 0), cfg.get("temperature")

    def forward(self, x):
        """Negative ELBO per image, averaged over the batch (Kingma & Welling 2014, analytic Gaussian KL;
        categorical latents: Jang et al. 2017, Gumbel-softmax sample, closed-form KL to the uniform prior)."""
        if self.categories:
            logits = self.encoder(x).reshape(len(x), -1, self.categories)
            log_q = F.log_softmax(logits, dim=-1)
            g = -torch.log(-torch.log(torch.rand_like(logits).clamp_(1e-20, 1.0)))  # Gumbel(0, 1) noise
            y = F.softmax((logits + g) / self.tau, dim=-1)
            rec = F.binary_cross_entropy_with_logits(self.decoder(y.flatten(1)), x, reduction="sum")
            kl = (log_q.exp() * (log_q + math.log(self.categories))).sum()
            return (rec + kl) / len(x)
        mu, log_sigma = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.exp(log_sigma) * torch.randn_like(mu)
        logits = self.decoder(z)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        if self.cb:
            rec = rec - cb_log_norm(logits).sum()
        kl = 0.5 * (mu * mu + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum()
        return (rec + kl) / len(x)


def tuned_epoch(images01, xb, loss_fn, optimizer, n_batches, batch, pixels):
    """xb: the images as the model sees them if that is fixed (binarized once, or intensities), else None and
    each batch is drawn from images01 (dynamic binarization); the ELBO sum stays a tensor (no host sync)."""
    perm = torch.randperm(len(images01))
    total = torch.zeros(())
    for i in range(n_batches):
        idx = perm[i * batch:(i + 1) * batch]
        x = torch.bernoulli(images01[idx]) if pixels == "dynamic" else xb[idx]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(x)
        loss.backward()
        optimizer.step()
        total -= loss.detach() * len(x)
    return total.item()


def copy_tuned(model, tuned):
    enc, dec = fastvae_layers(model)
    with torch.no_grad():
        for stack, ours in ((tuned.encoder, enc), (tuned.decoder, dec)):
            for lin, src in zip([m for m in stack if isinstance(m, nn.Linear)], ours):
                lin.weight.copy_(src.weight), lin.bias.copy_(src.bias)


def flops_per_image(model):
    """Multiply-adds x 2 of forward (all layers) and backward (weight and input grads, no input grad
    for the first encoder layer)."""
    enc, dec = fastvae_layers(model)
    macs = sum(lin.in_features * lin.out_features for lin in enc + dec)
    first = enc[0].in_features * enc[0].out_features
    return 2 * (macs + 2 * macs - first)


def sgemm_gflops(n=1024, reps=10):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


class spinning:
    """``n`` processes spinning (``while True: pass``) for the duration of a with block."""

    def __init__(self, n):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        time.sleep(0.2 if self.n else 0)  # let the scheduler spread them
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


class at_threads:
    """torch's and the BLAS pools' thread count set to ``n`` for a with block (None: left as it is)."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.before = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(self.n)
            self.limits = threadpool_limits(limits=self.n)
        return self

    def __exit__(self, *exc):
        if self.n is not None:
            self.limits.restore_original_limits()
            torch.set_num_threads(self.before)


def sweep(args, cfg, sides, n_batches, n_images):
    """The shared-machine table: every side at its default threads and at one thread, under each load."""
    counts = [int(v) for v in args.busy_sweep.split(",")]
    fit = sides["fastvae C++ loop"]
    peers = [(n, f) for n, f in sides.items() if n.startswith("PyTorch") and "homework" not in n]
    variants = {"fastvae, default (threads chosen by timing)": (None, fit),
                "fastvae, 1 thread": (None, lambda nb: fit(nb, 1)),
                f"fastvae, {args.threads} threads": (None, lambda nb: fit(nb, args.threads))}
    for name, f in peers:
        short = name.replace("PyTorch, ", "")
        variants[f"{short}, default ({args.threads} threads)"] = (None, f)
        variants[f"{short}, 1 thread"] = (1, f)
    for name, (threads, f) in variants.items():  # warm-up, not timed
        with at_threads(threads):
            f(max(1, args.warmup))
    table = {}
    for busy in counts:
        times = {name: [] for name in variants}
        with spinning(busy):
            for _ in range(args.repeats):
                for name, (threads, f) in variants.items():
                    with at_threads(threads):
                        t = time.perf_counter()
                        f(n_batches)
                        times[name].append(time.perf_counter() - t)
        table[busy] = {name: min(ts) for name, ts in times.items()}
        print(f"busy {busy}: " + ", ".join(f"{n} {t:.3f} s" for n, t in table[busy].items()), flush=True)
    names = list(variants)
    rows = [f"| {b} | " + " | ".join(f"{table[b][n]:.3f}" for n in names) + " |" for b in counts]
    default = names[0]
    fixed = [n for n in names if n.startswith("fastvae,") and n != default]
    peer_defaults = [n for n in names if not n.startswith("fastvae") and "default" in n]
    notes = []
    for b in counts:
        t = table[b][default]
        best_peer = min(table[b][n] for n in peer_defaults) if peer_defaults else float("nan")
        notes.append(f"- {b} busy: fastvae default {t:.3f} s; best peer at its default / fastvae default "
                     f"{best_peer / t:.2f}x; fastvae default / its idle time {t / table[counts[0]][default]:.2f}x; "
                     f"fastvae default / its best fixed thread count {t / min(table[b][n] for n in fixed):.2f}x")
    print("\n".join(notes))
    if args.write_docs:
        write_block(f"bench_train_epoch_{args.model}_shared", [
            f"Model: {cfg['title']}, batch {cfg['batch']}, pixels `{cfg['pixels']}`. Epoch of {n_images:,} images "
            f"({n_batches} updates), best of {args.repeats} repeats per load, seconds; 'busy' counts the processes "
            f"spinning (`while True: pass`) while every side is timed (the first count is the idle machine).", "",
            "| busy | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|", *rows, "", *notes],
            args.threads, script="bench_train_epoch")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), default="stats305c")
    ap.add_argument("--data", default=os.environ.get("FASTVAE_DATA"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=1.0, help="fraction of the epoch to time")
    ap.add_argument("--warmup", type=int, default=20, help="untimed updates per side before timing")
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile peer")
    ap.add_argument("--busy", type=int, nargs="?", const=1, default=0,
                    help="processes kept spinning while timing (a loaded machine); bare --busy: 1")
    ap.add_argument("--busy-sweep", default=None,
                    help="comma-separated counts of spinning processes: the shared-machine table")
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):  # BLAS pools too, so every side gets the same threads
        run(args)


def run(args):
    cfg = MODELS[args.model]
    B, pixels = cfg["batch"], cfg["pixels"]
    torch.manual_seed(0)
    images, _ = load_mnist("train", root=args.data)
    images = images.reshape(len(images), -1)
    n_batches = max(1, int(round(args.fraction * -(-len(images) // B))))
    n_images = min(len(images), n_batches * B)
    images01 = images.float() / 255
    # the tuned loops binarize once, as fastvae does (threshold 127 of 255), or feed intensities
    xb = {"threshold": (images01 > 0.5).float(), "intensity": images01, "dynamic": None}[pixels]

    if cfg.get("categories"):
        model = fastvae.VAE(latent_dim=cfg["latent"], encoder_hidden=cfg["enc"], decoder_hidden=cfg["dec"],
                            activation=cfg["act"], likelihood=cfg["likelihood"], latent="categorical",
                            categories=cfg["categories"])
        encoder = CategoricalEncoder(cfg)
        fit_extra = dict(temperature=cfg["temperature"], temperature_min=cfg["temperature"], anneal_rate=0.0)
    else:
        model = fastvae.VAE(latent_dim=cfg["latent"], encoder_hidden=cfg["enc"], decoder_hidden=cfg["dec"],
                            activation=cfg["act"], posterior="logstd", likelihood=cfg["likelihood"])
        encoder, fit_extra = Encoder(cfg), {}
    decoder = Decoder(cfg)
    copy_weights(model, encoder, decoder)
    hw_opt = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=1e-3)
    tuned = TunedVAE(cfg)
    copy_tuned(model, tuned)
    tuned_opt = torch.optim.Adam(tuned.parameters(), lr=1e-3, fused=True)
    sides = {
        "PyTorch, homework's eager loop":
            lambda nb: homework_epoch(images01[:nb * B], encoder, decoder, hw_opt, nb, B, pixels),
        "PyTorch, tuned eager loop":
            lambda nb: tuned_epoch(images01[:nb * B], None if xb is None else xb[:nb * B], tuned, tuned_opt, nb, B,
                                   pixels),
    }
    if not args.no_compile:
        compiled = TunedVAE(cfg)
        copy_tuned(model, compiled)
        compiled_opt = torch.optim.Adam(compiled.parameters(), lr=1e-3, fused=True)
        compiled_loss = torch.compile(compiled)
        sides["PyTorch, torch.compile of the tuned loop"] = (
            lambda nb: tuned_epoch(images01[:nb * B], None if xb is None else xb[:nb * B], compiled_loss,
                                   compiled_opt, nb, B, pixels))
    def fastvae_epoch(nb, threads=None):
        model.fit(images[:nb * B], epochs=1, batch_size=B, lr=1e-3, threshold=127, pixels=pixels, progress=False,
                  threads=threads, **fit_extra)

    sides["fastvae C++ loop"] = fastvae_epoch
    if args.busy_sweep is not None:
        return sweep(args, cfg, sides, n_batches, n_images)

    best, warm = time_sides(sides, n_batches, args.warmup, args.repeats, args.busy)
    load = f", {args.busy} busy-loop process{'es' if args.busy > 1 else ''} spinning" if args.busy else ""
    block = "bench_train_epoch" + ("" if args.model == "stats305c" else f"_{args.model}") + \
        ("_busy" if args.busy else "")
    report(args, best, warm, model_line=f"model: {args.model} ({cfg['title']}), batch {B}, pixels {pixels}",
           model_sentence=f"Model: {cfg['title']}, batch {B}, pixels `{pixels}`{load}.",
           flop=flops_per_image(model), n_images=n_images, n_batches=n_batches, batch=B,
           full=-(-len(images) // B), load=load, block=block, script="bench_train_epoch")


def time_sides(sides, n_batches, warmup, repeats, busy=0):
    """Each side's best time of ``repeats`` (partial) epochs of ``n_batches`` updates, the sides in turn, after
    ``warmup`` untimed updates of each (thread pools, allocator, torch.compile's compilation); ``busy`` spinning
    processes run through every timed repeat of every side, so that they share the same load.
    Returns (best seconds, warm-up seconds), by side."""
    warm = {}
    for name, epoch in sides.items():
        t = time.perf_counter()
        epoch(max(1, warmup))
        warm[name] = time.perf_counter() - t
    times = {name: [] for name in sides}
    with spinning(busy):
        for _ in range(repeats):
            for name, epoch in sides.items():
                t = time.perf_counter()
                epoch(n_batches)
                times[name].append(time.perf_counter() - t)
    return {name: min(ts) for name, ts in times.items()}, warm


def report(args, best, warm, *, model_line, model_sentence, flop, n_images, n_batches, batch, full, load="",
           block, script, mflop_digits=1):
    """Print each side's epoch time, its ratio to fastvae's ("fastvae C++ loop") and its GFLOP/s (``flop``: the
    dense-equivalent work of forward and backward per image), and the machine's SGEMM rate; with
    ``args.write_docs``, write the table into docs/benchmarks.md's ``block``."""
    gflop = flop * n_images / 1e9
    t_fast = best["fastvae C++ loop"]
    sgemm = sgemm_gflops()
    print(model_line)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"threads {args.threads}{load}")
    print(f"epoch of {n_images} images ({n_batches} updates of {batch}), best of {args.repeats}, after {args.warmup} "
          f"untimed warm-up updates per side (warm-up took " +
          ", ".join(f"{w:.1f} s" for w in warm.values()) + ")")
    rows = []
    for name, t in best.items():
        print(f"{name:<42s}: {t:8.3f} s  ({gflop / t:6.1f} GFLOP/s)  time / fastvae {t / t_fast:5.2f}x")
        rows.append(f"| {name} | {t:.3f} | {t / t_fast:.2f}x | {gflop / t:.1f} |")
    print(f"SGEMM 1024^3: {sgemm:6.1f} GFLOP/s")
    if args.write_docs:
        write_block(block, [
            f"{model_sentence} "
            f"Epoch of {n_images:,} images ({n_batches} updates of {batch}; the full epoch is {full}), best of "
            f"{args.repeats} repeats, after {args.warmup} untimed warm-up updates per side. GFLOP/s counts the "
            f"dense-equivalent work of forward and backward ({flop / 1e6:.{mflop_digits}f} MFLOP per image). "
            f"SGEMM rate of the machine in the same run (`torch.mm`, 1024 x 1024): {sgemm:.1f} GFLOP/s.", "",
            "| implementation | epoch time (s) | time / fastvae | GFLOP/s |", "|---|---|---|---|", *rows],
            args.threads, script=script)

if __name__ == "__main__":
    main()
