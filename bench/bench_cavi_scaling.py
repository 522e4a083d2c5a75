"""CAVI past one process: 2 ranks on torch.distributed (gloo, 127.0.0.1) against one process, and a fit streamed
from a catalogue file against the in-memory fit. Prints the largest relative difference of the fitted q and
ELBO trace, seconds per iteration, bytes all-reduced per iteration and the streamed fit's peak memory.

    python bench/bench_cavi_scaling.py distributed [--n 1000000] [--k 10] [--iters 50]
    python bench/bench_cavi_scaling.py stream [--n 100000000] [--k 10] [--iters 3] [--check-n 10000000]
                                              [--dir /tmp] [--chunk-size 1048576]

Each rank and each process runs one thread (OMP_NUM_THREADS=1), so "2 ranks" is 2 cores against 1.
"""
import argparse
import datetime
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

from fastvae.cavi import ConvergenceWarning, EarthquakeMixture, sample_earthquakes, write_catalogue

FITTED = ("means_", "mean_precisions_", "rate_shape_", "rate_rate_", "elbo_trace_")
MODEL = dict(rho=0.05, alpha=20.0, beta=0.5)  # well-separated clusters with distinct rates


def _events(n, k):
    X, S, *_ = sample_earthquakes(n, k, random_state=3, **MODEL)
    return X, S


def _fit(k, iters, tol, X, S=None, **kw):
    est = EarthquakeMixture(k, max_iter=iters, tol=tol, random_state=1, **MODEL)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, S, **kw)
    return est, (time.perf_counter() - t) / est.n_iter_


def _max_rel(a, b):
    worst = 0.0
    for name in FITTED:
        x, y = np.asarray(getattr(a, name) if not isinstance(a, dict) else a[name]), np.asarray(getattr(b, name))
        if x.shape != y.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(x - y) / np.abs(y))))
    return worst


def _rank(rank, world, init_file, out, n, k, iters, tol):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    X, S = _events(n, k)
    a, b = rank * n // world, (rank + 1) * n // world
    est, per_iter = _fit(k, iters, tol, X[a:b], S[a:b])
    if rank == 0:
        with open(out, "wb") as f:
            pickle.dump(dict({name: getattr(est, name) for name in FITTED}, per_iter=per_iter,
                             n_iter=est.n_iter_), f)
    dist.destroy_process_group()


def distributed(args):
    import torch.multiprocessing as mp
    torch.set_num_threads(1)
    X, S = _events(args.n, args.k)
    print(f"distributed CAVI: N = {args.n}, K = {args.k}, one thread per process, gloo on 127.0.0.1")
    for iters, tol in ((args.iters, 0.0), (1000, 1e-8)):
        ref, t1 = _fit(args.k, iters, tol, X, S, process_group=None)
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "rank0.pkl")
            mp.start_processes(_rank, args=(2, os.path.join(d, "init"), out, args.n, args.k, iters, tol), nprocs=2,
                               start_method="spawn")
            with open(out, "rb") as f:
                got = pickle.load(f)
        label = f"max_iter={iters}, tol={tol:g}"
        print(f"  {label}: iterations 1 process {ref.n_iter_}, 2 ranks {got['n_iter']}; max relative difference of "
              f"q and the ELBO trace {_max_rel(got, ref):.2e}")
        print(f"    seconds per iteration: 1 process {t1:.4f}, 2 ranks {got['per_iter']:.4f} "
              f"(speed-up {t1 / got['per_iter']:.2f}x)")
    k = args.k
    print(f"  all-reduced per iteration: one float64 buffer of 5K + 1 = {5 * k + 1} numbers = {8 * (5 * k + 1)} bytes; "
          f"once per fit: 2 buffers of 3 + 1 numbers and the k-means++ subsample ({20000 * 2 * 8} bytes)")


def _write(path, n, k, chunk):
    X, S = _events(n, k)
    write_catalogue(path, X, S, chunk_size=chunk)


def _stream_fit(path, k, iters, chunk, out):
    torch.set_num_threads(1)
    est, per_iter = _fit(k, iters, 0.0, path, chunk_size=chunk)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with open(out, "wb") as f:
        pickle.dump(dict({name: getattr(est, name) for name in FITTED}, per_iter=per_iter, peak_rss=rss), f)


def _child(fn, *args):
    """Run fn in a fresh interpreter so that its peak RSS is its own."""
    code = f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import bench_cavi_scaling as b; b.{fn}(*{args!r})"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def stream(args):
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path, out = os.path.join(d, "catalogue.npy"), os.path.join(d, "fit.pkl")
        if args.check_n:
            X, S = _events(args.check_n, args.k)
            ref, t_mem = _fit(args.k, args.iters, 0.0, X, S)
            del X, S
            _child("_write", path, args.check_n, args.k, args.chunk_size)
            _child("_stream_fit", path, args.k, args.iters, args.chunk_size, out)
            with open(out, "rb") as f:
                got = pickle.load(f)
            print(f"streamed vs in-memory at N = {args.check_n}, K = {args.k}, {args.iters} iterations: max relative "
                  f"difference {_max_rel(got, ref):.2e}; seconds per iteration in memory {t_mem:.3f}, "
                  f"streamed {got['per_iter']:.3f}")
        t = time.perf_counter()
        _child("_write", path, args.n, args.k, args.chunk_size)
        size = os.path.getsize(path)
        print(f"wrote {args.n} events ({size / 2**30:.2f} GiB) in {time.perf_counter() - t:.0f} s")
        _child("_stream_fit", path, args.k, args.iters, args.chunk_size, out)
        with open(out, "rb") as f:
            got = pickle.load(f)
        print(f"streamed fit of N = {args.n}, K = {args.k}, chunks of {args.chunk_size} events: "
              f"{got['per_iter']:.1f} s per iteration ({args.iters} iterations), peak RSS "
              f"{got['peak_rss'] / 2**30:.2f} GiB; final ELBO {got['elbo_trace_'][-1, 2]:.6e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["distributed", "stream"])
    ap.add_argument("--n", type=int)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--iters", type=int)
    ap.add_argument("--check-n", type=int, default=10_000_000)
    ap.add_argument("--chunk-size", type=int, default=1 << 20)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    if args.mode == "distributed":
        args.n, args.iters = args.n or 1_000_000, args.iters or 50
        distributed(args)
    else:
        args.n, args.iters = args.n or 100_000_000, args.iters or 3
        stream(args)


if __name__ == "__main__":
    main()
