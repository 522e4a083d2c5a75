"""Bad arguments to fit (fastvae.fit, model.fit, fastvae.training.fit), every model kind: each row is (call,
exception type, message fragment); nothing is truncated, coerced or silently ignored. Save and load:
tests/checkpoint/test_checkpoint_errors.py; the CLI's reproduce: tests/apps/test_reproduce_errors.py."""
import math

import pytest
import torch

import fastvae
from torch import nn

NAN, INF = math.nan, math.inf


def tiny(**kw):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=16, latent_dim=2, encoder_hidden=(4,), decoder_hidden=(4,), **kw)


X = torch.randint(0, 256, (20, 16), dtype=torch.uint8)
Y = torch.randint(0, 3, (20,))


def fit(**kw):
    model = kw.pop("model", None) or tiny()
    images = kw.pop("images", X)
    labels = kw.pop("labels", None)
    return lambda tmp: model.fit(images, train_labels=labels, progress=kw.pop("progress", False), **kw)


def fit_tmp(make_kw):
    """A fit row whose arguments need the test's temporary folder."""
    return lambda tmp: tiny().fit(X, progress=False, **make_kw(tmp))


def network():
    torch.manual_seed(0)
    return fastvae.VAE.from_networks(nn.Sequential(nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 4)),
                                     nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 16)), 2)


def nan_model():
    m = tiny()
    with torch.no_grad():
        m.encoder[0].weight[0, 0] = NAN
    return m


