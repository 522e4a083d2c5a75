"""The references every test compares fastvae with, written from the homeworks' and papers' definitions in plain
PyTorch (torch.nn, torch.distributions, torch.optim) and independent of fastvae's code paths: they read a model's
architecture and parameters, nothing else.

- :mod:`reference.vae`: one VAE (:class:`reference.vae.ReferenceVAE`): the homeworks' MLP encoder and decoder, or
  a user's networks; Gaussian or categorical latents; Bernoulli, continuous Bernoulli and Gaussian likelihoods
  (fixed, learned or predicted scale); the ELBO with each KL estimator, the IWAE bound with each encoder gradient.
- :mod:`reference.heads`: the objective heads (fastvae.heads) on given decoder outputs and posterior parameters.
- :mod:`reference.training`: one training loop (:func:`reference.training.reference_fit`) with torch.optim.Adam
  and the documented data order, pixel rule and noise draws of fastvae.training and fastvae.pixels, so that it
  reproduces ``fit`` on the same seed up to floating point.
- :mod:`reference.samplers`: the Gumbel-softmax sample from given uniforms (fastvae.gumbel_softmax).
- :mod:`reference.idx`: an IDX file decoder (the MNIST file format) for the readers' tests.
"""
