"""fastvae's reparameterized samplers against PyTorch on the same inputs, forward plus backward.

Gumbel-softmax: logits [10^6, 10] float32, tau = 1, against torch.nn.functional.gumbel_softmax.
Exponential: 10^7 float32 rates, against torch.distributions.Exponential(rate).rsample() (with its
default argument validation, and with validate_args=False).
Also torch.compile of the same torch expressions (the draw included; Inductor generates its own fused kernel
and random numbers). Prints the median wall time of each over several repetitions (the sides run in turn,
so all see the same load on a shared machine, after two untimed calls each: torch.compile compiles there)
and the ratios torch / fastvae and compiled / fastvae. All sides run in torch's thread pool, set by --threads.

Run: PYTHONPATH=python python bench/bench_samplers.py [--rows 1000000] [--rates 10000000] [--reps 7]
                                                     [--threads 2] [--no-compile] [--write-docs]

--write-docs writes the table into docs/benchmarks.md.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import fastvae
from doc_tables import write_block

ROWS = []  # table rows for --write-docs


def median_times(fns, reps):
    """Median wall times of the functions, run in turn so that all see the same machine load."""
    for fn in fns:  # warm-up: allocator, thread pool, torch.compile's compilation of forward and backward
        fn(), fn()
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def fwd_bwd(sample, x, grad):
    def run():
        x.grad = None
        y = sample(x)
        y.backward(grad)
    return run


def report(name, times):
    t_fast, t_torch, *t_comp = times
    comp = f"   compiled {t_comp[0] * 1e3:8.1f} ms ({t_comp[0] / t_fast:5.2f}x)" if t_comp else ""
    print(f"{name:<52s} fastvae {t_fast * 1e3:8.1f} ms   torch {t_torch * 1e3:8.1f} ms ({t_torch / t_fast:5.2f}x)"
          + comp)
    ROWS.append(f"| {name} | {t_fast * 1e3:.1f} ms | {t_torch * 1e3:.1f} ms | {t_torch / t_fast:.2f}x | "
                + (f"{t_comp[0] * 1e3:.1f} ms | {t_comp[0] / t_fast:.2f}x |" if t_comp else "- | - |"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10**6)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--rates", type=int, default=10**7)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile peers")
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.reps} runs, "
          "forward + backward")

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(args.rows, args.classes, generator=gen).requires_grad_()
    g = torch.randn(args.rows, args.classes, generator=gen)
    for hard in (False, True):
        def peer(x, hard=hard):
            return F.gumbel_softmax(x, tau=1.0, hard=hard)
        fns = [fwd_bwd(lambda x, hard=hard: fastvae.gumbel_softmax(x, 1.0, hard=hard), logits, g),
               fwd_bwd(peer, logits, g)]
        if not args.no_compile:
            fns.append(fwd_bwd(torch.compile(peer), logits, g))
        report(f"gumbel_softmax{' hard' if hard else ''} {args.rows}x{args.classes}", median_times(fns, args.reps))
    del logits, g

    rate = (torch.rand(args.rates, generator=gen) * 4 + 0.1).requires_grad_()
    g = torch.randn(args.rates, generator=gen)
    Exp = torch.distributions.Exponential

    def peer(r):
        return Exp(r, validate_args=False).rsample()
    sample = fwd_bwd(lambda r: fastvae.exponential_rsample(r), rate, g)
    report(f"exponential_rsample {args.rates} rates",
           median_times([sample, fwd_bwd(lambda r: Exp(r).rsample(), rate, g)], args.reps))
    fns = [sample, fwd_bwd(peer, rate, g)]
    if not args.no_compile:
        fns.append(fwd_bwd(torch.compile(peer), rate, g))
    report(f"exponential_rsample {args.rates} (torch validate_args=False)", median_times(fns, args.reps))
    if args.write_docs:
        write_block("bench_samplers", [
            f"Forward + backward, median of {args.reps} runs taken in turn after two untimed calls per side "
            "(torch.compile compiles there). Peers: `torch.nn.functional.gumbel_softmax` and "
            "`torch.distributions.Exponential(rate).rsample()`, eager and under `torch.compile` (the draw "
            "included).", "",
            "| benchmark | fastvae | torch | torch / fastvae | torch.compile | compiled / fastvae |",
            "|---|---|---|---|---|---|", *ROWS], args.threads)


if __name__ == "__main__":
    main()