FIT_ROWS = [
    (fit(epochs=1.5), TypeError, "epochs must be an integer, got 1.5"),
    (fit(epochs="2"), TypeError, "epochs must be an integer"),
    (fit(epochs=True), TypeError, "epochs must be an integer"),
    (fit(epochs=None), TypeError, "epochs must be an integer"),
    (fit(epochs=-1), ValueError, "epochs must be an integer >= 0"),
    (fit(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
    (fit(batch_size=2.0), TypeError, "batch_size must be an integer"),
    (fit(batch_size=None), TypeError, "batch_size must be an integer"),
    (fit(n_samples=0), ValueError, "n_samples must be an integer >= 1"),
    (fit(n_samples=1.5), TypeError, "n_samples must be an integer"),
    (fit(lr=0), ValueError, "lr must be > 0"),
    (fit(lr=-1e-3), ValueError, "lr must be > 0"),
    (fit(lr=NAN), ValueError, "lr must be a finite number"),
    (fit(lr=INF), ValueError, "lr must be a finite number"),
    (fit(lr="0.1"), TypeError, "lr must be a real number"),
    (fit(lr=None), TypeError, "lr must be a real number"),
    (fit(betas=(0.9,)), ValueError, "betas must be a pair of numbers, got 1"),
    (fit(betas=(0.9, 0.99, 0.1)), ValueError, "betas must be a pair of numbers, got 3"),
    (fit(betas=0.9), TypeError, "betas must be a pair of numbers"),
    (fit(betas="ab"), TypeError, "betas must be a pair of numbers"),
    (fit(betas=(1.0, 0.999)), ValueError, "betas[0] must be < 1.0"),
    (fit(betas=(0.9, -0.1)), ValueError, "betas[1] must be >= 0.0"),
    (fit(betas=(0.9, NAN)), ValueError, "betas[1] must be a finite number"),
    (fit(betas=("a", 0.9)), TypeError, "betas[0] must be a real number"),
    (fit(eps=-1.0), ValueError, "eps must be >= 0.0"),
    (fit(eps=NAN), ValueError, "eps must be a finite number"),
    (fit(eps="1e-8"), TypeError, "eps must be a real number"),
    (fit(weight_decay=INF), ValueError, "weight_decay must be a finite number"),
    (fit(weight_decay=-1.0), ValueError, "weight_decay must be >= 0.0"),
    (fit(weight_decay=NAN), ValueError, "weight_decay must be a finite number"),
    (fit(threshold=300), ValueError, "threshold must be an integer <= 255"),
    (fit(threshold=-1), ValueError, "threshold must be an integer >= 0"),
    (fit(threshold=127.5), TypeError, "threshold must be an integer"),
    (fit(threshold="127"), TypeError, "threshold must be an integer"),
    (fit(estimator="iwae"), ValueError, "estimator must be one of"),
    (fit(estimator=1), TypeError, "estimator must be one of"),
    (fit(kl_weight=-1.0), ValueError, "kl_weight must be >= 0.0"),
    (fit(kl_weight=INF), ValueError, "kl_weight must be a finite number"),
    (fit(kl_weight=NAN), ValueError, "kl_weight must be a finite number"),
    (fit(kl_weight="1"), TypeError, "kl_weight must be a real number"),
    (fit(eval_every=-1), ValueError, "eval_every must be an integer >= 0"),
    (fit(eval_every=1.5), TypeError, "eval_every must be an integer"),
    (fit(eval_every=10), ValueError, "val_images and eval_every >= 1 go together"),
    (fit(val_images=X), ValueError, "val_images and eval_every >= 1 go together"),
    (fit(eval_samples=0), ValueError, "eval_samples must be an integer >= 1"),
    (fit(eval_samples=2.5), TypeError, "eval_samples must be an integer"),
    (fit(seed=-1), ValueError, "seed must be an integer >= 0"),
    (fit(seed=2**64), ValueError, "seed must be an integer <= 18446744073709551615"),
    (fit(seed=1.5), TypeError, "seed must be an integer"),
    (fit(seed="0"), TypeError, "seed must be an integer"),
    (fit(seed=True), TypeError, "seed must be an integer"),
    (fit(progress=1), TypeError, "progress must be True or False"),
    (fit(progress="yes"), TypeError, "progress must be True or False"),
    (fit(callback=5), TypeError, "callback must be callable or None"),
    (fit(callback_every=-1), ValueError, "callback_every must be an integer >= 0"),
    (fit(callback_every=1.5), TypeError, "callback_every must be an integer"),
    (fit_tmp(lambda t: dict(checkpoint=t)), ValueError, "must name a file, got the folder"),
    (fit_tmp(lambda t: dict(checkpoint=t / "no" / "ck.pt")), FileNotFoundError, "does not exist"),
    (fit(checkpoint=5), TypeError, "path must be a str or os.PathLike"),
    (fit_tmp(lambda t: dict(checkpoint=t / "ck.pt", checkpoint_every=0)), ValueError,
     "checkpoint_every must be an integer >= 1"),
    (fit_tmp(lambda t: dict(checkpoint=t / "ck.pt", checkpoint_every=1.5)), TypeError,
     "checkpoint_every must be an integer"),
    (fit(checkpoint_every=2), ValueError, "checkpoint_every needs a checkpoint path"),
    (fit(images=X[:0]), ValueError, "train_images must hold at least one image"),
    (fit(images=X[:, :15]), ValueError, "train_images must have 16 pixels per image"),
    (fit(images=X.tolist()), TypeError, "train_images must be a torch.Tensor or numpy array"),
    (fit(images=X.int()), TypeError, "train_images must be uint8 intensities or floats in [0, 1], got torch.int32"),
    (fit(images=X.float()), ValueError, "in [0, 1] without NaN"),
    (fit(images=torch.full((4, 16), NAN)), ValueError, "in [0, 1] without NaN"),
    (fit(test_images=X[:0]), ValueError, "test_images must hold at least one image"),
    (fit(val_images=X[:0], eval_every=5), ValueError, "val_images must hold at least one image"),
    (fit(test_images=X[:, :3]), ValueError, "test_images must have 16 pixels"),
    (fit(labels=Y), ValueError, "train_labels given to an unconditional model"),
    (fit(test_labels=Y), ValueError, "test_labels given without test_images"),
    (fit(val_labels=Y), ValueError, "val_labels given without val_images"),
    (fit(model=tiny(cond_dim=3)), ValueError, "a conditional VAE needs train_labels"),
    (fit(model=tiny(cond_dim=3), labels=Y.float()), TypeError, "train_labels must hold integer classes"),
    (fit(model=tiny(cond_dim=3), labels=Y[:5]), ValueError, "train_labels must have shape [20]"),
    (fit(model=tiny(cond_dim=3), labels=Y.tolist()), TypeError, "train_labels must be a torch.Tensor"),
    (fit(model=tiny(cond_dim=3), labels=Y + 3), ValueError, "train_labels must lie in [0, 3)"),
    (fit(model=tiny(cond_dim=3), labels=Y, test_images=X), ValueError, "a conditional VAE needs test_labels"),
    (fit(model=tiny(dtype=torch.float64)), TypeError, "fit trains float32 models on the CPU"),
    (fit(model=nan_model()), ValueError, "encoder.0.weight contains NaN or inf"),
    # pixels in the loop (issue 9 item 2)
    (fit(pixels="binary"), ValueError, "pixels must be one of"),
    (fit(pixels=1), TypeError, "pixels must be"),
    (fit(pixels="intensity"), ValueError, "pixels='intensity' feeds intensities in [0, 1], which a binary likelihood such as bernoulli"),
    (fit(objective="IWAE"), ValueError, "objective must be one of"),
    (fit(objective=None), TypeError, "objective must be one of"),
    (fit(objective="iwae", k=0), ValueError, "k must be an integer >= 1"),
    (fit(objective="iwae", k=2.0), TypeError, "k must be an integer, got 2.0"),
    (fit(objective="iwae", iwae_estimator="analytic"), ValueError, "iwae_estimator must be one of"),
    (fit(objective="iwae", estimator="dreg"), ValueError, "estimator must be one of"),
    (fit(objective="iwae", kl_weight=2.0), ValueError, "kl_weight must be 1 with an importance-weighted objective"),
    (fit(kl_warmup=-1), ValueError, "kl_warmup must be an integer >= 0"),
    (fit(kl_warmup=2.5), TypeError, "kl_warmup must be an integer"),
    (fit(objective="iwae", kl_warmup=5), ValueError, "kl_warmup applies to objective='elbo' only"),
    (fit(free_bits=-0.5), ValueError, "free_bits must be >= 0.0"),
    (fit(free_bits=NAN), ValueError, "free_bits must be a finite number"),
    (fit(free_bits="0.5"), TypeError, "free_bits must be a real number"),
    (fit(free_bits=0.5, estimator="mc"), ValueError, "free_bits needs objective='elbo' with estimator='analytic'"),
    (fit(free_bits=0.5, objective="iwae"), ValueError, "free_bits needs objective='elbo' with estimator='analytic'"),
    # categorical latents (issue 9 item 3)
    (fit(model=tiny(latent="categorical", categories=3), objective="iwae"), ValueError,
     "a categorical latent trains objective='elbo' only"),
    (fit(model=tiny(latent="categorical", categories=3), estimator="stl"), ValueError,
     "estimator must be 'analytic', got estimator='stl'"),
    (fit(temperature=0.0), ValueError, "temperature must be > 0"),
    (fit(temperature=NAN), ValueError, "temperature must be a finite number"),
    (fit(temperature_min=-0.1), ValueError, "temperature_min must be > 0"),
    (fit(temperature=0.3), ValueError, "temperature_min must be <= temperature"),
    (fit(anneal_rate=-1.0), ValueError, "anneal_rate must be >= 0"),
    (fit(anneal_every=0), ValueError, "anneal_every must be an integer >= 1"),
    (fit(anneal_every=10.0), TypeError, "anneal_every must be an integer"),
    (fit(hard="yes"), TypeError, "hard must be"),
    (fit(hard=True), ValueError, "hard applies to categorical latents only"),
    (fit(anneal_rate=1e-4), ValueError, "anneal_rate applies to categorical latents only"),
    (fit(model=tiny(latent="categorical", categories=3), free_bits=0.5), ValueError,
     "free_bits applies to Gaussian latents only"),
    # the options object and keyword overrides (from tests/ops/test_spec.py)
    (fit(options={"epochs": 1}), TypeError, "options must be a fastvae.TrainOptions"),
    (lambda t: tiny(cond_dim=3).fit(X, torch.zeros(20, dtype=torch.long), progress=False), TypeError,
     "labels are keyword-only: train_labels="),
    (fit(epoch=1), TypeError, "unexpected keyword argument 'epoch'"),
    # data-parallel training (from tests/training/test_distributed_fit.py)
    (fit(process_group="world"), ValueError, "process_group must be 'auto', None or a torch.distributed"),
    (fit(process_group=2), TypeError, "process_group must be 'auto', None or a torch.distributed"),
    # models with custom networks: options their stepper does not implement, their likelihood's pixels
    (fit(model=network(), free_bits=1.0), ValueError, "do not apply to a model with custom networks"),
    (fit(model=network(), pixels="intensity"), ValueError, "binary likelihood such as bernoulli cannot take"),
]


@pytest.mark.parametrize("call, error, fragment", FIT_ROWS)
def test_bad_argument(call, error, fragment, tmp_path):
    with pytest.raises(error) as e:
        call(tmp_path)
    assert fragment in str(e.value)
