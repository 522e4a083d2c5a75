"""fastvae.diagnostics.gradient_snr against the SNR written out with torch.stack / mean / std."""
import pytest
import torch

import fastvae
from fastvae import VAE
from fastvae.diagnostics import gradient_snr


def small_model():
    torch.manual_seed(0)
    return VAE(12, 3, (8,), (8,), activation="tanh")


X = (torch.rand(4, 12, generator=torch.Generator().manual_seed(1)) < 0.5).float()


@pytest.mark.parametrize("estimator", ["reparam", "stl", "dreg"])
def test_gradient_snr_matches_the_definition(estimator):
    model = small_model()
    params = [model.encoder[0].weight, model.encoder_head.bias]
    value, live = gradient_snr(model, X, 4, estimator, params, draws=30, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)  # the same draws, in the same order
    g = torch.stack([torch.cat([t.reshape(-1) for t in torch.autograd.grad(
        fastvae.iwae(model, X, k=4, estimator=estimator, generator=gen).mean(), params)]).double()
        for _ in range(30)])
    moved = (g != 0).any(0)
    ref = (g[:, moved].mean(0).abs() / g[:, moved].std(0)).mean().item()
    assert live == int(moved.sum()) and live > 0
    assert value == pytest.approx(ref, rel=1e-9)


def test_snr_detects_a_clear_signal_above_the_noise_floor():
    # a model that has barely trained: the bias of the encoder head's mean gets a clear signal at k = 1
    model = small_model()
    value, _ = gradient_snr(model, X, 1, "reparam", [model.encoder_head.bias], draws=200,
                            generator=torch.Generator().manual_seed(3))
    assert value > (2 / (torch.pi * 200)) ** 0.5


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(draws=1), "draws must be an integer >= 2"),
    (dict(draws=2.0), "draws must be an integer >= 2"),
    (dict(draws=True), "draws must be an integer >= 2"),
    (dict(params=[]), "params is empty"),
])
def test_gradient_snr_bad_input(kwargs, fragment):
    model = small_model()
    args = dict(params=[model.encoder_head.bias], draws=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        gradient_snr(model, X, 2, "dreg", args.pop("params"), **args)


def test_active_units_follow_burda_et_al_definition():
    from reference.vae import MlpReference
    from fastvae.diagnostics import active_units
    model = small_model()
    with torch.no_grad():  # unit 1's mean no longer depends on x: inactive whatever the data
        model.encoder_head.weight[1].zero_()
    x = (torch.rand(50, 12, generator=torch.Generator().manual_seed(3)) < 0.5).float()
    count, stat = active_units(model, x, threshold=1e-4, batch_size=7)
    mu = MlpReference(model).q(x).loc.detach().double()  # E_q[z | x] from the reference
    want = ((mu - mu.mean(0)) ** 2).mean(0)  # Cov_x of each unit, divisor N
    torch.testing.assert_close(stat, want, rtol=1e-5, atol=1e-9)
    assert count == int((want > 1e-4).sum()) and stat[1] < 1e-12 and count < 3
    with pytest.raises(ValueError, match="threshold must be > 0"):
        active_units(model, x, threshold=0.0)
    with pytest.raises(ValueError, match="at least two images"):
        active_units(model, x[:1])
