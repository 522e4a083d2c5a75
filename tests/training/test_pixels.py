"""Pixels in the loop (issue 9 item 2): fit's static threshold, dynamic binarization (Burda et al. 2016) and
raw intensities against the plain-PyTorch reference loop extended to each mode (the same generator calls, so
the same draws), a statistical test of the C++ loop's dynamic draws, and the likelihood/pixels errors."""
import pytest
import torch

import fastvae
from fastvae import _C
from conftest import stop_at
from fastvae.datasets import load_mnist
from reference.training import assert_trained_alike, reference_fit
from reference.vae import HOMEWORKS, MlpReference

CB = "continuous_bernoulli"


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    x, _ = load_mnist("train", root=mnist_dir)
    return x[:3000].reshape(3000, -1)


def test_pixel_names_come_from_the_loop():
    assert tuple(_C.PIXELS) == ("threshold", "dynamic", "intensity")
    assert fastvae.TrainOptions().pixels == "threshold"  # today's behaviour stays the default


@pytest.mark.parametrize("likelihood,pixels", [("bernoulli", "dynamic"), (CB, "dynamic"), (CB, "intensity"),
                                               (CB, "threshold")])
def test_fit_matches_plain_pytorch_loop(likelihood, pixels, mnist, two_threads):
    # batches 64, 64, 64, 8: ten updates cross two epochs and a short batch. ESE 546's tanh model: with ReLU,
    # the loop's float32 sums (sparse input layer) can flip a unit sitting at 0 for an image, which moves
    # that unit's weights by ~1e-5 whatever the pixels (seen for some initializations of stats305c).
    x = fastvae.datasets.subsample(mnist[:200].reshape(-1, 28, 28)).reshape(200, -1)
    model = fastvae.VAE.from_preset("ese546", likelihood=likelihood)
    ref = MlpReference(model, HOMEWORKS["ese546"]._replace(likelihood=likelihood))
    settings = dict(batch_size=64, n_samples=2, lr=1e-3, betas=(0.9, 0.99), eps=1e-3, threshold=127, seed=5)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, epochs=3, progress=False, callback=stop_at(10), callback_every=1, pixels=pixels, **settings)
    assert model.optimizer_state_.step == 10
    reference_fit(ref, x, updates=10, pixels=pixels, **settings)
    assert_trained_alike(model, ref, max_diff=3 * settings["lr"])


def test_dynamic_binarization_is_reproducible_and_fresh(mnist):
    x = fastvae.datasets.subsample(mnist[:600].reshape(-1, 28, 28)).reshape(600, -1)
    base = {k: v.clone() for k, v in fastvae.VAE.from_preset("ese546").state_dict().items()}
    runs = []
    for seed in (3, 3, 4):
        m = fastvae.VAE.from_preset("ese546")
        m.load_state_dict(base)
        m.fit(x, epochs=1, batch_size=100, pixels="dynamic", seed=seed, progress=False)
        runs.append(m)
    for p, q in zip(runs[0].parameters(), runs[1].parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert not all(torch.equal(p, q) for p, q in zip(runs[0].parameters(), runs[2].parameters()))


def count_model():
    """A VAE whose logits are 1 for every z (zero output weights, bias 1) and whose posterior does not
    depend on x (zero head weights): its ELBO is sum_d x_d - const, so a test ELBO counts the ones fed in."""
    m = fastvae.VAE.from_preset("stats305c")
    with torch.no_grad():
        m.decoder[-1].weight.zero_()
        m.decoder[-1].bias.fill_(1.0)
        m.encoder_head.weight.zero_()
    return m


def test_dynamic_draws_of_the_cpp_loop_have_the_right_mean(mnist):
    # lr 1e-30 leaves the float32 weights unchanged, so the epoch's test ELBO is mean_i sum_d x_id - const
    # with x the C++ loop's dynamic draws on the test images: its expectation is mean_i sum_d p_id / 255, its
    # variance sum_i,d p(1 - p) / M^2 (independent Bernoulli draws).
    test = torch.as_tensor(mnist[1000:3000])
    p = test.double() / 255
    m = count_model()
    const = -fastvae.elbo(m, torch.zeros(1, 784), eps=torch.zeros(1, 1, 2)).elbo.item()
    hist = m.fit(mnist[:64], epochs=1, batch_size=64, lr=1e-30, pixels="dynamic", test_images=test, seed=0,
                 progress=False)
    observed = hist.test_elbo[0] + const
    expected = p.sum(1).mean().item()
    sd = (p * (1 - p)).sum().sqrt().item() / test.shape[0]
    tol = 5 * sd + 2e-4 * expected  # + float32 sums of 784 terms per image
    assert abs(observed - expected) < tol, (observed, expected, sd)
    static = (test > 127).double().sum(1).mean().item()
    assert abs(static - expected) > 2 * tol  # the test can tell dynamic from static binarization
    again = count_model().fit(mnist[:64], epochs=1, batch_size=64, lr=1e-30, pixels="threshold", test_images=test,
                              seed=0, progress=False)
    assert abs(again.test_elbo[0] + const - static) < 1e-3 * static


def test_cpp_trainer_asserts_the_pairing_too():
    # fastvae.options refuses it; the C++ trainer asserts it for callers that bypass fit
    model = fastvae.VAE(data_dim=6, latent_dim=2, encoder_hidden=(5,), decoder_hidden=(4,))
    ps = model.flat_parameters()
    state = fastvae.AdamState.zeros(ps)
    options = fastvae.TrainOptions(batch_size=4, pixels="intensity").engine_dict()
    with torch.no_grad(), pytest.raises(RuntimeError, match="INTERNAL ASSERT"):
        _C.MlpTrainer(ps, state.exp_avg, state.exp_avg_sq, [True] * len(ps), model.spec().as_dict(), options)
