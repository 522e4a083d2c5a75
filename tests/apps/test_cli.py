import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from fastvae import VAE, cli  # noqa: E402
from fastvae.reproduce import NAMES  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FIGURES = {
    "stats305c": {"elbo_curves.png", "samples.png", "latent_scatter.png", "interpolations.png"},
    "ese546": {"elbo_terms.png", "reconstructions.png", "samples.png", "validation.png"},
    "cvae_hw7": {"loss.png", "samples_epoch01.png", "samples_epoch02.png"},
    "dd2434": {"reconstructions.png", "samples.png", "loss.png"},
    "iwae_paper": {"training_bound.png", "samples.png", "reconstructions.png"},
    "iwae_paper_2layer": {"training_bound.png", "samples.png", "reconstructions.png"},
    "jang_categorical": {"elbo_curves.png", "samples.png", "reconstructions.png", "traversal.png"},
}


def _run(name, out, mnist_dir, epochs=2, limit=300):
    return cli.main(["reproduce", name, "--out", str(out), "--data", str(mnist_dir), "--epochs", str(epochs),
                     "--limit", str(limit), "--no-progress", "--seed", "1"])


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


@pytest.mark.parametrize("name", NAMES)
def test_reproduce_writes_metrics_model_and_figures(name, tmp_path, need_mnist, capsys):
    assert _run(name, tmp_path, need_mnist) == 0
    stdout = capsys.readouterr().out
    epoch_lines = [line for line in stdout.splitlines() if line.startswith("epoch   ") and "train ELBO" in line]
    assert len(epoch_lines) == 2  # one line per epoch
    m = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("train_elbo", "test_elbo", "epoch_seconds"):
        assert len(m[key]) == 2, key
        assert all(isinstance(v, float) for v in m[key])
    assert all(v < 0 for v in m["train_elbo"] + m["test_elbo"])
    assert m["preset"] == name and m["settings"]["train"]["epochs"] == 2 and m["settings"]["limit"] == 300
    assert "reported" in m and len(m["update_rec"]) == len(m["update_kl"]) > 0
    assert set(m["figures"]) == FIGURES[name]
    for f in FIGURES[name]:
        assert _is_png(tmp_path / f), f
    files = set(os.listdir(tmp_path))
    resume = {"checkpoint.pt", "run.json"} | ({"cvae_progress.json"} if name == "cvae_hw7" else set())
    per_image = {"test_log_px.pt"} if name.startswith("iwae_paper") else set()
    assert files == FIGURES[name] | {"metrics.json", "model.pt"} | resume | per_image  # no temp files left
    model = VAE.from_preset(name)
    model.load_state_dict(torch.load(tmp_path / "model.pt"))
    if name == "dd2434":
        assert m["homework_divisor"] == 300 - 100
        assert m["loss_per_image_homework_divisor"][-1] == pytest.approx(m["loss_per_image"][-1] * 300 / 200)
        assert m["loss_per_image"] == pytest.approx([-v for v in m["train_elbo"]])
    if name == "ese546":
        assert len(m["val_rec"]) == len(m["val_update"]) >= 1
        assert m["iwae"]["k"] == 1000 and m["iwae"]["log_px"] >= m["iwae"]["elbo_same_images"] - 1.0
    if name == "cvae_hw7":
        assert set(m["conditional_accuracy"]) == {"1", "2"}
        assert 0 <= m["classifier"]["test_accuracy"] <= 1
        assert m["settings"]["train"]["kl_weight"] == m["final"]["kl_weight"] == 2.0  # the preset's beta
        assert m["final"]["sample_spread"] > 0 and m["final"]["test_kl"] >= 0


def test_kl_weight_override_reaches_training(tmp_path, need_mnist):
    args = ["reproduce", "cvae_hw7", "--data", str(need_mnist), "--epochs", "1", "--limit", "300", "--no-progress"]
    assert cli.main(args + ["--out", str(tmp_path / "b1"), "--kl-weight", "1"]) == 0
    assert cli.main(args + ["--out", str(tmp_path / "b6"), "--kl-weight", "6"]) == 0
    m1, m6 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("b1", "b6"))
    assert m1["settings"]["train"]["kl_weight"] == 1.0 and m6["settings"]["train"]["kl_weight"] == 6.0
    # same seed and data: a heavier KL penalty must leave a smaller KL
    assert m6["final"]["test_kl"] < m1["final"]["test_kl"]


@pytest.mark.parametrize("name,beta,msg", [("dd2434", "2", "kl_weight applies only to cvae_hw7"),
                                           ("cvae_hw7", "-1", "kl_weight must be >= 0"),
                                           ("cvae_hw7", "nan", "kl_weight must be a finite number")])
def test_bad_kl_weight_fails_clearly(name, beta, msg, tmp_path, capsys):
    assert cli.main(["reproduce", name, "--out", str(tmp_path), "--kl-weight", beta]) == 1
    assert msg in capsys.readouterr().err


def test_within_class_spread():
    from fastvae.reproduce.cvae_hw7 import spread_per_class, within_class_spread
    x = torch.zeros(3, 784)
    assert within_class_spread(x) == 0.0  # collapsed samples
    x[1, :4] = 1  # distance 2 from the two others, which coincide
    assert within_class_spread(x) == pytest.approx((2 + 2 + 0) * 2 / 6)
    images = torch.zeros(20, 28, 28, dtype=torch.uint8)
    images[::2, 0, :4] = 255
    labels = torch.arange(20) % 10  # class c holds images c and c + 10: identical
    assert spread_per_class(images, labels, 2) == 0.0


def test_unknown_preset_fails_clearly(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "nope", "--out", "x"])
    assert e.value.code != 0
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_missing_data_folder_fails_clearly(tmp_path, capsys):
    missing = tmp_path / "no_such_folder"
    assert cli.main(["reproduce", "stats305c", "--out", str(tmp_path / "o"), "--data", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "data folder" in err and "does not exist" in err and str(missing) in err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_folder_without_mnist_fails_clearly(tmp_path, capsys):
    assert cli.main(["reproduce", "dd2434", "--out", str(tmp_path / "o"), "--data", str(tmp_path)]) == 1
    assert "MNIST files missing" in capsys.readouterr().err


def test_bad_epochs_fails_clearly(tmp_path, need_mnist, capsys):
    assert cli.main(["reproduce", "dd2434", "--out", str(tmp_path), "--data", str(need_mnist), "--epochs", "0"]) == 1
    assert "epochs must be an integer >= 1" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path):
    env = dict(os.environ)  # the fastvae this test run imports (installed, or PYTHONPATH in development)
    r = subprocess.run([sys.executable, "-m", "fastvae", "reproduce", "stats305c", "--out", str(tmp_path),
                        "--data", str(tmp_path / "missing")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = subprocess.run([sys.executable, "-m", "fastvae", "reproduce", "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0 and "--limit" not in r.stdout and "stats305c" in r.stdout
