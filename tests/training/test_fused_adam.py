"""The trainer's Adam step fused with the weight gradients (issue 21 item 3; cpp/cpu/vae_engine.h, "deferred weight
gradients"): the engine's deferred weight gradients are bit-identical to the ones it computes at once, every entry
of a pending gradient reaches the finishing callback exactly once, and the bound that stands in for their maximum
in the in-place proof is at least the largest of them, for the ELBO and the IWAE bound, at one and two threads,
with a sparse (transposed) or dense input layer and with a one-hot condition; PIWAE defers nothing."""
import pytest
import torch

import fastvae
from fastvae import _C

# (model settings, threads): layers wide enough to be split over two threads; a ReLU net with a condition.
CASES = [
    (dict(latent_dim=8, encoder_hidden=(200, 64), decoder_hidden=(64, 200), activation="tanh", posterior="logstd"), 1),
    (dict(latent_dim=8, encoder_hidden=(200, 64), decoder_hidden=(64, 200), activation="tanh", posterior="logstd"), 2),
    (dict(latent_dim=4, encoder_hidden=(96,), decoder_hidden=(96,), activation="relu", cond_dim=10), 2),
]


def _inputs(model, transposed, seed, samples=1):
    g = torch.Generator().manual_seed(seed)
    params = [p.detach().clone() for p in model.flat_parameters()]
    if transposed:  # the trainer's storage of the input layer: w.t() contiguous, the sparse path
        params[0] = params[0].t().contiguous().t()
    x = (torch.rand(20, 784, generator=g) < 0.2).float()
    eps = torch.randn(samples, 20, model.latent_dim, generator=g)
    labels = torch.randint(0, 10, (20,), generator=g) if model.cond_dim else None
    return params, x, labels, eps


@pytest.mark.parametrize("settings,threads", CASES)
@pytest.mark.parametrize("transposed", [True, False])
@pytest.mark.parametrize("objective,samples", [("elbo", 1), ("iwae", 5)])
def test_deferred_weight_gradients_equal_the_immediate_ones(settings, threads, transposed, objective, samples):
    torch.manual_seed(0)
    model = fastvae.VAE(**settings)
    params, x, labels, eps = _inputs(model, transposed, 1, samples)
    plain, deferred, pending, bound, visits = _C._deferred_grads(model.spec().as_dict(), params, x, labels, eps,
                                                                  threads, objective)
    names = [n for n, _ in model.named_parameters()]
    assert len(plain) == len(params) == len(pending)
    for k, (a, b) in enumerate(zip(plain, deferred)):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32)), names[k]  # bits, NaN included
    # every weight's gradient was pending (the biases are written by the backward's own pass)
    assert [n for n, p in zip(names, pending) if p] == [n for n in names if n.endswith("weight")]
    for k, p in enumerate(pending):
        assert bool((visits[k] == (1 if p else 0)).all()), names[k]
    largest = max(float(deferred[k].abs().max()) for k, p in enumerate(pending) if p)
    assert largest > 0 and largest <= bound < float("inf")


def test_a_non_finite_pre_activation_gradient_gives_an_infinite_bound():
    torch.manual_seed(0)
    model = fastvae.VAE(latent_dim=4, encoder_hidden=(32,), decoder_hidden=(32,))
    params, x, labels, eps = _inputs(model, True, 2)
    params[-2][0, 0] = float("inf")  # a decoder output weight: its logits, then every gradient below, not finite
    _, _, pending, bound, _ = _C._deferred_grads(model.spec().as_dict(), params, x, labels, eps, 1)
    assert any(pending) and bound == float("inf")


def test_a_backward_that_runs_a_layer_twice_defers_nothing():
    """PIWAE runs the decoder back twice (its second pass overwrites the first's pre-activation gradients): every
    gradient is computed at once, and equals the one computed without deferring."""
    torch.manual_seed(0)
    model = fastvae.VAE(latent_dim=4, encoder_hidden=(32,), decoder_hidden=(32,))
    params, x, labels, eps = _inputs(model, True, 3, samples=4)
    plain, deferred, pending, _, visits = _C._deferred_grads(model.spec().as_dict(), params, x, labels, eps, 2,
                                                             "piwae")
    assert not any(pending) and all(bool((v == 0).all()) for v in visits)
    for a, b in zip(plain, deferred):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))
