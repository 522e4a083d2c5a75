import os

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fastvae import VAE, plotting  # noqa: E402
from fastvae.training import History  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history(n_updates=250, n_epochs=3, eval_every=100):
    rng = np.random.default_rng(0)
    vu = np.arange(eval_every, n_updates + 1, eval_every)
    return History(update_rec=-100 + rng.normal(size=n_updates), update_kl=5 + rng.random(n_updates),
                   train_elbo=np.array([-150.0, -140.0, -135.0])[:n_epochs],
                   test_elbo=np.array([-145.0, -139.0, -137.0])[:n_epochs],
                   epoch_seconds=np.ones(n_epochs), val_update=vu, val_rec=-90.0 - np.arange(vu.size),
                   val_kl=np.ones(vu.size))


def _labelled(ax):
    return ax.get_xlabel() != "" and ax.get_ylabel() != ""


def _titled(fig):
    return (fig._suptitle is not None and fig._suptitle.get_text()) or any(a.get_title() for a in fig.axes)


@pytest.mark.parametrize("d,side", [(784, 28), (196, 14)])
def test_image_grid_infers_side_and_tiles(d, side):
    imgs = torch.rand(64, d)
    fig = plotting.image_grid(imgs, 8, "samples")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.images) == 1
    arr = ax.images[0].get_array()
    assert arr.shape == (8 * side + 7, 8 * side + 7)
    # first tile is the first image, second tile starts after one pixel of padding
    np.testing.assert_allclose(arr[:side, :side], imgs[0].reshape(side, side).numpy(), rtol=1e-6)
    np.testing.assert_allclose(arr[:side, side + 1:2 * side + 1], imgs[1].reshape(side, side).numpy(), rtol=1e-6)
    assert ax.get_title() == "samples" and _labelled(ax)


def test_image_grid_accepts_hw_and_row_labels():
    fig = plotting.image_grid(np.zeros((20, 28, 28)), 10, "t", row_labels=["0", "1"], ylabel="digit")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1"]
    assert ax.get_ylabel() == "digit"


def test_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="not square"):
        plotting.image_grid(torch.rand(4, 100 + 1), 2, "t")
    with pytest.raises(ValueError, match="no images"):
        plotting.image_grid(torch.rand(0, 784), 2, "t")
    with pytest.raises(ValueError, match="nrow"):
        plotting.image_grid(torch.rand(4, 784), 0, "t")


def test_elbo_curves_draws_train_test_and_reported():
    h = _history()
    fig = plotting.elbo_curves(h, reported={"train_elbo": -134.52, "test_elbo": -137.67})
    ax = fig.axes[0]
    ys = [line.get_ydata() for line in ax.lines]
    assert any(np.array_equal(y, h.train_elbo) for y in ys)
    assert any(np.array_equal(y, h.test_elbo) for y in ys)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("-137.67" in s for s in labels)
    assert _labelled(ax) and _titled(fig)
    fig2 = plotting.elbo_curves(h, per_update=True)
    assert len(fig2.axes) == 2 and all(_labelled(a) for a in fig2.axes)
    np.testing.assert_allclose(fig2.axes[1].lines[0].get_ydata(), h.update_rec - h.update_kl)


def test_elbo_terms_two_panels():
    h = _history()
    fig = plotting.elbo_terms(h)
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), h.update_rec)
    np.testing.assert_array_equal(fig.axes[1].lines[0].get_ydata(), h.update_kl)
    assert all(_labelled(a) and a.get_title() for a in fig.axes)
    with pytest.raises(ValueError, match="no updates"):
        plotting.elbo_terms(History())


