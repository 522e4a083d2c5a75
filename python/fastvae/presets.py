"""Architectures and training settings of the four homework VAEs and of the IWAE paper's MNIST model
(see docs/reproductions.md).

Sources: ESE 546 HW5 Problem 1; STATS 305C HW6 Problem 3; Deep Learning HW7 (conditional VAE);
DD2434 Assignment 1B; Burda et al. 2016, Table 1; Jang et al. 2017. Settings a homework leaves open are marked "chosen" with the reason.
"""
from dataclasses import dataclass, field
from typing import Dict, Tuple

from .options import TrainOptions


@dataclass(frozen=True)
class Preset:
    """Model keyword arguments for :class:`fastvae.VAE`, training settings for ``VAE.fit``, data
    settings for the loaders, and how a reproduction initializes the model before its first epoch (``init``:
    ``weights="glorot"`` for :meth:`fastvae.VAE.glorot_init_`, ``output_bias=True`` for
    :meth:`fastvae.VAE.init_output_bias_` from the training images; empty: ``torch.nn.Linear``'s default)."""

    model: Dict = field(default_factory=dict)
    train: Dict = field(default_factory=dict)
    data: Dict = field(default_factory=dict)
    reported: Dict = field(default_factory=dict)
    init: Dict = field(default_factory=dict)

    def options(self, **overrides):
        """The homework's :class:`fastvae.TrainOptions`: ``train`` and the data's binarization threshold,
        with keyword ``overrides``; validated (TypeError / ValueError as ``TrainOptions.validate``)."""
        base = dict(self.train, **({"threshold": self.data["threshold"]} if "threshold" in self.data else {}))
        return TrainOptions.from_dict(dict(base, **overrides), "Preset.options")


