"""Plain-PyTorch categorical VAE (Jang, Gu & Poole 2017, arXiv 1611.01144), written from the paper with
torch.nn.functional and torch.distributions, as the reference for fastvae's categorical latent.

N variables of K classes; the encoder's last Linear gives logits [B, N, K]; q_n = Categorical(logits_n). The
relaxed sample is RelaxedOneHotCategorical(tau, logits).rsample() (Gumbel-softmax, eq. 1-2 of the paper); the
straight-through sample (Sec. 2.2) is one_hot(argmax y) + y - stopgrad(y); the KL to the uniform prior is
torch.distributions.kl_divergence(Categorical(q), Categorical(uniform)). Only the weights are copied from a
fastvae.VAE (as leaves of this reference's own graph)."""
import torch
import torch.nn.functional as F
from torch.distributions import (Bernoulli, Categorical, ContinuousBernoulli, Normal, RelaxedOneHotCategorical,
                                 kl_divergence)

ACTS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda h: h}


class RefCategoricalVAE:
    def __init__(self, model):
        self.N, self.K, self.C = model.latent_dim, model.categories, model.cond_dim
        self.act = (lambda h: F.leaky_relu(h, model.negative_slope)) if model.activation == "leaky_relu" \
            else ACTS[model.activation]
        self.likelihood, self.sigma = model.likelihood, model.gaussian_sigma
        self.params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]
        self.n_enc = len(model.encoder) + 1

    def _cond(self, h, y):
        return h if self.C == 0 else torch.cat([h, F.one_hot(y, self.C).to(h.dtype)], dim=1)

    def _mlp(self, h, layers):
        for k, (w, b) in enumerate(layers):
            h = F.linear(h, w, b)
            if k + 1 < len(layers):
                h = self.act(h)
        return h

    def _layers(self, part):
        pairs = list(zip(self.params[::2], self.params[1::2]))
        return pairs[: self.n_enc] if part == "enc" else pairs[self.n_enc:]

    def logits(self, x, y=None):
        """Encoder logits [B, N, K]."""
        return self._mlp(self._cond(x, y), self._layers("enc")).reshape(x.shape[0], self.N, self.K)

    def log_px(self, a, x):
        if self.likelihood == "bernoulli":
            return Bernoulli(logits=a).log_prob(x).sum(-1)
        if self.likelihood == "continuous_bernoulli":
            return ContinuousBernoulli(logits=a).log_prob(x).sum(-1)
        return Normal(a, self.sigma).log_prob(x).sum(-1)

    def elbo_terms(self, x, n_samples, tau, hard, seed, y=None):
        """rec, kl per image [B]. The samples are RelaxedOneHotCategorical.rsample() after
        torch.manual_seed(seed) (one torch.rand of [L, B, N, K]), so fastvae gets the same uniforms from
        uniforms_like()."""
        B = x.shape[0]
        lg = self.logits(x, y)
        q = RelaxedOneHotCategorical(torch.tensor(tau, dtype=x.dtype), logits=lg.expand(n_samples, B, self.N, self.K))
        torch.manual_seed(seed)
        ys = q.rsample()  # [L, B, N, K]
        if hard:
            ys = F.one_hot(ys.argmax(-1), self.K).to(ys.dtype) + ys - ys.detach()
        yy = None if y is None else y.repeat(n_samples)
        a = self._mlp(self._cond(ys.reshape(n_samples * B, self.N * self.K), yy), self._layers("dec"))
        rec = self.log_px(a, x.repeat(n_samples, 1)).reshape(n_samples, B).mean(0)
        uniform = Categorical(logits=torch.zeros_like(lg))
        kl = kl_divergence(Categorical(logits=lg), uniform).sum(-1)
        return rec, kl


def uniforms_like(n_samples, batch, model, dtype, seed):
    """The uniforms RelaxedOneHotCategorical.rsample draws after torch.manual_seed(seed), as fastvae's noise
    [L, B, N*K] (rsample clamps them into [eps, 1 - eps], which these draws never leave in practice)."""
    torch.manual_seed(seed)
    u = torch.rand(n_samples, batch, model.latent_dim, model.categories, dtype=dtype)
    return u.reshape(n_samples, batch, -1)
