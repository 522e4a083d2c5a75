"""The categorical VAE of Jang, Gu & Poole 2017 (arXiv 1611.01144, Sec. 4.2; issue 9's bar): 20 variables of
10 classes, encoder 784-512-256 relu, decoder 256-512-784 relu, Bernoulli likelihood on binarized MNIST
(pixel > 127), Adam 1e-3, batch 100, Gumbel-softmax temperature annealed as in the authors' notebook
(tau = max(0.5, exp(-3e-5 t)), updated every 1000 updates). Writes OUT/metrics.json (per epoch: train ELBO of
the relaxed objective, test ELBO of the discrete model with hard Gumbel-max samples, test ELBO of the relaxed
objective at the epoch's final temperature (what the paper's training loss measures), seconds, temperature)
and OUT/checkpoint.pt after every epoch; rerunning continues from the checkpoint.

    OMP_NUM_THREADS=1 python bench/train_categorical.py --out DIR [--epochs 100] [--hard]
"""
import argparse
import json
import math
import time
from pathlib import Path

import torch

import fastvae
from fastvae._atomic import atomic_write
from fastvae.datasets import load_mnist


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hard", action="store_true", help="straight-through samples")
    ap.add_argument("--data", default=None, help="MNIST folder (default: FASTVAE_DATA)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt, metrics_path = args.out / "checkpoint.pt", args.out / "metrics.json"
    x, _ = load_mnist("train", root=args.data)
    xt, _ = load_mnist("test", root=args.data)
    x, xt = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    opts = fastvae.TrainOptions(batch_size=100, lr=1e-3, threshold=127, temperature=1.0, temperature_min=0.5,
                                anneal_rate=3e-5, anneal_every=1000, hard=args.hard, callback_every=0)
    if ckpt.exists():
        model = fastvae.VAE.load(ckpt)
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else []
    else:
        torch.manual_seed(0)
        model = fastvae.VAE(784, 20, (512, 256), (256, 512), latent="categorical", categories=10)
        metrics = []
    seed = None if ckpt.exists() else 0
    while len(metrics) < args.epochs:
        t0 = time.time()
        hist = model.fit(x, options=opts, epochs=1, test_images=xt, seed=seed, progress=False)
        seed = None
        step = model.optimizer_state_.step
        tau = max(0.5, math.exp(-3e-5 * (step // 1000 * 1000)))
        g = torch.Generator().manual_seed(len(metrics))
        with torch.no_grad():
            relaxed = torch.cat([fastvae.elbo(model, (xt[s:s + 1000] > 127).float(), temperature=tau, generator=g,
                                              hard=args.hard).elbo for s in range(0, len(xt), 1000)]).mean()
        metrics.append(dict(epoch=len(metrics) + 1, step=step, train_elbo=float(hist.train_elbo[-1]),
                            test_elbo=float(hist.test_elbo[-1]), test_elbo_relaxed=float(relaxed),
                            epoch_seconds=float(hist.epoch_seconds[-1]), wall_seconds=time.time() - t0,
                            temperature=tau))
        model.save(ckpt)
        atomic_write(metrics_path, lambda f: f.write(json.dumps(metrics, indent=1).encode()))
        print(json.dumps(metrics[-1]), flush=True)


if __name__ == "__main__":
    main()
