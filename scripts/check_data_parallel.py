"""Data-parallel training against one process on real MNIST (issue 12's bars; results in docs/scaling.md).

1. The STATS 305C model trained for 10 updates of 64 images (the first 640 training images) on 2 gloo ranks
   and in one process, same seed: the largest relative difference of the parameters (norm of the difference
   over the norm of the parameter, per tensor).
2. ``torchrun --nproc-per-node=2 -m fastvae reproduce stats305c --epochs E`` against
   ``python -m fastvae reproduce stats305c --epochs E``: the final test ELBOs and the time per epoch.

    python scripts/check_data_parallel.py [--data DIR] [--epochs 2] [--out /tmp/fastvae-dp]

One thread per process (OMP_NUM_THREADS=1): 2 ranks use the 2 cores the single process leaves idle.
"""
import argparse
import datetime
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch


def _ten_updates(rank, world, init_file, out, data):
    import torch.distributed as dist

    import fastvae
    from fastvae.datasets import load_mnist

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=60))
    x, _ = load_mnist("train", root=data)
    torch.manual_seed(0)
    model = fastvae.VAE.from_preset("stats305c")
    model.fit(x[:640], batch_size=64, epochs=1, seed=0, progress=False)
    if rank == 0:
        with open(out, "wb") as f:
            pickle.dump([p.detach().clone() for p in model.flat_parameters()], f)
    if world > 1:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("FASTVAE_DATA"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "fastvae-dp"))
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as d:
        one, two = os.path.join(d, "one.pkl"), os.path.join(d, "two.pkl")
        _ten_updates(0, 1, None, one, args.data)
        mp.start_processes(_ten_updates, args=(2, os.path.join(d, "init"), two, args.data), nprocs=2,
                           start_method="spawn")
        with open(one, "rb") as f:
            p1 = pickle.load(f)
        with open(two, "rb") as f:
            p2 = pickle.load(f)
    rel = max(float((a - b).norm() / b.norm()) for a, b in zip(p2, p1))
    worst = max(float(((a - b).abs() / b.abs().clamp_min(1e-3)).max()) for a, b in zip(p2, p1))
    print(f"10 updates of the STATS 305C model (batch 64), 2 ranks vs 1 process: largest per-tensor relative "
          f"difference {rel:.2e} (largest element-wise |difference| / max(|value|, 1e-3): {worst:.2e})")

    common = ["-m", "fastvae", "reproduce", "stats305c", "--epochs", str(args.epochs), "--no-progress"]
    if args.data:
        common += ["--data", args.data]
    out = Path(args.out)
    runs = {
        "1 process": [sys.executable, *common, "--out", str(out / "one")],
        "2 ranks (torchrun)": [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                               "--master-addr=127.0.0.1", f"--master-port={_free_port()}", *common,
                               "--out", str(out / "two")],
    }
    final = {}
    for label, cmd in runs.items():
        subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        m = json.loads(Path(cmd[cmd.index("--out") + 1], "metrics.json").read_text())
        final[label] = m["final"]["test_elbo"]
        print(f"{label}: test ELBO after {args.epochs} epochs {m['final']['test_elbo']:.3f}, "
              f"{m['total_seconds'] / args.epochs:.1f} s per epoch (training and test evaluation)")
    a, b = final.values()
    print(f"test ELBO difference: {abs(a - b):.3f} nats")


if __name__ == "__main__":
    main()
