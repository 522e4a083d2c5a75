"""The PyTorch peers of bench/bench_train_epoch.py --model categorical compute the same loss as fastvae: from the
same weights and the same uniform noise, the homework loop's ELBO (RelaxedOneHotCategorical, Categorical KL) and
the tuned loop's negative loss equal fastvae.elbo, so the benchmark times equal work."""
import pathlib
import sys

import pytest
import torch

import fastvae

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
bench = pytest.importorskip("bench_train_epoch")  # needs threadpoolctl, as the benchmark does


def test_categorical_peers_match_fastvae_elbo():
    cfg = bench.MODELS["categorical"]
    B, N, K = 8, cfg["latent"], cfg["categories"]
    torch.manual_seed(0)
    model = fastvae.VAE(latent_dim=N, encoder_hidden=cfg["enc"], decoder_hidden=cfg["dec"],
                        activation=cfg["act"], latent="categorical", categories=K)
    with torch.no_grad():  # larger weights than at initialisation, so that the decoder's output depends on the noise
        for p in model.parameters():
            p.mul_(3.0)
    encoder, decoder = bench.CategoricalEncoder(cfg), bench.Decoder(cfg)
    bench.copy_weights(model, encoder, decoder)
    tuned = bench.TunedVAE(cfg)
    bench.copy_tuned(model, tuned)
    x = (torch.rand(B, 784) > 0.5).float()

    # each peer draws its uniforms with one torch.rand of shape [B, N, K] after the encoder (which draws none)
    torch.manual_seed(1)
    u = torch.rand(B, N, K)
    with torch.no_grad():
        ours = fastvae.elbo(model, x, eps=u.reshape(1, B, N * K), temperature=cfg["temperature"]).elbo.mean()
        torch.manual_seed(1)
        homework = bench.elbo(x, encoder, decoder)
        torch.manual_seed(1)
        tuned_elbo = -tuned(x)
    torch.testing.assert_close(homework, ours, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(tuned_elbo, ours, rtol=1e-4, atol=1e-3)


def test_two_layer_peers_match_fastvae_elbo():
    """bench/bench_two_layer.py: from fastvae's weights and the same normal noise (z1's draw, then z2's), the
    homework-style ELBO (torch.distributions) and the tuned loop's negative loss equal fastvae's two-layer ELBO."""
    two = pytest.importorskip("bench_two_layer")
    torch.manual_seed(0)
    model = fastvae.VAE.from_preset("iwae_paper_2layer")
    cfg = fastvae.presets.get("iwae_paper_2layer").model
    homework, tuned = two.HomeworkTwoLayer(cfg), two.TunedTwoLayer(cfg)
    for net in (homework, tuned):
        net.copy_from(model)
    B = 6
    x = (torch.rand(B, 784) > 0.5).float()
    torch.manual_seed(2)
    e1, e2 = torch.randn(B, 100), torch.randn(B, 50)  # the order both peers draw in
    with torch.no_grad():
        ours = fastvae.elbo(model, x, eps=torch.cat([e1, e2], 1)[None], estimator="mc").elbo.mean()
        torch.manual_seed(2)
        hw = homework.elbo(x)
        torch.manual_seed(2)
        tuned_elbo = -tuned(x)
    torch.testing.assert_close(hw, ours, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(tuned_elbo, ours, rtol=1e-5, atol=1e-3)
