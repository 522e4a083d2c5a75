"""Burda, Grosse & Salakhutdinov 2016, Table 1, MNIST, two stochastic layers (the preset ``iwae_paper_2layer``):
the same schedule, data and k = 5000 evaluation as the one-layer model (:mod:`fastvae.reproduce.iwae_paper`)."""
from .iwae_paper import run  # noqa: F401  (the reproduction reads the preset by the context's name)
