"""The sparse input layer (cpp/cpu/vae_engine.cpp, sparse_input_forward and its weight gradient): the trainer
keeps the first weight transposed and skips the zero pixels. Its gradients, which carry its forward pass into
every layer, agree with the dense path's (MKL products on the untransposed weight) for widths below one vector,
between vectors and of several tiles, at one and two threads, with non-binary pixel values and a condition."""
import pytest
import torch

import fastvae
from fastvae import _C


@pytest.mark.parametrize("hidden", [5, 13, 100, 200])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cond_dim", [0, 10])
def test_sparse_input_layer_agrees_with_the_dense_one(hidden, threads, cond_dim):
    torch.manual_seed(0)
    model = fastvae.VAE(latent_dim=4, encoder_hidden=(hidden,), decoder_hidden=(16,), activation="tanh",
                        cond_dim=cond_dim)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(20, 784, generator=g) < 0.2) * torch.rand(20, 784, generator=g)  # values in (0, 1), ~80% zero
    x[3] = 0  # an image with no pixel on: its pre-activation is the bias alone
    eps = torch.randn(1, 20, 4, generator=g)
    labels = torch.randint(0, 10, (20,), generator=g) if cond_dim else None
    dense = [p.detach().clone() for p in model.flat_parameters()]
    sparse = [p.clone() for p in dense]
    sparse[0] = sparse[0].t().contiguous().t()  # w.t() contiguous: the sparse path
    spec = model.spec().as_dict()
    a = _C._deferred_grads(spec, dense, x, labels, eps, threads, "elbo")[0]
    b = _C._deferred_grads(spec, sparse, x, labels, eps, threads, "elbo")[0]
    names = [n for n, _ in model.named_parameters()]
    assert float(a[0].abs().max()) > 0
    for k, (ga, gb) in enumerate(zip(a, b)):
        torch.testing.assert_close(gb, ga, rtol=1e-5, atol=1e-6, msg=names[k])
