"""Fault table of checkpoints (issue 20 items 4 and 8): every field of a checkpoint is validated when it is loaded
(CheckpointError naming the file and the field), a save refuses a model whose state could not be loaded back and
leaves the destination's bytes as they were on any failure, a symlinked destination is written through, paths
that are not regular files are refused without blocking, and the reproductions refuse unusable output folders.

Loading rows: write a good checkpoint, load the raw dict, tamper one field, torch.save it, and assert the error
and a fragment naming the field (the file's name is asserted for every row)."""
import errno
import os
import stat

import numpy as np
import pytest
from blocking import deadline
import torch

import fastvae
from fastvae import checkpoint, cli
from fastvae.checkpoint import CheckpointError


def small_model():
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=7, latent_dim=3, encoder_hidden=(5,), decoder_hidden=(4,))


def images(n=32):
    return torch.randint(0, 256, (n, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def trained():
    """A fitted model (4 updates, one epoch, a validation curve) and the raw dict of its checkpoint."""
    m = small_model()
    m.fit(images(), epochs=1, batch_size=8, seed=0, progress=False, val_images=images(8), eval_every=2)
    return m


@pytest.fixture
def good(trained, tmp_path):
    path = tmp_path / "good.pt"
    trained.save(path)
    return path


def raw(path):
    return torch.load(path, weights_only=True)


# -- loading: one tampered field per row ----------------------------------------------------------------------
def _set(*keys, value):
    def tamper(d):
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value(d[keys[-1]]) if callable(value) else value
    return tamper


def _delete(*keys):
    def tamper(d):
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return tamper


def _entry(t, value, index=0):
    t = t.clone()
    t.view(-1)[index] = value
    return t


LOAD_ROWS = [
    ("format_version-str", _set("format_version", value="3"), "checkpoint format '3'"),
    ("format_version-bool", _set("format_version", value=True), "checkpoint format True"),
    ("format-other", _set("format", value="fastvae.other"), "not a fastvae checkpoint"),
    ("field-missing", _delete("history"), "must hold the field 'history'"),
    ("fastvae_version-int", _set("fastvae_version", value=3), "fastvae_version must be a string"),
    ("kind-unknown", _set("kind", value="conv"), "kind must be one of ['mlp', 'networks']"),
    ("kind-other", _set("kind", value="networks"), "kind 'networks'; load it with fastvae.NetworkVAE.load"),
    ("config-not-dict", _set("config", value=[1, 2]), "config must be a dict"),
    ("config-latent_dim-float", _set("config", "latent_dim", value=2.5), "config.latent_dim must be an integer"),
    ("config-hidden-str", _set("config", "encoder_hidden", value="5"), "config.encoder_hidden must be a list"),
    ("config-hidden-float", _set("config", "decoder_hidden", value=[4.0]), "config.decoder_hidden[0] must be an"),
    ("config-dtype", _set("config", "dtype", value="float16"), "config.dtype must be one of"),
    ("config-slope-str", _set("config", "negative_slope", value="0.1"), "config.negative_slope must be a real"),
    ("config-activation-int", _set("config", "activation", value=1), "config.activation must be a string"),
    ("config-unknown", _set("config", "bogus", value=1), "got unknown ['bogus']"),
    ("config-missing", _delete("config", "data_dim"), "config must hold 'data_dim'"),
    ("config-bad-value", _set("config", "latent_dim", value=0), "latent_dim must be an integer >= 1"),
    ("preset-int", _set("preset", value=5), "preset must be a string or None"),
    ("state_dict-missing", _delete("state_dict", "decoder.1.bias"), "got none for ['decoder.1.bias']"),
    ("state_dict-unknown", _set("state_dict", "extra.weight", value=torch.zeros(1)), "unknown ['extra.weight']"),
    ("state_dict-nan", _set("state_dict", "decoder.0.weight", value=lambda t: _entry(t, float("nan"))),
     "state_dict['decoder.0.weight'] must be finite, got 1 NaN or inf"),
    ("state_dict-inf", _set("state_dict", "encoder.0.bias", value=lambda t: _entry(t, float("-inf"))),
     "state_dict['encoder.0.bias'] must be finite"),
    ("state_dict-shape", _set("state_dict", "encoder_head.bias", value=torch.zeros(5)),
     "state_dict['encoder_head.bias'] must have shape (6,), got (5,)"),
    ("state_dict-dtype", _set("state_dict", "decoder.1.weight", value=lambda t: t.double()),
     "state_dict['decoder.1.weight'] must have dtype torch.float32, got torch.float64"),
    ("state_dict-not-tensor", _set("state_dict", "decoder.1.bias", value=[0.0] * 7),
     "state_dict['decoder.1.bias'] must be a tensor"),
    ("optimizer-step-negative", _set("optimizer", "step", value=-1), "optimizer.step must be an integer >= 0"),
    ("optimizer-step-float", _set("optimizer", "step", value=4.0), "optimizer.step must be an integer"),
    ("optimizer-key", _set("optimizer", "lr", value=1.0), "optimizer must hold step, exp_avg and exp_avg_sq"),
    ("optimizer-m-nan", _set("optimizer", "exp_avg", value=lambda ms: [_entry(ms[0], float("nan"))] + ms[1:]),
     "optimizer.exp_avg[0] must be finite"),
    ("optimizer-v-nan", _set("optimizer", "exp_avg_sq", value=lambda vs: vs[:3] + [_entry(vs[3], float("nan"))]
                             + vs[4:]), "optimizer.exp_avg_sq[3] must be finite"),
    ("optimizer-v-negative", _set("optimizer", "exp_avg_sq", value=lambda vs: vs[:1] + [_entry(vs[1], -1e-3)]
                                  + vs[2:]), "optimizer.exp_avg_sq[1] must be >= 0 everywhere, got a minimum of -0.001"),
    ("optimizer-count-unequal", _set("optimizer", "exp_avg", value=lambda ms: ms[:-1]),
     "one tensor per parameter each, got 7 and 8"),
    ("optimizer-count-short", lambda d: d["optimizer"].update(exp_avg=d["optimizer"]["exp_avg"][:-1],
                                                               exp_avg_sq=d["optimizer"]["exp_avg_sq"][:-1]),
     "optimizer.exp_avg must hold one tensor per parameter (8), got 7"),
    ("optimizer-shape", _set("optimizer", "exp_avg", value=lambda ms: ms[:2] + [ms[2][:2]] + ms[3:]),
     "optimizer.exp_avg[2] must have shape (6, 5), got (2, 5)"),
    ("optimizer-dtype", _set("optimizer", "exp_avg_sq", value=lambda vs: [v.double() for v in vs]),
     "optimizer.exp_avg_sq[0] must have dtype torch.float32"),
    ("generator-dtype", _set("generator", value=lambda g: g.long()), "generator must have dtype torch.uint8"),
    ("generator-2d", _set("generator", value=lambda g: g.view(2, -1)), "generator must have 1 dimension"),
    ("generator-truncated", _set("generator", value=lambda g: g[:100].clone()),
     "generator must be a state torch.Generator().set_state accepts, got 100 bytes"),
    ("history-missing", _delete("history", "val_kl"), "history must hold every field of fastvae.History, got none "
                                                      "for ['val_kl']"),
    ("history-unknown", _set("history", "loss", value=torch.zeros(4, dtype=torch.float64)), "unknown ['loss']"),
    ("history-dtype", _set("history", "train_elbo", value=lambda t: t.float()),
     "history.train_elbo must have dtype torch.float64, got torch.float32"),
    ("history-int-dtype", _set("history", "val_update", value=lambda t: t.double()),
     "history.val_update must have dtype torch.int64"),
    ("history-2d", _set("history", "update_kl", value=lambda t: t.view(2, 2)), "history.update_kl must have 1 dim"),
    ("history-update-lengths", _set("history", "update_kl", value=lambda t: t[:3].clone()),
     "history.update_rec, history.update_kl must have one length, got update_rec: 4, update_kl: 3"),
    ("history-epoch-lengths", _set("history", "epoch_seconds", value=torch.zeros(2, dtype=torch.float64)),
     "history.train_elbo, history.test_elbo, history.epoch_seconds, history.epoch_threads must have one length"),
    ("history-val-lengths", _set("history", "val_rec", value=lambda t: t[:1].clone()),
     "history.val_update, history.val_rec, history.val_kl must have one length"),
    ("history-step", lambda d: d["history"].update(update_rec=d["history"]["update_rec"][:3].clone(),
                                                   update_kl=d["history"]["update_kl"][:3].clone()),
     "history.update_rec must have one entry per update, the optimizer's step 4, got 3"),
    ("history-val-unsorted", _set("history", "val_update", value=lambda t: t.flip(0).clone()),
     "history.val_update must be sorted within [0, 4]"),
    ("history-val-range", _set("history", "val_update", value=lambda t: t + 10), "must be sorted within [0, 4]"),
    ("train_options-lr", _set("train_options", "lr", value=-1.0), "train_options: lr must be"),
    ("train_options-unknown", _set("train_options", "momentum", value=0.9), "unknown training options ['momentum']"),
    ("train_options-not-dict", _set("train_options", value=3), "train_options must be a dict"),
]


@pytest.mark.parametrize("tamper, fragment", [pytest.param(t, f, id=n) for n, t, f in LOAD_ROWS])
def test_a_tampered_field_is_refused_naming_the_file_and_the_field(good, tmp_path, tamper, fragment):
    d = raw(good)
    tamper(d)
    path = tmp_path / "tampered.pt"
    torch.save(d, path)
    with pytest.raises(CheckpointError) as e:
        fastvae.VAE.load(path)
    assert fragment in str(e.value)
    assert "tampered.pt" in str(e.value)
    assert isinstance(e.value, ValueError)


def test_the_untampered_file_loads_with_its_full_state(good, trained):
    back = fastvae.VAE.load(good)
    assert back.optimizer_state_.step == 4 == len(back.history_.update_rec)
    assert list(back.history_.val_update) == list(trained.history_.val_update) == [0, 2, 4]
    assert torch.equal(back.generator_state_, trained.generator_state_)


def test_a_networks_checkpoint_validates_the_same_fields(tmp_path):
    torch.manual_seed(0)
    enc, dec = torch.nn.Linear(7, 6), torch.nn.Linear(3, 7)
    model = fastvae.VAE.from_networks(enc, dec, 3)
    model.fit(images(), epochs=1, batch_size=8, seed=0, progress=False)
    model.save(tmp_path / "n.pt")
    d = raw(tmp_path / "n.pt")
    d["optimizer"]["exp_avg_sq"][2] = -d["optimizer"]["exp_avg_sq"][2] - 1
    torch.save(d, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad.pt.*optimizer.exp_avg_sq\[2\] must be >= 0"):
        fastvae.NetworkVAE.load(tmp_path / "bad.pt", torch.nn.Linear(7, 6), torch.nn.Linear(3, 7))
    d = raw(tmp_path / "n.pt")
    d["config"]["latent_dim"] = "3"
    torch.save(d, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad.pt.*config.latent_dim must be an integer"):
        fastvae.NetworkVAE.load(tmp_path / "bad.pt", torch.nn.Linear(7, 6), torch.nn.Linear(3, 7))


# -- loading: paths that are not regular files, refused without blocking ----------------------------------------
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    with deadline(), pytest.raises(CheckpointError, match=r"pipe.pt' must be a regular file, got a FIFO"):
        fastvae.VAE.load(fifo)


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="path must name a file, got the folder"):
        fastvae.VAE.load(tmp_path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this system")
def test_a_device_is_refused_without_reading_it():
    with deadline(), pytest.raises(CheckpointError, match="'/dev/zero' must be a regular file, got a character "
                                                          "device"):
        fastvae.VAE.load("/dev/zero")


def test_a_symlink_to_a_checkpoint_loads(good, tmp_path):
    link = tmp_path / "link.pt"
    link.symlink_to(good)
    assert fastvae.VAE.load(link).optimizer_state_.step == 4


# -- saving: the destination is untouched by a refused or failed save ------------------------------------------
def _meta(m):
    return m.to("meta")


def _nan_weight(m):
    with torch.no_grad():
        m.decoder[0].weight[1, 1] = float("nan")
    return m


def _inf_moment(m):
    m.optimizer_state_.exp_avg[3][0] = float("inf")
    return m


def _negative_second_moment(m):
    m.optimizer_state_.exp_avg_sq[0][0, 0] = -1.0
    return m


def _history_behind(m):
    m.history_.update_rec = m.history_.update_rec[:2]
    m.history_.update_kl = m.history_.update_kl[:2]
    return m


def _bad_generator(m):
    m.generator_state_ = torch.zeros(3, dtype=torch.uint8)
    return m


SAVE_ROWS = [
    ("meta", _meta, "state_dict['encoder.0.weight'] must be on a real device, got a tensor on the meta device"),
    ("nan-weight", _nan_weight, "state_dict['decoder.0.weight'] must be finite, got 1 NaN or inf"),
    ("inf-moment", _inf_moment, "optimizer.exp_avg[3] must be finite"),
    ("negative-second-moment", _negative_second_moment, "optimizer.exp_avg_sq[0] must be >= 0"),
    ("history-behind-step", _history_behind, "history.update_rec must have one entry per update, the optimizer's "
                                             "step 4, got 2"),
    ("generator", _bad_generator, "generator must be a state torch.Generator().set_state accepts"),
]


@pytest.mark.parametrize("spoil, fragment", [pytest.param(s, f, id=n) for n, s, f in SAVE_ROWS])
def test_a_save_refuses_a_state_that_would_not_load_and_keeps_the_file(trained, good, spoil, fragment):
    before = good.read_bytes()
    m = fastvae.VAE.load(good)
    m = spoil(m)
    with pytest.raises(ValueError) as e:
        m.save(good)
    assert fragment in str(e.value) and "cannot save" in str(e.value) and "good.pt" in str(e.value)
    assert good.read_bytes() == before
    assert sorted(p.name for p in good.parent.iterdir()) == ["good.pt"]  # no temporary file left


def test_a_save_that_fails_while_writing_keeps_the_file(good, monkeypatch):
    before = good.read_bytes()
    m = fastvae.VAE.load(good)

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        m.save(good)
    assert good.read_bytes() == before
    assert sorted(p.name for p in good.parent.iterdir()) == ["good.pt"]


def test_an_interrupted_save_keeps_the_file(good, monkeypatch):
    before = good.read_bytes()
    m = fastvae.VAE.load(good)

    def interrupt(obj, f):
        f.write(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", interrupt)
    with pytest.raises(KeyboardInterrupt):
        m.save(good)
    assert good.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_save_into_an_unwritable_folder_keeps_the_file(good):
    before = good.read_bytes()
    os.chmod(good.parent, 0o500)
    try:
        with pytest.raises(PermissionError):
            fastvae.VAE.load(good).save(good)
    finally:
        os.chmod(good.parent, 0o700)
    assert good.read_bytes() == before


def test_a_save_into_a_missing_folder_is_refused(good, tmp_path):
    with pytest.raises(FileNotFoundError, match="the folder of .* does not exist"):
        fastvae.VAE.load(good).save(tmp_path / "no" / "such.pt")


def test_a_symlinked_destination_is_written_through(trained, good, tmp_path):
    target = tmp_path / "runs" / "target.pt"
    target.parent.mkdir()
    target.write_bytes(good.read_bytes())
    link = tmp_path / "latest.pt"
    link.symlink_to(target)
    m = fastvae.VAE.load(good)
    m.fit(images(), epochs=1, batch_size=8, progress=False)  # 4 more updates
    assert m.save(link) == link
    assert link.is_symlink() and os.readlink(link) == str(target)  # still the link
    assert fastvae.VAE.load(target).optimizer_state_.step == 8  # its target holds the new state
    assert sorted(p.name for p in target.parent.iterdir()) == ["target.pt"]


def test_a_dangling_symlink_creates_its_target(good, tmp_path):
    link = tmp_path / "next.pt"
    link.symlink_to(tmp_path / "made.pt")
    fastvae.VAE.load(good).save(link)
    assert link.is_symlink() and fastvae.VAE.load(tmp_path / "made.pt").optimizer_state_.step == 4


def test_a_fifo_destination_is_refused_and_stays(good, tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    with deadline(), pytest.raises(ValueError, match="must name a regular file or a new one, got .*pipe.pt.*FIFO"):
        fastvae.VAE.load(good).save(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null on this system")
def test_a_symlink_to_a_device_is_refused_and_the_device_stays(good, tmp_path):
    link = tmp_path / "null.pt"
    link.symlink_to("/dev/null")
    with pytest.raises(ValueError, match="a link to '/dev/null'.*character device"):
        fastvae.VAE.load(good).save(link)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_the_fit_driver_saves_a_valid_checkpoint_after_an_interrupt(tmp_path):
    """A model stopped mid-epoch has a consistent state (step = updates recorded): save accepts it."""
    m = small_model()

    def stop(event, info):
        if event == "step" and info["update"] == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        m.fit(images(), epochs=2, batch_size=8, seed=0, progress=False, callback=stop, callback_every=1)
    m.save(tmp_path / "stopped.pt")
    back = fastvae.VAE.load(tmp_path / "stopped.pt")
    assert back.optimizer_state_.step == 3 == len(back.history_.update_rec)
    np.testing.assert_array_equal(back.history_.update_rec, m.history_.update_rec)


# -- the reproductions' output folder ----------------------------------------------------------------------------
@pytest.mark.parametrize("out, fragment", [
    pytest.param("", "out must name a folder, got ''", id="empty"),
    pytest.param("   ", "out must name a folder, got '   '", id="blank"),
    pytest.param("file.txt/sub", "out must be a folder that can be created", id="under-a-file"),
    pytest.param("file.txt", "out must be a folder, got the existing file 'file.txt'", id="a-file"),
])
def test_reproduce_refuses_an_unusable_output_folder_before_training(out, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("mine")
    assert cli.main(["reproduce", "stats305c", "--out", out, "--no-progress", "--limit", "10"]) == 1
    assert fragment in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # nothing written in the working directory
    assert (tmp_path / "file.txt").read_text() == "mine"


def test_reproduce_refuses_an_output_path_that_is_not_a_path():
    from fastvae.reproduce import reproduce
    with pytest.raises(TypeError, match="out must be a folder path"):
        reproduce("stats305c", 5)


def test_resume_refuses_a_fifo_in_place_of_run_json_without_blocking(tmp_path, need_mnist):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"x")  # resume reads run.json first, to check the checkpoint is this run's
    os.mkfifo(out / "run.json")
    from fastvae.reproduce import reproduce
    with deadline(), pytest.raises(ValueError, match="run.json is missing or unreadable"):
        reproduce("stats305c", out, data=need_mnist, limit=10, resume=True, progress=False, log=lambda line: None)
    assert stat.S_ISFIFO(os.stat(out / "run.json").st_mode) and (out / "checkpoint.pt").read_bytes() == b"x"
