"""The MLP VAE (Bernoulli, continuous Bernoulli or Gaussian decoder) whose forward pass, ELBO gradient, Adam step and training loop
run in fastvae's C++ core.

Model (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; the homeworks' notation):
``q(z | x, y) = N(mu, diag sigma^2)`` from the encoder, ``p(z) = N(0, I)``,
``p(x | z, y) = Bernoulli(logits = decoder(z, y))``. ``y`` is an optional class label that enters
encoder and decoder as a one-hot vector (conditional VAE).
"""
import math
from typing import Optional, Sequence

import torch
from torch import nn

from .. import _checks, _ops, checkpoint, heads, pixels, presets
from .._lock import reading, refuse_while_fitting
from .._extension import _C
from ..arch import GAUSSIAN_SCALES, binary_likelihood
from ..arch import ACTIVATIONS, LATENTS, LIKELIHOODS, POSTERIORS, ArchSpec  # noqa: F401  (names from the C++ tables)
from ..types import ELBO
from .base import Model, check_groups, group_samples
from .networks import NetworkVAE
from .mlp_stepper import MlpStepper


def _torch_activation(name: str, slope: float):
    """The hidden activation ``name`` (one of ``ACTIVATIONS``) as a torch function."""
    return {"identity": lambda h: h, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "leaky_relu": lambda h: nn.functional.leaky_relu(h, slope)}[name]


