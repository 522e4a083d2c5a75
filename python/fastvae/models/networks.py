"""VAEs with the user's own encoder and decoder networks (any ``torch.nn.Module``, any device), trained and
evaluated through fastvae's objective heads (:mod:`fastvae.heads`). ``fastvae.VAE.from_networks`` builds one."""
from typing import Optional

import torch
from torch import nn

from .. import _checks, arch, checkpoint, heads, pixels
from ..arch import ESTIMATORS, IWAE_ESTIMATORS
from ..types import ELBO
from .base import Model, check_groups, group_samples
from .network_stepper import NetworkStepper

WHERE = "NetworkVAE"
POSTERIORS = ("logvar", "logstd")


class NetworkVAE(Model):
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

    The prior is N(0, I). Objectives, estimators and formulas: :mod:`fastvae.heads` (docs/heads.md). Images go
    in as for :class:`fastvae.VAE`: [B, D] or [B, H, W] (flattened to [B, D]), float of the parameters' dtype, or
    uint8 intensities (:func:`fastvae.pixels.model_input`).
    Raises TypeError (networks that are not nn.Modules, a non-integer latent_dim) or ValueError (unknown
    names, latent_dim < 1, gaussian_sigma <= 0).
    """

    _checkpoint_kind = "networks"
    cond_dim = 0  # unconditional: labels are refused
    latent = "gaussian"

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

    # ------------------------------------------------------------------ the networks
    def _device(self):
        p = next(self.parameters(), None)
        return torch.device("cpu") if p is None else p.device

    def _dtype(self):
        p = next(self.parameters(), None)
        return torch.float32 if p is None else p.dtype

    def _x(self, where, x, y=None):
        if y is not None:
            raise ValueError(f"{where}: labels y were given to an unconditional model")
        x = pixels.model_input(x, binary=arch.binary_likelihood(self.likelihood), dtype=self._dtype(), where=where)
        if x.dim() > 2:
            x = x.reshape(x.shape[0], -1)
        if x.dim() != 2:
            raise ValueError(f"{where}: x must be [B, D] or [B, H, W] images, got shape {tuple(x.shape)}")
        if x.device != self._device():
            raise ValueError(f"{where}: x is on {x.device}, the model's parameters on {self._device()}")
        return x

    @torch.no_grad()
    def encode(self, x, y=None):
        """Posterior parameters (mu, sigma), each [B, Z], for images x [B, D]; inference only (no gradient)."""
        return self._posterior(self._x("NetworkVAE.encode", x, y))

    def _posterior(self, x):
        h = self.encoder(x)
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

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None, logits: bool = False) -> torch.Tensor:
        """Mean of p(x | z) [N, D] for codes z [N, Z] (or the decoder's raw output with logits=True)."""
        if y is not None:
            raise ValueError("NetworkVAE.decode: labels y were given to an unconditional model")
        out = self.decoder(z)
        if _checks.flag("NetworkVAE.decode", "logits", logits):
            return out
        return heads.likelihood_mean(out, **self._names())

    def sample(self, n: int, y=None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Decoder means for n codes z ~ N(0, I): [n, D]."""
        n = _checks.integer("NetworkVAE.sample", "n", n, min=1)
        z = torch.randn(n, self.latent_dim, generator=generator).to(self._device(), self._dtype())
        return self.decode(z, y)

    @torch.no_grad()
    def reconstruct(self, x, y=None) -> torch.Tensor:
        """Decoder means at the posterior means: [B, D]."""
        return self.decode(self.encode(x, y)[0])

    def _noise(self, where, count, B, eps, generator):
        shape = (count, B, self.latent_dim)
        if eps is None:
            return torch.randn(shape, generator=generator).to(self._device(), self._dtype())
        _checks.tensor(where, "eps", eps, dtypes=(self._dtype(),))
        if tuple(eps.shape[1:]) != shape[1:] or eps.dim() != 3 or eps.shape[0] < 1:
            raise ValueError(f"{where}: eps must have shape [L >= 1, {B}, {self.latent_dim}], got {list(eps.shape)}")
        return eps.to(self._device())

    def _names(self):
        return dict(likelihood=self.likelihood, gaussian_sigma=self.gaussian_sigma, gaussian_scale=self.gaussian_scale)

    # ------------------------------------------------------------------ objectives
    def elbo(self, x, n_samples: int = 1, *, eps=None, y=None, estimator: str = "analytic", generator=None,
             temperature=None, hard: bool = False) -> ELBO:
        """Per-image ELBO terms [B] with ``n_samples`` reparameterized samples (``eps`` [L, B, Z] injects the
        noise and sets L); ``estimator`` as :func:`fastvae.heads.elbo_terms`. Differentiable. ``y``,
        ``temperature`` and ``hard`` do not apply (unconditional, Gaussian latent): anything but their defaults is
        a ValueError."""
        where = "NetworkVAE.elbo"
        if temperature is not None or hard is not False:
            raise ValueError(f"{where}: temperature and hard apply to categorical latents only (this model's latent "
                             "is 'gaussian')")
        L = _checks.integer(where, "n_samples", n_samples, min=1)
        _checks.choice(where, "estimator", estimator, ESTIMATORS)
        x = self._x(where, x, y)
        mu, sigma = self._posterior(x)
        z = mu + sigma * self._noise(where, L, x.shape[0], eps, generator)
        return heads.elbo_terms(x, self._decode_rows(z), z, mu, sigma, estimator=estimator, **self._names())

    def iwae(self, x, k: int = 5, *, eps=None, y=None, estimator: str = "reparam", generator=None) -> torch.Tensor:
        """The IWAE bound per image [B] with k samples; ``estimator`` reparam, stl or dreg (for dreg the decoder's
        path from z gets the squared weights through a hook, docs/heads.md). Differentiable."""
        k = _checks.integer("NetworkVAE.iwae", "k", k, min=1)
        return self._iw_bound("NetworkVAE.iwae", x, k, eps, y, estimator, generator,
                              lambda *a: heads.iwae_bound(*a, estimator=estimator, **self._names()))

    def miwae(self, x, groups: int = 2, k: int = 5, *, eps=None, y=None, estimator: str = "reparam",
              generator=None) -> torch.Tensor:
        """MIWAE(M, K) per image [B] (Rainforth et al. 2018; :func:`fastvae.heads.miwae_bound`), M = ``groups``,
        K = ``k``, eps [M K, B, Z] with sample m * K + k in group m. As :meth:`fastvae.VAE.miwae`."""
        where = "NetworkVAE.miwae"
        groups = _checks.integer(where, "groups", groups, min=1)
        return self._iw_bound(where, x, group_samples(where, groups, k, eps), eps, y, estimator, generator,
                              lambda *a: heads.miwae_bound(*a, groups=groups, estimator=estimator, **self._names()),
                              groups)

    def ciwae(self, x, k: int = 5, beta: float = 0.5, *, eps=None, y=None, estimator: str = "reparam",
              generator=None) -> torch.Tensor:
        """CIWAE(beta) = beta ELBO_K + (1 - beta) IWAE(K) per image [B] (Rainforth et al. 2018;
        :func:`fastvae.heads.ciwae_bound`). As :meth:`fastvae.VAE.ciwae`."""
        where = "NetworkVAE.ciwae"
        k = _checks.integer(where, "k", k, min=1)
        beta = _checks.real(where, "beta", beta, min=0.0, max=1.0)
        return self._iw_bound(where, x, k, eps, y, estimator, generator,
                              lambda *a: heads.ciwae_bound(*a, beta=beta, estimator=estimator, **self._names()))

    def piwae(self, x, groups: int = 2, k: int = 5, *, eps=None, y=None, estimator: str = "reparam",
              generator=None) -> torch.Tensor:
        """PIWAE(M, K) per image [B] (Rainforth et al. 2018): the value IWAE(M K), its gradient IWAE(M K)'s for the
        decoder's parameters and MIWAE(M, K)'s (with the estimator) for the encoder's, as :meth:`fastvae.VAE.piwae`:
        the decoder runs twice, once on codes held fixed (the decoder's objective) and once with its parameters
        held fixed (the encoder's)."""
        where = "NetworkVAE.piwae"
        groups = _checks.integer(where, "groups", groups, min=1)
        L = group_samples(where, groups, k, eps)
        _checks.choice(where, "estimator", estimator, IWAE_ESTIMATORS)
        x = self._x(where, x, y)
        mu, sigma = self._posterior(x)
        z = mu + sigma * self._noise(where, L, x.shape[0], eps, generator)
        check_groups(where, z.shape[0], groups)
        fixed_codes = [t.detach() for t in (z, mu, sigma)]
        decoder_bound, _ = heads.iwae_bound(x, self._decode_rows(fixed_codes[0]), *fixed_codes, **self._names())
        frozen = {n: p.detach() for n, p in self.decoder.named_parameters()}
        z_dec = z.view_as(z)
        out = torch.func.functional_call(self.decoder, frozen, (z_dec.reshape(-1, z.shape[-1]),))
        encoder_bound, weights = heads.miwae_bound(x, out.reshape(z.shape[0], z.shape[1], -1), z, mu, sigma,
                                                   groups=groups, estimator=estimator, **self._names())
        if estimator == "dreg" and z_dec.requires_grad:
            z_dec.register_hook(lambda g: g * weights.unsqueeze(-1))
        return decoder_bound + (encoder_bound - encoder_bound.detach())

    def _iw_bound(self, where, x, samples, eps, y, estimator, generator, head, groups=1):
        """An importance-weighted head on ``samples`` draws per image (or eps's, which ``groups`` must divide);
        DReG's decoder-path hook."""
        _checks.choice(where, "estimator", estimator, IWAE_ESTIMATORS)
        x = self._x(where, x, y)
        mu, sigma = self._posterior(x)
        z = mu + sigma * self._noise(where, samples, x.shape[0], eps, generator)
        check_groups(where, z.shape[0], groups)
        z_dec = z.view_as(z)  # its own node: the DReG hook must scale the decoder's path only
        bound, weights = head(x, self._decode_rows(z_dec), z, mu, sigma)
        if estimator == "dreg" and z_dec.requires_grad:
            z_dec.register_hook(lambda g: g * weights.unsqueeze(-1))
        return bound

    @torch.no_grad()
    def log_likelihood(self, x, k: int = 1000, *, y=None, batch_size: Optional[int] = None,
                       generator=None) -> torch.Tensor:
        """Importance-sampled estimate of log p(x) per image [B] (the IWAE bound with k samples, Burda et al.
        2016), in chunks of ``batch_size`` images (None: as many as keep k * chunk * D under 2**22); no gradient."""
        where = "NetworkVAE.log_likelihood"
        k = _checks.integer(where, "k", k, min=1)
        x = self._x(where, x, y)
        chunk = max(1, (1 << 22) // (k * max(x.shape[1], 1)))
        if batch_size is not None:
            chunk = _checks.integer(where, "batch_size", batch_size, min=1)
        return torch.cat([self.iwae(x[i:i + chunk], k, generator=generator) for i in range(0, x.shape[0], chunk)])

    # ------------------------------------------------------------------ the training driver's protocol
    def flat_parameters(self):
        """Every parameter, in ``parameters()`` order (the order of the Adam state)."""
        return list(self.parameters())

    def _check_trainable(self, where: str) -> None:
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{where}: the model has no trainable parameters")
        if not all(torch.isfinite(p).all() for p in params):
            raise ValueError(f"{where}: parameters contain NaN or inf; fit refuses a model that already diverged")

    def _stepper(self, options, data, state, parallel, stop) -> NetworkStepper:
        return NetworkStepper(self, options, data, state, parallel, stop)

    def _traits(self, world: int):
        return NetworkStepper.traits(self, world)

    def _checkpoint_config(self) -> dict:
        return dict(latent_dim=self.latent_dim, posterior=self.posterior, **self._names())

    @classmethod
    def load(cls, path, encoder: nn.Module, decoder: nn.Module) -> "NetworkVAE":
        """The model saved at ``path`` around the given (freshly built) encoder and decoder; training continues
        exactly where it stopped. Files of the earlier format "fastvae-network-vae-1" load too. Raises
        fastvae.CheckpointError for a file that is not such a checkpoint or whose weights do not fit the networks."""
        where = "fastvae.NetworkVAE.load"
        record = checkpoint.read(path, "networks", where)
        try:
            model = cls(encoder, decoder, **record.config)
        except (TypeError, ValueError) as e:
            raise checkpoint.CheckpointError(f"{where}: {str(path)!r} holds an invalid checkpoint: "
                                             f"{type(e).__name__}: {e}") from e
        return checkpoint.restore(model, record, path, where)