def test_latent_scatter_colours_and_colorbar():
    mu = np.random.default_rng(0).normal(size=(500, 2))
    lab = np.arange(500) % 10
    fig = plotting.latent_scatter(mu, torch.as_tensor(lab))
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # plot + colorbar
    assert fig.axes[1].get_ylabel() == "digit label"
    offsets = ax.collections[0].get_offsets()
    assert offsets.shape == (500, 2)
    np.testing.assert_array_equal(ax.collections[0].get_array(), lab)
    assert _labelled(ax) and ax.get_title()
    with pytest.raises(ValueError, match="2-D latent"):
        plotting.latent_scatter(np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(ValueError, match="labels"):
        plotting.latent_scatter(np.zeros((5, 2)), np.zeros(4))


def test_interpolation_grid_decodes_straight_lines():
    torch.manual_seed(0)
    model = VAE(data_dim=196, latent_dim=2, encoder_hidden=(8,), decoder_hidden=(8,))
    g = torch.Generator().manual_seed(3)
    fig = plotting.interpolation_grid(model, n_rows=3, steps=5, generator=g)
    arr = fig.axes[0].images[0].get_array()
    assert arr.shape == (3 * 15 - 1, 5 * 15 - 1)
    g = torch.Generator().manual_seed(3)
    za, zb = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    mid = model.decode((za[1:2] + zb[1:2]) / 2).reshape(14, 14).numpy()  # row 2, step 3 (t = 0.5)
    np.testing.assert_allclose(arr[15:29, 30:44], mid, rtol=1e-5, atol=1e-6)
    assert _labelled(fig.axes[0]) and fig.axes[0].get_title()
    with pytest.raises(ValueError, match="steps"):
        plotting.interpolation_grid(model, steps=1)


def test_reconstruction_pairs_layout():
    x, r = torch.rand(8, 196), torch.rand(8, 196)
    fig = plotting.reconstruction_pairs(x, r)
    assert len(fig.axes) == 16
    np.testing.assert_allclose(fig.axes[8].images[0].get_array(), r[0].reshape(14, 14).numpy(), rtol=1e-6)
    assert fig.axes[0].get_ylabel() == "original" and fig.axes[8].get_ylabel() == "reconstruction"
    assert all(a.get_xlabel() for a in fig.axes[8:]) and _titled(fig)
    with pytest.raises(ValueError, match="differ"):
        plotting.reconstruction_pairs(x, r[:4])


def test_validation_curves():
    h = _history()
    fig = plotting.validation_curves(h)
    ax = fig.axes[0]
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [100, 200])
    assert "every 100 updates" in ax.get_legend().get_texts()[1].get_text()
    assert _labelled(ax) and ax.get_title()
    with pytest.raises(ValueError, match="validation"):
        plotting.validation_curves(History(update_rec=np.ones(3), update_kl=np.ones(3)))


def test_loss_curve_marks():
    fig = plotting.loss_curve(np.linspace(200, 100, 50), "loss", marks=[10, 20])
    ax = fig.axes[0]
    assert len(ax.lines) == 3 and _labelled(ax) and ax.get_title() == "loss"


def test_save_figure_writes_png_atomically(tmp_path):
    fig = plotting.image_grid(torch.rand(4, 784), 2, "t")
    out = tmp_path / "grid.png"
    assert plotting.save_figure(fig, out) == str(out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert os.listdir(tmp_path) == ["grid.png"]


def test_save_figure_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    fig = plotting.image_grid(torch.rand(4, 784), 2, "t")
    out = tmp_path / "grid.png"
    out.write_bytes(b"old")

    def broken(self, f, **kw):
        f.write(b"\x89PNG partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(fig), "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        plotting.save_figure(fig, out)
    assert out.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["grid.png"]
    with pytest.raises(RuntimeError):
        plotting.save_figure(fig, tmp_path / "new.png")
    assert not (tmp_path / "new.png").exists()
    assert os.listdir(tmp_path) == ["grid.png"]


def test_epoch_series():
    fig = plotting.epoch_series({"ours": [3, 2, 1], "homework": [4, 3]}, "loss", "loss (nats)")
    ax = fig.axes[0]
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [1, 2])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ours", "homework"]
    assert _labelled(ax) and ax.get_title() == "loss"
    with pytest.raises(ValueError, match="no series"):
        plotting.epoch_series({}, "t", "y")


def test_save_figure_uses_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        out = plotting.save_figure(plotting.image_grid(torch.rand(4, 784), 2, "t"), tmp_path / "a.png")
    finally:
        os.umask(old)
    assert os.stat(out).st_mode & 0o777 == 0o644
