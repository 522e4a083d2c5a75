"""Inputs are accepted the same way by fit, elbo, iwae and log_likelihood, for every model kind: tensors or numpy
arrays, uint8 intensities or floats in [0, 1] (fastvae.pixels), and fit takes a torch.utils.data.Dataset."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import fastvae

D, Z = 12, 2
U8 = torch.randint(0, 256, (10, D), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(10) % 3


def mlp(**kw):
    torch.manual_seed(0)
    return fastvae.VAE(D, Z, (6,), (6,), **kw)


def networks(**kw):
    torch.manual_seed(0)
    return fastvae.VAE.from_networks(nn.Linear(D, 2 * Z), nn.Linear(Z, D), Z, **kw)


MODELS = {"mlp": mlp, "networks": networks}


def same_parameters(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("kind", MODELS)
def test_fit_takes_bytes_floats_numpy_and_datasets_alike(kind):
    runs = {"uint8": U8, "float": U8.float() / 255, "numpy uint8": U8.numpy(), "numpy float64": U8.numpy() / 255.0,
            "dataset": TensorDataset(U8), "dataset with labels": TensorDataset(U8.float() / 255, Y)}
    models = {}
    for name, images in runs.items():
        models[name] = MODELS[kind]()
        models[name].fit(images, epochs=1, batch_size=4, seed=3, progress=False)
    for name, m in models.items():
        assert same_parameters(m, models["uint8"]), name


def test_fit_takes_a_conditional_dataset_s_labels():
    a, b = mlp(cond_dim=3), mlp(cond_dim=3)
    a.fit(U8, train_labels=Y, epochs=1, batch_size=4, seed=1, progress=False)
    b.fit(TensorDataset(U8, Y), epochs=1, batch_size=4, seed=1, progress=False)
    assert same_parameters(a, b)
    with pytest.raises(ValueError, match="train_labels given with a dataset of"):
        b.fit(TensorDataset(U8, Y), train_labels=Y, progress=False)


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
def test_objectives_take_bytes_by_the_documented_rule(kind, likelihood):
    model = MODELS[kind](likelihood=likelihood)
    # uint8 intensities p: p > 127 for a binary likelihood, p / 255 otherwise (fastvae.pixels.model_input)
    want_x = (U8 > 127).float() if likelihood == "bernoulli" else U8.float() / 255
    eps = torch.randn(2, 10, Z, generator=torch.Generator().manual_seed(1))
    for x in (U8, U8.numpy()):
        got = fastvae.elbo(model, x, eps=eps)
        want = fastvae.elbo(model, want_x, eps=eps)
        for a, b in zip(got, want):
            assert torch.equal(a, b)
        assert torch.equal(fastvae.iwae(model, x, eps=eps), fastvae.iwae(model, want_x, eps=eps))
        g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
        assert torch.equal(fastvae.log_likelihood(model, x, k=3, generator=g()),
                           fastvae.log_likelihood(model, want_x, k=3, generator=g()))


@pytest.mark.parametrize("kind", MODELS)
def test_objectives_refuse_other_dtypes(kind):
    model = MODELS[kind]()
    for bad in (U8.int(), U8.double() / 255, (U8.numpy() / 255.0)):
        with pytest.raises(TypeError, match="model's dtype torch.float32"):
            fastvae.elbo(model, bad)


def test_fastvae_fit_is_the_model_s_fit():
    a, b = mlp(), mlp()
    ha = fastvae.fit(a, U8, epochs=2, batch_size=4, seed=2, progress=False)
    hb = b.fit(U8, epochs=2, batch_size=4, seed=2, progress=False)
    assert same_parameters(a, b)
    np.testing.assert_array_equal(ha.update_rec, hb.update_rec)
    with pytest.raises(TypeError, match="fastvae.fit: model must be a fastvae model"):
        fastvae.fit(nn.Linear(2, 2), U8)
