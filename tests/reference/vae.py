"""One plain-PyTorch reference of fastvae's VAEs, written from the homework and paper definitions with torch.nn and
torch.distributions, used as the reference of the C++ kernels, of models with custom networks and of the training
loop (reference.training). Only the weights are read from a fastvae model (``model.flat_parameters()``, whose
order is documented), and, for non-homework models, the architecture it declares; the homework architectures are
pinned here (HOMEWORKS), so a wrong preset fails.

- Encoder (Kingma & Welling 2014; the homeworks): input [x, onehot(y)] -> hidden Linear layers with the
  activation -> two heads, the mean (with mean_activation) and the spread s (with scale_activation), sigma =
  exp(s / 2) ("logvar"), exp(s) ("logstd") or s ("std"); q(z | x, y) = Normal(mu, sigma). A categorical latent
  (Jang, Gu & Poole 2017, arXiv 1611.01144) has one head of N * K logits, q_n = Categorical(logits_n).
- Decoder: [z, onehot(y)] -> hidden layers -> output: Bernoulli logits, continuous Bernoulli logits
  (Loaiza-Ganem & Cunningham 2019) or the Gaussian mean, whose scale is gaussian_sigma ("fixed"), exp(log_sigma)
  per pixel ("learned") or exp(lv / 2) from a second half of the output ("predicted"; Kingma & Welling 2014,
  C.2). Prior N(0, I), or uniform over the K classes of each categorical variable.
- ELBO: rec = 1/L sum_l log p(x | z_l), z_l = mu + sigma eps_l (reparameterization, as rsample); the KL analytic
  (kl_divergence), Monte Carlo ("mc": 1/L sum_l log q(z_l) - log p(z_l)) or sticking the landing ("stl", Roeder
  et al. 2017: q's parameters held fixed inside log q). Categorical: decoder input y = softmax((logits + G) / tau),
  G = -log(-log u) Gumbel noise (eq. 1-2 of the paper), one_hot(argmax y) + y - stopgrad(y) if hard (straight
  through, Sec. 2.2), KL(q || uniform) analytic.
- IWAE bound (Burda et al. 2016): log 1/K sum_k w_k, log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x), with
  its encoder gradient by reparameterization (autograd of the bound), STL (q's parameters held fixed inside log q)
  or DReG (Tucker et al. 2018, arXiv 1810.04152: the encoder from sum_k stopgrad(wn_k^2) log w_k with q's
  parameters held fixed, the decoder from the bound).
"""
import math
from typing import NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Normal, kl_divergence

from reference import heads

# What this reference implements: a family fastvae adds without a reference here fails
# tests/models/test_combinations.py::test_every_engine_family_has_a_reference.
ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "leaky_relu")
POSTERIORS = ("logvar", "logstd", "std")
LIKELIHOODS = tuple(heads.LIKELIHOODS)  # every row of the likelihood table
GAUSSIAN_SCALES = ("fixed", "learned", "predicted")
LATENTS = ("gaussian", "categorical")
ELBO_ESTIMATORS = ("analytic", "mc", "stl")
IWAE_ESTIMATORS = ("reparam", "stl", "dreg")


