"""The MLP VAE with a Bernoulli decoder whose forward pass, ELBO gradient, Adam step and training loop
run in fastvae's C++ core.

Model (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; the homeworks' notation):
``q(z | x, y) = N(mu, diag sigma^2)`` from the encoder, ``p(z) = N(0, I)``,
``p(x | z, y) = Bernoulli(logits = decoder(z, y))``. ``y`` is an optional class label that enters
encoder and decoder as a one-hot vector (conditional VAE).
"""
from typing import NamedTuple, Optional, Sequence

import torch
from torch import nn

from . import _ops, presets
from ._lock import reading

ACTIVATIONS = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4}
POSTERIORS = {"logvar": 0, "logstd": 1, "std": 2}


class ELBO(NamedTuple):
    """Per-image ELBO and its two terms, each a tensor of shape [B] (nats)."""

    elbo: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor


class VAE(nn.Module):
    """MLP variational autoencoder with a Bernoulli decoder.

    Parameters are ``torch.nn.Linear`` layers (weight ``[out, in]``, bias ``[out]``):
    ``encoder[k]`` the hidden layers, ``encoder_head`` a Linear to ``2 * latent_dim`` whose first half
    is the posterior mean and second half its spread, ``decoder[k]`` the decoder layers, the last one
    giving the Bernoulli logits.

    Args:
        data_dim: pixels per image D (784 for 28x28, 196 for 14x14).
        latent_dim: Z.
        encoder_hidden, decoder_hidden: hidden layer sizes.
        activation: hidden activation, one of ``identity, relu, leaky_relu, tanh, sigmoid``.
        negative_slope: slope of ``leaky_relu`` (>= 0).
        posterior: meaning of the spread head s: ``"logvar"`` (sigma = exp(s / 2)),
            ``"logstd"`` (sigma = exp(s)) or ``"std"`` (sigma = s, needs ``scale_activation="sigmoid"``).
        mean_activation, scale_activation: activations applied to the two heads (HW7 uses sigmoid).
        cond_dim: number of classes of the one-hot condition (0 for an unconditional VAE).
        dtype: float32 (training) or float64 (gradient checks).

    Raises:
        ValueError: unknown activation or posterior, non-positive sizes, negative slope.
    """

    def __init__(self, data_dim: int = 784, latent_dim: int = 2, encoder_hidden: Sequence[int] = (512, 256),
                 decoder_hidden: Sequence[int] = (256, 512), activation: str = "relu",
                 negative_slope: float = 0.01, posterior: str = "logvar", mean_activation: str = "identity",
                 scale_activation: str = "identity", cond_dim: int = 0, dtype: torch.dtype = torch.float32):
        super().__init__()
        for name, value in (("activation", activation), ("mean_activation", mean_activation),
                            ("scale_activation", scale_activation)):
            if value not in ACTIVATIONS:
                raise ValueError(f"{name} must be one of {sorted(ACTIVATIONS)}, got {value!r}")
        if posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {sorted(POSTERIORS)}, got {posterior!r}")
        if posterior == "std" and scale_activation != "sigmoid":
            raise ValueError("posterior='std' needs scale_activation='sigmoid' so that sigma > 0")
        sizes = [data_dim, latent_dim, *encoder_hidden, *decoder_hidden]
        if any(int(s) <= 0 for s in sizes) or cond_dim < 0:
            raise ValueError(f"layer sizes must be positive, got {sizes} and cond_dim={cond_dim}")
        if not negative_slope >= 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
        self.data_dim, self.latent_dim, self.cond_dim = int(data_dim), int(latent_dim), int(cond_dim)
        self.encoder_hidden, self.decoder_hidden = tuple(map(int, encoder_hidden)), tuple(map(int, decoder_hidden))
        self.activation, self.negative_slope, self.posterior = activation, float(negative_slope), posterior
        self.mean_activation, self.scale_activation = mean_activation, scale_activation

        enc_sizes = [data_dim + cond_dim, *self.encoder_hidden]
        self.encoder = nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in zip(enc_sizes, enc_sizes[1:]))
        self.encoder_head = nn.Linear(enc_sizes[-1], 2 * latent_dim, dtype=dtype)
        dec_sizes = [latent_dim + cond_dim, *self.decoder_hidden, data_dim]
        self.decoder = nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in zip(dec_sizes, dec_sizes[1:]))
        # training state (fastvae.training): set by fit, saved by save
        self.history_ = None
        self.optimizer_state_ = None
        self.generator_state_ = None
        self.fit_settings_ = None

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "VAE":
        """The VAE of a homework: ``"stats305c"``, ``"ese546"``, ``"cvae_hw7"`` or ``"dd2434"``
        (architectures in :mod:`fastvae.presets`). Keyword overrides replace preset entries."""
        kwargs = dict(presets.get(name).model)
        kwargs.update(overrides)
        model = cls(**kwargs)
        model.preset = name
        return model

    # -- plumbing shared with the C++ ops ---------------------------------------------------------
    @property
    def arch(self):
        """Architecture code list passed to the C++ ops (layout in cpp/vae_spec.h)."""
        return [self.data_dim, self.cond_dim, self.latent_dim, len(self.encoder_hidden), *self.encoder_hidden,
                len(self.decoder_hidden), *self.decoder_hidden, ACTIVATIONS[self.activation],
                POSTERIORS[self.posterior], ACTIVATIONS[self.mean_activation], ACTIVATIONS[self.scale_activation]]

    def flat_parameters(self):
        """Parameters in the C++ engine's order: encoder layers, head, decoder layers (weight, bias)."""
        out = []
        for lin in [*self.encoder, self.encoder_head, *self.decoder]:
            out += [lin.weight, lin.bias]
        return out

    def _prepare(self, x: torch.Tensor, y: Optional[torch.Tensor]):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() > 2:
            x = x.reshape(x.shape[0], -1)
        w = self.encoder_head.weight
        if x.dtype != w.dtype:
            raise TypeError(f"x must be a binary float tensor of the model's dtype {w.dtype}, got {x.dtype}; "
                            "binarize images with fastvae.datasets.binarize and match dtypes with .to()")
        if y is not None:
            y = torch.as_tensor(y, device=x.device)
            if y.dtype != torch.int64:
                y = y.long()
        return x, y

    # -- public API -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, n_samples: int = 1,
                eps: Optional[torch.Tensor] = None, estimator: str = "analytic") -> ELBO:
        """Same as :func:`fastvae.elbo` with this model."""
        return elbo(self, x, n_samples=n_samples, eps=eps, y=y, estimator=estimator)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        """Posterior mean and standard deviation, each [B, Z], for binary images x [B, D] (or
        [B, H, W]). Inference only (no gradient)."""
        x, y = self._prepare(x, y)
        with reading(self):
            return _ops.ops.vae_encode(x, y, self.flat_parameters(), self.arch, self.negative_slope)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: Optional[torch.Tensor] = None, logits: bool = False):
        """Bernoulli means sigmoid(logits) [N, D] (or the logits) for latent codes z [N, Z]."""
        z = torch.as_tensor(z, dtype=self.encoder_head.weight.dtype)
        if y is not None:
            y = torch.as_tensor(y).long()
        with reading(self):
            out = _ops.ops.vae_decode(z, y, self.flat_parameters(), self.arch, self.negative_slope)
        return out if logits else torch.sigmoid(out)

    @torch.no_grad()
    def sample(self, n: int, y=None, generator: Optional[torch.Generator] = None):
        """Decoder means for n prior draws z ~ N(0, I): [n, D]. For a conditional VAE, ``y`` is one
        class (int) or n labels."""
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=self.encoder_head.weight.dtype)
        if self.cond_dim:
            if y is None:
                raise ValueError("a conditional VAE needs the class y to sample")
            y = torch.full((n,), int(y)) if isinstance(y, int) else torch.as_tensor(y).long()
        return self.decode(z, y)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        """Decoder means at the posterior mean, sigmoid(dec(mu(x))): [B, D]."""
        mu, _ = self.encode(x, y)
        return self.decode(mu, y if y is None else torch.as_tensor(y).long())

    def fit(self, train_images, train_labels=None, **kwargs):
        """Train with the C++ loop; see :func:`fastvae.training.fit` for the arguments."""
        from .training import fit
        return fit(self, train_images, train_labels, **kwargs)

    def save(self, path):
        """Write the model and its training state (architecture, weights, Adam state, the loop's generator,
        history, last fit settings) to ``path`` atomically; ``VAE.load(path).fit(...)`` continues the run
        exactly. ``state_dict()`` stays the plain weights. Format: :mod:`fastvae.checkpoint`.

        Raises: TypeError (path not a str / PathLike), ValueError (a folder), FileNotFoundError (its folder
        does not exist)."""
        from . import checkpoint
        with reading(self):
            return checkpoint.save(self, path)

    @classmethod
    def load(cls, path) -> "VAE":
        """The model saved by :meth:`save` at ``path``, with its training state.

        Raises: FileNotFoundError (no such file), fastvae.checkpoint.CheckpointError (a ValueError: corrupt,
        truncated or not a fastvae checkpoint; the message names the path), TypeError (path's type)."""
        from . import checkpoint
        return checkpoint.load(cls, path)


