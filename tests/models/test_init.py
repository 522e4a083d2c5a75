"""VAE.glorot_init_ and VAE.init_output_bias_ (the initialization of Burda et al. 2016's code, yburda/iwae):
the weights' range and determinism, zero biases, the output bias against the pixel means, and the errors."""
import math

import pytest
import torch

import fastvae

ARCH = dict(data_dim=12, latent_dim=3, encoder_hidden=(9, 7), decoder_hidden=(7, 9), activation="tanh",
            upper_latents=(2,), upper_hidden=(5,))


def linears(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def test_glorot_weights_in_range_biases_zero_and_deterministic():
    a = fastvae.VAE(**ARCH).glorot_init_(torch.Generator().manual_seed(3))
    b = fastvae.VAE(**ARCH).glorot_init_(torch.Generator().manual_seed(3))
    layers = linears(a)
    assert len(layers) == len(ARCH["encoder_hidden"]) + 1 + len(ARCH["decoder_hidden"]) + 1 + 2 * 2
    for la, lb in zip(layers, linears(b)):
        bound = math.sqrt(6.0 / (la.in_features + la.out_features))
        assert la.weight.abs().max() <= bound
        assert la.weight.abs().max() > 0.5 * bound  # drawn over the whole range, not left at torch's narrower one
        assert torch.equal(la.bias, torch.zeros_like(la.bias))
        torch.testing.assert_close(la.weight, lb.weight, rtol=0, atol=0)


def test_glorot_spread_matches_uniform_variance():
    model = fastvae.VAE(data_dim=400, latent_dim=50, encoder_hidden=(300,), decoder_hidden=(300,))
    model.glorot_init_(torch.Generator().manual_seed(0))
    w = model.encoder[0].weight
    var = 2.0 / (400 + 300)  # U(-a, a) has variance a^2 / 3 = 2 / (fan_in + fan_out)
    assert abs(w.var().item() - var) < 0.02 * var  # 120,000 draws: the relative standard error is 0.3%


@pytest.mark.parametrize("threshold", [None, 127])
def test_output_bias_is_logit_of_pixel_means(threshold):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (40, 3, 4), generator=g, dtype=torch.uint8)
    images[:, 0, 0] = 0  # a pixel that is never on: its mean is clipped to 1e-3
    model = fastvae.VAE(**ARCH)
    before = [p.clone() for n, p in model.named_parameters() if n != "decoder.2.bias"]
    model.init_output_bias_(images, threshold=threshold)
    flat = images.reshape(40, -1).double()
    m = flat.mean(0) / 255 if threshold is None else (flat > threshold).double().mean(0)
    m = m.clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(model.decoder[-1].bias.double(), torch.log(m / (1 - m)), rtol=0, atol=1e-5)
    after = [p for n, p in model.named_parameters() if n != "decoder.2.bias"]
    assert all(torch.equal(x, y) for x, y in zip(before, after))


def test_output_bias_makes_the_untrained_decoder_predict_the_means():
    images = torch.rand(30, 12, generator=torch.Generator().manual_seed(2))
    model = fastvae.VAE(**ARCH).glorot_init_()
    with torch.no_grad():
        model.decoder[-1].weight.zero_()
    model.init_output_bias_(images)
    want = (torch.round(images * 255) / 255).mean(0)
    torch.testing.assert_close(model.decode(torch.randn(2, 3))[0], want, rtol=0, atol=1e-6)


def test_gaussian_output_bias_is_the_mean_first_half_when_predicted():
    images = torch.rand(25, 12, generator=torch.Generator().manual_seed(4))
    model = fastvae.VAE(data_dim=12, latent_dim=2, encoder_hidden=(5,), decoder_hidden=(5,), likelihood="gaussian",
                        gaussian_scale="predicted")
    rest = model.decoder[-1].bias[12:].clone()
    model.init_output_bias_(images)
    torch.testing.assert_close(model.decoder[-1].bias[:12], (torch.round(images * 255) / 255).mean(0))
    assert torch.equal(model.decoder[-1].bias[12:], rest)


def _cb():
    return fastvae.VAE(data_dim=12, latent_dim=2, encoder_hidden=(5,), decoder_hidden=(5,),
                       likelihood="continuous_bernoulli")


ERRORS = [  # (model, method, args, kwargs, exception, message part)
    (lambda: fastvae.VAE(**ARCH), "glorot_init_", (3,), {}, TypeError, "generator must be a torch.Generator"),
    (lambda: fastvae.VAE(**ARCH), "init_output_bias_", (torch.zeros(4, 11),), {}, ValueError, "images must have 12 pixels per image"),
    (lambda: fastvae.VAE(**ARCH), "init_output_bias_", (torch.zeros(0, 12),), {}, ValueError, "must hold at least one image"),
    (lambda: fastvae.VAE(**ARCH), "init_output_bias_", (torch.zeros(12),), {}, ValueError, "images must have 12 pixels per image"),
    (lambda: fastvae.VAE(**ARCH), "init_output_bias_", (torch.full((2, 12), 1.5),), {}, ValueError, "[0, 1]"),
    (lambda: fastvae.VAE(**ARCH), "init_output_bias_", (torch.full((2, 12), float("nan")),), {}, ValueError,
     "without NaN"),
    (lambda: fastvae.VAE(**ARCH), "init_output_bias_", (torch.zeros(2, 12, dtype=torch.int32),), {}, TypeError,
     "uint8 intensities or floats"),
    (lambda: fastvae.VAE(**ARCH), "init_output_bias_", ([[0.0] * 12],), {}, TypeError, "torch.Tensor or numpy"),
    (lambda: fastvae.VAE(**ARCH), "init_output_bias_", (torch.zeros(2, 12),), {"threshold": 256}, ValueError,
     "threshold"),
    (lambda: fastvae.VAE(**ARCH), "init_output_bias_", (torch.zeros(2, 12),), {"threshold": 1.5}, TypeError,
     "threshold"),
    (_cb, "init_output_bias_", (torch.zeros(2, 12),), {}, ValueError, "continuous Bernoulli"),
]


@pytest.mark.parametrize("make,method,args,kwargs,exc,part", ERRORS)
def test_errors(make, method, args, kwargs, exc, part):
    model = make()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(exc) as e:
        getattr(model, method)(*args, **kwargs)
    assert part in str(e.value) and str(e.value).startswith(f"VAE.{method}")
    assert all(torch.equal(x, y) for x, y in zip(before, model.parameters()))


@pytest.mark.parametrize("method,args", [("glorot_init_", ()), ("init_output_bias_", (torch.zeros(2, 12),))])
def test_refused_while_a_fit_runs(method, args):
    model = fastvae.VAE(data_dim=12, latent_dim=2, encoder_hidden=(5,), decoder_hidden=(5,))
    x = (torch.rand(40, 12, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    seen = []

    def during(event, info):  # a fit callback runs while fit owns the model
        if event == "epoch":
            try:
                getattr(model, method)(*args)
                seen.append("no error")
            except RuntimeError as e:
                seen.append(str(e))

    model.fit(x, fastvae.TrainOptions(batch_size=10), epochs=1, callback=during, progress=False)
    assert seen == [f"VAE.{method}: this model is being fitted; change its weights before or after fit"]
