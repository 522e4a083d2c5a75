"""MNIST loading, verification, download and the small transforms the course exercises use.

Data: the MNIST database of handwritten digits (Y. LeCun, C. Cortes, C. J. C. Burges), stored in
the IDX format of LeCun et al. (http://yann.lecun.com/exdb/mnist/): a 4-byte magic
``0x00 0x00 <type code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the row-major payload.

Where the files are looked for (see :func:`data_dir`): the ``root=`` argument, else the environment
variable ``FASTVAE_DATA``, else ``$XDG_CACHE_HOME/fastvae/mnist`` (default ``~/.cache/fastvae/mnist``).
Each file may be stored raw (``train-images-idx3-ubyte``) or gzip-compressed (``...-ubyte.gz``).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import struct
import urllib.request
import zlib
from http.client import HTTPException
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import _checks
from ._atomic import atomic_write
from .pixels import binarize  # the one binarization rule (fastvae.pixels)

__all__ = [
    "DataFileError",
    "MNIST_FILES",
    "MIRRORS",
    "MAX_IDX_BYTES",
    "read_idx",
    "data_dir",
    "load_mnist",
    "download_mnist",
    "binarize",
    "subsample",
    "balanced_subset",
    "flatten",
]

PathLike = Union[str, "os.PathLike[str]"]

#: name -> (uncompressed size in bytes, md5 of the uncompressed content). The mirrors compress
#: the files differently, so only the uncompressed content has a stable checksum.
MNIST_FILES = {
    "train-images-idx3-ubyte": (47040016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7840016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10008, "27ae3e4e09519cfbb04c329615203637"),
}

#: Base URLs of public MNIST mirrors, tried in order; each serves ``<name>.gz``.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# split -> (image file, label file, number of examples)
_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}

# IDX type code -> numpy dtype (big-endian, as the format stores it)
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # bytes decompressed per step

#: Largest uncompressed IDX file read_idx accepts (bytes) when the name is not one of MNIST_FILES;
#: raise it to read bigger data sets.
MAX_IDX_BYTES = 1 << 30


class DataFileError(ValueError):
    """A data file is corrupt, truncated or not what it should be.

    The message always starts with the offending file path (or URL) and says what is wrong.
    """


# --------------------------------------------------------------------------- IDX reading


def _gunzip(blob: bytes, source, limit: Optional[int] = None) -> bytes:
    """Decompress a gzip blob; ``limit`` caps the output (guards against a hostile download)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:
            out = f.read() if limit is None else f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; EOFError = truncated
        raise DataFileError(f"{source}: corrupt or truncated gzip data ({e})") from e
    if limit is not None and len(out) > limit:
        raise DataFileError(f"{source}: decompresses to more than the expected {limit} bytes")
    return out