class VAE(Model):
    """MLP variational autoencoder with a Bernoulli (default), continuous Bernoulli or Gaussian decoder.

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
        likelihood: the decoder's p(x | z), parameterized by its output logits a [.., D]:
            ``"bernoulli"`` (binary pixels, log p = x a - softplus(a)) or ``"continuous_bernoulli"``
            (intensities x in [0, 1], Loaiza-Ganem & Cunningham 2019: log p = x a - softplus(a) + log C(lambda),
            lambda = sigmoid(a), C the normaliser; see docs/engine.md "Likelihoods") or ``"gaussian"``
            (real-valued x, log p = sum_d log N(x_d; a_d, gaussian_sigma^2), Kingma & Welling 2014 C.2 with a
            fixed scale). One of ``fastvae._C.LIKELIHOODS``.
        gaussian_sigma: the Gaussian likelihood's fixed standard deviation (finite float > 0; used only by
            ``"gaussian"``), and the initial value exp(log_sigma) of a learned scale.
        gaussian_scale: how the Gaussian likelihood's scale is set (one of ``fastvae._C.GAUSSIAN_SCALES``;
            anything but ``"fixed"`` needs ``likelihood="gaussian"``):
            ``"fixed"`` sigma = gaussian_sigma; ``"learned"`` a per-pixel parameter ``log_sigma`` [D]
            (``nn.Parameter``, initialised to log(gaussian_sigma), trained like the weights, last in
            :meth:`flat_parameters`); ``"predicted"`` (Kingma & Welling 2014, C.2) the decoder's last
            layer outputs 2D values per image, the mean [:, :D] and the log-variance lv [:, D:], with
            ``log p = sum_d -(x_d - mu_d)^2 / (2 exp(lv_d)) - lv_d / 2 - log(2 pi) / 2``. The predicted
            log-variance is not bounded: an extreme lv gives an inf or NaN ELBO (fit then raises
            TrainingDivergedError), never a silently clamped value.
        latent: ``"gaussian"`` (default, z = mu + sigma eps) or ``"categorical"`` (Jang, Gu & Poole 2017):
            ``latent_dim`` = N variables of ``categories`` = K classes; ``encoder_head`` then outputs N*K logits,
            q(c_n = k | x) = softmax over each variable's K logits, the prior is uniform, and the decoder reads
            Gumbel-softmax samples (relaxed or one-hot) [.., N*K] (docs/engine.md "Categorical latents").
            ``posterior``, ``mean_activation`` and ``scale_activation`` must stay at their defaults then.
        categories: K >= 2 for a categorical latent; 0 (default) for a Gaussian one.
        upper_latents: sizes of further stochastic layers z2, z3, ... above z1 (``latent_dim``), Burda et al. 2016,
            Sec. 5 (their two-layer model: ``latent_dim=100, upper_latents=(50,), upper_hidden=(100, 100)``).
            Each upper layer u has an encoder MLP ``upper_encoders[u]`` giving q(z_u | z_below) =
            N(mean, diag sigma^2) and a decoder MLP ``upper_decoders[u]`` giving p(z_below | z_u) the same way (a
            final Linear to [mean | spread], spread as ``posterior`` says, which must be ``"logvar"`` or
            ``"logstd"``); the top layer's prior is N(0, I) and the decoder of x reads z1. Noise ``eps`` then has
            ``latent_dim + sum(upper_latents)`` columns (z1's first). Gaussian latents only; the ELBO has no
            analytic KL (estimator ``"mc"`` or ``"stl"``) and is differentiated as a whole (rec - kl).
        upper_hidden: hidden layer sizes of every upper MLP (activation ``activation``); needs upper_latents.

    Raises:
        TypeError: a size that is not an integer (2.5, True), a non-string activation or posterior,
            a non-number slope, dtype other than float32/float64.
        ValueError: unknown activation or posterior, sizes < 1 (cond_dim < 0), negative or non-finite
            slope, more than 2**30 parameters, unknown likelihood, gaussian_scale or latent, a gaussian_scale
            other than "fixed" with a non-Gaussian likelihood, categories < 2 for a categorical latent or != 0
            for a Gaussian one, a Gaussian posterior option with a categorical latent.
    """

    def __init__(self, data_dim: int = 784, latent_dim: int = 2, encoder_hidden: Sequence[int] = (512, 256),
                 decoder_hidden: Sequence[int] = (256, 512), activation: str = "relu",
                 negative_slope: float = 0.01, posterior: str = "logvar", mean_activation: str = "identity",
                 scale_activation: str = "identity", cond_dim: int = 0, dtype: torch.dtype = torch.float32,
                 likelihood: str = "bernoulli", gaussian_sigma: float = 1.0, gaussian_scale: str = "fixed",
                 latent: str = "gaussian", categories: int = 0, upper_latents: Sequence[int] = (),
                 upper_hidden: Sequence[int] = ()):
        super().__init__()  # the fitted state: history_, optimizer_state_, generator_state_, train_options_
        where = "VAE"
        data_dim = _checks.integer(where, "data_dim", data_dim, min=1)
        latent_dim = _checks.integer(where, "latent_dim", latent_dim, min=1)
        cond_dim = _checks.integer(where, "cond_dim", cond_dim, min=0)
        encoder_hidden = _checks.integer_sequence(where, "encoder_hidden", encoder_hidden, min=1)
        decoder_hidden = _checks.integer_sequence(where, "decoder_hidden", decoder_hidden, min=1)
        for name, value in (("activation", activation), ("mean_activation", mean_activation),
                            ("scale_activation", scale_activation)):
            _checks.choice(where, name, value, ACTIVATIONS)
        _checks.choice(where, "posterior", posterior, POSTERIORS)
        _checks.choice(where, "likelihood", likelihood, LIKELIHOODS)
        gaussian_sigma = _checks.positive(where, "gaussian_sigma", gaussian_sigma)
        _checks.choice(where, "gaussian_scale", gaussian_scale, GAUSSIAN_SCALES)
        if gaussian_scale != "fixed" and likelihood != "gaussian":
            raise ValueError(f"{where}: gaussian_scale={gaussian_scale!r} needs likelihood='gaussian', got "
                             f"likelihood={likelihood!r}")
        out_dim = 2 * data_dim if gaussian_scale == "predicted" else data_dim  # mean | log-variance
        if posterior == "std" and scale_activation != "sigmoid":
            raise ValueError("VAE: posterior='std' needs scale_activation='sigmoid' so that sigma > 0")
        negative_slope = _checks.real(where, "negative_slope", negative_slope, min=0.0)
        _checks.choice(where, "latent", latent, LATENTS)
        categories = _checks.integer(where, "categories", categories, min=0)
        if latent == "categorical":
            if categories < 2:
                raise ValueError(f"{where}: a categorical latent needs categories >= 2, got {categories}")
            if (posterior, mean_activation, scale_activation) != ("logvar", "identity", "identity"):
                raise ValueError(f"{where}: posterior, mean_activation and scale_activation describe a Gaussian "
                                 "posterior; leave them at their defaults with latent='categorical'")
        elif categories != 0:
            raise ValueError(f"{where}: categories is the class count of a categorical latent; it must be 0 with "
                             f"latent='gaussian', got {categories}")
        upper_latents = _checks.integer_sequence(where, "upper_latents", upper_latents, min=1)
        upper_hidden = _checks.integer_sequence(where, "upper_hidden", upper_hidden, min=1)
        if upper_hidden and not upper_latents:
            raise ValueError(f"{where}: upper_hidden describes the MLPs between upper stochastic layers; it needs "
                             "upper_latents")
        if upper_latents and (latent != "gaussian" or posterior not in ("logvar", "logstd")):
            raise ValueError(f"{where}: upper stochastic layers need latent='gaussian' and posterior 'logvar' or "
                             f"'logstd', got latent={latent!r}, posterior={posterior!r}")
        code = latent_dim * categories if latent == "categorical" else latent_dim
        head = code if latent == "categorical" else 2 * latent_dim
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"VAE: dtype must be torch.float32 or torch.float64, got {dtype!r}")
        if len(encoder_hidden) >= 64 or len(decoder_hidden) >= 64:
            raise ValueError("VAE: at most 63 hidden layers in the encoder and in the decoder")
        enc = [data_dim + cond_dim, *encoder_hidden, head]
        dec = [code + cond_dim, *decoder_hidden, out_dim]
        below = (latent_dim, *upper_latents[:-1])
        upper = [s for zb, zu in zip(below, upper_latents)
                 for s in ([zb, *upper_hidden, 2 * zu], [zu, *upper_hidden, 2 * zb])]
        n_params = sum((a + 1) * b for sizes in (enc, dec, *upper) for a, b in zip(sizes, sizes[1:]))
        _ops.check_size(where, "the number of parameters", n_params)
        self.data_dim, self.latent_dim, self.cond_dim = int(data_dim), int(latent_dim), int(cond_dim)
        self.encoder_hidden, self.decoder_hidden = tuple(map(int, encoder_hidden)), tuple(map(int, decoder_hidden))
        self.activation, self.negative_slope, self.posterior = activation, float(negative_slope), posterior
        self.mean_activation, self.scale_activation = mean_activation, scale_activation
        self.likelihood, self.gaussian_sigma = likelihood, float(gaussian_sigma)
        self.gaussian_scale = gaussian_scale
        self.latent, self.categories, self.code_dim = latent, int(categories), int(code)
        self.upper_latents, self.upper_hidden = tuple(map(int, upper_latents)), tuple(map(int, upper_hidden))
        self.noise_dim = self.code_dim if latent == "categorical" else latent_dim + sum(self.upper_latents)

        enc_sizes = [data_dim + cond_dim, *self.encoder_hidden]
        self.encoder = nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in zip(enc_sizes, enc_sizes[1:]))
        self.encoder_head = nn.Linear(enc_sizes[-1], head, dtype=dtype)
        dec_sizes = [code + cond_dim, *self.decoder_hidden, out_dim]
        self.decoder = nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in zip(dec_sizes, dec_sizes[1:]))
        mlp = (lambda sizes: nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in zip(sizes, sizes[1:])))
        self.upper_encoders = nn.ModuleList(mlp(s) for s in upper[0::2])
        self.upper_decoders = nn.ModuleList(mlp(s) for s in upper[1::2])
        if gaussian_scale == "learned":  # per-pixel log sigma of the Gaussian likelihood
            self.log_sigma = nn.Parameter(torch.full((data_dim,), math.log(self.gaussian_sigma), dtype=dtype))
        else:
            self.register_parameter("log_sigma", None)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "VAE":
        """The VAE of a homework: ``"stats305c"``, ``"ese546"``, ``"cvae_hw7"`` or ``"dd2434"``, or of a paper
        (architectures in :mod:`fastvae.presets`). Keyword overrides replace preset entries. The weights are
        ``torch.nn.Linear``'s default; a preset's ``init`` (the IWAE paper's) needs the training images and is
        applied by its reproduction, or by hand with :meth:`glorot_init_` and :meth:`init_output_bias_`.

        Raises: ValueError for an unknown name (TypeError for a non-string), and what :class:`VAE` raises
        for a bad override."""
        _checks.choice("VAE.from_preset", "name", name, presets.names())
        kwargs = dict(presets.get(name).model)
        kwargs.update(overrides)
        model = cls(**kwargs)
        model.preset = name
        return model

    # -- plumbing shared with the C++ ops ---------------------------------------------------------
    def spec(self) -> ArchSpec:
        """The architecture as the C++ ops receive it: ``op(..., params, *model.spec().as_args())``."""
        return ArchSpec(self.data_dim, self.cond_dim, self.latent_dim, self.encoder_hidden, self.decoder_hidden,
                        self.activation, self.negative_slope, self.posterior, self.mean_activation,
                        self.scale_activation, self.likelihood, self.gaussian_sigma, self.gaussian_scale,
                        self.latent, self.categories, self.upper_latents, self.upper_hidden)

    def flat_parameters(self):
        """Parameters in the C++ engine's order: encoder layers, head, decoder layers (weight, bias), each upper
        layer's encoder then decoder MLP, then the learned Gaussian ``log_sigma`` [D] if ``gaussian_scale="learned"``."""
        out = []
        upper = [lin for q, p in zip(self.upper_encoders, self.upper_decoders) for lin in (*q, *p)]
        for lin in [*self.encoder, self.encoder_head, *self.decoder, *upper]:
            out += [lin.weight, lin.bias]
        if self.log_sigma is not None:
            out.append(self.log_sigma)
        return out

    def _prepare(self, x, y, where: str = "VAE", name: str = "x", width: Optional[int] = None):
        """Checks x ([B, width] or [B, H, W] flattened; a tensor or numpy array on the model's device: float of
        the model's dtype, or for images (``name == "x"``) uint8 intensities turned into the model's input by
        :func:`fastvae.pixels.model_input`) and labels y (integers, required iff the model is conditional);
        returns x and y as int64 or None."""
        w = self.encoder_head.weight
        if name == "x":
            x = pixels.model_input(x, binary=binary_likelihood(self.likelihood), dtype=w.dtype, where=where)
        else:
            x = _checks.tensor(where, name, x)
            if x.dtype != w.dtype:
                raise TypeError(f"{where}: {name} must be a float tensor of the model's dtype {w.dtype}, got "
                                f"{x.dtype}; convert with .to()")
        if x.dim() > 2:
            x = x.reshape(x.shape[0], -1)
        width = self.data_dim if width is None else width
        if x.dim() != 2 or x.shape[1] != width:
            raise ValueError(f"{where}: {name} must have shape [B, {width}], got {tuple(x.shape)}")
        _checks.same_device(where, **{name: x}, parameters=w)
        if y is not None and not self.cond_dim:
            raise ValueError(f"{where}: labels y were given to an unconditional VAE (cond_dim=0)")
        if y is None:
            if self.cond_dim:
                raise ValueError(f"{where}: this conditional VAE needs labels y (integers [B] in [0, {self.cond_dim}))")
            return x, None
        return x, self._labels(where, y, x.shape[0], x.device)

    def _labels(self, where: str, y, n: int, device) -> torch.Tensor:
        """Labels as int64 [n] on ``device``: integer tensors, NumPy arrays or lists; floats (even 3.0) and
        bools are a TypeError, a wrong length or a class outside [0, cond_dim) a ValueError."""
        if not isinstance(y, torch.Tensor):
            try:
                y = torch.as_tensor(y)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"{where}: labels y must be an integer tensor, got {type(y).__name__}") from None
        if y.dtype == torch.bool or y.dtype.is_floating_point or y.dtype.is_complex:
            raise TypeError(f"{where}: labels y must be an integer tensor, got dtype {y.dtype}")
        if y.device != torch.device(device):
            raise ValueError(f"{where}: labels y are on {y.device}, the data on {device}")
        if y.dim() != 1 or y.shape[0] != n:
            raise ValueError(f"{where}: labels y must have shape [{n}], got {tuple(y.shape)}")
        if y.numel() and y.device.type != "meta":
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= self.cond_dim:
                raise ValueError(f"{where}: labels y must lie in [0, {self.cond_dim}), got values in [{lo}, {hi}]")
        return y.to(torch.int64)

    def _noise(self, where: str, shape, like: torch.Tensor, generator) -> torch.Tensor:
        """Standard normal draws of ``shape`` with the dtype and device of ``like`` (meta: no draws)."""
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{where}: generator must be a torch.Generator or None, got {type(generator).__name__}")
        if like.device.type == "meta":
            return torch.empty(shape, dtype=like.dtype, device="meta")
        dev = generator.device if generator is not None else like.device
        return torch.randn(shape, dtype=like.dtype, device=dev, generator=generator).to(like.device)

    # -- public API -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, n_samples: int = 1,
                eps: Optional[torch.Tensor] = None, estimator: str = "analytic") -> ELBO:
        """Same as :meth:`elbo`."""
        return self.elbo(x, n_samples, eps=eps, y=y, estimator=estimator)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        """Posterior mean and standard deviation, each [B, Z] of the model's dtype, for images x [B, D]
        (or [B, H, W]) of the model's dtype and device (binary for bernoulli, in [0, 1] for continuous_bernoulli,
        finite for gaussian); y: integer labels [B] for a conditional VAE. Inference only (no gradient).
        A categorical latent returns instead the posterior's log-probabilities and probabilities (log q, q), each
        [B, latent_dim, categories].

        Raises: TypeError (x not a tensor or of another dtype, float labels), ValueError (wrong shape or
        device, labels missing/out of range), RuntimeError (x unfit for the likelihood or NaN, NaN parameters)."""
        x, y = self._prepare(x, y, "VAE.encode")
        with reading(self):
            out = _ops.ops.vae_encode(x, y, self.flat_parameters(), *self.spec().as_args())
        if self.latent == "categorical":  # log q and q, [B, N, K]
            return tuple(t.reshape(t.shape[0], self.latent_dim, self.categories) for t in out)
        return out

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: Optional[torch.Tensor] = None, logits: bool = False):
        """Means of p(x | z) [N, D] (or the decoder's logits if ``logits``) for latent codes z [N, Z] (a
        categorical latent: one-hot or relaxed codes [N, latent_dim * categories]), a float tensor of the model's
        dtype and device; y: integer labels [N] for a conditional VAE. The mean is
        sigmoid(logits) for ``"bernoulli"`` and the continuous Bernoulli mean
        ``lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda))`` for ``"continuous_bernoulli"``
        (:func:`fastvae.heads.likelihood_mean`); the decoder output itself for ``"gaussian"`` (its first D
        columns with ``gaussian_scale="predicted"``, whose ``logits=True`` output is [N, 2D]: mean, then
        log-variance).

        Raises: as :meth:`encode`; RuntimeError for NaN or inf in z."""
        _checks.flag("VAE.decode", "logits", logits)
        z, y = self._prepare(z, y, "VAE.decode", "z", width=self.code_dim)
        with reading(self):
            out = _ops.ops.vae_decode(z, y, self.flat_parameters(), *self.spec().as_args())
        return out if logits else self._mean(out)

    def _mean(self, logits: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean from the decoder's logits (:func:`fastvae.heads.likelihood_mean`)."""
        return heads.likelihood_mean(logits, self.likelihood, self.gaussian_sigma, self.gaussian_scale)

    @torch.no_grad()
    def sample(self, n: int, y=None, generator: Optional[torch.Generator] = None):
        """Decoder means for n prior draws z ~ N(0, I) (a categorical latent: one-hot codes with each variable's
        class uniform): [n, D]. For a conditional VAE, ``y`` is one
        class (an int in [0, cond_dim)) or n integer labels; an unconditional VAE takes no ``y``.

        Raises: TypeError (n not an integer, float labels), ValueError (n < 0 or too large, y missing,
        given to an unconditional VAE or out of range)."""
        where = "VAE.sample"
        n = _checks.integer(where, "n", n, min=0)
        _ops.check_size(where, "n * data_dim", n * self.data_dim)
        w = self.encoder_head.weight
        if self.cond_dim:
            if y is None:
                raise ValueError(f"{where}: a conditional VAE needs the class y to sample")
            if isinstance(y, torch.Tensor) and y.dim() == 0 or not hasattr(y, "__len__"):
                c = _checks.integer(where, "y", y, min=0, max=self.cond_dim - 1)
                y = torch.full((n,), c, dtype=torch.int64, device=w.device)
        elif y is not None:
            raise ValueError(f"{where}: labels y were given to an unconditional VAE (cond_dim=0)")
        if self.latent == "categorical":  # uniform prior: each variable's class uniformly, as one-hot codes
            z = self._uniform_codes(where, n, w, generator)
        else:
            z = self._noise(where, (n, self.noise_dim), w, generator)
            z = self._ancestral_z1(z) if self.upper_latents else z
        return self.decode(z, y)

    @torch.no_grad()
    def layer_means(self, x: torch.Tensor, y=None, *, samples: int = 100,
                    generator: Optional[torch.Generator] = None) -> list:
        """The posterior mean E_q[z_l | x] of every stochastic layer: [mu1 [B, Z1], E[z2 | x] [B, Z2], ...]; z1's
        from the encoder, each upper layer's as the mean over ``samples`` draws of the layers below of its q head's
        mean (E_q[z_u | x] = E_q(z_b | x)[mu_q(z_b)]). Arguments and errors as :meth:`encode`; samples >= 1."""
        samples = _checks.integer("VAE.layer_means", "samples", samples, min=1)
        mu, sigma = self.encode(x, y)
        out = [mu]
        if not self.upper_latents:
            return out
        noise = self._noise("VAE.layer_means", (samples, *mu.shape[:1], self.noise_dim), mu, generator)
        z = mu + sigma * noise[..., :self.latent_dim]
        col = self.latent_dim
        for layers, size in zip(self.upper_encoders, self.upper_latents):
            mean, sd = self._upper_gaussian(layers, z)
            out.append(mean.mean(0))
            z = mean + sd * noise[..., col:col + size]
            col += size
        return out

    def _upper_gaussian(self, layers, h):
        """(mean, sigma) of an upper layer's Gaussian from its MLP ``layers`` (upper_encoders[u] or
        upper_decoders[u]) on h: hidden layers with the model's activation, then [mean | spread] read as
        ``posterior`` says."""
        act = _torch_activation(self.activation, self.negative_slope)
        for lin in layers[:-1]:
            h = act(lin(h))
        mean, s = layers[-1](h).chunk(2, -1)
        return mean, torch.exp(0.5 * s) if self.posterior == "logvar" else torch.exp(s)

    @torch.no_grad()
    def _ancestral_z1(self, noise: torch.Tensor) -> torch.Tensor:
        """z1 [n, Z] drawn from the upper layers' prior: z_top = its noise, then each z_below ~ p(z_below | z_u)
        down the chain (noise [n, noise_dim]: z1's columns first, as in eps)."""
        z1_noise, rest = noise[:, :self.latent_dim], noise[:, self.latent_dim:]
        z = rest[:, sum(self.upper_latents[:-1]):]  # the top layer's standard normal draw
        for u in reversed(range(len(self.upper_latents))):
            mean, sd = self._upper_gaussian(self.upper_decoders[u], z)
            e = z1_noise if u == 0 else rest[:, sum(self.upper_latents[:u - 1]):sum(self.upper_latents[:u])]
            z = mean + sd * e
        return z

    def _uniform_codes(self, where: str, n: int, like: torch.Tensor, generator) -> torch.Tensor:
        """n one-hot codes [n, N*K] of classes drawn uniformly per variable (the categorical prior)."""
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{where}: generator must be a torch.Generator or None, got {type(generator).__name__}")
        dev = generator.device if generator is not None else like.device
        c = torch.randint(self.categories, (n, self.latent_dim), device=dev, generator=generator).to(like.device)
        return nn.functional.one_hot(c, self.categories).to(like.dtype).reshape(n, self.code_dim)

    def _uniforms(self, where: str, shape, like: torch.Tensor, generator) -> torch.Tensor:
        """U(0, 1) draws of ``shape`` clamped to [tiny, 1) (rand can return 0, whose Gumbel is -inf): the noise of
        a categorical latent."""
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{where}: generator must be a torch.Generator or None, got {type(generator).__name__}")
        if like.device.type == "meta":
            return torch.empty(shape, dtype=like.dtype, device="meta")
        dev = generator.device if generator is not None else like.device
        u = torch.rand(shape, dtype=like.dtype, device=dev, generator=generator).to(like.device)
        return u.clamp_min_(torch.finfo(like.dtype).tiny)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        """Decoder means (of the likelihood) at the posterior mean, mean(dec(mu(x))): [B, D]. Arguments and errors as
        :meth:`encode`."""
        x, y = self._prepare(x, y, "VAE.reconstruct")
        mu, q = self.encode(x, y)
        if self.latent == "categorical":  # the posterior's mode, one-hot
            mu = nn.functional.one_hot(q.argmax(-1), self.categories).to(q.dtype).reshape(q.shape[0], -1)
        return self.decode(mu, y)

    @torch.no_grad()
    def glorot_init_(self, generator: Optional[torch.Generator] = None) -> "VAE":
        """Re-initialize every Linear layer as Burda et al. 2016's code does (yburda/iwae, ``nnet.Linear.random``):
        weights ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010; ``nn.init.xavier_uniform_``),
        biases 0. ``torch.nn.Linear``'s own default draws U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both, which is
        narrower for tanh layers. A learned Gaussian ``log_sigma`` is left as it is. Returns ``self``.

        Raises: TypeError for a generator that is not a ``torch.Generator``; RuntimeError while a ``fit`` runs."""
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError("VAE.glorot_init_: generator must be a torch.Generator or None, got "
                            f"{type(generator).__name__}")
        with reading(self):
            refuse_while_fitting(self, "VAE.glorot_init_")
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight, generator=generator)
                    layer.bias.zero_()
        return self

    @torch.no_grad()
    def init_output_bias_(self, images, threshold: Optional[int] = None) -> "VAE":
        """Set the decoder's output bias so that the untrained decoder predicts each pixel's mean m_d over
        ``images`` (Burda et al. 2016's code, ``get_train_bias_np``): Bernoulli logits log(m / (1 - m)) with m
        clipped to [1e-3, 1 - 1e-3]; for a Gaussian likelihood the mean m itself (the first D outputs when the
        scale is predicted). The other weights are untouched. Returns ``self``.

        Args:
            images: the training images, [N, D] or [N, H, W] with H * W = D, uint8 intensities or floats in [0, 1]
                (:mod:`fastvae.pixels`); N >= 1.
            threshold: None (default): m is the mean intensity p / 255, the pixel's probability under dynamic
                binarization; an int in [0, 255]: m is the mean of the binary pixels p > threshold.

        Raises: TypeError (images not uint8 or float, threshold not an int), ValueError (no images, wrong size,
        floats outside [0, 1] or NaN, threshold out of range, a continuous Bernoulli likelihood, whose mean is not
        sigmoid of its logits), RuntimeError while a ``fit`` runs."""
        where = "VAE.init_output_bias_"
        if self.likelihood == "continuous_bernoulli":
            raise ValueError(f"{where}: a continuous Bernoulli's mean is not sigmoid(logits); set the bias yourself")
        p = pixels.as_images(images, self.data_dim, "images", where)  # fit's rule: uint8 [N, D], N >= 1
        if threshold is None:
            m = p.to(torch.float64).mean(0) / 255
        else:
            threshold = _checks.integer(where, "threshold", threshold, min=0, max=255)
            m = (p > threshold).to(torch.float64).mean(0)
        bias = self.decoder[-1].bias
        if binary_likelihood(self.likelihood):
            m = m.clamp(1e-3, 1 - 1e-3)
            m = torch.log(m) - torch.log1p(-m)
        with reading(self):
            refuse_while_fitting(self, where)
            bias[:self.data_dim] = m.to(device=bias.device, dtype=bias.dtype)
        return self

    @classmethod
    def from_networks(cls, encoder: nn.Module, decoder: nn.Module, latent_dim: int, **kwargs) -> NetworkVAE:
        """A VAE around your own encoder and decoder networks (any nn.Module, any device), trained and evaluated
        with fastvae's objective heads: see :class:`fastvae.NetworkVAE` for the contract and keywords
        (likelihood, gaussian_sigma, gaussian_scale, posterior). ``fastvae.elbo``, ``fastvae.iwae``,
        ``fastvae.log_likelihood`` and ``fastvae.fit`` accept it."""
        return NetworkVAE(encoder, decoder, latent_dim, **kwargs)

    @classmethod
    def load(cls, path) -> "VAE":
        """The model saved by :meth:`save` at ``path``, with its training state (every earlier checkpoint format
        of an MLP VAE loads too: :mod:`fastvae.checkpoint`).

        Raises: FileNotFoundError (no such file), fastvae.CheckpointError (a ValueError: corrupt, truncated or
        not a fastvae checkpoint of an MLP VAE; the message names the path), TypeError (path's type)."""
        where = "fastvae.VAE.load"
        record = checkpoint.read(path, "mlp", where)
        try:
            cfg = dict(record.config)
            cfg["dtype"] = getattr(torch, cfg["dtype"])
            model = cls(**cfg)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise checkpoint.CheckpointError(f"{where}: {str(path)!r} holds an invalid checkpoint: "
                                             f"{type(e).__name__}: {e}") from e
        return checkpoint.restore(model, record, path, where)

    # -- the training driver's protocol (fastvae.models.base.Model) -------------------------------------------
    _checkpoint_kind = "mlp"

    def _checkpoint_config(self) -> dict:
        """The constructor arguments that rebuild this architecture."""
        return dict(data_dim=self.data_dim, latent_dim=self.latent_dim, encoder_hidden=list(self.encoder_hidden),
                    decoder_hidden=list(self.decoder_hidden), activation=self.activation,
                    negative_slope=self.negative_slope, posterior=self.posterior,
                    mean_activation=self.mean_activation, scale_activation=self.scale_activation,
                    likelihood=self.likelihood, gaussian_sigma=self.gaussian_sigma,
                    gaussian_scale=self.gaussian_scale, cond_dim=self.cond_dim,
                    dtype=str(self.encoder_head.weight.dtype).replace("torch.", ""), latent=self.latent,
                    categories=self.categories, upper_latents=list(self.upper_latents),
                    upper_hidden=list(self.upper_hidden))

    def _check_trainable(self, where: str) -> None:
        w = self.encoder_head.weight
        if w.dtype != torch.float32 or w.device.type != "cpu":
            raise TypeError(f"{where}: fit trains float32 models on the CPU; convert with model.float()")
        if not any(p.requires_grad for p in self.parameters()):
            raise ValueError(f"{where}: every parameter is frozen (requires_grad=False); nothing to train")
        names, params = zip(*self.named_parameters())
        bad = _C._first_nonfinite(list(params))
        if bad >= 0:
            raise ValueError(f"{where}: parameter {names[bad]} contains NaN or inf; fit refuses a model that already "
                             "diverged (load a checkpoint or re-initialize)")

    def _stepper(self, options, data, state, parallel, stop) -> MlpStepper:
        return MlpStepper(self, options, data, state, parallel, stop)

    def _traits(self, world: int):
        return MlpStepper.traits(self, world)

    # -- objectives ----------------------------------------------------------------------------------------
    def elbo(self, x, n_samples: int = 1, *, eps: Optional[torch.Tensor] = None, y=None,
             estimator: str = "analytic", generator: Optional[torch.Generator] = None,
             temperature: Optional[float] = None, hard: bool = False) -> ELBO:
        """Per-image ELBO, expected log-likelihood and KL on images x (``fastvae.elbo(model, x, ...)``).

        ``elbo_i = 1/L sum_l log p(x_i | z_il) - KL(q(z | x_i) || N(0, I))``, ``z_il = mu_i + sigma_i eps_il``
        (reparameterization, Kingma & Welling 2014). Differentiable with respect to the model's parameters
        through fastvae's hand-written C++ backward, so it can be used in a plain PyTorch training loop.

        Args:
            x: images [B, D] (or [B, H, W]), a tensor or numpy array on the model's device: floats of the model's
                dtype that the likelihood takes (0/1 for bernoulli, in [0, 1] for continuous_bernoulli, finite for
                gaussian), or uint8 intensities p, turned into p > 127 for a binary likelihood and p / 255 for the
                others (:func:`fastvae.pixels.model_input`; no other conversion happens).
            n_samples: L >= 1 Monte Carlo samples per image (ignored if ``eps`` is given).
            eps: optional standard normal noise [L, B, Z] of the model's dtype, to inject the draws.
            y: int64 class labels [B] for a conditional VAE.
            estimator: ``"analytic"`` (analytic Gaussian KL), ``"mc"`` (Monte Carlo log q(z|x) - log p(z)) or
                ``"stl"`` (sticking the landing, Roeder et al. 2017: same value as ``"mc"``, gradient without the
                score-function term).
            generator: torch.Generator for eps when it is not given.
            temperature: categorical latents only: the Gumbel-softmax temperature tau (finite float > 0, default 1).
            hard: categorical latents only: straight-through samples (the decoder reads one_hot(argmax y), the
                gradient is the relaxed sample's).

        Categorical latents (``latent="categorical"``, Jang et al. 2017): ``eps`` is then uniform noise
        [L, B, N*K] strictly inside (0, 1) (drawn with ``torch.rand`` and clamped to the dtype's smallest normal
        number when not given), ``y_nl = softmax((logits_n - log(-log u_nl)) / tau)`` per variable n (the kernel
        of :func:`fastvae.gumbel_softmax`), ``rec = 1/L sum_l log p(x | y_l)`` and ``kl = sum_n KL(q_n || uniform)
        = sum_nk q_nk (log q_nk + log K)``; only ``estimator="analytic"`` applies. With ``hard`` the samples are
        one-hot Gumbel-max draws of q, so the value is the discrete model's ELBO estimate; without, a relaxed one.

        Returns:
            :class:`fastvae.ELBO` (elbo, rec, kl), each float [B] in nats.

        Raises:
            TypeError: x or eps not a tensor / array or not of the model's dtype, float labels, n_samples not an
                integer, estimator not a string, hard not a bool, temperature not a number.
            ValueError: wrong shapes or devices, n_samples < 1 or too large (over ``_ops.MAX_ELEMENTS``), labels
                missing or out of range, unknown estimator; temperature <= 0, NaN or inf, estimator other than
                "analytic" (categorical); temperature or hard given to a Gaussian latent.
            RuntimeError: non-binary (bernoulli) or outside-[0, 1] (continuous_bernoulli) or NaN x, NaN/inf eps or
                parameters, categorical noise outside (0, 1) (checked in C++).
            ValueError: a result that is not finite from finite inputs (weights, data or the temperature overflowing
                the model's dtype), the message naming the cause (docs/engine.md, "Non-finite results").
        """
        where = "elbo"
        _checks.choice(where, "estimator", estimator, _ops.ESTIMATORS)
        hard = _checks.flag(where, "hard", hard)
        if self.latent == "categorical":
            return self._categorical_elbo(x, n_samples, eps, y, estimator, generator,
                                          1.0 if temperature is None else temperature, hard)
        if temperature is not None or hard:
            raise ValueError(f"{where}: temperature and hard apply to categorical latents only (this model's latent "
                             f"is '{self.latent}')")
        x, y = self._prepare(x, y, where)
        eps = self._sample_noise(where, x, eps, "n_samples", n_samples, generator)
        with reading(self):
            out = _ops.ops.vae_elbo(x, y, eps, self.flat_parameters(), *self.spec().as_args(), estimator)
        return ELBO(*out)

    @torch.no_grad()
    def log_likelihood(self, x, k: int = 1000, *, y=None, batch_size: int = 100,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Importance-weighted estimate of log p(x) per image (nats), the IWAE bound of Burda et al. 2016:
        ``log 1/k sum_j p(x, z_j) / q(z_j | x)`` with ``z_j ~ q(z | x)``, computed in C++ with log-sum-exp. It is a
        lower bound on log p(x) that tightens as k grows (k = 1 gives the Monte Carlo ELBO).

        Args:
            x: images [B, D] as for :meth:`elbo` (floats the likelihood takes, or uint8 intensities); k: importance
                samples (>= 1); y: integer labels [B] for a conditional VAE; batch_size: images per C++ call
                (memory is about k * batch_size * D floats).

        Returns: tensor [B] of the model's dtype (nats).

        Raises: TypeError (non-integer k or batch_size, wrong dtypes), ValueError (k or batch_size < 1,
            k * batch_size too large, wrong shapes or devices, a categorical latent, a result that is not finite from
            finite inputs, naming the cause), RuntimeError (x the likelihood cannot take, NaN parameters).
        """
        where = "log_likelihood"
        self._gaussian_only(where)
        k = _checks.integer(where, "k", k, min=1)
        batch_size = _checks.integer(where, "batch_size", batch_size, min=1)
        x, y = self._prepare(x, y, where)
        widest = max(self.data_dim, *self.encoder_hidden, *self.decoder_hidden)
        _ops.check_size(where, "k * batch_size * widest layer", k * min(batch_size, max(x.shape[0], 1)) * widest)
        out = []
        for s in range(0, x.shape[0], batch_size):
            xb = x[s:s + batch_size]
            yb = None if y is None else y[s:s + batch_size]
            eps = self._noise(where, (k, xb.shape[0], self.noise_dim), x, generator)
            with reading(self):
                out.append(_ops.ops.vae_iwae(xb, yb, eps, self.flat_parameters(), *self.spec().as_args()))
        return torch.cat(out) if out else x.new_empty(0)

    def iwae(self, x, k: int = 5, *, eps: Optional[torch.Tensor] = None, y=None, estimator: str = "reparam",
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Per-image importance-weighted bound (IWAE, Burda et al. 2016) as a differentiable training objective:

        ``iwae_i = log 1/k sum_l w_il``, ``log w_il = log p(x_i | z_il) + log p(z_il) - log q(z_il | x_i)``,
        ``z_il = mu_i + sigma_i eps_il``. k = 1 is the Monte Carlo ELBO; the bound tightens as k grows.
        Differentiable with respect to the model's parameters through fastvae's hand-written C++ backward. The
        decoder gradient is ``sum_l wn_l d log w_l / dtheta`` (``wn = softmax_l log w``); the encoder gradient
        depends on ``estimator``:

        - ``"reparam"``: the plain reparameterization gradient of the bound (Burda et al. 2016);
        - ``"stl"``: q's parameters held fixed inside log q (Roeder et al. 2017): the score term is dropped;
        - ``"dreg"``: doubly reparameterized (Tucker et al. 2018, arXiv 1810.04152, IWAE section):
          ``sum_l wn_l^2 d log w_l / dz_l dz_l / dphi`` with q's parameters fixed inside log q.

        ``"stl"`` and ``"dreg"`` return the same value as ``"reparam"``; only their gradients differ (they are
        not the derivative of the value, but lower-variance estimates of the bound's gradient; DReG is unbiased
        for the bound's gradient, STL is biased for k > 1, Tucker et al. 2018).

        Args:
            x: images [B, D] as for :meth:`elbo`. k: importance samples per image, >= 1 (ignored if ``eps`` is
                given). eps: optional standard normal noise [k, B, Z] of the model's dtype, to inject the draws.
            y: int64 class labels [B] for a conditional VAE.
            estimator: ``"reparam"``, ``"stl"`` or ``"dreg"`` (``fastvae.arch.IWAE_ESTIMATORS``).
            generator: torch.Generator for eps when it is not given.

        Returns:
            float tensor [B] of the model's dtype (nats).

        Raises:
            TypeError: x or eps not a tensor / array or not of the model's dtype, float labels, k not an integer,
                estimator not a string.
            ValueError: wrong shapes or devices, k < 1 or too large (over ``_ops.MAX_ELEMENTS``), labels missing or
                out of range, unknown estimator, a categorical latent.
            RuntimeError: non-binary or NaN x, NaN/inf eps or parameters (checked in C++).
            ValueError: a result that is not finite from finite inputs (weights, data or the temperature overflowing
                the model's dtype), the message naming the cause (docs/engine.md, "Non-finite results").
        """
        return self._iw_bound("iwae", x, "iwae", k, 1, 0.0, eps, y, estimator, generator)

    def miwae(self, x, groups: int = 2, k: int = 5, *, eps: Optional[torch.Tensor] = None, y=None,
              estimator: str = "reparam", generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Per-image MIWAE(M, K) bound (Rainforth et al. 2018, ICML), M = ``groups``, K = ``k``: the mean of
        M independent IWAE(K) bounds, ``1/M sum_m log 1/K sum_k w_mk``, a looser bound than IWAE(M K) whose
        encoder gradient has a better signal-to-noise ratio. eps, when given, is [M K, B, Z] with sample
        ``m * K + k`` in group m (``eps.view(M, K, B, Z)``). Gradients as :meth:`iwae`, each group's normalised
        weights in place of wn (DReG: ``1/M sum_mk wn_mk^2 ...``). Other arguments, returns and errors as
        :meth:`iwae`; also ValueError for groups < 1 or an eps whose sample count ``groups`` does not divide.
        """
        groups = _checks.integer("miwae", "groups", groups, min=1)
        return self._iw_bound("miwae", x, "miwae", group_samples("miwae", groups, k, eps), groups, 0.0, eps, y,
                              estimator, generator)

    def ciwae(self, x, k: int = 5, beta: float = 0.5, *, eps: Optional[torch.Tensor] = None, y=None,
              estimator: str = "reparam", generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Per-image CIWAE(beta) bound (Rainforth et al. 2018, ICML): ``beta ELBO_K + (1 - beta) IWAE(K)`` on the
        same K = ``k`` samples, ELBO_K = ``1/K sum_k log w_k``; beta in [0, 1] (1: the Monte Carlo ELBO, 0: IWAE).
        The gradient weights are ``beta / K + (1 - beta) wn_k``; DReG treats the ELBO part as STL (its DReG form)
        and the IWAE part as :meth:`iwae` does. Arguments, returns and errors as :meth:`iwae`; also TypeError /
        ValueError for a beta that is not a real number in [0, 1].
        """
        beta = _checks.real("ciwae", "beta", beta, min=0.0, max=1.0)
        return self._iw_bound("ciwae", x, "ciwae", k, 1, beta, eps, y, estimator, generator)

    def piwae(self, x, groups: int = 2, k: int = 5, *, eps: Optional[torch.Tensor] = None, y=None,
              estimator: str = "reparam", generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """PIWAE(M, K) (Rainforth et al. 2018, ICML): the value is IWAE(M K) per image [B], the decoder's objective;
        its gradient is IWAE(M K)'s for the decoder's parameters and MIWAE(M, K)'s (:meth:`miwae`, with the
        estimator) for the encoder's, so one backward pass trains both networks on their own targets. Sample layout,
        arguments, returns and errors as :meth:`miwae`.
        """
        groups = _checks.integer("piwae", "groups", groups, min=1)
        return self._iw_bound("piwae", x, "piwae", group_samples("piwae", groups, k, eps), groups, 0.0, eps, y,
                              estimator, generator)

    def _iw_bound(self, where, x, objective, samples, groups, beta, eps, y, estimator, generator):
        """An importance-weighted bound (op vae_iwae_bound) with ``samples`` draws per image when eps is None."""
        self._gaussian_only(where)
        _checks.choice(where, "estimator", estimator, _ops.IWAE_ESTIMATORS)
        x, y = self._prepare(x, y, where)
        eps = self._sample_noise(where, x, eps, "k", samples, generator)
        check_groups(where, eps.shape[0], groups)
        with reading(self):
            return _ops.ops.vae_iwae_bound(x, y, eps, self.flat_parameters(), *self.spec().as_args(), estimator,
                                           objective, groups, beta)

    def _gaussian_only(self, where: str) -> None:
        if self.latent != "gaussian":
            raise ValueError(f"{where}: not implemented for latent='{self.latent}' (the IWAE bound needs the density "
                             "of the relaxed sample); use fastvae.elbo")

    def _sample_noise(self, where: str, x: torch.Tensor, eps, count_name: str, count, generator):
        """The noise of ``count`` samples per image: drawn (standard normal [count, B, Z], or uniform
        [count, B, N*K] for a categorical latent) when ``eps`` is None, else ``eps`` checked for dtype, shape and
        device. Errors name ``count_name`` (``"n_samples"`` or ``"k"``)."""
        categorical = self.latent == "categorical"
        width = self.noise_dim
        if eps is None:
            count = _checks.integer(where, count_name, count, min=1)
            widest = max(self.data_dim, *((width,) if categorical else ()), *self.encoder_hidden,
                         *self.decoder_hidden)
            _ops.check_size(where, f"{count_name} * batch * widest layer", count * x.shape[0] * widest)
            draw = self._uniforms if categorical else self._noise
            return draw(where, (count, x.shape[0], width), x, generator)
        eps = _checks.tensor(where, "eps", eps)
        if eps.dtype != x.dtype:
            raise TypeError(f"{where}: eps must have the dtype of x ({x.dtype}), got {eps.dtype}")
        if eps.dim() != 3 or eps.shape[1:] != (x.shape[0], width) or eps.shape[0] < 1:
            what = "eps (uniform noise of a categorical latent)" if categorical else "eps"
            unit = (" (latent_dim * categories)" if categorical else
                    " (latent_dim + sum(upper_latents))" if self.upper_latents else "")
            raise ValueError(f"{where}: {what} must have shape [{count_name} >= 1, {x.shape[0]}, {width}]{unit}, "
                             f"got {tuple(eps.shape)}")
        _checks.same_device(where, x=x, eps=eps)
        return eps

    def _categorical_elbo(self, x, n_samples, eps, y, estimator, generator, temperature, hard) -> ELBO:
        """:meth:`elbo` for a categorical latent (op vae_categorical_elbo)."""
        where = "elbo"
        temperature = _checks.positive(where, "temperature", temperature)
        if estimator != "analytic":
            raise ValueError(f"{where}: a categorical latent has the analytic KL to the uniform prior only; estimator "
                             f"must be 'analytic', got {estimator!r}")
        x, y = self._prepare(x, y, where)
        eps = self._sample_noise(where, x, eps, "n_samples", n_samples, generator)
        with reading(self):
            out = _ops.ops.vae_categorical_elbo(x, y, eps, self.flat_parameters(), *self.spec().as_args(),
                                                temperature, hard)
        return ELBO(*out)
