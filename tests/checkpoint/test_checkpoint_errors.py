"""Bad arguments to save and load: each row is (call, exception type, message fragment)."""
import pytest
import torch

import fastvae
from fastvae.checkpoint import CheckpointError


def tiny(**kw):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=16, latent_dim=2, encoder_hidden=(4,), decoder_hidden=(4,), **kw)


SAVE_LOAD_ROWS = [
    (lambda t: tiny().save(5), TypeError, "path must be a str or os.PathLike"),
    (lambda t: tiny().save(None), TypeError, "path must be a str or os.PathLike"),
    (lambda t: tiny().save(t), ValueError, "must name a file, got the folder"),
    (lambda t: tiny().save(""), ValueError, "must name a file"),
    (lambda t: tiny().save(t / "missing" / "m.pt"), FileNotFoundError, "does not exist"),
    (lambda t: fastvae.VAE.load(None), TypeError, "path must be a str or os.PathLike"),
    (lambda t: fastvae.VAE.load(t / "missing.pt"), FileNotFoundError, "no checkpoint file"),
    (lambda t: fastvae.VAE.load(t), ValueError, "must name a file, got the folder"),
    (lambda t: (t / "bad.pt").write_bytes(b"PK\x03\x04junk") and fastvae.VAE.load(t / "bad.pt"), CheckpointError,
     "bad.pt' is not a readable checkpoint"),
]


@pytest.mark.parametrize("call, error, fragment", SAVE_LOAD_ROWS)
def test_bad_argument(call, error, fragment, tmp_path):
    with pytest.raises(error) as e:
        call(tmp_path)
    assert fragment in str(e.value)
