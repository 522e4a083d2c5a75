"""TrainOptions.shuffle: the driver's data order, the same for every model kind."""
import pytest
import torch
from torch import nn

import fastvae

X = torch.randint(0, 256, (12, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def models():
    torch.manual_seed(0)
    yield fastvae.VAE(6, 2, (5,), (4,))
    torch.manual_seed(0)
    yield fastvae.VAE.from_networks(nn.Sequential(nn.Linear(6, 4)), nn.Sequential(nn.Linear(2, 6)), 2)


def test_without_shuffle_every_epoch_sees_the_images_in_order():
    for model in models():
        seen = []
        order = model._stepper  # record the order each epoch's stepper is given

        def spy(*args, **kwargs):
            stepper = order(*args, **kwargs)
            epoch = stepper.epoch
            stepper.epoch = lambda o, *a: (seen.append(o.clone()), epoch(o, *a))[1]
            return stepper

        model._stepper = spy
        model.fit(X, epochs=2, batch_size=5, shuffle=False, seed=1, progress=False)
        assert [o.tolist() for o in seen] == [list(range(12))] * 2
        seen.clear()
        model.fit(X, epochs=2, batch_size=5, seed=1, progress=False)
        assert seen[0].tolist() != list(range(12)) and seen[0].tolist() != seen[1].tolist()
        assert sorted(seen[0].tolist()) == list(range(12))


@pytest.mark.parametrize("bad", [0, "no", None])
def test_shuffle_is_a_flag(bad):
    with pytest.raises(TypeError, match="fastvae.fit: shuffle must be True or False"):
        next(models()).fit(X, shuffle=bad, progress=False)