def activation(name, slope=0.0):
    return {"identity": lambda h: h, "relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "leaky_relu": lambda h: F.leaky_relu(h, slope)}[name]


class Arch(NamedTuple):
    """An MLP VAE as the homeworks write it: input [x, onehot(y)] -> hidden layers -> heads."""

    data_dim: int
    cond_dim: int
    latent_dim: int
    encoder_hidden: Tuple[int, ...]
    decoder_hidden: Tuple[int, ...]
    activation: str  # of the hidden layers
    negative_slope: float  # of leaky_relu (unused otherwise)
    posterior: str  # what the spread head gives: "logvar", "logstd" or "std"
    mean_activation: str = "identity"
    scale_activation: str = "identity"
    likelihood: str = "bernoulli"
    gaussian_sigma: float = 1.0
    gaussian_scale: str = "fixed"
    latent: str = "gaussian"
    categories: int = 0

    @classmethod
    def of(cls, model) -> "Arch":
        """The architecture a (non-homework) test model declares; homework models use HOMEWORKS instead."""
        slope = model.negative_slope if model.activation == "leaky_relu" else 0.0  # unused otherwise
        return cls(model.data_dim, model.cond_dim, model.latent_dim, tuple(model.encoder_hidden),
                   tuple(model.decoder_hidden), model.activation, slope, model.posterior, model.mean_activation,
                   model.scale_activation, model.likelihood, model.gaussian_sigma, model.gaussian_scale,
                   model.latent, model.categories)


# From the homework statements (see docs/reproductions.md), independent of fastvae.presets.
HOMEWORKS = {
    # STATS 305C HW6: 784-512-256 relu -> mu (2), log sigma (2); decoder 2-256-512-784 logits.
    "stats305c": Arch(784, 0, 2, (512, 256), (256, 512), "relu", 0.0, "logstd"),
    # ESE 546 HW5: 196-128 tanh -> 8 means, 8 log-variances; decoder 8-128 tanh-196.
    "ese546": Arch(196, 0, 8, (128,), (128,), "tanh", 0.0, "logvar"),
    # Deep Learning HW7 (CVAE): [784 + 10]-256 relu -> sigmoid mean (40), sigmoid std (40);
    # decoder [40 + 10]-256 relu-784.
    "cvae_hw7": Arch(784, 10, 40, (256,), (256,), "relu", 0.0, "std", "sigmoid", "sigmoid"),
    # DD2434 A1B: 784-400-400 leaky relu 0.2 -> mean (200), log-variance (200); decoder 200-400-400 leaky-784.
    "dd2434": Arch(784, 0, 200, (400, 400), (400, 400), "leaky_relu", 0.2, "logvar"),
}


def bound(log_w):
    """The IWAE bound log 1/K sum_k w_k of log weights [K, B]."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


class ReferenceVAE(nn.Module):
    """The probabilistic model on top of an encoder and a decoder that subclasses supply (``_encoder_out``,
    ``_decoder_out``); see the module docstring. Tensors: x [B, D], y [B] classes or None, eps [L, B, Z] normal
    noise (Gaussian latent) or uniforms [L, B, N * K] in (0, 1) (categorical latent)."""

    latent = "gaussian"
    cond_dim = 0
    categories = 0
    posterior = "logvar"
    likelihood = "bernoulli"
    gaussian_sigma = 1.0
    gaussian_scale = "fixed"

    def __init__(self):
        super().__init__()
        self.log_sigma = None  # the learned Gaussian log sigma [D], a parameter where there is one

    # -- what a subclass supplies ------------------------------------------------------------------------------
    def _encoder_out(self, h):
        """Gaussian: (mean, spread s) [B, Z] each; categorical: logits [B, N * K]."""
        raise NotImplementedError

    def _decoder_out(self, h, detach=False):
        """The decoder's output rows for inputs h [N, code + C]; ``detach``: with its parameters held fixed."""
        raise NotImplementedError

    @property
    def noise_dim(self):
        """Width of the noise per sample and image: Z, or N * K for a categorical latent."""
        return self.latent_dim * self.categories if self.latent == "categorical" else self.latent_dim

    @property
    def dtype(self):
        return next(self.parameters()).dtype

    # -- encoder and decoder -----------------------------------------------------------------------------------
    def _cond(self, h, y):
        return h if not self.cond_dim else torch.cat([h, F.one_hot(y, self.cond_dim).to(h.dtype)], dim=-1)

    def q(self, x, y=None):
        """q(z | x, y) of a Gaussian latent: Normal(mu, sigma), each [B, Z]."""
        mean, s = self._encoder_out(self._cond(x, y))
        sigma = {"logvar": lambda: torch.exp(s / 2), "logstd": lambda: torch.exp(s), "std": lambda: s}[self.posterior]()
        return Normal(mean, sigma)

    def q_logits(self, x, y=None):
        """Logits [B, N, K] of a categorical latent's q(z_n | x, y)."""
        return self._encoder_out(self._cond(x, y)).reshape(x.shape[0], self.latent_dim, self.categories)

    def logits(self, z, y=None):
        """The decoder's raw output [N, D] (or [N, 2D], mean and log-variance, with a predicted scale) for codes z."""
        return self._decoder_out(self._cond(z, y))

    def p(self, out, detach=False):
        """p(x | z) from the decoder's output rows: the likelihood table's torch.distributions density
        (tests/reference/heads.py), or N(out, exp(log_sigma)) with a learned per-pixel scale."""
        if self.gaussian_scale == "learned":
            log_sigma = self.log_sigma.detach() if detach else self.log_sigma
            return Normal(out, torch.exp(log_sigma).expand_as(out))
        return heads.dist(out, self.likelihood, self.gaussian_sigma, self.gaussian_scale)

    def mean(self, z, y=None):
        """E[x | z] [N, D]: the decoder means."""
        return self.p(self.logits(z, y)).mean

    def log_px(self, x, codes, y=None, detach_decoder=False):
        """log p(x | code_l) summed over pixels, [L, B], for codes [L, B, W]."""
        L, B, W = codes.shape
        yy = None if y is None else y.repeat(L)
        out = self._decoder_out(self._cond(codes.reshape(L * B, W), yy), detach=detach_decoder)
        return self.p(out, detach=detach_decoder).log_prob(x.repeat(L, 1)).sum(-1).reshape(L, B)

    # -- objectives --------------------------------------------------------------------------------------------
    def relaxed_sample(self, logits, u, temperature, hard=False):
        """Gumbel-softmax sample [L, B, N, K] of logits [B, N, K] from uniforms u [L, B, N * K]."""
        L, B = u.shape[:2]
        gumbel = -torch.log(-torch.log(u.reshape(L, B, self.latent_dim, self.categories)))
        y = torch.softmax((logits.unsqueeze(0) + gumbel) / temperature, -1)
        if hard:
            y = F.one_hot(y.argmax(-1), self.categories).to(y.dtype) + y - y.detach()
        return y

    def elbo_terms(self, x, eps, y=None, estimator="analytic", temperature=1.0, hard=False):
        """(rec, kl), each [B]; autograd gives the estimator's gradients."""
        if self.latent == "categorical":
            if estimator != "analytic":
                raise ValueError("a categorical latent has the analytic KL only")
            logits = self.q_logits(x, y)
            codes = self.relaxed_sample(logits, eps, temperature, hard)
            rec = self.log_px(x, codes.reshape(*codes.shape[:2], -1), y).mean(0)
            uniform = Categorical(logits=torch.zeros_like(logits))
            return rec, kl_divergence(Categorical(logits=logits), uniform).sum(-1)
        qz = self.q(x, y)
        z = qz.loc + qz.scale * eps  # reparameterization, as rsample does
        rec = self.log_px(x, z, y).mean(0)
        prior = Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))
        if estimator == "analytic":
            kl = kl_divergence(qz, prior).sum(-1)
        else:
            q_eval = qz if estimator == "mc" else Normal(qz.loc.detach(), qz.scale.detach())
            kl = (q_eval.log_prob(z) - prior.log_prob(z)).sum(-1).mean(0)
        return rec, kl

    def elbo(self, x, eps, y=None, estimator="analytic", temperature=1.0, hard=False):
        rec, kl = self.elbo_terms(x, eps, y, estimator, temperature, hard)
        return rec - kl

    def kl_per_dim(self, x, y=None):
        """Analytic KL(q(z_j | x) || N(0, 1)) per image and latent dimension, [B, Z]."""
        qz = self.q(x, y)
        return kl_divergence(qz, Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale)))

    def log_weights(self, x, eps, y=None, detach_q=False, detach_decoder=False):
        """log w_k, [K, B], z_k = mu + sigma eps_k; q's parameters held fixed inside log q if detach_q."""
        if self.latent == "categorical":
            raise ValueError("the IWAE bound needs the density of a Gaussian latent")
        qz = self.q(x, y)
        z = qz.loc + qz.scale * eps
        prior = Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))
        q_eval = Normal(qz.loc.detach(), qz.scale.detach()) if detach_q else qz
        return self.log_px(x, z, y, detach_decoder) + prior.log_prob(z).sum(-1) - q_eval.log_prob(z).sum(-1)

    def iwae(self, x, eps, y=None, estimator="reparam"):
        """(bound [B], surrogate [B]): the IWAE bound and a surrogate whose autograd gradient is the estimator's
        (reparam: the bound; stl: the bound with q's parameters held fixed; dreg: sum_k stopgrad(wn_k^2) log w_k
        with q's parameters and the decoder held fixed, plus the bound with the codes held fixed, which gives the
        decoder its gradient)."""
        value = bound(self.log_weights(x, eps, y))
        if estimator == "reparam":
            return value.detach(), value
        if estimator == "stl":
            return value.detach(), bound(self.log_weights(x, eps, y, detach_q=True))
        lw = self.log_weights(x, eps, y, detach_q=True, detach_decoder=True)
        wn = torch.softmax(lw.detach(), 0)
        encoder = (wn ** 2 * lw).sum(0)
        qz = self.q(x, y)
        z = (qz.loc + qz.scale * eps).detach()
        prior = Normal(torch.zeros_like(z), torch.ones_like(z))
        rest = (prior.log_prob(z).sum(-1) - Normal(qz.loc.detach(), qz.scale.detach()).log_prob(z).sum(-1))
        decoder = bound(self.log_px(x, z, y) + rest)
        return value.detach(), encoder + decoder

    def iw_objective(self, x, eps, objective, groups=1, beta=0.0, y=None, estimator="reparam"):
        """(value [B], encoder surrogate [B], decoder surrogate [B]) of an importance-weighted objective of
        Rainforth et al. 2018 (ICML) on the samples eps [M K, B, Z], sample m * K + k in group m:
        iwae IWAE(M K); miwae MIWAE(M, K) = 1/M sum_m [logsumexp_k log w_mk - log K]; ciwae
        beta 1/K sum_k log w_k + (1 - beta) IWAE(K); piwae the encoder's MIWAE(M, K) with the decoder's IWAE(M K)
        (the value). The surrogates' autograd gradients are the estimator's for the encoder's parameters and the
        decoder's: reparam the objective itself; stl the objective with q's parameters held fixed inside log q;
        dreg (Tucker et al. 2019) the weights w~ of each log-sum-exp squared and held fixed, q's parameters and the
        decoder held fixed (the ELBO part of CIWAE is its STL form), the decoder's gradient from the objective with
        the codes held fixed."""
        M = groups

        def miwae(lw):
            K = lw.shape[0] // M
            return (torch.logsumexp(lw.view(M, K, -1), 1) - math.log(K)).mean(0)

        def value_of(lw, kind):
            if kind == "miwae":
                return miwae(lw)
            if kind == "ciwae":
                return beta * lw.mean(0) + (1 - beta) * bound(lw)
            return bound(lw)  # iwae; piwae's value and decoder objective

        enc_kind = "miwae" if objective == "piwae" else objective
        lw = self.log_weights(x, eps, y)
        value = value_of(lw, objective).detach()
        if estimator in ("reparam", "stl"):
            lw_enc = lw if estimator == "reparam" else self.log_weights(x, eps, y, detach_q=True)
            return value, value_of(lw_enc, enc_kind), value_of(lw, objective)
        lw_path = self.log_weights(x, eps, y, detach_q=True, detach_decoder=True)
        w = lw_path.detach()
        if enc_kind == "miwae":  # 1/M sum_m sum_k w~_mk^2 log w_mk, w~ the softmax within the group
            wn = torch.softmax(w.view(M, -1, w.shape[1]), 1).reshape_as(w)
            encoder = (wn ** 2 * lw_path).sum(0) / M
        elif enc_kind == "ciwae":
            wn = torch.softmax(w, 0)
            encoder = beta * lw_path.mean(0) + (1 - beta) * (wn ** 2 * lw_path).sum(0)
        else:
            encoder = (torch.softmax(w, 0) ** 2 * lw_path).sum(0)
        return value, encoder, value_of(self.log_weights_fixed_codes(x, eps, y), objective)

    def log_weights_fixed_codes(self, x, eps, y=None):
        """log w [K, B] with the codes held fixed at their sampled values: the gradient reaches p's parameters
        only (DReG's decoder term)."""
        qz = self.q(x, y)
        z = (qz.loc + qz.scale * eps).detach()
        prior = Normal(torch.zeros_like(z), torch.ones_like(z))
        rest = prior.log_prob(z).sum(-1) - Normal(qz.loc.detach(), qz.scale.detach()).log_prob(z).sum(-1)
        return self.log_px(x, z, y) + rest

    # -- parameters in fastvae's order -------------------------------------------------------------------------
    def flat_parameters(self):
        """The parameters in the order of the fastvae model's flat_parameters()."""
        return list(self.parameters())

    def grads_in_fastvae_order(self, objective):
        return list(torch.autograd.grad(objective, list(self.parameters()), allow_unused=True))


