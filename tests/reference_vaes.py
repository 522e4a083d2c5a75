"""Plain PyTorch versions of the four homework VAEs, written from the homework definitions with torch.nn
and torch.distributions, used as references for fastvae's C++ kernels. Each takes its weights from a
fastvae.VAE so both see the same parameters, and the same eps."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence


class RefVAE(nn.Module):
    """Generic reference: hidden Linear layers with the homework's activation, two separate heads for
    the mean and the spread (as the homeworks write them), a Bernoulli decoder."""

    def __init__(self, model):
        super().__init__()
        self.posterior, self.Z, self.C = model.posterior, model.latent_dim, model.cond_dim
        slope = model.negative_slope
        acts = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "leaky_relu": nn.LeakyReLU(slope),
                "sigmoid": nn.Sigmoid(), "identity": nn.Identity()}
        self.act = acts[model.activation]
        self.mean_act, self.scale_act = acts[model.mean_activation], acts[model.scale_activation]
        clone = lambda lin: nn.Linear(lin.in_features, lin.out_features, dtype=lin.weight.dtype)  # noqa: E731
        self.enc = nn.ModuleList(clone(lin) for lin in model.encoder)
        h = model.encoder_head
        self.fc_mu = nn.Linear(h.in_features, self.Z, dtype=h.weight.dtype)
        self.fc_spread = nn.Linear(h.in_features, self.Z, dtype=h.weight.dtype)
        self.dec = nn.ModuleList(clone(lin) for lin in model.decoder)
        with torch.no_grad():
            for a, b in zip(self.enc, model.encoder):
                a.weight.copy_(b.weight), a.bias.copy_(b.bias)
            for a, b in zip(self.dec, model.decoder):
                a.weight.copy_(b.weight), a.bias.copy_(b.bias)
            self.fc_mu.weight.copy_(h.weight[: self.Z]), self.fc_mu.bias.copy_(h.bias[: self.Z])
            self.fc_spread.weight.copy_(h.weight[self.Z:]), self.fc_spread.bias.copy_(h.bias[self.Z:])

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
