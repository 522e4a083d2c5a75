"""Plain PyTorch versions of the four homework VAEs, written from the homework definitions with torch.nn
and torch.distributions, used as references for fastvae's C++ kernels. The architectures are pinned here
(HOMEWORKS), not read from the model under test, so a wrong preset fails; only the weights are copied from
a fastvae.VAE, so both see the same parameters, and the same eps."""
from typing import NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence


class Arch(NamedTuple):
    """An MLP VAE as the homeworks write it: input [x, onehot(y)] -> hidden layers -> two heads."""

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

    @classmethod
    def of(cls, model) -> "Arch":
        """The architecture a (non-homework) test model declares; homework models use HOMEWORKS instead."""
        slope = model.negative_slope if model.activation == "leaky_relu" else 0.0  # unused otherwise
        return cls(model.data_dim, model.cond_dim, model.latent_dim, tuple(model.encoder_hidden),
                   tuple(model.decoder_hidden), model.activation, slope, model.posterior,
                   model.mean_activation, model.scale_activation)


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


class RefVAE(nn.Module):
    """Generic reference: hidden Linear layers with the homework's activation, two separate heads for
    the mean and the spread (as the homeworks write them), a Bernoulli decoder. ``arch`` is a homework
    name (its pinned architecture) or an :class:`Arch`; the layers are built from it and only the weights
    are copied from ``model`` (ValueError if their shapes do not fit the architecture)."""

    def __init__(self, model, arch):
        super().__init__()
        a = HOMEWORKS[arch] if isinstance(arch, str) else arch
        self.posterior, self.Z, self.C = a.posterior, a.latent_dim, a.cond_dim
        acts = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "leaky_relu": nn.LeakyReLU(a.negative_slope),
                "sigmoid": nn.Sigmoid(), "identity": nn.Identity()}
        self.act = acts[a.activation]
        self.mean_act, self.scale_act = acts[a.mean_activation], acts[a.scale_activation]
        dtype = model.encoder_head.weight.dtype
        enc = [a.data_dim + a.cond_dim, *a.encoder_hidden]
        dec = [a.latent_dim + a.cond_dim, *a.decoder_hidden, a.data_dim]
        self.enc = nn.ModuleList(nn.Linear(i, o, dtype=dtype) for i, o in zip(enc, enc[1:]))
        self.fc_mu = nn.Linear(enc[-1], self.Z, dtype=dtype)
        self.fc_spread = nn.Linear(enc[-1], self.Z, dtype=dtype)
        self.dec = nn.ModuleList(nn.Linear(i, o, dtype=dtype) for i, o in zip(dec, dec[1:]))
        h = model.encoder_head
        pairs = [*zip(self.enc, model.encoder), *zip(self.dec, model.decoder)]
        if len(model.encoder) != len(self.enc) or len(model.decoder) != len(self.dec):
            raise ValueError(f"model has {len(model.encoder)} + {len(model.decoder)} hidden/output layers, "
                             f"the architecture {len(self.enc)} + {len(self.dec)}")
        with torch.no_grad():
            for ours, theirs in pairs + [(self.fc_mu, (h.weight[: self.Z], h.bias[: self.Z])),
                                         (self.fc_spread, (h.weight[self.Z:], h.bias[self.Z:]))]:
                w, b = (theirs.weight, theirs.bias) if isinstance(theirs, nn.Linear) else theirs
                if w.shape != ours.weight.shape or b.shape != ours.bias.shape:
                    raise ValueError(f"model weight {tuple(w.shape)} does not fit the architecture's "
                                     f"{tuple(ours.weight.shape)}")
                ours.weight.copy_(w), ours.bias.copy_(b)

    def leaves(self):
        out = []
        for lin in [*self.enc, self.fc_mu, self.fc_spread, *self.dec]:
            out += [lin.weight, lin.bias]
        return out

    def grads_in_fastvae_order(self, objective):
        """d objective / d parameters, with the two heads stacked [mean; spread] like encoder_head."""
        g = list(torch.autograd.grad(objective, self.leaves()))
        k = 2 * len(self.enc)
        head = [torch.cat([g[k], g[k + 2]]), torch.cat([g[k + 1], g[k + 3]])]
        return g[:k] + head + g[k + 4:]

    def _cond(self, h, y):
        return h if self.C == 0 else torch.cat([h, F.one_hot(y, self.C).to(h.dtype)], dim=1)

    def q(self, x, y=None):
        h = self._cond(x, y)
        for lin in self.enc:
            h = self.act(lin(h))
        mu = self.mean_act(self.fc_mu(h))
        s = self.scale_act(self.fc_spread(h))
        sigma = {"logvar": torch.exp(0.5 * s), "logstd": torch.exp(s), "std": s}[self.posterior]
        return Normal(mu, sigma)

    def logits(self, z, y=None):
        h = self._cond(z, y)
        for k, lin in enumerate(self.dec):
            h = lin(h)
            if k + 1 < len(self.dec):
                h = self.act(h)
        return h

    def elbo_terms(self, x, eps, y=None, estimator="analytic"):
        """rec, kl per image, [B], for eps [L, B, Z]."""
        L, B, Z = eps.shape
        qz = self.q(x, y)
        z = qz.loc + qz.scale * eps  # reparameterization, as rsample does
        yy = None if y is None else y.repeat(L)
        px = Bernoulli(logits=self.logits(z.reshape(L * B, Z), yy))
        rec = px.log_prob(x.repeat(L, 1)).sum(-1).reshape(L, B).mean(0)
        prior = Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))
        if estimator == "analytic":
            kl = kl_divergence(qz, prior).sum(-1)
        else:
            # STL (Roeder et al. 2017): q's parameters held fixed inside log q; z still depends on them.
            q_eval = qz if estimator == "mc" else Normal(qz.loc.detach(), qz.scale.detach())
            kl = (q_eval.log_prob(z) - prior.log_prob(z)).sum(-1).mean(0)
        return rec, kl