class MlpReference(ReferenceVAE):
    """The homeworks' MLP VAE (fastvae.VAE): hidden Linear layers with the homework's activation, two separate heads
    for the mean and the spread (as the homeworks write them; one head of logits for a categorical latent) and the
    likelihood. ``arch`` is a homework name (its pinned architecture), an :class:`Arch`, or None (the model's
    declared one); the layers are built from it and only the weights are copied from ``model``
    (``model.flat_parameters()``: each encoder layer's weight and bias, the encoder head's ([mean; spread] rows),
    each decoder layer's, then the learned log sigma; ValueError if they do not fit the architecture)."""

    def __init__(self, model, arch=None):
        super().__init__()
        a = HOMEWORKS[arch] if isinstance(arch, str) else (arch or Arch.of(model))
        self.arch = a
        self.data_dim, self.cond_dim, self.latent_dim = a.data_dim, a.cond_dim, a.latent_dim
        self.posterior, self.likelihood, self.latent, self.categories = a.posterior, a.likelihood, a.latent, a.categories
        self.gaussian_sigma, self.gaussian_scale = a.gaussian_sigma, a.gaussian_scale
        self.act = activation(a.activation, a.negative_slope)
        self.mean_act = activation(a.mean_activation, a.negative_slope)
        self.scale_act = activation(a.scale_activation, a.negative_slope)
        theirs = [p.detach() for p in model.flat_parameters()]
        dtype = theirs[0].dtype
        code = a.latent_dim * a.categories if a.latent == "categorical" else a.latent_dim
        out = 2 * a.data_dim if a.gaussian_scale == "predicted" else a.data_dim
        enc = [a.data_dim + a.cond_dim, *a.encoder_hidden]
        dec = [code + a.cond_dim, *a.decoder_hidden, out]
        self.enc = nn.ModuleList(nn.Linear(i, o, dtype=dtype) for i, o in zip(enc, enc[1:]))
        if a.latent == "categorical":
            self.heads = nn.ModuleList([nn.Linear(enc[-1], code, dtype=dtype)])
        else:
            self.heads = nn.ModuleList(nn.Linear(enc[-1], a.latent_dim, dtype=dtype) for _ in range(2))
        self.dec = nn.ModuleList(nn.Linear(i, o, dtype=dtype) for i, o in zip(dec, dec[1:]))
        if a.gaussian_scale == "learned":
            self.log_sigma = nn.Parameter(torch.zeros(a.data_dim, dtype=dtype))
        ours = self.flat_parameters()
        if len(theirs) != len(ours):
            raise ValueError(f"model has {len(theirs)} parameter tensors, the architecture's layers need {len(ours)}")
        for k, (mine, w) in enumerate(zip(ours, theirs)):
            if w.shape != mine.shape:
                raise ValueError(f"model weight {k} {tuple(w.shape)} does not fit the architecture's "
                                 f"{tuple(mine.shape)}")
        self.load_flat_(theirs)

    def _layers(self):
        return [*self.enc, *self.heads, *self.dec]

    def flat_parameters(self):
        """Parameters in fastvae's order, the two heads stacked [mean; spread] as encoder_head (new tensors)."""
        out = []
        for lin in self.enc:
            out += [lin.weight, lin.bias]
        out += [torch.cat([h.weight for h in self.heads]), torch.cat([h.bias for h in self.heads])]
        for lin in self.dec:
            out += [lin.weight, lin.bias]
        return out + ([self.log_sigma] if self.log_sigma is not None else [])

    def load_flat_(self, flat):
        """Set the parameters from tensors in fastvae's order (the stacked head split into the two heads)."""
        k = 2 * len(self.enc)
        rows = [h.out_features for h in self.heads]
        with torch.no_grad():
            for lin, (w, b) in zip(self.enc, zip(flat[0:k:2], flat[1:k:2])):
                lin.weight.copy_(w), lin.bias.copy_(b)
            for h, w, b in zip(self.heads, flat[k].split(rows), flat[k + 1].split(rows)):
                h.weight.copy_(w), h.bias.copy_(b)
            j = k + 2
            for lin in self.dec:
                lin.weight.copy_(flat[j]), lin.bias.copy_(flat[j + 1])
                j += 2
            if self.log_sigma is not None:
                self.log_sigma.copy_(flat[j])

    def leaves(self):
        out = []
        for lin in self._layers():
            out += [lin.weight, lin.bias]
        return out + ([self.log_sigma] if self.log_sigma is not None else [])

    def in_fastvae_order(self, tensors):
        """Tensors given per leaf (``leaves()``' order) in fastvae's order: the two heads' stacked [mean; spread]."""
        k, n = 2 * len(self.enc), 2 * len(self.heads)
        t = list(tensors)
        return t[:k] + [torch.cat(t[k:k + n:2]), torch.cat(t[k + 1:k + n:2])] + t[k + n:]

    @property
    def n_encoder(self):
        """How many of fastvae's flat parameters are the encoder's (its layers and head, weight and bias each)."""
        return 2 * len(self.enc) + 2

    def grads_in_fastvae_order(self, objective, grad_outputs=None):
        """d objective / d parameters, with the two heads stacked [mean; spread] like encoder_head."""
        leaves = self.leaves()
        g = torch.autograd.grad(objective, leaves, grad_outputs=grad_outputs, allow_unused=True)
        return self.in_fastvae_order(torch.zeros_like(p) if d is None else d for d, p in zip(g, leaves))

    def _mlp(self, h, layers, detach=False):
        for k, lin in enumerate(layers):
            w, b = (lin.weight.detach(), lin.bias.detach()) if detach else (lin.weight, lin.bias)
            h = F.linear(h, w, b)
            if k + 1 < len(layers):
                h = self.act(h)
        return h

    def _encoder_out(self, h):
        for lin in self.enc:
            h = self.act(lin(h))
        if self.latent == "categorical":
            return self.heads[0](h)
        return self.mean_act(self.heads[0](h)), self.scale_act(self.heads[1](h))

    def _decoder_out(self, h, detach=False):
        return self._mlp(h, self.dec, detach)


