"""VAEs with the user's own encoder and decoder networks (any ``torch.nn.Module``, any device), trained and
evaluated through fastvae's objective heads (:mod:`fastvae.heads`). ``fastvae.VAE.from_networks`` builds one."""
from typing import Optional

import torch
from torch import nn

from . import _checks, heads
from ._atomic import atomic_write
from .arch import ESTIMATORS, IWAE_ESTIMATORS
from .vae import ELBO, continuous_bernoulli_mean

WHERE = "NetworkVAE"
POSTERIORS = ("logvar", "logstd")


class NetworkVAE(nn.Module):
    """A Gaussian-latent VAE around two user networks.

    Args:
        encoder: maps images x [B, D] (float, on the parameters' device) to [B, 2 * latent_dim]: the posterior
            mean, then its spread s (``posterior="logvar"``: sigma = exp(s / 2); ``"logstd"``: sigma = exp(s)).
        decoder: maps latent codes z [N, latent_dim] to the likelihood's parameters [N, D] (logits for
            bernoulli / continuous_bernoulli, the mean for gaussian), or [N, 2D] (mean, log-variance) with
            ``gaussian_scale="predicted"``. Each row must depend on its own code only (no batch statistics), as
            the IWAE bound and its DReG gradient assume.
        latent_dim: Z >= 1.
        likelihood, gaussian_sigma, gaussian_scale: as :class:`fastvae.VAE` (``gaussian_scale`` "fixed" or
            "predicted"; a learned scale is a decoder output here).

    The prior is N(0, I). Objectives, estimators and formulas: :mod:`fastvae.heads` (docs/heads.md).
    Raises TypeError (networks that are not nn.Modules, a non-integer latent_dim) or ValueError (unknown
    names, latent_dim < 1, gaussian_sigma <= 0).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, *, likelihood: str = "bernoulli",
                 gaussian_sigma: float = 1.0, gaussian_scale: str = "fixed", posterior: str = "logvar"):
        super().__init__()
        for name, net in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(net, nn.Module):
                raise TypeError(f"{WHERE}: {name} must be a torch.nn.Module, got {_checks._show(net)}")
        self.encoder, self.decoder = encoder, decoder
        self.latent_dim = _checks.integer(WHERE, "latent_dim", latent_dim, min=1)
        self.likelihood = _checks.choice(WHERE, "likelihood", likelihood, heads.LIKELIHOODS)
        self.gaussian_scale = _checks.choice(WHERE, "gaussian_scale", gaussian_scale, heads.GAUSSIAN_SCALES)
        if self.gaussian_scale != "fixed" and self.likelihood != "gaussian":
            raise ValueError(f"{WHERE}: gaussian_scale '{gaussian_scale}' needs likelihood 'gaussian'")
        self.gaussian_sigma = _checks.positive(WHERE, "gaussian_sigma", gaussian_sigma)
        self.posterior = _checks.choice(WHERE, "posterior", posterior, POSTERIORS)
        self.latent = "gaussian"
        self.history_ = None

    # ------------------------------------------------------------------ the networks
    def _device(self):
        p = next(self.parameters(), None)
        return torch.device("cpu") if p is None else p.device

    def _dtype(self):
        p = next(self.parameters(), None)
        return torch.float32 if p is None else p.dtype

    def _x(self, where, x):
        _checks.tensor(where, "x", x, dtypes=(torch.float32, torch.float64))
        if x.dim() != 2:
            raise ValueError(f"{where}: x must be [B, D] (flatten images first), got shape {tuple(x.shape)}")
        if x.device != self._device():
            raise ValueError(f"{where}: x is on {x.device}, the model's parameters on {self._device()}")
        return x.to(self._dtype())

    def encode(self, x: torch.Tensor):
        """Posterior parameters (mu, sigma), each [B, Z], for images x [B, D]."""
        h = self.encoder(self._x("NetworkVAE.encode", x))
        Z = self.latent_dim
        if h.dim() != 2 or h.shape[1] != 2 * Z:
            raise ValueError(f"NetworkVAE.encode: the encoder must return [B, 2 * latent_dim] = [B, {2 * Z}], got "
                             f"{tuple(h.shape)}")
        mu, s = h[:, :Z], h[:, Z:]
        return mu, torch.exp(s / 2 if self.posterior == "logvar" else s)

    def _decode_rows(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder on latent samples [L, B, Z] -> [L, B, width]."""
        L, B, Z = z.shape
        out = self.decoder(z.reshape(L * B, Z))
        if out.dim() != 2 or out.shape[0] != L * B:
            raise ValueError(f"NetworkVAE: the decoder must return [N, D] for codes [N, {Z}], got {tuple(out.shape)}")
        return out.reshape(L, B, -1)

    def decode(self, z: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """Mean of p(x | z) [N, D] for codes z [N, Z] (or the decoder's raw output with logits=True)."""
        out = self.decoder(z)
        if logits:
            return out
        if self.likelihood == "bernoulli":
            return torch.sigmoid(out)
        if self.likelihood == "continuous_bernoulli":
            return continuous_bernoulli_mean(out)
        return out[:, : out.shape[1] // 2] if self.gaussian_scale == "predicted" else out

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Decoder means for n codes z ~ N(0, I): [n, D]."""
        n = _checks.integer("NetworkVAE.sample", "n", n, min=1)
        z = torch.randn(n, self.latent_dim, generator=generator).to(self._device(), self._dtype())
        with torch.no_grad():
            return self.decode(z)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder means at the posterior means: [B, D]."""
        with torch.no_grad():
            return self.decode(self.encode(x)[0])

    def _noise(self, where, count, B, eps, generator):
        shape = (count, B, self.latent_dim)
        if eps is None:
            return torch.randn(shape, generator=generator).to(self._device(), self._dtype())
        _checks.tensor(where, "eps", eps, dtypes=(torch.float32, torch.float64))
        if tuple(eps.shape) != shape:
            raise ValueError(f"{where}: eps must have shape {list(shape)}, got {list(eps.shape)}")
        return eps.to(self._device(), self._dtype())

    def _names(self):
        return dict(likelihood=self.likelihood, gaussian_sigma=self.gaussian_sigma, gaussian_scale=self.gaussian_scale)

    # ------------------------------------------------------------------ objectives
    def elbo(self, x, n_samples: int = 1, eps=None, estimator: str = "analytic", generator=None) -> ELBO:
        """Per-image ELBO terms [B] with ``n_samples`` reparameterized samples (``eps`` [L, B, Z] to inject the
        noise); ``estimator`` as :func:`fastvae.heads.elbo_terms`. Differentiable."""
        where = "NetworkVAE.elbo"
        L = _checks.integer(where, "n_samples", n_samples, min=1)
        _checks.choice(where, "estimator", estimator, ESTIMATORS)
        x = self._x(where, x)
        mu, sigma = self.encode(x)
        z = mu + sigma * self._noise(where, L, x.shape[0], eps, generator)
        return heads.elbo_terms(x, self._decode_rows(z), z, mu, sigma, estimator=estimator, **self._names())

    def iwae(self, x, k: int = 5, eps=None, estimator: str = "reparam", generator=None) -> torch.Tensor:
        """The IWAE bound per image [B] with k samples; ``estimator`` reparam, stl or dreg (for dreg the decoder's
        path from z gets the squared weights through a hook, docs/heads.md). Differentiable."""
        where = "NetworkVAE.iwae"
        k = _checks.integer(where, "k", k, min=1)
        _checks.choice(where, "estimator", estimator, IWAE_ESTIMATORS)
        x = self._x(where, x)
        mu, sigma = self.encode(x)
        z = mu + sigma * self._noise(where, k, x.shape[0], eps, generator)
        z_dec = z.view_as(z)  # its own node: the DReG hook must scale the decoder's path only
        bound, weights = heads.iwae_bound(x, self._decode_rows(z_dec), z, mu, sigma, estimator=estimator,
                                          **self._names())
        if estimator == "dreg" and z_dec.requires_grad:
            z_dec.register_hook(lambda g: g * weights.unsqueeze(-1))
        return bound

    def log_likelihood(self, x, k: int = 1000, generator=None) -> torch.Tensor:
        """Importance-sampled estimate of log p(x) per image [B] (the IWAE bound with k samples, Burda et al. 2016),
        in chunks of images so that k * chunk decoder rows stay bounded; no gradient."""
        where = "NetworkVAE.log_likelihood"
        k = _checks.integer(where, "k", k, min=1)
        x = self._x(where, x)
        chunk = max(1, (1 << 22) // (k * max(x.shape[1], 1)))
        with torch.no_grad():
            return torch.cat([self.iwae(x[i:i + chunk], k, generator=generator) for i in range(0, x.shape[0], chunk)])

    def fit(self, train_images, options=None, **kwargs):
        """Train with the Python loop of :func:`fastvae.network_training.fit`."""
        from .network_training import fit
        return fit(self, train_images, options, **kwargs)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path):
        """Write the weights, Adam state, the loop's generator and the history to ``path`` atomically (a dict of
        tensors and numbers: ``torch.load(weights_only=True)`` reads it). The networks' code is not saved:
        :meth:`load` takes them."""
        from .checkpoint import check_path
        p = check_path("NetworkVAE.save", path)
        hist = self.history_
        opt = getattr(self, "optimizer_", None)
        data = {
            "format": "fastvae-network-vae-1",
            "config": dict(latent_dim=self.latent_dim, posterior=self.posterior, **self._names()),
            "state_dict": self.state_dict(),
            "optimizer": None if opt is None else opt.state_dict(),
            "generator_state": getattr(self, "generator_state_", None),
            "history": None if hist is None else {k: torch.as_tensor(v) for k, v in hist.__dict__.items()},
        }
        return atomic_write(p, lambda f: torch.save(data, f))

    @classmethod
    def load(cls, path, encoder: nn.Module, decoder: nn.Module) -> "NetworkVAE":
        """The model saved at ``path`` around the given (freshly built) encoder and decoder; training continues
        exactly where it stopped. Raises fastvae.CheckpointError for a file that is not such a checkpoint or whose
        weights do not fit the networks."""
        from .checkpoint import CheckpointError
        from .training import History
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(data, dict) or data.get("format") != "fastvae-network-vae-1":
                raise ValueError("not a NetworkVAE checkpoint")
            model = cls(encoder, decoder, **data["config"])
            model.load_state_dict(data["state_dict"])
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
            raise CheckpointError(f"NetworkVAE.load: cannot load {path}: {e}") from e
        model.generator_state_ = data["generator_state"]
        model._optimizer_state = data["optimizer"]
        if data["history"] is not None:
            model.history_ = History(**{k: v.numpy() for k, v in data["history"].items()})
        return model
