"""fastvae's reparameterized samplers against PyTorch on the same inputs, forward plus backward.

Gumbel-softmax: logits [10^6, 10] float32, tau = 1, against torch.nn.functional.gumbel_softmax.
Exponential: 10^7 float32 rates, against torch.distributions.Exponential(rate).rsample() (with its
default argument validation, and with validate_args=False).
Prints the median wall time of each over several repetitions (the two sides run alternately, so both see
the same load on a shared machine, after one untimed call each) and the ratio torch / fastvae. Both sides
run in torch's thread pool, set by --threads.

Run: PYTHONPATH=python python bench/bench_samplers.py [--rows 1000000] [--rates 10000000] [--reps 7]
                                                     [--threads 2] [--write-docs]

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


def median_times(fn_a, fn_b, reps):
    """Median wall times of two functions, run alternately so that both see the same machine load."""
    fn_a(), fn_b()  # warm-up: allocator, thread pool
    times_a, times_b = [], []
    for _ in range(reps):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times_a), statistics.median(times_b)


def fwd_bwd(sample, x, grad):
    def run():
        x.grad = None
        y = sample(x)
        y.backward(grad)
    return run


def report(name, t_fast, t_torch):
    print(f"{name:<52s} fastvae {t_fast * 1e3:8.1f} ms   torch {t_torch * 1e3:8.1f} ms   "
          f"ratio {t_torch / t_fast:5.2f}x")
    ROWS.append(f"| {name} | {t_fast * 1e3:.1f} ms | {t_torch * 1e3:.1f} ms | {t_torch / t_fast:.2f}x |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10**6)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--rates", type=int, default=10**7)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.reps} runs, "
          "forward + backward")

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(args.rows, args.classes, generator=gen).requires_grad_()
    g = torch.randn(args.rows, args.classes, generator=gen)
    t_fast, t_torch = median_times(fwd_bwd(lambda x: fastvae.gumbel_softmax(x, 1.0), logits, g),
                                   fwd_bwd(lambda x: F.gumbel_softmax(x, tau=1.0), logits, g), args.reps)
    report(f"gumbel_softmax {args.rows}x{args.classes}", t_fast, t_torch)
    t_fast, t_torch = median_times(fwd_bwd(lambda x: fastvae.gumbel_softmax(x, 1.0, hard=True), logits, g),
                                   fwd_bwd(lambda x: F.gumbel_softmax(x, tau=1.0, hard=True), logits, g), args.reps)
    report(f"gumbel_softmax hard {args.rows}x{args.classes}", t_fast, t_torch)
    del logits, g

    rate = (torch.rand(args.rates, generator=gen) * 4 + 0.1).requires_grad_()
    g = torch.randn(args.rates, generator=gen)
    Exp = torch.distributions.Exponential
    sample = fwd_bwd(lambda r: fastvae.exponential_rsample(r), rate, g)
    t_fast, t_torch = median_times(sample, fwd_bwd(lambda r: Exp(r).rsample(), rate, g), args.reps)
    report(f"exponential_rsample {args.rates} rates", t_fast, t_torch)
    t_fast, t_torch = median_times(sample, fwd_bwd(lambda r: Exp(r, validate_args=False).rsample(), rate, g),
                                   args.reps)
    report(f"exponential_rsample {args.rates} (torch validate_args=False)", t_fast, t_torch)
    if args.write_docs:
        write_block("bench_samplers", [
            f"Forward + backward, median of {args.reps} alternating runs after one untimed call per side. "
            "Peers: `torch.nn.functional.gumbel_softmax` and `torch.distributions.Exponential(rate).rsample()`.", "",
            "| benchmark | fastvae | torch | torch / fastvae |", "|---|---|---|---|", *ROWS], args.threads)


if __name__ == "__main__":
    main()
