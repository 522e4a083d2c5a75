"""Earthquake catalogues on disk, for fits larger than memory.

A catalogue file is a NumPy ``.npy`` array of shape (N, 3), float64, C order: columns x0, x1 (the location)
and s (the count, an integral float64, exact up to 2^53). :class:`Catalogue` reads it in row chunks with
plain file reads, so memory stays at one chunk whatever N is (a memory map would count every page it
touched in the process's resident memory).
"""
import os

import numpy as np

from .. import _checks
from .._atomic import atomic_write
from ._validate import check_count, check_events

_DTYPE = np.dtype("<f8")


class Catalogue:
    """A catalogue file opened for chunked reading: ``len(cat)`` events, ``cat.read(a, b)`` -> (X, S).

    Raises ValueError (naming the file) for a missing file, a path that is not a regular file (a FIFO, a
    device, a folder: refused without blocking), a file that is not a .npy array, the wrong dtype, order or
    shape, or a file shorter than its header says.
    """

    def __init__(self, path, where="Catalogue"):
        self.path = os.fspath(path)
        self.where = where
        with self._open() as f:
            try:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
            except (ValueError, OSError, SyntaxError) as e:
                raise ValueError(f"{where}: {self.path!r} is not a .npy catalogue file ({e})") from e
            self._offset = f.tell()
        if dtype != _DTYPE or fortran or len(shape) != 2 or shape[1] != 3:
            raise ValueError(f"{where}: {self.path!r} must hold a float64 C-order array of shape (N, 3) "
                             f"(columns x0, x1, s), got dtype {dtype}, shape {shape}, fortran_order={fortran}")
        self.n = int(shape[0])
        size = os.path.getsize(self.path)
        if size < self._offset + self.n * 3 * _DTYPE.itemsize:
            raise ValueError(f"{where}: {self.path!r} is truncated: its header promises {self.n} events "
                             f"({self._offset + self.n * 24} bytes), the file has {size} bytes")

    def _open(self):
        """The file opened for reading if it is a regular file; a FIFO, a device or a folder is refused without
        blocking (ValueError naming it), at every read: the path may have been replaced since."""
        try:
            return _checks.open_regular(self.where, self.path)
        except FileNotFoundError:
            raise ValueError(f"{self.where}: cannot open catalogue file {self.path!r}: no such file") from None
        except IsADirectoryError as e:
            raise ValueError(str(e)) from None
        except OSError as e:
            raise ValueError(f"{self.where}: cannot open catalogue file {self.path!r}: {e.strerror or e}") from e

    def __len__(self):
        return self.n

    def read(self, start, stop, check=True):
        """Rows [start, stop) as (X (n, 2) float64, S (n,) float64), validated like in-memory events
        (``check=False``: as stored, for a file already validated)."""
        with self._open() as f:
            f.seek(self._offset + start * 3 * _DTYPE.itemsize)
            rows = np.fromfile(f, dtype=_DTYPE, count=(stop - start) * 3).reshape(-1, 3)
        if len(rows) != stop - start:
            raise ValueError(f"{self.where}: {self.path!r} ended before row {stop}")
        if not check:
            return rows[:, :2], rows[:, 2]
        try:
            return check_events(rows[:, :2], rows[:, 2], where=self.where)
        except ValueError as e:
            raise ValueError(f"{e} (catalogue rows {start}..{stop - 1} of {self.path!r})") from None

    def take(self, index):
        """Rows at the given global indices (any order), as X (len(index), 2) float64."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), 2))
        for i in np.argsort(index, kind="stable"):
            out[i] = self.read(int(index[i]), int(index[i]) + 1)[0][0]
        return out


def write_catalogue(path, X, S, *, chunk_size=1 << 20):
    """Write events to a catalogue file (see the module docstring), atomically: an existing file at
    ``path`` is replaced only once the new one is complete. Returns the path (a pathlib.Path).

    X (N, 2) locations and S (N,) counts (arrays or memory maps; validated like ``EarthquakeMixture.fit``
    input, chunk by chunk). Raises TypeError / ValueError for bad events or chunk_size.
    """
    where = "write_catalogue"
    chunk_size = check_count(where, "chunk_size", chunk_size)
    n = len(X)
    if len(S) != n:
        raise ValueError(f"{where}: X and S must have the same number of events, got {n} and {len(S)}")
    check_count(where, "number of events", n)
    path = os.fspath(path)

    def write(f):
        np.lib.format.write_array_header_2_0(f, {"descr": _DTYPE.str, "fortran_order": False, "shape": (n, 3)})
        for a in range(0, n, chunk_size):
            b = min(n, a + chunk_size)
            x, s = check_events(X[a:b], S[a:b], where=where)
            f.write(np.column_stack([x, s]).tobytes())

    return atomic_write(path, write)


def _is_path(value):
    return isinstance(value, (str, os.PathLike))


def open_events(where, X, S, chunk_size):
    """The fit's view of its data: a Catalogue for a path, else in-memory events (validated once)."""
    if chunk_size is not None:
        chunk_size = check_count(where, "chunk_size", chunk_size)
    if _is_path(X):
        if S is not None:
            raise ValueError(f"{where}: S must be None when X is a catalogue file path (the file holds the "
                             f"counts), got {_checks._show(S)}")
        return _FileEvents(Catalogue(X, where), chunk_size or (1 << 20))
    if S is None:
        raise TypeError(f"{where}: S (the counts) is required when X is an array")
    return _ArrayEvents(X, S, chunk_size, where)


class _ArrayEvents:
    """Events held in memory (or a user's memory map), read in chunks of ``chunk_size`` rows if given."""

    def __init__(self, X, S, chunk_size, where):
        self.where = where
        if chunk_size is None:
            self.X, self.S = check_events(X, S, where=where)
            self.chunk_size = max(len(self.X), 1)
            self._checked = True
        else:
            if not hasattr(X, "shape") or not hasattr(S, "shape"):
                X, S = np.asarray(X), np.asarray(S)
            if X.ndim != 2 or X.shape[1] != 2 or S.shape != (X.shape[0],):
                raise ValueError(f"{where}: X must have shape (N, 2) and S shape (N,), got {X.shape} and {S.shape}")
            self.X, self.S, self.chunk_size, self._checked = X, S, chunk_size, False
        self.n = len(self.X)

    def read(self, a, b, check=True):
        if self._checked:
            return self.X[a:b], self.S[a:b]
        if not check:  # validated by an earlier pass; only the kernel's dtype is needed
            return np.asarray(self.X[a:b], dtype=np.float64), np.asarray(self.S[a:b], dtype=np.float64)
        try:
            return check_events(self.X[a:b], self.S[a:b], where=self.where)
        except ValueError as e:
            raise ValueError(f"{e} (rows {a}..{b - 1})") from None

    def take(self, index):
        return np.asarray(self.X[np.asarray(index, dtype=np.int64)], dtype=np.float64).reshape(-1, 2)

    def chunks(self, check=True):
        for a in range(0, self.n, self.chunk_size):
            yield self.read(a, min(self.n, a + self.chunk_size), check)


class _FileEvents:
    def __init__(self, catalogue, chunk_size):
        self.cat, self.chunk_size, self.n = catalogue, chunk_size, len(catalogue)

    def take(self, index):
        return self.cat.take(index)

    def chunks(self, check=True):
        for a in range(0, self.n, self.chunk_size):
            yield self.cat.read(a, min(self.n, a + self.chunk_size), check)
