"""Milliseconds per update of the IWAE paper's model at batch 20 (Burda et al. 2016: 784-200-200-(50+50),
50-200-200-784 tanh, Bernoulli, dynamic binarization, ELBO with one sample), for one or more builds of
fastvae timed in one run, at 1 thread, at 2 threads and at fastvae's default (the thread count chosen by
timing, where the build has it), beside the FLOP floor of the same run: the update's dense-equivalent work
divided by the machine's SGEMM rate at that thread count (``torch.mm``, 1024 x 1024), a bound no update
reaches (its products are 20 rows tall).

    python bench/bench_update.py [--build LABEL=PYTHON ...] [--updates 300] [--repeats 3] [--data DIR]
                                 [--write-docs]

Each build is a Python interpreter whose environment imports that build of fastvae (another venv, or a
wrapper script that sets its own PYTHONPATH): this process's PYTHONPATH is not passed on to it, and two builds
that import fastvae from one folder are refused (bench/builds.py). The default is this interpreter. Every (build,
threads) pair runs in its own process, after 30 untimed warm-up updates, ``--repeats`` times; within a repeat the
builds run back to back at each thread setting. Two speed-ups over the first build are printed: the ratio of the
best times, and the median over the repeats of the ratio within each back-to-back pair. On a shared host whose
speed drifts over minutes, the second is the steadier: both runs of a pair see nearly the same host.
"""
import argparse
import json
import os
import statistics
import sys
import time

import builds as build_list  # bench/, on sys.path as the script's folder

BATCH = 20
ENC, DEC, LATENT, D = (200, 200), (200, 200), 50, 784


def flops_per_update():
    """2 x multiply-adds of forward and backward (weight and input gradients; no input gradient of the first
    layer), as bench_train_epoch.flops_per_image, times the batch."""
    sizes = [D, *ENC, 2 * LATENT], [LATENT, *DEC, D]
    macs = sum(a * b for s in sizes for a, b in zip(s[:-1], s[1:]))
    return 2 * (3 * macs - D * ENC[0]) * BATCH


def child(threads, updates, data):
    """One timing in this process: prints a JSON line with seconds per update and the SGEMM rate."""
    import torch

    import fastvae
    from fastvae.datasets import load_mnist

    has_option = "threads" in fastvae.TrainOptions.__dataclass_fields__
    extra = {}
    if threads != "default":
        n = int(threads)
        torch.set_num_threads(n)
        if has_option:
            extra["threads"] = n  # a count equal to torch's default is kept only when it is named
    images, _ = load_mnist("train", root=data)
    images = images.reshape(len(images), -1)
    torch.manual_seed(0)
    model = fastvae.VAE(latent_dim=LATENT, encoder_hidden=ENC, decoder_hidden=DEC, activation="tanh",
                        posterior="logstd")
    run = dict(epochs=1, batch_size=BATCH, pixels="dynamic", progress=False, **extra)
    model.fit(images[:30 * BATCH], **run)  # warm-up
    t = time.perf_counter()
    model.fit(images[:updates * BATCH], **run)
    seconds = (time.perf_counter() - t) / updates
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    sgemm = 2 * 1024**3 * 10 / (time.perf_counter() - t)
    chosen = [int(v) for v in getattr(model.history_, "epoch_threads", [])]
    print(json.dumps({"seconds": seconds, "sgemm": sgemm, "torch_threads": torch.get_num_threads(),
                      "chosen": chosen[-1:] or None, "fastvae": fastvae.__version__,
                      "module": os.path.dirname(os.path.abspath(fastvae.__file__))}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    build_list.add_arguments(ap, updates=300)
    ap.add_argument("--threads", default="1,2,default")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.child is not None:
        return child(args.child, args.updates, args.data)
    builds = build_list.parse(args.build, sys.executable)
    settings = args.threads.split(",")
    best, info, modules, paired = {}, {}, {}, {}
    first = builds[0][0]
    for _ in range(args.repeats):
        for threads in settings:
            seconds = {}
            for label, python, named in builds:
                r = build_list.run_child(__file__, python, named, threads, args.updates, args.data)
                key = (label, threads)
                if key not in best or r["seconds"] < best[key]["seconds"]:
                    best[key] = r
                seconds[label] = r["seconds"]
                info[label] = r["fastvae"]
                modules[label] = r["module"]
            for label in seconds:
                paired.setdefault((label, threads), []).append(seconds[first] / seconds[label])
    build_list.check_distinct(modules)
    floor = {t: flops_per_update() / max(r["sgemm"] for (_, tt), r in best.items() if tt == t) for t in settings}
    rows = []
    print(f"IWAE paper model, batch {BATCH}: {flops_per_update() / 1e6:.1f} MFLOP per update, best of "
          f"{args.repeats} runs of {args.updates} updates")
    for label, _, _ in builds:
        for t in settings:
            r = best[(label, t)]
            ms, fl = 1e3 * r["seconds"], 1e3 * floor[t]
            speed = best[(first, t)]["seconds"] / r["seconds"]
            chosen = f" (chose {r['chosen'][0]})" if t == "default" and r["chosen"] else ""
            line = (f"| {label} ({info[label]}) | {t}{chosen} | {ms:.3f} | {fl:.3f} | {ms / fl:.1f}x | "
                    f"{speed:.2f}x | {statistics.median(paired[(label, t)]):.2f}x |")
            print(line)
            rows.append(line)
    if args.write_docs:
        from doc_tables import write_block
        write_block("bench_update", [
            f"IWAE paper model, batch {BATCH}, dynamic binarization: {flops_per_update() / 1e6:.1f} MFLOP per "
            f"update. Best of {args.repeats} runs of {args.updates} updates after 30 untimed ones, each build and "
            "thread setting in its own process, the builds back to back at each thread setting. Floor: that work "
            "at the machine's SGEMM rate in the same run and thread count. Speed-ups: the first build's time / this "
            "build's (> 1: this one is faster), from the best times, and the median over the "
            f"{args.repeats} repeats of that ratio within each back-to-back pair of runs.",
            "", "| build | threads | ms per update | FLOP floor (ms) | time / floor | speed-up, best times | "
            "speed-up, median of pairs |",
            "|---|---|---|---|---|---|---|", *rows], "1 and 2", script="bench_update")


if __name__ == "__main__":
    main()
