"""Encoder-gradient SNR of the IWAE bound against k on a longer-trained MNIST model (issue 9's DReG bar; results
in docs/iwae_dreg.md).

notebooks/iwae_dreg.ipynb measures the SNR on its 3-epoch k = 5 model, where the normalized importance weights
are still degenerate; this script trains the same model (the IWAE paper's one-layer architecture, tanh,
dynamic binarization, Adam lr 1e-3, eps 1e-4, batch 20, the k = 5 IWAE bound with the reparameterization
gradient, seed 0) for --epochs epochs and measures the same quantity on it: per encoder parameter |mean| / std
of the gradient of the mean bound over --draws draws, averaged over the parameters that receive a gradient
(fastvae.diagnostics.gradient_snr), for k = 1, 4, 16, 64 and the reparameterization, STL and DReG estimators,
on the first 10 test images binarized once (the notebook's draw). Also prints the effective sample size
1 / sum w~^2 of the 64 normalized weights per image. Writes the table as JSON to --out.

    python scripts/dreg_snr.py [--data DIR] [--epochs 30] [--draws 100] [--out runs/dreg_snr.json]
"""
import argparse
import json
import time

import torch

import fastvae
from fastvae import VAE, datasets
from fastvae._atomic import atomic_write
from fastvae.diagnostics import gradient_snr

KS = (1, 4, 16, 64)
ESTIMATORS = ("reparam", "stl", "dreg")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="MNIST folder (default: $FASTVAE_DATA or the download cache)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--out", default="runs/dreg_snr.json")
    args = ap.parse_args()
    data = args.data or datasets.data_dir()
    x_train, _ = datasets.load_mnist("train", root=data)
    x_test, _ = datasets.load_mnist("test", root=data)
    x_eval = torch.bernoulli(datasets.flatten(x_test[:300]).float() / 255,
                             generator=torch.Generator().manual_seed(2016))[:10]  # notebooks/iwae_dreg.ipynb's draw
    torch.manual_seed(0)
    model = VAE(784, 50, (200, 200), (200, 200), activation="tanh")
    t0 = time.perf_counter()
    hist = model.fit(x_train, test_images=x_test, seed=0, k=5, epochs=args.epochs, batch_size=20, lr=1e-3,
                     betas=(0.9, 0.999), eps=1e-4, pixels="dynamic", objective="iwae", iwae_estimator="reparam")
    train_s = time.perf_counter() - t0
    print(f"{args.epochs} epochs in {train_s:.0f} s; test ELBO after the last: {hist.test_elbo[-1]:.2f}")
    params = [p for lin in [*model.encoder, model.encoder_head] for p in (lin.weight, lin.bias)]
    snr = {e: [] for e in ESTIMATORS}
    for e in ESTIMATORS:
        for k in KS:
            value, live = gradient_snr(model, x_eval, k, e, params, draws=args.draws,
                                       generator=torch.Generator().manual_seed(1000 + k))
            snr[e].append(value)
    # normalized importance weights of k = 64 draws: how many samples carry the bound
    with torch.no_grad():
        eps = torch.randn(64, len(x_eval), model.latent_dim, generator=torch.Generator().manual_seed(64))
        _, weights = fastvae.heads.iwae_bound(*_head_inputs(model, x_eval, eps))
    ess = (1 / (weights.double() ** 2).sum(0)).tolist()
    print(f"mean SNR over the {live} encoder parameters that receive a gradient ({args.draws} draws)")
    print("k        " + "".join(f"{k:>9d}" for k in KS))
    for e in ESTIMATORS:
        print(f"{e:8s} " + "".join(f"{v:9.4f}" for v in snr[e]))
    ratio = snr["dreg"][-1] / snr["reparam"][-1]
    print(f"k = 64: DReG / reparameterization = {ratio:.2f}; ESS of the 64 weights per image: "
          + ", ".join(f"{v:.1f}" for v in ess))
    result = dict(epochs=args.epochs, train_seconds=train_s, test_elbo=hist.test_elbo.tolist(), draws=args.draws,
                  ks=list(KS), snr=snr, dreg_over_reparam_k64=ratio, ess_k64=ess, encoder_params_live=live,
                  torch=torch.__version__, threads=torch.get_num_threads())
    atomic_write(args.out, lambda f: f.write(json.dumps(result, indent=1).encode()))
    print(f"wrote {args.out}")


def _head_inputs(model, x, eps):
    """(x, decoder_out, z, mu, sigma) of the model for noise eps [k, B, Z], for fastvae.heads.iwae_bound."""
    mu, sigma = model.encode(x)
    z = mu + sigma * eps
    logits = model.decode(z.reshape(-1, model.latent_dim), logits=True).reshape(len(eps), len(x), -1)
    return x, logits, z, mu, sigma


if __name__ == "__main__":
    main()
