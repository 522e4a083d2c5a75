"""Argument checks shared by every public function, with one message style:
``"<where>: <name> must be <what>, got <value>"``. A value of the wrong kind (a float where an integer is
meant, a string where a number is meant) is a TypeError; a value of the right kind outside its range
(NaN, inf, <= 0, ...) is a ValueError. Nothing is coerced silently: ``2.7`` is never truncated to ``2``.
"""
from __future__ import annotations

import math
import numbers
import operator
import os
import stat
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch


def _show(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(where: str, name: str, value, *, min: Optional[int] = None, max: Optional[int] = None) -> int:
    """``value`` as a Python int. Accepts ints, NumPy integers and one-element integer tensors; bools, floats
    (even 2.0), strings and None raise TypeError; a value outside [min, max] raises ValueError."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"{where}: {name} must be an integer, got {_show(value)}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{where}: {name} must be an integer, got {_show(value)}") from None
    if min is not None and v < min:
        raise ValueError(f"{where}: {name} must be an integer >= {min}, got {v}")
    if max is not None and v > max:
        raise ValueError(f"{where}: {name} must be an integer <= {max}, got {v}")
    return v


def real(where: str, name: str, value, *, min: Optional[float] = None, max: Optional[float] = None,
         min_open: bool = False, max_open: bool = False, finite: bool = True) -> float:
    """``value`` as a Python float. Accepts ints, floats, NumPy scalars and one-element float tensors;
    bools, strings, None and complex numbers raise TypeError; NaN, inf (when ``finite``) and values outside
    the interval (closed unless ``min_open`` / ``max_open``) raise ValueError."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise TypeError(f"{where}: {name} must be a real number, got {_show(value)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {_show(value)}")
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise ValueError(f"{where}: {name} must be a finite number, got {v}")
    if min is not None and (v < min or (min_open and v == min)):
        raise ValueError(f"{where}: {name} must be {'>' if min_open else '>='} {min}, got {v}")
    if max is not None and (v > max or (max_open and v == max)):
        raise ValueError(f"{where}: {name} must be {'<' if max_open else '<='} {max}, got {v}")
    return v


def positive(where: str, name: str, value) -> float:
    """A finite number > 0 (rates, temperatures, precisions, learning rates)."""
    return real(where, name, value, min=0.0, min_open=True)


def choice(where: str, name: str, value, options: Iterable[str]) -> str:
    """One of ``options`` (strings), else ValueError listing them (TypeError for a non-string)."""
    options = list(options)
    if not isinstance(value, str):
        raise TypeError(f"{where}: {name} must be one of {options}, got {_show(value)}")
    if value not in options:
        raise ValueError(f"{where}: {name} must be one of {options}, got {value!r}")
    return value


def flag(where: str, name: str, value) -> bool:
    """A real bool (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be True or False, got {_show(value)}")
    return value


def integer_sequence(where: str, name: str, value, *, min: Optional[int] = None) -> tuple:
    """A sequence of integers (a shape, layer sizes); each element checked as :func:`integer`."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, torch.Size)):
        raise TypeError(f"{where}: {name} must be a sequence of integers, got {_show(value)}")
    return tuple(integer(where, f"{name}[{i}]", v, min=min) for i, v in enumerate(value))


def tensor(where: str, name: str, value, *, dtypes: Optional[Sequence[torch.dtype]] = None,
           dim: Optional[int] = None, device: Optional[torch.device] = None) -> torch.Tensor:
    """A torch.Tensor with one of ``dtypes``, ``dim`` dimensions and on ``device`` (each if given)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(value).__name__}")
    if dtypes is not None and value.dtype not in dtypes:
        raise TypeError(f"{where}: {name} must have dtype {' or '.join(map(str, dtypes))}, got {value.dtype}")
    if dim is not None and value.dim() != dim:
        raise ValueError(f"{where}: {name} must have {dim} dimensions, got shape {tuple(value.shape)}")
    if device is not None and value.device != torch.device(device):
        raise ValueError(f"{where}: {name} is on {value.device}, expected {torch.device(device)}")
    return value


def same_device(where: str, **tensors) -> Optional[torch.device]:
    """All given tensors (None entries skipped) on one device, else ValueError naming them; returns it."""
    seen = {n: t.device for n, t in tensors.items() if isinstance(t, torch.Tensor)}
    devices = set(seen.values())
    if len(devices) > 1:
        listing = ", ".join(f"{n} on {d}" for n, d in seen.items())
        raise ValueError(f"{where}: tensors must share one device, got {listing}")
    return devices.pop() if devices else None


def file_path(where: str, path, *, must_exist: bool):
    """A file path (str or os.PathLike) that is not a folder: an existing file if ``must_exist`` (else
    FileNotFoundError), otherwise one in an existing folder, to be written. Returns a pathlib.Path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if str(path) == "" or p.is_dir():
        raise ValueError(f"{where}: path must name a file, got the folder {str(path)!r}")
    if must_exist and not p.is_file():
        raise FileNotFoundError(f"{where}: no checkpoint file {str(p)!r}")
    if not must_exist and not p.parent.is_dir():
        raise FileNotFoundError(f"{where}: the folder of {str(p)!r} does not exist")
    return p


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _require_regular(where: str, path: str, mode: int, error) -> None:
    if stat.S_ISREG(mode):
        return
    kind = _file_kind(mode)
    cls = IsADirectoryError if stat.S_ISDIR(mode) else error
    raise cls(f"{where}: {path!r} must be a regular file, got {kind}")


def open_regular(where: str, path, *, error=ValueError):
    """``path`` (str or os.PathLike) opened for binary reading, if it is an existing regular file (symlinks
    followed). Anything else is refused before a byte is read and without blocking: a missing path raises
    FileNotFoundError, a folder IsADirectoryError, a FIFO, a device or a socket ``error`` (a ValueError
    class), each naming the path and what it is. The file is opened with O_NONBLOCK and checked again with
    fstat, so a path swapped for a FIFO between the two checks cannot block either."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {_show(path)}")
    p = os.fspath(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: no such file {p!r}") from None
    except (NotADirectoryError, ValueError) as e:  # a component that is a file, an embedded NUL byte
        raise error(f"{where}: cannot read {p!r}: {getattr(e, 'strerror', None) or e}") from None
    _require_regular(where, p, mode, error)
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(p, os.O_RDONLY | nonblock | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        _require_regular(where, p, os.fstat(fd).st_mode, error)
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