PRESETS: Dict[str, Preset] = {
    # 784 -> 512 -> 256 -> (mu, log sigma) in R^2; decoder 2 -> 256 -> 512 -> 784 logits.
    "stats305c": Preset(
        model=dict(data_dim=784, latent_dim=2, encoder_hidden=(512, 256), decoder_hidden=(256, 512),
                   activation="relu", posterior="logstd"),
        train=dict(epochs=20, batch_size=64, n_samples=1, lr=1e-3),
        # the homework binarizes intensities in [0, 1] at 0.5: pixel > 127 on the byte scale
        data=dict(size=28, threshold=127),
        reported=dict(train_elbo=-134.52, test_elbo=-137.67, epoch1_train_elbo=-193.33,
                      epoch1_test_elbo=-168.84),
    ),
    # 196 -> 128 tanh -> 16 (8 means, 8 log-variances); decoder 8 -> 128 tanh -> 196; 2 MC samples.
    "ese546": Preset(
        model=dict(data_dim=196, latent_dim=8, encoder_hidden=(128,), decoder_hidden=(128,),
                   activation="tanh", posterior="logvar"),
        # chosen: Adam lr 1e-3, batch 100, 50 epochs of the 10,000 images = 5,000 updates
        train=dict(epochs=50, batch_size=100, n_samples=2, lr=1e-3),
        data=dict(size=14, threshold=128, n_per_class=1000, n_validation=100),
    ),
    # [x, onehot(y)] 794 -> 256 relu -> sigmoid heads (mean, std) in R^40; decoder [z, y] 50 -> 256 -> 784.
    "cvae_hw7": Preset(
        model=dict(data_dim=784, latent_dim=40, cond_dim=10, encoder_hidden=(256,), decoder_hidden=(256,),
                   activation="relu", posterior="std", mean_activation="sigmoid",
                   scale_activation="sigmoid"),
        # chosen: kl_weight (beta) 2, the smallest of {1, 2, 3, 4, 6} whose prior samples keep their label
        # (>= 90% classified as the conditioned digit after 11 epochs) while a digit's samples still differ;
        # the homework does not give the weight of its KL term (sweep in docs/reproductions.md)
        train=dict(epochs=11, batch_size=64, n_samples=1, lr=1e-3, kl_weight=2.0),
        data=dict(size=28, threshold=127),
    ),
    # 784 -> 400 -> 400 (leaky 0.2) -> mean, log-variance in R^200; decoder 200 -> 400 -> 400 -> 784.
    "dd2434": Preset(
        model=dict(data_dim=784, latent_dim=200, encoder_hidden=(400, 400), decoder_hidden=(400, 400),
                   activation="leaky_relu", negative_slope=0.2, posterior="logvar"),
        train=dict(epochs=15, batch_size=100, n_samples=1, lr=1e-3),
        data=dict(size=28, threshold=127),
        reported=dict(epoch_loss=(170.47, 119.11, 104.68, 98.14, 94.27, 91.72, 90.03, 88.60, 87.54,
                                  86.69, 85.86, 85.22, 84.57, 84.08, 83.52), loss_divisor=59900),
    ),
    # Burda, Grosse & Salakhutdinov 2016 (arXiv 1509.00519), section 5 and Table 1, one stochastic layer:
    # 784 -> 200 -> 200 (tanh) -> (mu, log sigma) in R^50; decoder 50 -> 200 -> 200 (tanh) -> 784 logits.
    # Dynamically binarized MNIST, Adam (0.9, 0.999, eps 1e-4), batch 20, 3^i epochs at lr 1e-3 * 10^(-i/7)
    # for i = 0..7 (3,280 epochs; the stages are in fastvae.reproduce.iwae_paper). k = 1: the VAE row, which
    # the IWAE with k = 1 equals; --k 5 --objective iwae gives the IWAE k = 5 row. Initialized as the authors'
    # code (yburda/iwae) does: Glorot uniform weights, zero biases, output bias = logit of the pixel means.
    "iwae_paper": Preset(
        model=dict(data_dim=784, latent_dim=50, encoder_hidden=(200, 200), decoder_hidden=(200, 200),
                   activation="tanh", posterior="logstd"),
        train=dict(epochs=3280, batch_size=20, n_samples=1, estimator="mc", lr=1e-3, betas=(0.9, 0.999),
                   eps=1e-4, pixels="dynamic", objective="iwae", k=1),
        data=dict(size=28, binarization="dynamic", eval_k=5000),
        # test negative log-likelihoods (nats) of Table 1, by training objective and k
        reported=dict(vae_nll={1: 86.76, 5: 86.47, 50: 86.35}, iwae_nll={1: 86.76, 5: 85.54, 50: 84.78}),
        init=dict(weights="glorot", output_bias=True),
    ),
    # The same paper's second architecture, two stochastic layers (section 5): q(z1 | x) from 784 -> 200 -> 200
    # (tanh) -> (mu, log sigma) in R^100, q(z2 | z1) from 100 -> 100 -> 100 (tanh) -> R^50; p(z1 | z2) from
    # 50 -> 100 -> 100 (tanh) -> R^100, p(x | z1) from 100 -> 200 -> 200 (tanh) -> 784 logits; the same schedule
    # and initialization.
    "iwae_paper_2layer": Preset(
        model=dict(data_dim=784, latent_dim=100, encoder_hidden=(200, 200), decoder_hidden=(200, 200),
                   activation="tanh", posterior="logstd", upper_latents=(50,), upper_hidden=(100, 100)),
        train=dict(epochs=3280, batch_size=20, n_samples=1, estimator="mc", lr=1e-3, betas=(0.9, 0.999),
                   eps=1e-4, pixels="dynamic", objective="iwae", k=1),
        data=dict(size=28, binarization="dynamic", eval_k=5000),
        reported=dict(vae_nll={1: 85.33, 5: 85.01, 50: 84.78}, iwae_nll={1: 85.33, 5: 83.89, 50: 82.90}),
        init=dict(weights="glorot", output_bias=True),
    ),
    # Jang, Gu & Poole 2017 (arXiv 1611.01144), the categorical VAE: 20 variables of 10 classes; encoder
    # 784 -> 512 -> 256 (ReLU) -> 200 logits, decoder 200 -> 256 -> 512 -> 784 Bernoulli logits; Adam 1e-3,
    # batch 100; tau = max(0.5, exp(-3e-5 t)) updated every 1,000 updates (the authors' code); 100 epochs
    # (chosen: the budget); dynamically binarized MNIST.
    "jang_categorical": Preset(
        model=dict(data_dim=784, latent_dim=20, categories=10, latent="categorical", encoder_hidden=(512, 256),
                   decoder_hidden=(256, 512), activation="relu"),
        train=dict(epochs=100, batch_size=100, n_samples=1, lr=1e-3, pixels="dynamic", temperature=1.0,
                   temperature_min=0.5, anneal_rate=3e-5, anneal_every=1000),
        data=dict(size=28, binarization="dynamic"),
        reported=dict(test_neg_elbo=101.5),  # Table 2, Gumbel-softmax, VAE on binarized MNIST (nats)
    ),
}


def names() -> Tuple[str, ...]:
    return tuple(PRESETS)


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
