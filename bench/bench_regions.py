"""OpenMP parallel regions per update of fastvae's C++ trainer, for one or more builds: each region is a fork
and a join barrier of the thread team, the synchronisation that costs most when another process competes for
the cores (issue 21). Counted, not timed: a small C library preloaded into each run (compiled here with the C
compiler, `cc` or $CC) interposes libgomp's GOMP_parallel, which libtorch and its MKL call for every region, and
sorts the calls into top-level regions (a team of the run's threads) and nested ones (inside a region, a team of
one thread: no barrier with another thread, but the team is still set up and torn down). Builds with the
engine's own pool (cpp/cpu/worker_pool.h) also report the ranges it ran with its workers
(`fastvae._C._pool_stats`).

    python bench/bench_regions.py [--build LABEL=PYTHON ...] [--updates 100] [--data DIR] [--write-docs]

Each build is a Python interpreter whose environment imports that build of fastvae (bench/builds.py);
models: the IWAE paper's (batch 20, dynamic binarization) and the STATS 305C VAE (batch 64), two threads.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import builds as build_list  # bench/, on sys.path as the script's folder


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
typedef void (*parallel_fn)(void (*)(void*), void*, unsigned, unsigned);
static unsigned long counts[2];  /* top-level, nested */
void GOMP_parallel(void (*fn)(void*), void* data, unsigned threads, unsigned flags) {
  static parallel_fn real;
  static int (*in_parallel)(void);
  if (!real) {
    real = (parallel_fn)dlsym(RTLD_NEXT, "GOMP_parallel");
    in_parallel = (int (*)(void))dlsym(RTLD_NEXT, "omp_in_parallel");
  }
  __atomic_fetch_add(&counts[in_parallel() ? 1 : 0], 1, __ATOMIC_RELAXED);
  real(fn, data, threads, flags);
}
unsigned long regions_counted(int nested) { return counts[nested]; }
"""

MODELS = {
    "iwae_paper": dict(batch=20, make="iwae", fit=dict(pixels="dynamic")),
    "stats305c": dict(batch=64, make="stats305c", fit={}),
}


def child(model, updates, data):
    """Regions per update of `model` in this process (the shim preloaded): prints one JSON line."""
    import ctypes

    import torch

    import fastvae
    from fastvae.datasets import load_mnist

    shim = ctypes.CDLL(os.environ["LD_PRELOAD"])
    shim.regions_counted.restype = ctypes.c_ulong
    spec = MODELS[model]
    torch.set_num_threads(2)
    extra = {"threads": 2} if "threads" in fastvae.TrainOptions.__dataclass_fields__ else {}
    images, _ = load_mnist("train", root=data)
    images = images.reshape(len(images), -1)
    torch.manual_seed(0)
    if spec["make"] == "iwae":
        vae = fastvae.VAE(latent_dim=50, encoder_hidden=(200, 200), decoder_hidden=(200, 200), activation="tanh",
                          posterior="logstd")
    else:
        vae = fastvae.VAE.from_preset("stats305c")
    run = dict(epochs=1, batch_size=spec["batch"], progress=False, **spec["fit"], **extra)
    vae.fit(images[:10 * spec["batch"]], **run)  # warm-up: buffers, the BLAS's first calls
    pool = getattr(fastvae._C, "_pool_stats", None)  # the engine's own pool (builds from issue 21 on)
    before = [shim.regions_counted(k) for k in (0, 1)] + [pool()[1] if pool else 0]
    vae.fit(images[:updates * spec["batch"]], **run)
    after = [shim.regions_counted(k) for k in (0, 1)] + [pool()[1] if pool else 0]
    print(json.dumps({"top": (after[0] - before[0]) / updates, "nested": (after[1] - before[1]) / updates,
                      "pool": (after[2] - before[2]) / updates if pool else None,
                      "fastvae": fastvae.__version__, "module": os.path.dirname(os.path.abspath(fastvae.__file__))}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    build_list.add_arguments(ap, updates=100)
    args = ap.parse_args()
    if args.child is not None:
        return child(args.child, args.updates, args.data)
    builds = build_list.parse(args.build, sys.executable)
    with tempfile.TemporaryDirectory() as tmp:
        source, lib = os.path.join(tmp, "regions.c"), os.path.join(tmp, "libregions.so")
        with open(source, "w") as f:
            f.write(SHIM)
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", "-o", lib, source, "-ldl"],
                       check=True)
        rows = []
        for model in MODELS:
            modules = {}
            for label, python, named in builds:
                r = build_list.run_child(__file__, python, named, model, args.updates, args.data, LD_PRELOAD=lib,
                                         OMP_NUM_THREADS="2")
                modules[label] = r["module"]
                pool = "-" if r["pool"] is None else f"{r['pool']:.1f}"
                rows.append(f"| {model} | {label} ({r['fastvae']}) | {r['top']:.1f} | {r['nested']:.1f} | {pool} |")
                print(rows[-1])
            build_list.check_distinct(modules)
    if args.write_docs:
        from doc_tables import write_block
        write_block("bench_regions", [
            f"OpenMP parallel regions per update, averaged over {args.updates} updates after 10 untimed ones, two "
            "threads. Top-level: a team of both threads, one fork and one join barrier each. Nested: opened "
            "inside another region (by MKL's sgemm, called from the engine's column blocks), a team of one thread. "
            "Pool ranges: ranges the engine's own pool ran with its workers (cpp/cpu/worker_pool.h; no fork "
            "barrier, one join on the chunks that workers claimed); '-': a build without that pool.",
            "", "| model | build | top-level OpenMP regions per update | nested OpenMP regions per update | "
            "pool ranges per update |", "|---|---|---|---|---|",
            *rows], "2", script="bench_regions")


if __name__ == "__main__":
    main()