def _standard_name(path: Path) -> Optional[str]:
    """The MNIST_FILES name ``path`` stands for (``name`` or ``name.gz``), else None."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return name if name in MNIST_FILES else None


def _read_disk(path: Path, limit: int) -> bytes:
    """The file's bytes as stored (maybe gzip), refusing a file far larger than ``limit`` uncompressed
    bytes could need (gzip adds < 1% plus a header on incompressible data)."""
    cap = limit + limit // 64 + (1 << 16)
    # a FIFO, a device or a folder is refused before a byte is read (open() of a FIFO would block)
    with _checks.open_regular(str(path), path, error=DataFileError) as f:
        size = os.fstat(f.fileno()).st_size
        if size > cap:
            raise DataFileError(f"{path}: {size} bytes on disk, more than an IDX file of at most {limit} "
                                "bytes can take (see fastvae.datasets.MAX_IDX_BYTES)")
        return f.read(cap + 1)


def _read_exact(f, buf, source, gz: bool) -> int:
    """Fill ``buf`` (a writable memoryview) from ``f`` in 1 MiB steps; returns the bytes read (< len at EOF)."""
    got = 0
    try:
        while got < len(buf):
            n = f.readinto(buf[got:got + _CHUNK])
            if not n:
                break
            got += n
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; EOFError = truncated
        if not gz:
            raise
        raise DataFileError(f"{source}: corrupt or truncated gzip data ({e})") from e
    return got


def _parse_idx_stream(blob: bytes, source, limit: int) -> Tuple[np.ndarray, str]:
    """Parse IDX content from ``blob`` (raw or gzip, by magic), decompressing at most what the header
    declares, never more than ``limit`` bytes in all. Memory stays within the declared payload plus one
    chunk: the payload is streamed into an array allocated from the header (pages are committed only as
    they are written). Returns the array (native byte order, writable) and the md5 of the raw content."""
    gz = blob[:2] == _GZIP_MAGIC
    f = gzip.GzipFile(fileobj=io.BytesIO(blob)) if gz else io.BytesIO(blob)
    md5 = hashlib.md5()
    with f:
        head = bytearray(4)
        n = _read_exact(f, memoryview(head), source, gz)
        if n < 4:
            raise DataFileError(f"{source}: only {n} bytes, too short for the 4-byte IDX magic")
        zero0, zero1, code, ndim = head
        if zero0 != 0 or zero1 != 0:
            raise DataFileError(
                f"{source}: bad magic 0x{bytes(head).hex()}; IDX files start with two zero bytes"
            )
        if code not in _IDX_DTYPES:
            raise DataFileError(
                f"{source}: unknown IDX dtype code 0x{code:02x} (known: "
                + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES) + ")"
            )
        if ndim == 0:
            raise DataFileError(f"{source}: IDX header declares 0 dimensions")
        header = 4 + 4 * ndim
        sizes = bytearray(4 * ndim)
        n = _read_exact(f, memoryview(sizes), source, gz)
        if n < len(sizes):
            raise DataFileError(
                f"{source}: truncated header: {ndim} dims need {header} bytes, file holds {4 + n}"
            )
        md5.update(head)
        md5.update(sizes)
        dims = struct.unpack(f">{ndim}I", sizes)
        dtype = _IDX_DTYPES[code]
        count = 1
        for d in dims:  # Python ints: no overflow for absurd headers
            count *= d
        expected = count * dtype.itemsize
        if header + expected > limit:
            raise DataFileError(
                f"{source}: header says shape {tuple(dims)} = {header + expected} bytes, more than the "
                f"limit of {limit} bytes for this file (fastvae.datasets.MAX_IDX_BYTES for non-MNIST files)"
            )
        arr = np.empty(count, dtype=dtype)
        view = memoryview(arr.view(np.uint8).reshape(-1))
        actual = _read_exact(f, view, source, gz)
        extra = _read_exact(f, memoryview(bytearray(1)), source, gz) if actual == expected else 0
        if actual != expected or extra:
            if actual < expected:
                held, what = str(actual), "truncated"
            elif gz:  # not decompressed further: the excess could be huge
                held, what = f"more than {expected}", "trailing bytes"
            else:
                held, what = str(len(blob) - header), "trailing bytes"
            raise DataFileError(
                f"{source}: header says shape {tuple(dims)} = {count} items ({expected} payload bytes) "
                f"but the file holds {held} payload bytes ({what})"
            )
    md5.update(view)
    if dtype.byteorder not in ("=", "|") and dtype != dtype.newbyteorder("="):
        arr = arr.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return arr.reshape(dims), md5.hexdigest()


def _source_limit(path: Path) -> int:
    """Most uncompressed bytes a file may hold: its MNIST size when it is a standard file, else MAX_IDX_BYTES."""
    name = _standard_name(path)
    return MNIST_FILES[name][0] if name is not None else MAX_IDX_BYTES


def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (LeCun et al.'s MNIST format), raw or gzip-compressed.

    Decompression is capped: at most the bytes the header declares, and at most the standard size for
    the four MNIST file names (``MNIST_FILES``) or :data:`MAX_IDX_BYTES` (1 GiB) for any other file, so a
    small hostile gzip cannot exhaust memory. The MNIST checksums are verified by :func:`load_mnist`, not
    here.

    Args:
        path: file path. Gzip is detected by the magic bytes ``1f 8b``, not by the extension.

    Returns:
        A writable numpy array in native byte order whose shape is the header's dims, e.g.
        ``uint8 [60000, 28, 28]`` for ``train-images-idx3-ubyte``. Type codes: 0x08 uint8,
        0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder.
        DataFileError: ``path`` is a FIFO, a device or a socket (refused before reading: never blocks), bad magic, unknown type code, zero dims, truncated header, payload size not
            exactly the product of the dims (truncated or trailing bytes), corrupt/truncated gzip,
            a declared or stored size over the cap. The message names ``path``.
        TypeError: ``path`` is not a str or os.PathLike.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_idx: path must be a str or os.PathLike, got {path!r}")
    path = Path(path)
    limit = _source_limit(path)
    return _parse_idx_stream(_read_disk(path, limit), path, limit)[0]


# --------------------------------------------------------------------------- locations


def _check_root(where: str, root) -> None:
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"{where}: root must be a path (str or os.PathLike) or None, got {root!r}")


def _find_file(folder: Path, name: str) -> Optional[Path]:
    """``folder/name`` if present, else ``folder/name.gz``, else None. Present means anything at that name: a
    FIFO, a device or a folder there is refused when read (naming it), not taken for a missing file."""
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.exists():
            return candidate
    return None


def _has_mnist(folder: Path) -> bool:
    return folder.is_dir() and any(_find_file(folder, n) for n in MNIST_FILES)


def data_dir(root: Optional[PathLike] = None) -> Path:
    """Folder holding (or to receive) the four MNIST files.

    Resolution order: ``root``; else the environment variable ``FASTVAE_DATA``; else
    ``$XDG_CACHE_HOME/fastvae/mnist`` (``~/.cache/fastvae/mnist`` when XDG_CACHE_HOME is unset).
    If ``root``/``FASTVAE_DATA`` holds no MNIST file but its ``mnist/`` subfolder does, that
    subfolder is returned, so both ``FASTVAE_DATA=shared/data`` and ``shared/data/mnist`` work.

    Returns:
        An absolute path. The folder is not created and may not exist.
    """
    if root is None or str(root) == "":
        root = os.environ.get("FASTVAE_DATA") or None
    if root is not None:
        folder = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
        if not _has_mnist(folder) and _has_mnist(folder / "mnist"):
            return folder / "mnist"
        return folder
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.path.abspath(os.path.expanduser(cache))) / "fastvae" / "mnist"


# --------------------------------------------------------------------------- download


def _check_content(content: bytes, name: str, source) -> None:
    size, md5 = MNIST_FILES[name]
    if len(content) != size:
        raise DataFileError(
            f"{source}: uncompressed size {len(content)} bytes, expected {size} for {name}"
        )
    got = hashlib.md5(content).hexdigest()
    if got != md5:
        raise DataFileError(f"{source}: md5 mismatch for {name}: got {got}, expected {md5}")


def _verify_file(path: Path, name: str) -> None:
    size = MNIST_FILES[name][0]
    arr, digest = _parse_idx_stream(_read_disk(path, size), path, size)
    _check_standard(path, arr, digest)


def _fetch(url: str, timeout: float, max_bytes: int, desc: str) -> bytes:
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        if total is not None and total > max_bytes:
            raise DataFileError(f"{url}: Content-Length {total} exceeds {max_bytes} bytes")
        buf = bytearray()
        # disable=None: no bar when stderr is not a terminal (tests, logs)
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None, leave=False) as bar:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                buf += chunk
                bar.update(len(chunk))
                if len(buf) > max_bytes:
                    raise DataFileError(f"{url}: response exceeds {max_bytes} bytes")
    if total is not None and len(buf) != total:
        raise DataFileError(f"{url}: received {len(buf)} of {total} bytes (connection cut)")
    return bytes(buf)


def _atomic_write(target: Path, data: bytes) -> None:
    atomic_write(target, lambda f: f.write(data))


def _download(folder: Path, mirrors: Sequence[str], timeout: float) -> Path:
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    mirrors = tuple(mirrors)
    if not mirrors:
        raise ValueError("download_mnist: no mirrors given")
    folder.mkdir(parents=True, exist_ok=True)
    for name, (size, _) in MNIST_FILES.items():
        existing = _find_file(folder, name)
        if existing is not None:
            try:
                _verify_file(existing, name)
                continue  # present and valid
            except DataFileError:
                pass  # replaced below, only once a verified copy is in hand
        target = existing if existing is not None else folder / (name + ".gz")
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name + ".gz"
            try:
                blob = _fetch(url, timeout, max_bytes=2 * size + (1 << 16), desc=name)
                content = _gunzip(blob, url, limit=size) if blob[:2] == _GZIP_MAGIC else blob
                _check_content(content, name, url)
            except (OSError, HTTPException, ValueError) as e:  # URLError, timeouts, DataFileError
                failures.append(f"  {url}: {e}")
                continue
            if target.name.endswith(".gz"):
                data = blob if blob[:2] == _GZIP_MAGIC else gzip.compress(content)
            else:
                data = content
            _atomic_write(target, data)
            break
        else:
            raise RuntimeError(
                f"could not download {name} into {folder}; mirrors tried:\n" + "\n".join(failures)
            )
    return folder


def download_mnist(
    root: Optional[PathLike] = None, mirrors: Sequence[str] = MIRRORS, timeout: float = 30
) -> Path:
    """Download the four MNIST files into ``data_dir(root)`` and verify them.

    For each file in :data:`MNIST_FILES`, each mirror is tried in turn for ``<name>.gz``
    (urllib). The uncompressed content must have the listed size and md5. Files are written
    atomically (temp file in the same folder, fsync, ``os.replace``), so a failed or interrupted
    download never leaves a partial file and never replaces a valid one. Files already present
    (raw or .gz) and valid are skipped; a present but invalid file is replaced once a verified
    copy has been downloaded.

    Args:
        root: target folder (see :func:`data_dir`); created if needed.
        mirrors: base URLs, tried in order.
        timeout: socket timeout in seconds per request.

    Returns:
        The folder.

    Raises:
        RuntimeError: every mirror failed for some file; the message lists each URL tried and why.
        TypeError: ``root`` not a path, ``mirrors`` not a sequence of strings, ``timeout`` not a number.
        ValueError: ``mirrors`` is empty or holds a non-URL, ``timeout`` is not a positive finite number.
        OSError: the folder cannot be created or written.
    """
    _check_root("download_mnist", root)
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    if not isinstance(mirrors, Sequence) or not all(isinstance(m, str) for m in mirrors):
        raise TypeError(f"download_mnist: mirrors must be a sequence of URL strings, got {mirrors!r}")
    for m in mirrors:
        if not m.startswith(("http://", "https://", "file://")):
            raise ValueError(f"download_mnist: mirrors must be http(s) URLs, got {m!r}")
    timeout = _checks.positive("download_mnist", "timeout", timeout)
    return _download(data_dir(root), mirrors, timeout)


# --------------------------------------------------------------------------- loading


def _mismatch_hint(path: Path) -> str:
    return (f" The file is corrupt or not the MNIST file: delete {path} and call "
            f"fastvae.datasets.download_mnist({str(path.parent)!r}) (or load_mnist(..., download=True)) "
            "to fetch a verified copy.")


def _check_standard(path: Path, arr: np.ndarray, digest: str) -> None:
    """Size and md5 of a decoded standard MNIST file against MNIST_FILES (no-op for other names)."""
    name = _standard_name(path)
    if name is None:
        return
    size, md5 = MNIST_FILES[name]
    got = 4 + 4 * arr.ndim + arr.nbytes
    if got != size:
        raise DataFileError(f"{path}: uncompressed size {got} bytes, expected {size} for {name}."
                            + _mismatch_hint(path))
    if digest != md5:
        raise DataFileError(f"{path}: md5 mismatch for {name}: got {digest}, expected {md5}."
                            + _mismatch_hint(path))


@functools.lru_cache(maxsize=4)
def _load_cached(split: str, key: tuple) -> Tuple[torch.Tensor, torch.Tensor]:
    # key: ((image path, md5 of its bytes on disk), (label path, md5)); any change of content misses
    # the cache, whatever the file's mtime and size. The bytes are re-read here, and checked against
    # the key, so what is cached is what was hashed.
    decoded = []
    for path, disk_md5 in key:
        path = Path(path)
        limit = _source_limit(path)
        blob = _read_disk(path, limit)
        if hashlib.md5(blob).hexdigest() != disk_md5:
            raise DataFileError(f"{path}: changed while being loaded; try again")
        decoded.append(_parse_idx_stream(blob, path, limit))
    (images, img_md5), (labels, lbl_md5) = decoded
    img_path, lbl_path = Path(key[0][0]), Path(key[1][0])
    n_expected = _SPLITS[split][2]
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        bad = img_path if images.dtype != np.uint8 else lbl_path
        raise DataFileError(f"{bad}: expected IDX type 0x08 (uint8)")
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataFileError(f"{img_path}: expected images of shape [N, 28, 28], got {list(images.shape)}")
    if labels.ndim != 1:
        raise DataFileError(f"{lbl_path}: expected labels of shape [N], got {list(labels.shape)}")
    if images.shape[0] != labels.shape[0]:
        raise DataFileError(
            f"{img_path}: {images.shape[0]} images but {lbl_path} has {labels.shape[0]} labels"
        )
    if images.shape[0] != n_expected:
        raise DataFileError(
            f"{img_path}: {images.shape[0]} examples, the MNIST {split} split has {n_expected}"
        )
    if labels.size and labels.max() > 9:
        raise DataFileError(f"{lbl_path}: label {int(labels.max())} outside 0..9")
    # last, so a malformed file gets the more specific message above
    _check_standard(img_path, images, img_md5)
    _check_standard(lbl_path, labels, lbl_md5)
    return torch.from_numpy(images), torch.from_numpy(labels).to(torch.int64)


def _missing_message(folder: Path, missing: Iterable[str], extra: str) -> str:
    return (
        f"MNIST files missing: {', '.join(missing)} (looked for <name> and <name>.gz in {folder}). "
        "Point at a local copy with load_mnist(root='/path/to/mnist') or the environment variable "
        f"FASTVAE_DATA=/path/to/mnist{extra}"
    )


def load_mnist(
    split: str = "train", root: Optional[PathLike] = None, download: bool = True
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Load an MNIST split (LeCun, Cortes, Burges) as torch tensors.

    Args:
        split: ``"train"`` (60000 examples) or ``"test"`` (10000 examples).
        root: folder with the IDX files; default from :func:`data_dir` (``FASTVAE_DATA`` or the
            cache folder). Each file may be raw or ``.gz``.
        download: if files are missing, call :func:`download_mnist` on that folder first.

    Returns:
        ``(images, labels)``: images ``torch.uint8 [N, 28, 28]`` with intensities 0..255 (0 is
        background), labels ``torch.int64 [N]`` in 0..9. Decoded arrays are cached in memory per
        (split, file paths, md5 of the stored bytes), so a rewritten file is never served stale, whatever
        its mtime and size; each call returns fresh copies, so callers may modify them.

    Files named as the four standard MNIST files are checked against the uncompressed size and md5 in
    :data:`MNIST_FILES` (one flipped byte is caught); decompression is capped at the standard size.

    Raises:
        TypeError: ``split`` is not a string, ``download`` not a bool, ``root`` not a path.
        ValueError: ``split`` is not "train" or "test".
        FileNotFoundError: files missing and ``download=False`` or the download failed; the
            message names the files, the folder and how to point at a local copy.
        DataFileError: a file is not a regular file (a FIFO or a device: refused without blocking), is
            corrupt, has the wrong dtype/shape, image and label counts differ, the count is not the split's,
            a label is outside 0..9, or a standard file's size or md5 differs from MNIST_FILES (the message
            names the file and how to fetch a verified copy).
    """
    _checks.choice("load_mnist", "split", split, _SPLITS)
    _checks.flag("load_mnist", "download", download)
    _check_root("load_mnist", root)
    folder = data_dir(root)
    names = _SPLITS[split][:2]
    paths = [_find_file(folder, n) for n in names]
    if None in paths:
        missing = [n for n, p in zip(names, paths) if p is None]
        if not download:
            raise FileNotFoundError(_missing_message(folder, missing, ", or pass download=True."))
        try:
            _download(folder, MIRRORS, 30)  # global looked up now, so it can be patched
        except (OSError, RuntimeError) as e:
            raise FileNotFoundError(_missing_message(folder, missing, f".\nDownload failed: {e}")) from e
        paths = [_find_file(folder, n) for n in names]
    key = []
    for p in paths:  # hashing the stored (usually gzip) bytes costs ~15 ms for the train images
        key.append((str(p.resolve()), hashlib.md5(_read_disk(p, _source_limit(p))).hexdigest()))
    images, labels = _load_cached(split, tuple(key))
    return images.clone(), labels.clone()


