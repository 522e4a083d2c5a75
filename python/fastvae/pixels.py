"""What a model sees of an image: one rule for every function that takes images.

Images arrive as uint8 intensities p in 0..255, or as floats x in [0, 1], whose intensity is p = round(255 x)
(``torch.round``, half to even), so that ``k / 255`` and the byte ``k`` are the same pixel. From p:

- ``"threshold"``: p > threshold as 0/1 (threshold 127 by default: rounding x, the homeworks' rule; ESE 546
  HW5's "pixel > 128" is threshold 128). :func:`binarize` applies it; ``fit`` trains on it.
- ``"dynamic"``: a fresh x ~ Bernoulli(p / 255) each time an image is used (Burda et al. 2016).
- ``"intensity"``: p / 255, for continuous likelihoods.

``fit`` converts whole data sets to bytes (:func:`as_images`) and its steppers take the pixels of each batch
from ``fastvae._C.gather_pixels`` (C++). :func:`model_input` gives the objectives (``elbo``, ``iwae``,
``log_likelihood``) the same pixels from uint8 images.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from . import _checks

DEFAULT_THRESHOLD = 127  # TrainOptions.threshold's default: round(x) on the [0, 1] scale


def _as_tensor(where: str, name: str, images) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        if images.dtype == object:
            raise TypeError(f"{where}: {name} must be a numeric array, got dtype object")
        return torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor or numpy array, got {type(images).__name__}")
    return images


def to_bytes(images, where: str = "fastvae.pixels.to_bytes", name: str = "images") -> torch.Tensor:
    """uint8 intensities (same shape and device) of uint8 images or float images in [0, 1] (p = round(255 x)).
    TypeError for other dtypes (other integers, bool, complex); ValueError for NaN or floats outside [0, 1]."""
    t = _as_tensor(where, name, images)
    if t.dtype == torch.uint8:
        return t
    if not t.is_floating_point():
        raise TypeError(f"{where}: {name} must be uint8 intensities or floats in [0, 1], got {t.dtype}")
    if t.numel() and (torch.isnan(t).any() or t.min() < 0 or t.max() > 1):
        raise ValueError(f"{where}: float {name} must hold intensities in [0, 1] without NaN; divide bytes by 255")
    return torch.round(t * 255).to(torch.uint8)


def binarize(images, threshold: int = DEFAULT_THRESHOLD) -> torch.Tensor:
    """Binary images by the rule ``fit(pixels="threshold")`` trains on: pixel p > ``threshold``, with p the uint8
    intensity (p = round(255 x) for float images x in [0, 1]).

    Args:
        images: a tensor or numpy array of any shape: uint8 intensities 0..255, or floats in [0, 1].
        threshold: int in [0, 255] (default 127: rounding x, as STATS 305C, DD2434 and HW7 binarize; ESE 546's
            "pixel > 128 -> 1" is 128).

    Returns: float32 tensor of 0.0 / 1.0, the shape and device of ``images``.

    Raises: TypeError (not a tensor or array, images neither uint8 nor float, a threshold that is not an int),
        ValueError (NaN, floats outside [0, 1], threshold outside [0, 255]).
    """
    threshold = _checks.integer("binarize", "threshold", threshold, min=0, max=255)
    return (to_bytes(images, "binarize") > threshold).to(torch.float32)


def as_images(images, data_dim: Optional[int], name: str, where: str) -> torch.Tensor:
    """uint8 [N, D] on the CPU, contiguous, from uint8 [N, D] / [N, H, W] images (tensor or numpy) or floats in
    [0, 1]; ``data_dim`` None takes D from the images. Needs at least one image."""
    t = _as_tensor(where, name, images)
    if t.dim() > 2:
        t = t.reshape(t.shape[0], -1)
    if t.dim() != 2 or (data_dim is not None and t.shape[1] != data_dim) or t.shape[1] == 0:
        want = f"{data_dim} pixels per image" if data_dim is not None else "a batch of images [N, ...]"
        raise ValueError(f"{where}: {name} must have {want}, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{where}: {name} must hold at least one image, got shape {tuple(t.shape)}")
    if t.device.type != "cpu":
        t = t.cpu()
    return to_bytes(t, where, name).contiguous()


def as_labels(labels, n: int, name: str, where: str) -> torch.Tensor:
    """int64 [n] class labels on the CPU from an integer tensor or numpy array (floats, even 3.0, and bools are a
    TypeError; a wrong length a ValueError). The range is the model's to check."""
    y = _as_tensor(where, name, labels)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{where}: {name} must hold integer classes, got {y.dtype}")
    if tuple(y.shape) != (n,):
        raise ValueError(f"{where}: {name} must have shape [{n}], got {tuple(y.shape)}")
    return y.cpu().long().contiguous()


def from_dataset(dataset, where: str, name: str) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Images [N, ...] and labels [N] (or None) of a ``torch.utils.data.Dataset`` whose items are images, (image,)
    or (image, label) pairs (tensors or numpy arrays; integer labels), stacked in memory."""
    n = len(dataset)
    if n == 0:
        raise ValueError(f"{where}: {name} is an empty dataset")
    images, labels = [], []
    for i in range(n):
        item = dataset[i]
        if isinstance(item, (tuple, list)):  # (image,) as TensorDataset gives it, or (image, label)
            if len(item) not in (1, 2):
                raise ValueError(f"{where}: {name} items must be images or (image, label) pairs, got {len(item)} "
                                 "entries")
            if len(item) == 2:
                labels.append(int(_checks.integer(where, f"{name} label {i}", item[1])))
            item = item[0]
        images.append(_as_tensor(where, f"{name} item {i}", item))
    if labels and len(labels) != n:
        raise ValueError(f"{where}: {name} mixes images with and without labels")
    try:
        stacked = torch.stack(images)
    except RuntimeError as e:
        raise ValueError(f"{where}: {name} items differ in shape or dtype: {e}") from None
    return stacked, (torch.tensor(labels, dtype=torch.int64) if labels else None)


def model_input(x, *, binary: bool, dtype: torch.dtype, where: str, name: str = "x") -> torch.Tensor:
    """A model's input from images x (tensor or numpy, [B, ...]): uint8 intensities become 0/1 by the default
    threshold rule (p > 127) for a binary likelihood and p / 255 otherwise, in ``dtype``; float images must
    already have ``dtype`` (TypeError otherwise: convert with ``.to()``) and pass unchanged."""
    t = _as_tensor(where, name, x)
    if t.dtype == torch.uint8:
        return (t > DEFAULT_THRESHOLD).to(dtype) if binary else t.to(dtype) / 255
    if t.dtype != dtype:
        hint = ("; binarize images with fastvae.datasets.binarize (binary likelihoods) or scale them to [0, 1], "
                "and match dtypes with .to()" if name == "x" else "; convert with .to()")
        raise TypeError(f"{where}: {name} must be uint8 images or a float tensor of the model's dtype {dtype}, got "
                        f"{t.dtype}{hint}")
    return t


__all__ = ["binarize", "to_bytes", "as_images", "as_labels", "from_dataset", "model_input", "DEFAULT_THRESHOLD"]
