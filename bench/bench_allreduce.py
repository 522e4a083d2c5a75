"""Cost of one all_reduce on 2 gloo ranks on this machine (127.0.0.1), for the buffers fastvae reduces: the CAVI
E-step's statistics (5K + 1 float64 for K = 10) and the gradient of the benchmarked VAEs (float32, plus the
batch's rec and kl). Median of --repeats calls after warm-up; docs/scaling.md uses it for its projections.

    python bench/bench_allreduce.py [--repeats 200]
"""
import argparse
import datetime
import os
import tempfile
import time

import torch

import fastvae

BUFFERS = {  # name -> (numel, dtype)
    "CAVI statistics, K = 10 (51 float64)": (51, torch.float64),
}


def _vae_buffers():
    out = dict(BUFFERS)
    for preset in ("stats305c", "iwae_paper"):
        n = sum(p.numel() for p in fastvae.VAE.from_preset(preset).flat_parameters()) + 2
        out[f"{preset} gradient ({n} float32)"] = (n, torch.float32)
    return out


def _rank(rank, world, init_file, repeats, out):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    lines = []
    for name, (n, dtype) in _vae_buffers().items():
        t = torch.ones(n, dtype=dtype)
        for _ in range(10):
            dist.all_reduce(t)
        times = []
        for _ in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - t0)
        times.sort()
        med = times[len(times) // 2]
        nbytes = n * t.element_size()
        lines.append(f"{name}: {nbytes} bytes, median {med * 1e6:.0f} us per all_reduce "
                     f"({nbytes / med / 1e9:.2f} GB/s)")
    if rank == 0:
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.txt")
        mp.start_processes(_rank, args=(2, os.path.join(d, "init"), args.repeats, out), nprocs=2,
                           start_method="spawn")
        print(f"all_reduce on 2 gloo ranks, 127.0.0.1, one thread each (torch {torch.__version__}):")
        print(open(out).read(), end="")


if __name__ == "__main__":
    main()