# --------------------------------------------------------------------------- transforms


def subsample(images: torch.Tensor, size: int = 14, method: str = "pool") -> torch.Tensor:
    """Reduce 28x28 images to ``size`` x ``size``.

    Args:
        images: ``[..., 28, 28]`` or flattened ``[..., 784]`` tensor (uint8 0..255 or float).
        size: output side; a divisor of 28 (1, 2, 4, 7, 14, 28).
        method: ``"pool"`` averages each (28/size)^2 block (``avg_pool2d``); integer input keeps
            its dtype, the mean rounded with ``torch.round`` (half to even). ``"stride"`` keeps
            the top-left pixel of each block (every other pixel for size 14), dtype unchanged.

    Returns:
        ``[..., size, size]`` or ``[..., size*size]`` (same layout as the input), contiguous.

    Raises:
        ValueError: size not a divisor of 28, shape not 28x28/784, unknown method.
    """
    _checks.tensor("subsample", "images", images)
    _checks.choice("subsample", "method", method, ("pool", "stride"))
    size = _checks.integer("subsample", "size", size)  # 14.0 and True are TypeErrors
    if size < 1 or 28 % size:
        raise ValueError(f"size must be a divisor of 28 (1, 2, 4, 7, 14, 28), got {size!r}")
    if images.dim() >= 1 and images.shape[-1] == 784:
        lead, flat = images.shape[:-1], True
    elif images.dim() >= 2 and tuple(images.shape[-2:]) == (28, 28):
        lead, flat = images.shape[:-2], False
    else:
        raise ValueError(f"expected [..., 28, 28] or [..., 784] images, got {list(images.shape)}")
    k = 28 // size
    x = images.reshape(-1, 1, 28, 28)
    if method == "stride":
        out = x[:, :, ::k, ::k]
    elif images.dtype.is_floating_point:
        out = torch.nn.functional.avg_pool2d(x, k)
    else:  # block sums <= 784*255 are exact in float32
        out = torch.round(torch.nn.functional.avg_pool2d(x.to(torch.float32), k)).to(images.dtype)
    shape = (*lead, size * size) if flat else (*lead, size, size)
    return out.reshape(shape).contiguous()


