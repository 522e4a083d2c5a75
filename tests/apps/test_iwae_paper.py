"""The iwae_paper reproduction (Burda et al. 2016, Table 1): the paper's schedule, the objective and k
overrides, and resuming across a learning-rate stage."""
import json

import pytest
import torch

from fastvae import cli, presets
from fastvae.reproduce.iwae_paper import schedule


def test_schedule_is_the_papers():
    s = schedule(3280)
    assert [n for _, n, _ in s] == [3 ** i for i in range(8)]  # 3^i epochs, i = 0..7
    assert sum(n for _, n, _ in s) == presets.get("iwae_paper").train["epochs"] == 3280
    assert [a for a, _, _ in s] == [sum(3 ** j for j in range(i)) for i in range(8)]
    for i, (_, _, lr) in enumerate(s):
        assert lr == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-12)
    assert schedule(5) == [(0, 1, 1e-3), (1, 3, pytest.approx(1e-3 * 10 ** (-1 / 7))),
                           (4, 1, pytest.approx(1e-3 * 10 ** (-2 / 7)))]


def _run(out, mnist, *extra):
    return cli.main(["reproduce", "iwae_paper", "--out", str(out), "--data", str(mnist), "--limit", "60",
                     "--no-progress", "--seed", "3", *extra])


def test_objective_and_k_reach_training(tmp_path, need_mnist):
    assert _run(tmp_path / "iw", need_mnist, "--epochs", "1", "--k", "5") == 0
    assert _run(tmp_path / "vae", need_mnist, "--epochs", "1", "--k", "5", "--objective", "elbo") == 0
    iw, vae = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("iw", "vae"))
    assert iw["settings"]["train"]["objective"] == "iwae" and iw["settings"]["train"]["k"] == 5
    assert iw["settings"]["train"]["n_samples"] == 1
    assert vae["settings"]["train"]["objective"] == "elbo" and vae["settings"]["train"]["n_samples"] == 5
    assert iw["final"]["paper_test_nll"] == 85.54 and vae["final"]["paper_test_nll"] == 86.47
    for m in (iw, vae):
        assert m["final"]["eval_k"] == 5000 and m["final"]["test_nll"] > 0 and m["final"]["test_nll_stderr"] > 0
        assert m["settings"]["train"]["pixels"] == "dynamic" and m["settings"]["train"]["batch_size"] == 20
        units = m["final"]["active_units"]  # one stochastic layer of 50 units
        assert len(units) == 1 and 0 <= units[0] <= 50
    for d, m in (("iw", iw), ("vae", vae)):  # the per-image estimates behind the mean
        ll = torch.load(tmp_path / d / "test_log_px.pt")
        assert ll.dtype == torch.float64 and ll.shape == (60,)
        assert -ll.mean().item() == pytest.approx(m["final"]["test_nll"], rel=1e-6)


@pytest.mark.parametrize("extra, train, label", [
    (("--objective", "miwae", "--groups", "2", "--k", "3"), {"objective": "miwae", "groups": 2, "k": 3}, "miwae M = 2"),
    (("--objective", "ciwae", "--ciwae-beta", "0.25", "--k", "4"), {"objective": "ciwae", "ciwae_beta": 0.25, "k": 4},
     "ciwae beta = 0.25"),
    (("--objective", "piwae", "--groups", "2", "--k", "2"), {"objective": "piwae", "groups": 2, "k": 2}, "piwae M = 2"),
])
def test_rainforth_objectives_reach_training(tmp_path, need_mnist, extra, train, label):
    """MIWAE, CIWAE and PIWAE (Rainforth et al. 2018) train through the reproduction with their settings, recorded
    in the metrics; Table 1 has no number for them."""
    assert _run(tmp_path / "r", need_mnist, "--epochs", "1", *extra) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert {k: m["settings"]["train"][k] for k in train} == train and m["settings"]["train"]["n_samples"] == 1
    assert m["final"]["objective"] == train["objective"] and m["final"]["objective_label"] == label
    assert m["final"]["paper_test_nll"] is None and m["final"]["test_nll"] > 0


def test_resume_across_a_stage_is_exact(tmp_path, need_mnist):
    """Two epochs, then --resume to five (stage 1 ends after epoch 4 and stage 2 starts at a lower learning
    rate) equals five epochs in one go, bit for bit, test log p(x) included."""
    assert _run(tmp_path / "once", need_mnist, "--epochs", "5") == 0
    assert _run(tmp_path / "split", need_mnist, "--epochs", "2") == 0
    assert _run(tmp_path / "split", need_mnist, "--epochs", "5", "--resume") == 0
    a, b = (torch.load(tmp_path / d / "model.pt") for d in ("once", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("once", "split"))
    assert ma["train_elbo"] == mb["train_elbo"] and ma["final"]["test_nll"] == mb["final"]["test_nll"]
    assert [s["lr"] for s in ma["schedule"]] == pytest.approx([1e-3, 1e-3 * 10 ** (-1 / 7), 1e-3 * 10 ** (-2 / 7)])


def test_starts_from_the_papers_initialization(tmp_path, need_mnist):
    """The run's first model is the preset's, Glorot-initialized from the seed with the output bias from the
    training images (Preset.init); metrics record the init, and --resume refuses a checkpoint whose run.json
    was written without it (a run started from torch's default initialization is another run)."""
    from fastvae import VAE, datasets
    from fastvae.reproduce.common import Context, new_model

    ctx = Context(name="iwae_paper", out=tmp_path / "x", data=need_mnist, seed=3, limit=60)
    x, _ = datasets.load_mnist("train", root=need_mnist)
    model = new_model(ctx, x[:60])
    want = VAE.from_preset("iwae_paper").glorot_init_(torch.Generator().manual_seed(3)).init_output_bias_(x[:60])
    for (name, a), b in zip(model.named_parameters(), want.parameters()):
        assert torch.equal(a, b), name
    assert torch.equal(model.encoder[0].bias, torch.zeros(200))

    assert _run(tmp_path / "r", need_mnist, "--epochs", "1") == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["settings"]["init"] == {"weights": "glorot", "output_bias": True}
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run.pop("init") == {"weights": "glorot", "output_bias": True}
    (tmp_path / "r" / "run.json").write_text(json.dumps(run))  # as a run from before Preset.init wrote it
    assert _run(tmp_path / "r", need_mnist, "--epochs", "2", "--resume") == 1


@pytest.mark.parametrize("init", [{"weights": "xavier"}, {"weights": "glorot", "output_bias": True, "bias": 0}])
def test_an_unknown_init_is_refused(init, tmp_path, monkeypatch):
    """Preset.init is this project's own table; a misspelt entry is an error, not a silent torch default."""
    import dataclasses

    from fastvae.reproduce.common import Context, new_model

    preset = dataclasses.replace(presets.get("iwae_paper"), init=init)
    monkeypatch.setitem(presets.PRESETS, "iwae_paper", preset)
    with pytest.raises(ValueError, match="init may hold weights='glorot' and output_bias"):
        new_model(Context(name="iwae_paper", out=tmp_path), torch.zeros(2, 784, dtype=torch.uint8))


def test_every_preset_init_is_known():
    for name in presets.names():
        init = presets.get(name).init
        assert set(init) <= {"weights", "output_bias"} and init.get("weights", "glorot") == "glorot", name