def elbo(model: VAE, x: torch.Tensor, n_samples: int = 1, eps: Optional[torch.Tensor] = None,
         y: Optional[torch.Tensor] = None, estimator: str = "analytic",
         generator: Optional[torch.Generator] = None) -> ELBO:
    """Per-image ELBO, expected log-likelihood and KL of ``model`` on binary images.

    ``elbo_i = 1/L sum_l log p(x_i | z_il) - KL(q(z | x_i) || N(0, I))``, ``z_il = mu_i + sigma_i eps_il``
    (reparameterization, Kingma & Welling 2014). Differentiable with respect to the model's parameters
    through fastvae's hand-written C++ backward, so it can be used in a plain PyTorch training loop.

    Args:
        model: a :class:`VAE`.
        x: binary images, float [B, D] (or [B, H, W]) of the model's dtype, entries 0 or 1.
        n_samples: L >= 1 Monte Carlo samples per image (ignored if ``eps`` is given).
        eps: optional standard normal noise [L, B, Z] of the model's dtype, to inject the draws.
        y: int64 class labels [B] for a conditional VAE.
        estimator: ``"analytic"`` (analytic Gaussian KL), ``"mc"`` (Monte Carlo
            log q(z|x) - log p(z)) or ``"stl"`` (sticking the landing, Roeder et al. 2017: same value as
            ``"mc"``, gradient without the score-function term).
        generator: torch.Generator for eps when it is not given.

    Returns:
        :class:`ELBO` (elbo, rec, kl), each float [B] in nats.

    Raises:
        RuntimeError: wrong shapes, dtypes or devices, non-binary or NaN x, NaN/inf eps,
            L < 1, labels missing or out of range.
        ValueError: unknown estimator.
    """
    if estimator not in _ops.ESTIMATORS:
        raise ValueError(f"estimator must be one of {sorted(_ops.ESTIMATORS)}, got {estimator!r}")
    x, y = model._prepare(x, y)
    if eps is None:
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        eps = torch.randn(int(n_samples), x.shape[0], model.latent_dim, dtype=x.dtype, generator=generator)
    with reading(model):
        out = _ops.ops.vae_elbo(x, y, eps, model.flat_parameters(), model.arch, model.negative_slope,
                                _ops.ESTIMATORS[estimator])
    return ELBO(*out)


@torch.no_grad()
def log_likelihood(model: VAE, x: torch.Tensor, k: int = 1000, y: Optional[torch.Tensor] = None,
                   batch_size: int = 100, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per image (nats), the IWAE bound of Burda et al. 2016:
    ``log 1/k sum_j p(x, z_j) / q(z_j | x)`` with ``z_j ~ q(z | x)``, computed in C++ with log-sum-exp.
    It is a lower bound on log p(x) that tightens as k grows (k = 1 gives the Monte Carlo ELBO).

    Args:
        x: binary images [B, D]; k: importance samples (>= 1); batch_size: images per C++ call
            (memory is about k * batch_size * D floats).

    Returns: float tensor [B].
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x, y = model._prepare(x, y)
    out = []
    for s in range(0, x.shape[0], batch_size):
        xb = x[s:s + batch_size]
        yb = None if y is None else y[s:s + batch_size]
        eps = torch.randn(int(k), xb.shape[0], model.latent_dim, dtype=x.dtype, generator=generator)
        with reading(model):
            out.append(_ops.ops.vae_iwae(xb, yb, eps, model.flat_parameters(), model.arch, model.negative_slope))
    return torch.cat(out) if out else x.new_empty(0)