class HierarchicalReference(MlpReference):
    """Burda et al. 2016's VAE with stochastic layers above z1 (Sec. 5; fastvae.VAE with ``upper_latents``): the
    z1 level as :class:`MlpReference`, and for each upper layer u a Gaussian q(z_u | z_below) and p(z_below | z_u)
    from MLPs (hidden activation as the model's, a final Linear to [mean | spread]), p(z_top) = N(0, I), written from

        log w = log p(x | z1) + sum_u [log p(z_below | z_u) - log q(z_u | z_below)] + log p(z_top) - log q(z1 | x),

    z1 = mu + sigma eps_1, z_u = mu_u(z_below) + sigma_u(z_below) eps_u, the noise eps [L, B, Z1 + sum Z_u] with z1's
    columns first. ``detach_q`` holds every q's parameters fixed inside its log density (the samples keep their
    paths); ``detach_decoder`` every p's parameters."""

    def __init__(self, model):
        flat = [p.detach() for p in model.flat_parameters()]
        n1 = 2 * (len(model.encoder) + 1 + len(model.decoder))
        z1_level = type("Z1Level", (), dict(flat_parameters=lambda self: flat[:n1]))()
        for k, v in vars(model).items():
            if not k.startswith("_"):
                setattr(z1_level, k, v)
        super().__init__(z1_level, Arch.of(model))
        self.upper_latents, dtype = tuple(model.upper_latents), flat[0].dtype
        below = (model.latent_dim, *self.upper_latents[:-1])

        def mlp(a, b):
            sizes = [a, *model.upper_hidden, b]
            return nn.ModuleList(nn.Linear(i, o, dtype=dtype) for i, o in zip(sizes, sizes[1:]))

        self.q_up = nn.ModuleList(mlp(zb, 2 * zu) for zb, zu in zip(below, self.upper_latents))
        self.p_up = nn.ModuleList(mlp(zu, 2 * zb) for zb, zu in zip(below, self.upper_latents))
        rest = iter(flat[n1:])
        with torch.no_grad():
            for q, p in zip(self.q_up, self.p_up):
                for lin in (*q, *p):
                    lin.weight.copy_(next(rest))
                    lin.bias.copy_(next(rest))

    def flat_parameters(self):
        out = super().flat_parameters()
        for q, p in zip(getattr(self, "q_up", ()), getattr(self, "p_up", ())):  # the z1 level's alone while built
            for lin in (*q, *p):
                out += [lin.weight, lin.bias]
        return out

    def leaves(self):
        out = super().leaves()
        for q, p in zip(getattr(self, "q_up", ()), getattr(self, "p_up", ())):
            for lin in (*q, *p):
                out += [lin.weight, lin.bias]
        return out

    def in_fastvae_order(self, tensors):
        t = list(tensors)
        n1 = len(super().leaves())
        return super().in_fastvae_order(t[:n1]) + t[n1:]

    def _gaussian(self, layers, h, detach):
        mean, s = self._mlp(h, layers, detach).chunk(2, -1)
        return Normal(mean, torch.exp(s / 2) if self.posterior == "logvar" else torch.exp(s))

    def log_weights(self, x, eps, y=None, detach_q=False, detach_decoder=False):
        Z1 = self.latent_dim
        qz = self.q(x, y)
        z = qz.loc + qz.scale * eps[..., :Z1]
        q_eval = Normal(qz.loc.detach(), qz.scale.detach()) if detach_q else qz
        log_w = self.log_px(x, z, y, detach_decoder) - q_eval.log_prob(z).sum(-1)
        col = Z1
        for q_net, p_net, zu in zip(self.q_up, self.p_up, self.upper_latents):
            q_u = self._gaussian(q_net, z, False)
            z_u = q_u.loc + q_u.scale * eps[..., col:col + zu]
            log_w = log_w - self._gaussian(q_net, z, detach_q).log_prob(z_u).sum(-1)
            log_w = log_w + self._gaussian(p_net, z_u, detach_decoder).log_prob(z).sum(-1)
            z, col = z_u, col + zu
        return log_w + Normal(torch.zeros_like(z), torch.ones_like(z)).log_prob(z).sum(-1)

    def log_weights_fixed_codes(self, x, eps, y=None):
        """log w with every z held fixed at its sampled value: the gradient reaches the p's parameters only."""
        with torch.no_grad():
            Z1 = self.latent_dim
            qz = self.q(x, y)
            zs = [qz.loc + qz.scale * eps[..., :Z1]]
            q_logs = [qz.log_prob(zs[0]).sum(-1)]
            col = Z1
            for q_net, zu in zip(self.q_up, self.upper_latents):
                q_u = self._gaussian(q_net, zs[-1], False)
                zs.append(q_u.loc + q_u.scale * eps[..., col:col + zu])
                q_logs.append(q_u.log_prob(zs[-1]).sum(-1))
                col += zu
        log_w = self.log_px(x, zs[0], y) - sum(q_logs)
        for p_net, z_below, z_u in zip(self.p_up, zs, zs[1:]):
            log_w = log_w + self._gaussian(p_net, z_u, False).log_prob(z_below).sum(-1)
        return log_w + Normal(torch.zeros_like(zs[-1]), torch.ones_like(zs[-1])).log_prob(zs[-1]).sum(-1)