def balanced_subset(
    images: torch.Tensor,
    labels: torch.Tensor,
    n_per_class: int,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    exclude: Optional[Union[torch.Tensor, Sequence[int]]] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick ``n_per_class`` examples of every class, uniformly at random without replacement.

    Used e.g. for ESE 546's 1,000-per-digit training set and a disjoint validation set
    (pass the training indices as ``exclude``).

    Args:
        images: ``[N, ...]`` tensor.
        labels: ``[N]`` integer tensor; the classes are the distinct values in ``labels``.
        n_per_class: examples per class, >= 1.
        seed: makes the draw reproducible (a fresh CPU ``torch.Generator`` seeded with it).
        generator: alternatively, a CPU ``torch.Generator``; with neither, torch's global RNG.
        exclude: indices into ``images`` that must not be chosen.

    Returns:
        ``(images[idx], labels[idx], idx)`` with ``idx`` an int64 CPU tensor of length
        ``n_per_class * n_classes``, sorted by class (ascending), then by index within a class.
        With the same seed, a smaller ``n_per_class`` yields a subset of a larger one's picks.

    Raises:
        ValueError: a class has fewer than ``n_per_class`` non-excluded examples, bad shapes,
            ``n_per_class < 1``, exclude index out of range, both ``seed`` and ``generator``.
    """
    if seed is not None and generator is not None:
        raise ValueError("give seed or generator, not both")
    _checks.tensor("balanced_subset", "images", images)
    n_per_class = _checks.integer("balanced_subset", "n_per_class", n_per_class, min=1)
    if seed is not None:
        seed = _checks.integer("balanced_subset", "seed", seed, min=0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"balanced_subset: generator must be a torch.Generator, got {type(generator).__name__}")
    if isinstance(labels, torch.Tensor) and (labels.dtype.is_floating_point or labels.dtype == torch.bool):
        raise TypeError(f"balanced_subset: labels must be integers, got dtype {labels.dtype}")
    # index bookkeeping in numpy: small torch ops on CPU pay thread-pool overhead
    labels = torch.as_tensor(labels)
    lab = labels.detach().cpu().numpy()
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer tensor, got {labels.dtype} {list(labels.shape)}")
    n = lab.shape[0]
    if images.shape[0] != n:
        raise ValueError(f"{images.shape[0]} images but {n} labels")
    if seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    allowed = np.ones(n, dtype=bool)
    if exclude is not None:
        ex = torch.as_tensor(exclude, dtype=torch.int64).reshape(-1).cpu().numpy()
        if ex.size and (ex.min() < 0 or ex.max() >= n):
            raise ValueError(f"exclude holds indices outside 0..{n - 1}")
        allowed[ex] = False
    chosen = []
    for c in np.unique(lab).tolist():
        members = np.flatnonzero((lab == c) & allowed)
        if members.size < n_per_class:
            raise ValueError(
                f"class {c} has {members.size} available examples, fewer than n_per_class={n_per_class}"
            )
        perm = torch.randperm(members.size, generator=generator)[:n_per_class].numpy()
        chosen.append(np.sort(members[perm]))
    idx = torch.from_numpy(np.concatenate(chosen).astype(np.int64))
    return images[idx.to(images.device)], labels[idx.to(labels.device)], idx


def flatten(images: torch.Tensor) -> torch.Tensor:
    """``[..., 28, 28]`` -> ``[..., 784]`` (a view when the memory layout allows), dtype unchanged."""
    _checks.tensor("flatten", "images", images)
    if images.dim() < 2:
        raise ValueError(f"expected [..., H, W] images, got {list(images.shape)}")
    return images.reshape(*images.shape[:-2], images.shape[-2] * images.shape[-1])
