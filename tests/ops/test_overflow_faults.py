"""Fault table of objectives and gradients that leave the float range (issue 20 items 6 and 8): an objective or
gradient that is not finite although its inputs are raises a ValueError naming the input or parameter that
overflowed (the engine ops behind fastvae.elbo / iwae / log_likelihood / VAE.encode / VAE.decode, the
categorical ELBO and fastvae.gumbel_softmax with a tiny float32 temperature, the objective heads), and +-inf in
the heads' decoder_out is refused like NaN. Each row asserts the exception and a message fragment."""
import pytest
import torch

import fastvae
from fastvae import heads

ops = torch.ops.fastvae
F32 = torch.float32
INF = float("inf")
BIG = 3e38  # finite in float32 (max 3.4e38)


def vae(**kw):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=7, latent_dim=3, encoder_hidden=(5,), decoder_hidden=(4,), **kw)


def binary(n=4):
    return (torch.rand(n, 7, generator=torch.Generator().manual_seed(1)) < 0.5).float()


def eps(n=4, L=1, Z=3):
    return torch.randn(L, n, Z, generator=torch.Generator().manual_seed(2))


def edit(model, **assignments):
    """Set parameters by name ("encoder.0.weight": value or a function of the parameter)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in assignments.items():
            name = name.replace("__", ".")
            p = params[name]
            if callable(value):
                value(p)
            else:
                p.fill_(value)
    return model


ROWS = []


def row(name, call, exc, fragment):
    ROWS.append(pytest.param(call, exc, fragment, id=name))


# -- the engine ops (fastvae.VAE) ----------------------------------------------------------------------------
X = binary()
X1 = torch.ones(4, 7)  # every pixel on: no weight is multiplied by 0
row("elbo-encoder-weights", lambda: fastvae.elbo(edit(vae(), encoder__0__weight=BIG), X1, eps=eps()), ValueError,
    "vae_elbo: the ELBO is not finite although x, eps and the parameters are: the forward pass overflows float32 "
    "in encoder.0 (largest |weight| 3e+38")
row("elbo-decoder-weights",
    lambda: fastvae.elbo(edit(vae(), decoder__0__bias=1.0, decoder__1__weight=BIG), X, eps=eps()), ValueError,
    "the forward pass overflows float32 in decoder.1 (largest |weight| 3e+38")
row("elbo-posterior-scale", lambda: fastvae.elbo(edit(vae(), encoder_head__bias=lambda b: b[3:].fill_(400.0)), X,
                                                 eps=eps()), ValueError,
    "the posterior scale overflows float32: sigma = exp(s / 2) with s up to 4")
row("elbo-kl-mu", lambda: fastvae.elbo(edit(vae(), encoder_head__bias=lambda b: b[:3].fill_(1e20)), X,
                                       eps=torch.zeros(1, 4, 3)), ValueError,
    "the KL overflows float32 (|mu| up to 1e+20")
row("elbo-gaussian-x", lambda: fastvae.elbo(vae(likelihood="gaussian"), torch.full((4, 7), 1e30), eps=eps()),
    ValueError, "x holds values too large for the gaussian likelihood in float32 (|x| up to 1e+30")
row("elbo-predicted-log-variance",
    lambda: fastvae.elbo(edit(vae(likelihood="gaussian", gaussian_scale="predicted"),
                              decoder__1__weight=lambda w: w[7:].zero_(), decoder__1__bias=lambda b: b[7:].fill_(-800)),
                         torch.randn(4, 7), eps=eps()), ValueError,
    "the predicted log-variance goes down to -800: 1 / variance = exp(-log-variance) overflows float32")
row("elbo-learned-log-sigma", lambda: fastvae.elbo(edit(vae(likelihood="gaussian", gaussian_scale="learned"),
                                                        log_sigma=-60.0), torch.randn(4, 7), eps=eps()),
    ValueError, "the learned log_sigma goes down to -60: 1 / sigma^2 = exp(-2 log_sigma) overflows float32")
row("iwae-encoder-weights", lambda: fastvae.iwae(edit(vae(), encoder__0__weight=BIG), X1, k=2, eps=eps(L=2)),
    ValueError, "the IWAE bound is not finite although x, eps and the parameters are: the forward pass overflows "
                "float32 in encoder.0")
row("log_likelihood-decoder-weights",
    lambda: fastvae.log_likelihood(edit(vae(), decoder__0__bias=1.0, decoder__0__weight=0.0, decoder__1__weight=BIG),
                                   X, k=3, generator=torch.Generator().manual_seed(0)),
    ValueError, "vae_iwae: the IWAE bound is not finite although x, eps and the parameters are: the forward pass "
                "overflows float32 in decoder.1")
row("encode-scale", lambda: edit(vae(), encoder_head__bias=lambda b: b[3:].fill_(400.0)).encode(X), ValueError,
    "vae_encode: the posterior scale is not finite although x and the parameters are: the posterior scale overflows "
    "float32")
row("encode-encoder-weights", lambda: edit(vae(), encoder__0__weight=BIG).encode(X1), ValueError,
    "vae_encode: the posterior mean is not finite although x and the parameters are: the forward pass overflows "
    "float32 in encoder.0")
row("decode-decoder-weights",
    lambda: edit(vae(), decoder__0__weight=0.0, decoder__0__bias=1.0, decoder__1__weight=BIG).decode(torch.zeros(2, 3)),
    ValueError, "vae_decode: the decoder's output is not finite although z and the parameters are: the forward pass "
                "overflows float32 in decoder.1")


def elbo_gradient_overflow():
    m = vae()
    ps = [p.detach() for p in m.flat_parameters()]
    w = torch.full((4,), BIG)  # finite per-image weights that the gradient cannot carry
    return ops.vae_elbo_backward(w, w, X, None, eps(), ps, *m.spec().as_args(), "analytic")


row("elbo-backward-weights", elbo_gradient_overflow, ValueError,
    "vae_elbo_backward: the gradient of decoder.1.bias is not finite although x, eps, the parameters and the "
    "per-image weights are: the backward pass overflows float32")


def iwae_gradient_overflow():
    m = vae()
    ps = [p.detach() for p in m.flat_parameters()]
    return ops.vae_iwae_bound_backward(torch.full((4,), BIG), X, None, eps(L=2), ps, *m.spec().as_args(), "reparam",
                                       "iwae", 1, 0.0)


row("iwae-backward-weights", iwae_gradient_overflow, ValueError,
    "vae_iwae_bound_backward: the gradient of decoder.1.bias is not finite")

# -- categorical latents and the Gumbel-softmax sampler: a tiny float32 temperature ------------------------------
CAT = dict(latent="categorical", categories=4)
row("categorical-temperature-underflows",
    lambda: fastvae.elbo(vae(**CAT), X, temperature=1e-45, generator=torch.Generator().manual_seed(0)),
    ValueError, "temperature 1e-45 underflows float32: 1 / temperature")
row("categorical-temperature-overflows-logits",
    lambda: fastvae.elbo(edit(vae(**CAT), encoder_head__bias=100.0), X, temperature=1e-37,
                         generator=torch.Generator().manual_seed(0)),
    ValueError, "vae_categorical_elbo: the ELBO is not finite although x, u, the temperature and the parameters are: "
                "the temperature 1e-37 is too small for float32")
LOGITS = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
row("gumbel_softmax-tau-underflows", lambda: fastvae.gumbel_softmax(LOGITS, tau=1e-45), ValueError,
    "gumbel_softmax: temperature 1e-45 underflows float32: 1 / tau = 1e+45 overflows float32")
row("gumbel_softmax-sample-overflows", lambda: fastvae.gumbel_softmax(LOGITS + 100, tau=1e-37), ValueError,
    "gumbel_softmax: the sample is not finite although the logits are: (logits + G) / tau overflows float32")
row("gumbel_softmax-backward-overflows",
    lambda: ops._gumbel_softmax_backward(torch.tensor([[100.0, -100.0]]), torch.tensor([[0.5, 0.5]]), 1e-37, -1),
    ValueError, "the gradient with respect to the logits is not finite although the upstream gradient and the sample "
                "are: y * (grad - <grad, y>) / tau overflows float32")

# -- the objective heads: +-inf in decoder_out is refused like NaN; overflows are named -------------------------
g = torch.Generator().manual_seed(4)
HX = (torch.rand(3, 6, generator=g) < 0.5).float()
HOUT = torch.randn(2, 3, 6, generator=g)
HMU = torch.randn(3, 2, generator=g)
HSIGMA = torch.rand(3, 2, generator=g) + 0.5
HZ = HMU + HSIGMA * torch.randn(2, 3, 2, generator=g)


def at(t, index, value):
    t = t.clone()
    t[index] = value
    return t


row("heads-elbo-decoder_out-inf", lambda: heads.elbo_terms(HX, at(HOUT, (1, 2, 3), INF), HZ, HMU, HSIGMA),
    ValueError, "elbo_terms: decoder_out contains inf")
row("heads-elbo-decoder_out-minus-inf",
    lambda: heads.elbo_terms(HX, at(HOUT, (0, 0, 0), -INF), HZ, HMU, HSIGMA, likelihood="gaussian"),
    ValueError, "elbo_terms: decoder_out contains inf")
row("heads-iwae-decoder_out-inf", lambda: heads.iwae_bound(HX, at(HOUT, (0, 1, 5), INF), HZ, HMU, HSIGMA),
    ValueError, "iwae_bound: decoder_out contains inf")
row("heads-generic-decoder_out-inf",
    lambda: ops._generic_elbo_terms(HX, at(HOUT, (1, 0, 0), -INF), HZ, HMU, HSIGMA, "bernoulli", 1.0, "fixed",
                                    "analytic"),
    ValueError, "elbo_terms: decoder_out contains inf")
row("heads-gaussian-x-inf", lambda: heads.elbo_terms(at(HX, (0, 0), INF), HOUT, HZ, HMU, HSIGMA,
                                                     likelihood="gaussian"), ValueError, "elbo_terms: x contains inf")
row("heads-gaussian-x-huge", lambda: heads.elbo_terms(torch.full((3, 6), 1e30), HOUT, HZ, HMU, HSIGMA,
                                                      likelihood="gaussian"), ValueError,
    "the ELBO is not finite although x, decoder_out, z, mu and sigma are: the log-likelihood is not: x holds values "
    "too large for the gaussian likelihood in float32 (|x| up to 1e+30")
row("heads-gaussian-mean-huge", lambda: heads.elbo_terms(torch.randn(3, 6), HOUT * 1e25, HZ, HMU, HSIGMA,
                                                         likelihood="gaussian"), ValueError,
    "the decoder output holds means too large for the gaussian likelihood in float32")
row("heads-gaussian-sigma-tiny", lambda: heads.elbo_terms(torch.randn(3, 6), HOUT, HZ, HMU, HSIGMA,
                                                          likelihood="gaussian", gaussian_sigma=1e-30),
    ValueError, "gaussian_sigma 1e-30 is too small for float32: 1 / gaussian_sigma^2 overflows")
row("heads-predicted-log-variance",
    lambda: heads.elbo_terms(torch.randn(3, 6), torch.cat([HOUT, torch.full((2, 3, 6), -800.0)], -1), HZ, HMU,
                             HSIGMA, likelihood="gaussian", gaussian_scale="predicted"),
    ValueError, "the predicted log-variance goes down to -800")
row("heads-kl-mu-huge", lambda: heads.elbo_terms(HX, HOUT, HZ, HMU * 1e20, HSIGMA), ValueError,
    "elbo_terms: the ELBO is not finite although x, decoder_out, z, mu and sigma are: the KL overflows float32 "
    "(|mu| up to")
row("heads-iwae-z-over-sigma", lambda: heads.iwae_bound(HX, HOUT, HZ * 1e25, HMU, HSIGMA * 1e-20), ValueError,
    "iwae_bound: the IWAE bound is not finite although x, decoder_out, z, mu and sigma are: the latent part of the "
    "log weights overflows float32")


def sigma_gradient_overflow(generic=False):
    s = at(HSIGMA, (1, 1), 1e-39).requires_grad_()  # KL finite (-log sigma = 89.8), 1 / sigma overflows float32
    if generic:
        out = ops._generic_elbo_terms(HX, HOUT, HZ, HMU, s, "bernoulli", 1.0, "fixed", "analytic")[0]
    else:
        out = heads.elbo_terms(HX, HOUT, HZ, HMU, s).elbo
    assert torch.isfinite(out).all()
    out.sum().backward()


row("heads-backward-sigma", sigma_gradient_overflow, ValueError,
    "_elbo_terms_backward: the gradient with respect to sigma is not finite although the inputs and the upstream "
    "gradient are: it overflows float32")
row("heads-generic-backward-sigma", lambda: sigma_gradient_overflow(True), ValueError,
    "_elbo_terms_backward: the gradient with respect to sigma is not finite")
row("heads-iwae-backward-sigma",
    lambda: ops._iwae_bound_backward(torch.ones(3), torch.full((2, 3), 0.5), HX, HOUT, HZ, HMU,
                                     at(HSIGMA, (0, 0), 1e-39), False, "bernoulli", 1.0, "fixed", "reparam"),
    ValueError, "_iwae_bound_backward: the gradient with respect to")


@pytest.mark.parametrize("call, exc, fragment", ROWS)
def test_a_result_that_leaves_the_float_range_names_its_cause(call, exc, fragment):
    with pytest.raises(exc) as e:
        call()
    assert fragment in str(e.value)


def test_a_non_finite_upstream_gradient_is_passed_on_not_refused():
    """Garbage in, garbage out: the backward raises only for a non-finite gradient from finite inputs."""
    d_out, d_z, d_mu, d_sigma = ops._elbo_terms_backward(torch.full((3,), float("nan")), torch.ones(3), HX, HOUT, HZ,
                                                         HMU, HSIGMA, True, "bernoulli", 1.0, "fixed", "analytic")
    assert torch.isnan(d_out).all() and torch.isfinite(d_sigma).all()


def test_float64_carries_what_float32_cannot():
    """The same huge weights and tiny temperature are fine in float64: the checks name float32's range, not
    a rule of their own."""
    m = edit(vae(dtype=torch.float64), encoder__0__weight=BIG)
    assert torch.isfinite(fastvae.elbo(m, X1.double(), eps=eps().double()).kl).all()
    y = fastvae.gumbel_softmax(LOGITS.double(), tau=1e-45)
    assert torch.isfinite(y).all() and torch.equal(y.sum(-1), torch.ones(5, dtype=torch.float64))