class NetworkReference(ReferenceVAE):
    """A Gaussian-latent VAE around a user's networks (fastvae.NetworkVAE): the encoder gives [mean, spread s]
    [B, 2Z] (sigma = exp(s / 2) for "logvar", exp(s) for "logstd"), the decoder the likelihood's parameters. This
    reference trains the networks it is given (pass copies of the model's)."""

    def __init__(self, encoder, decoder, latent_dim, *, likelihood="bernoulli", gaussian_sigma=1.0,
                 gaussian_scale="fixed", posterior="logvar"):
        super().__init__()
        self.encoder, self.decoder, self.latent_dim = encoder, decoder, latent_dim
        self.likelihood, self.gaussian_sigma, self.gaussian_scale = likelihood, gaussian_sigma, gaussian_scale
        self.posterior = posterior

    def _encoder_out(self, h):
        return self.encoder(h).chunk(2, -1)

    def _decoder_out(self, h, detach=False):
        if not detach:
            return self.decoder(h)
        fixed = {k: v.detach() for k, v in self.decoder.named_parameters()}
        return torch.func.functional_call(self.decoder, fixed, (h,))


def reference_of(model, arch=None):
    """The reference of a fastvae.VAE (MlpReference, with the pinned homework ``arch`` if given)."""
    return MlpReference(model, arch)
