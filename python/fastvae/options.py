"""Training options of :func:`fastvae.fit`: one typed, frozen object shared by ``fit``, the CLI's
``reproduce``, the homework presets and checkpoints.

Each field carries its constraint (a ``_checks`` function) in its metadata, and :data:`RULES` holds every rule
between options and between an option and the model it trains: the one place options are validated (the C++
trainer only asserts what this module guarantees). A new option is one field here, its rules, and its use: in the driver
(:data:`DRIVER_OPTIONS`, fastvae.training) or in the stepper that implements it (for the C++ trainer one line in
``kOptionFields``, cpp/training/options.cpp, which reads the options by name and fails loudly on a name missing
on either side); docs/contributing.md walks through it.
"""
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Callable, Optional, Tuple

import torch

from . import _checks as c
from ._extension import _C
from .arch import ESTIMATORS, IWAE_ESTIMATORS, OBJECTIVES
# Options the training driver (fastvae.training) implements for every model kind; the others are the steppers'.
DRIVER_OPTIONS = ("epochs", "shuffle")


def _opt(default, check, doc):
    return field(default=default, metadata={"check": check, "doc": doc})


def _betas(where, name, value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or not hasattr(value, "__getitem__"):
        raise TypeError(f"{where}: {name} must be a pair of numbers, got {c._show(value)}")
    if len(value) != 2:
        raise ValueError(f"{where}: {name} must be a pair of numbers, got {len(value)} of them")
    return tuple(c.real(where, f"{name}[{i}]", b, min=0.0, max=1.0, max_open=True) for i, b in enumerate(value))


@dataclass(frozen=True)
class TrainOptions:
    """Settings of one :func:`fastvae.fit` call (defaults: the homeworks' common choices).

    Fields: epochs (int >= 0), batch_size, n_samples (ints >= 1), Adam's lr (> 0), betas (two numbers in
    [0, 1)), eps (>= 0) and weight_decay (>= 0) (Kingma & Ba 2015, as torch.optim.Adam), threshold (int in
    [0, 255]: pixel > threshold is 1), estimator (one of ``fastvae._C.ESTIMATORS``), kl_weight (beta >= 0 of
    ``rec - beta * kl``), eval_every (validation every that many updates, 0: never), eval_samples (>= 1
    Monte Carlo samples per image in evaluations), callback_every (updates between ``"step"`` callbacks,
    0: never), pixels (what the model sees of a uint8 pixel p, one of ``fastvae._C.PIXELS``: ``"threshold"``
    p > threshold as 0/1, today's static binarization; ``"dynamic"`` a fresh x ~ Bernoulli(p / 255) each time
    an image is used, Burda et al. 2016; ``"intensity"`` p / 255, for the continuous likelihoods only; the
    test and validation evaluations use the same rule, with fresh draws from the loop's generator each
    evaluation for ``"dynamic"``), objective (``"elbo"``; ``"iwae"``: the IWAE bound of Burda et al. 2016 with
    ``k`` >= 1 samples per image; or one of Rainforth et al. 2018's (ICML): ``"miwae"``, MIWAE(M, k), the
    mean of M = ``groups`` IWAE bounds of k samples each; ``"ciwae"``, CIWAE(beta) = beta ELBO_k + (1 - beta)
    IWAE(k) with beta = ``ciwae_beta`` in [0, 1]; ``"piwae"``, the encoder trained on MIWAE(M, k) and the decoder
    on IWAE(M k); the encoder gradient by ``iwae_estimator``, one of ``fastvae._C.IWAE_ESTIMATORS``:
    ``"reparam"``, ``"stl"``, ``"dreg"``; ``n_samples`` and ``estimator`` then serve the ELBO evaluations
    only, and ``kl_weight`` must be 1), groups (int >= 1, M of ``"miwae"`` and ``"piwae"``: each image gets
    M k samples), ciwae_beta (CIWAE's weight of the ELBO, default 0.5), kl_warmup (int >= 0: the KL weight of the ELBO objective is
    ``kl_weight * min(1, t / kl_warmup)`` at the update that follows t completed optimizer steps, a linear
    warm-up from 0 (Bowman et al. 2016, Sonderby et al. 2016); 0: off; ELBO objective only), free_bits
    (float lambda >= 0, nats per latent dimension; 0: off; Kingma et al. 2016, "Improved variational
    inference with inverse autoregressive flow", arXiv 1606.04934, with one group per latent dimension: the
    KL term of the ELBO objective becomes ``sum_j max(lambda, KL_j)``, KL_j the minibatch mean KL of latent
    dimension j, so dimensions whose KL is at most lambda get no KL gradient; it is then weighted by
    kl_weight and the warm-up as the plain KL; needs objective ``"elbo"`` with estimator ``"analytic"``;
    the recorded ``update_kl`` and train / test / validation ELBOs stay the true KL and ELBO).
    Categorical latents (``VAE(latent="categorical")``, Jang et al. 2017; ignored by Gaussian latents, which
    require them at their defaults): temperature (tau_0 > 0 of the Gumbel-softmax), temperature_min (> 0,
    <= temperature), anneal_rate (r >= 0) and anneal_every (int >= 1): the update that follows t completed
    optimizer steps uses ``tau = max(temperature_min, temperature * exp(-anneal_rate * t'))`` with t' = t rounded
    down to a multiple of anneal_every (so resumed fits continue the schedule); hard (bool: straight-through
    one-hot samples). shuffle (bool, default True: a fresh ``torch.randperm`` order of the training images every
    epoch, drawn from the run's generator; False: the images in their given order every epoch, as
    ``DataLoader(shuffle=False)``, for debugging and curricula). threads (int >= 1, or None, the default: the
    model's updates time themselves at one thread and at ``torch.get_num_threads()`` and keep the faster,
    measured again every 2 s, so that a machine busy with other work does not stall every parallel region;
    a count set with ``torch.set_num_threads`` or ``OMP_NUM_THREADS`` is kept as it is. The choice changes the
    time only: the results are those of torch's count whichever count runs the updates (threads=N gives N's,
    which may differ from another count's in the last bits); ``History.epoch_threads`` records it. VAE only).
    Build with keywords; :meth:`validate` checks and normalizes (TypeError for the wrong kind,
    ValueError for the wrong range, messages ``"<where>: <name> must be ..."``).
    """

    epochs: int = _opt(1, lambda w, n, v: c.integer(w, n, v, min=0), "passes over the training images")
    batch_size: int = _opt(64, lambda w, n, v: c.integer(w, n, v, min=1), "images per update")
    n_samples: int = _opt(1, lambda w, n, v: c.integer(w, n, v, min=1), "reparameterized samples per image")
    lr: float = _opt(1e-3, lambda w, n, v: c.positive(w, n, v), "Adam learning rate")
    betas: Tuple[float, float] = _opt((0.9, 0.999), _betas, "Adam moment decay rates")
    eps: float = _opt(1e-8, lambda w, n, v: c.real(w, n, v, min=0.0), "Adam denominator term")
    weight_decay: float = _opt(0.0, lambda w, n, v: c.real(w, n, v, min=0.0), "L2 penalty (torch.optim.Adam)")
    threshold: int = _opt(127, lambda w, n, v: c.integer(w, n, v, min=0, max=255), "binarization threshold")
    estimator: str = _opt("analytic", lambda w, n, v: c.choice(w, n, v, ESTIMATORS), "KL gradient estimator")
    kl_weight: float = _opt(1.0, lambda w, n, v: c.real(w, n, v, min=0.0), "beta of rec - beta * kl")
    eval_every: int = _opt(0, lambda w, n, v: c.integer(w, n, v, min=0), "updates between validations")
    eval_samples: int = _opt(1, lambda w, n, v: c.integer(w, n, v, min=1), "samples per image in evaluations")
    callback_every: int = _opt(20, lambda w, n, v: c.integer(w, n, v, min=0), "updates between step callbacks")
    pixels: str = _opt("threshold", lambda w, n, v: c.choice(w, n, v, tuple(_C.PIXELS)), "pixels in the loop")
    objective: str = _opt("elbo", lambda w, n, v: c.choice(w, n, v, OBJECTIVES), "training objective")
    k: int = _opt(5, lambda w, n, v: c.integer(w, n, v, min=1), "importance samples of the IWAE bound")
    groups: int = _opt(1, lambda w, n, v: c.integer(w, n, v, min=1), "M of MIWAE(M, k) and PIWAE(M, k)")
    ciwae_beta: float = _opt(0.5, lambda w, n, v: c.real(w, n, v, min=0.0, max=1.0),
                             "beta of CIWAE = beta ELBO + (1 - beta) IWAE")
    iwae_estimator: str = _opt("reparam", lambda w, n, v: c.choice(w, n, v, IWAE_ESTIMATORS),
                               "encoder gradient of the IWAE bound")
    kl_warmup: int = _opt(0, lambda w, n, v: c.integer(w, n, v, min=0),
                          "updates over which the KL weight rises linearly from 0 to kl_weight (0: off)")
    free_bits: float = _opt(0.0, lambda w, n, v: c.real(w, n, v, min=0.0),
                            "free bits lambda in nats per latent dimension (0: off)")
    temperature: float = _opt(1.0, lambda w, n, v: c.positive(w, n, v), "Gumbel-softmax temperature tau_0")
    temperature_min: float = _opt(0.5, lambda w, n, v: c.positive(w, n, v), "floor of the annealed temperature")
    anneal_rate: float = _opt(0.0, lambda w, n, v: c.real(w, n, v, min=0.0), "r of tau_0 exp(-r t) (0: constant)")
    anneal_every: int = _opt(1000, lambda w, n, v: c.integer(w, n, v, min=1), "updates between temperature changes")
    hard: bool = _opt(False, lambda w, n, v: c.flag(w, n, v), "straight-through one-hot categorical samples")
    shuffle: bool = _opt(True, lambda w, n, v: c.flag(w, n, v), "a new order of the training images every epoch")
    threads: Optional[int] = _opt(None, lambda w, n, v: None if v is None else c.integer(w, n, v, min=1),
                                  "threads of the updates (None: the faster of 1 and torch's count, re-timed)")

    def validate(self, where: str = "TrainOptions") -> "TrainOptions":
        """A checked copy with plain Python values (ints, floats, a tuple of two floats); raises as above.
        Each field is checked by the constraint in its metadata, then the rules between fields (:data:`RULES`
        whose condition reads options only)."""
        out = replace(self, **{f.name: f.metadata["check"](where, f.name, getattr(self, f.name))
                               for f in fields(self)})
        check_rules(out, None, where)
        return out

    def to_dict(self) -> dict:
        """Field -> value with betas as a list: plain data for checkpoints and JSON."""
        d = asdict(self)
        d["betas"] = list(d["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "TrainOptions.from_dict") -> "TrainOptions":
        """The validated options of ``d``; missing fields take their defaults, an unknown key is a
        ValueError (a typo must not be ignored)."""
        if not isinstance(d, dict):
            raise TypeError(f"{where}: expected a dict of training options, got {c._show(d)}")
        unknown = sorted(set(d) - set(names()))
        if unknown:
            raise ValueError(f"{where}: unknown training options {unknown}; the options are {list(names())}")
        return cls(**d).validate(where)

    def engine_dict(self) -> dict:
        """What the C++ trainer (``fastvae._C.MlpTrainer``) reads by name: every field but :data:`DRIVER_OPTIONS`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in DRIVER_OPTIONS}


def names() -> Tuple[str, ...]:
    return tuple(f.name for f in fields(TrainOptions))


@dataclass(frozen=True)
class Traits:
    """What a model kind's training stepper offers, as the option rules need it: the latent family
    (``"gaussian"`` or ``"categorical"``), whether the likelihood takes binary data only, the options the
    stepper implements (any other option, :data:`DRIVER_OPTIONS` aside, must keep its default), and the number of
    data-parallel processes, and the dtype the stepper computes in."""

    latent: str
    binary_likelihood: bool
    supported: frozenset
    kind: str = "model"
    world: int = 1
    dtype: torch.dtype = torch.float32  # the arithmetic's: every real option must be finite, and > 0 if given > 0
    hierarchical: bool = False  # stochastic layers above z1: the ELBO only as a whole, by Monte Carlo


@dataclass(frozen=True)
class Rule:
    """Option ``option`` set away from its default (at any value if ``always``) needs ``needs(options, traits)``;
    ``why`` says what it needs.
    ``traits`` is None when options are checked on their own (:meth:`TrainOptions.validate`): rules that read
    traits are then skipped."""

    option: str
    needs: Callable
    why: str
    reads_traits: bool = False
    always: bool = False  # checked at every value, the default included (a constraint between two options)


def _categorical(t):
    return t.latent == "categorical"


# A VAE with stochastic layers above z1 trains the ELBO as the mean of its log weights, as a whole.
_UPPER_ELBO = ("does not apply to a VAE with upper stochastic layers (its ELBO is the mean of the log weights, "
               "trained as a whole)")
_CATEGORICAL_ONLY = "applies to categorical latents only (the Gumbel-softmax schedule of Jang et al. 2017)"
# Every rule between options, and between options and the model, in one table (scikit-learn's
# _parameter_constraints play this part for estimators). The first rule broken gives the error.
RULES = (
    Rule("kl_weight", lambda o, t: o.objective == "elbo",
         "kl_weight must be 1 with an importance-weighted objective (the bound has no separate KL term)"),
    Rule("groups", lambda o, t: o.objective in ("miwae", "piwae"), "groups applies to objectives 'miwae' and "
         "'piwae' only"),
    Rule("ciwae_beta", lambda o, t: o.objective == "ciwae", "ciwae_beta applies to objective='ciwae' only"),
    Rule("kl_warmup", lambda o, t: o.objective == "elbo", "kl_warmup applies to objective='elbo' only"),
    Rule("free_bits", lambda o, t: o.objective == "elbo" and o.estimator == "analytic",
         "free_bits needs objective='elbo' with estimator='analytic'"),
    *(Rule(n, lambda o, t: not t.hierarchical, f"{n} {_UPPER_ELBO}", True)
      for n in ("kl_weight", "kl_warmup", "free_bits")),
    Rule("estimator", lambda o, t: not t.hierarchical or o.estimator != "analytic",
         "a VAE with upper stochastic layers has no analytic KL; use estimator='mc' or 'stl'", True, always=True),
    Rule("temperature_min", lambda o, t: o.temperature_min <= o.temperature,
         "temperature_min must be <= temperature (the schedule starts at temperature)", always=True),
    Rule("objective", lambda o, t: not _categorical(t), "a categorical latent trains objective='elbo' only (the "
         "IWAE bound needs the density of the relaxed sample)", True),
    Rule("estimator", lambda o, t: not _categorical(t), "a categorical latent has the analytic KL to the uniform "
         "prior only; estimator must be 'analytic'", True),
    Rule("free_bits", lambda o, t: not _categorical(t), "free_bits applies to Gaussian latents only (one group per "
         "latent dimension)", True),
    Rule("free_bits", lambda o, t: t.world == 1, "free_bits needs each minibatch's KL per dimension before the "
         "backward pass, which data-parallel training does not gather; use free_bits=0 or one process", True),
    *(Rule(n, lambda o, t: _categorical(t), f"{n} {_CATEGORICAL_ONLY}", True)
      for n in ("temperature", "temperature_min", "anneal_rate", "anneal_every", "hard")),
    Rule("pixels", lambda o, t: o.pixels != "intensity" or not t.binary_likelihood,
         "pixels='intensity' feeds intensities in [0, 1], which a binary likelihood such as bernoulli cannot "
         "take; use pixels='threshold' or 'dynamic', or a VAE with a continuous likelihood", True),
)


def check_rules(opts: "TrainOptions", traits: Optional[Traits], where: str) -> None:
    """ValueError for the first broken :data:`RULES` entry or, given ``traits``, the first option set away from
    its default that the stepper does not implement."""
    default = TrainOptions()
    for rule in RULES:
        if rule.reads_traits and traits is None:
            continue
        value = getattr(opts, rule.option)
        if (rule.always or value != getattr(default, rule.option)) and not rule.needs(opts, traits):
            raise ValueError(f"{where}: {rule.why}, got {rule.option}={value!r}")
    if traits is not None:
        _check_in_dtype(opts, traits.dtype, where)
        unsupported = [n for n in names() if n not in traits.supported and n not in DRIVER_OPTIONS
                       and getattr(opts, n) != getattr(default, n)]
        if unsupported:
            raise ValueError(f"{where}: {', '.join(unsupported)} do not apply to {traits.kind}")


def _check_in_dtype(opts: "TrainOptions", dtype: torch.dtype, where: str) -> None:
    """A real option that is finite in Python can be inf (1e308) or 0 (1e-50) in the stepper's dtype: refused."""
    info = torch.finfo(dtype)
    for f in fields(opts):
        values = getattr(opts, f.name)
        for i, v in enumerate(values if isinstance(values, tuple) else (values,)):
            if isinstance(v, float) and (abs(v) > info.max or 0 < abs(v) < info.tiny):
                name = f"{f.name}[{i}]" if isinstance(values, tuple) else f.name
                raise ValueError(f"{where}: {name}={v!r} is {'inf' if abs(v) > info.max else '0'} in the model's "
                                 f"arithmetic ({dtype}: finite magnitudes from {info.tiny:.3g} to {info.max:.3g})")


def resolve(options, overrides: dict, where: str) -> "TrainOptions":
    """``options`` (a TrainOptions or None) with keyword ``overrides`` of its fields applied, validated."""
    if options is None:
        options = TrainOptions()
    elif not isinstance(options, TrainOptions):
        hint = " (labels are keyword-only: train_labels=...)" if hasattr(options, "__len__") else ""
        raise TypeError(f"{where}: options must be a fastvae.TrainOptions or None, got {c._show(options)}{hint}")
    unknown = sorted(set(overrides) - set(names()))
    if unknown:
        raise TypeError(f"{where}: unexpected keyword argument {unknown[0]!r}; the training options are "
                        f"{list(names())}")
    return replace(options, **overrides).validate(where)


__all__ = ["TrainOptions", "Traits", "RULES", "DRIVER_OPTIONS", "check_rules", "resolve", "names"]
