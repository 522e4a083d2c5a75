"""The objective heads alone (fastvae.heads) against the same terms written in plain PyTorch and against
torch.compile of those, forward plus backward, in one process.

Cases: the ELBO (Bernoulli likelihood from logits, analytic KL; L = 1, B = 128, D = 784, Z = 32, the
homework's MNIST shapes), the same with the continuous Bernoulli likelihood on grey levels (the conv VAE
notebook's; plain side: BCE with logits plus the log normaliser as bench_conv_vae.py writes it) and the IWAE
bound with K = 5 samples (reparameterization gradient). Each side gets the same leaves (decoder output, z, mu,
sigma) and backpropagates sum(-elbo) to them. Prints the median wall time of each side over --reps runs in
alternating blocks of --block calls (the first call of each block, which refills the caches the other side
evicted, is not counted) after --warmup untimed calls per side (torch.compile's compilation happens there), and
the ratios plain / heads and compiled / heads.

Run: PYTHONPATH=python python bench/bench_heads.py [--reps 50] [--warmup 5] [--threads 2] [--block 5]
                                                  [--no-compile] [--write-docs]

--write-docs writes the table into docs/heads.md.
"""
import argparse
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import doc_tables
from bench_conv_vae import cb_log_norm
from fastvae import heads

ROWS = []


def plain_elbo(x, out, z, mu, sigma):
    rec = -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none").sum(-1).mean(0)
    kl = 0.5 * (mu * mu + sigma * sigma - 1).sum(-1) - sigma.log().sum(-1)
    return rec - kl


def plain_cb_elbo(x, out, z, mu, sigma):
    rec = (-F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none") + cb_log_norm(out))
    kl = 0.5 * (mu * mu + sigma * sigma - 1).sum(-1) - sigma.log().sum(-1)
    return rec.sum(-1).mean(0) - kl


def plain_iwae(x, out, z, mu, sigma):
    ll = -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none").sum(-1)
    e = (z - mu) / sigma
    lw = ll + (0.5 * (e * e - z * z) + sigma.log()).sum(-1)
    return torch.logsumexp(lw, 0) - math.log(out.shape[0])


def heads_elbo(x, out, z, mu, sigma):
    return heads.elbo_terms(x, out, z, mu, sigma).elbo


def heads_cb_elbo(x, out, z, mu, sigma):
    return heads.elbo_terms(x, out, z, mu, sigma, likelihood="continuous_bernoulli").elbo


def heads_iwae(x, out, z, mu, sigma):
    return heads.iwae_bound(x, out, z, mu, sigma)[0]


def inputs(L, B, D, Z, seed=0, grey=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, D, generator=g) if grey else (torch.rand(B, D, generator=g) < 0.3).float()
    out = torch.randn(L, B, D, generator=g)
    mu = torch.randn(B, Z, generator=g)
    sigma = torch.rand(B, Z, generator=g) + 0.5
    z = mu + sigma * torch.randn(L, B, Z, generator=g)
    return x, [t.requires_grad_() for t in (out, z, mu, sigma)]


def step(fn, x, leaves):
    def run():
        for t in leaves:
            t.grad = None
        (-fn(x, *leaves)).sum().backward()
    return run


def medians(fns, reps, warmup, block):
    """Median wall time of each function over reps calls, run in alternating blocks of `block` calls so that all
    sides see the same machine load. The first call of each block is not counted: it refills the caches the other
    side just evicted (in a training step the decoder has just written decoder_out, so the loss finds its inputs
    in cache)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    while len(times[0]) < reps:
        for fn, ts in zip(fns, times):
            for i in range(block + 1):
                t0 = time.perf_counter()
                fn()
                if i:
                    ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--block", type=int, default=5, help="calls per side in a row (after one uncounted call)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile side")
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/heads.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, forward + backward, "
          f"median of {args.reps} runs (alternating blocks of {args.block}, each after one uncounted call) after "
          f"{args.warmup} warm-up calls per side")
    B, D, Z = 128, 784, 32
    for name, L, mine, plain in (("ELBO bernoulli analytic, L=1", 1, heads_elbo, plain_elbo),
                                 ("ELBO continuous_bernoulli analytic, L=1", 1, heads_cb_elbo, plain_cb_elbo),
                                 ("IWAE bound bernoulli reparam, K=5", 5, heads_iwae, plain_iwae)):
        x, leaves = inputs(L, B, D, Z, grey=mine is heads_cb_elbo)
        fns = [step(mine, x, leaves), step(plain, x, leaves)]
        if not args.no_compile:
            fns.append(step(torch.compile(plain), x, leaves))
        t = medians(fns, args.reps, args.warmup, args.block)
        compiled = f"   compiled {t[2] * 1e3:7.3f} ms ({t[2] / t[0]:5.2f}x)" if len(t) > 2 else ""
        print(f"{name:<42s} heads {t[0] * 1e3:7.3f} ms   plain {t[1] * 1e3:7.3f} ms ({t[1] / t[0]:5.2f}x)"
              + compiled)
        ROWS.append(f"| {name} (B={B}, D={D}, Z={Z}) | {t[0] * 1e3:.3f} ms | {t[1] * 1e3:.3f} ms | "
                    f"{t[1] / t[0]:.2f}x | " + (f"{t[2] * 1e3:.3f} ms | {t[2] / t[0]:.2f}x |" if len(t) > 2
                                                 else "- | - |"))
    if args.write_docs:
        doc_tables.DOC = Path(__file__).resolve().parent.parent / "docs" / "heads.md"
        doc_tables.write_block("bench_heads", [
            f"float32, forward + backward of sum(-objective) to (decoder_out, z, mu, sigma), median of {args.reps} "
            f"runs in alternating blocks of {args.block} calls per side (each block after one uncounted call that "
            f"refills the caches the other side evicted), after {args.warmup} warm-up calls per side (torch.compile "
            f"compiles there).", "",
            "| case | heads | plain PyTorch | plain / heads | torch.compile | compiled / heads |",
            "|---|---|---|---|---|---|", *ROWS], args.threads)


if __name__ == "__main__":
    main()
