"""Tests for fastvae.datasets: IDX parsing, MNIST loading/verification, download, transforms."""

import functools
import gzip
import hashlib
import http.server
import os
import struct
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import MNIST_DIR
from reference.training import threshold_pixels
from fastvae import datasets
from fastvae.datasets import (
    DataFileError,
    balanced_subset,
    binarize,
    data_dir,
    download_mnist,
    flatten,
    load_mnist,
    read_idx,
    subsample,
)

DATA = MNIST_DIR  # FASTVAE_DATA or the cache folder
# tests on the real files: skipped locally when MNIST is missing, failed when CI is set (see conftest.py)
real_mnist = pytest.mark.usefixtures("need_mnist")

# Uncompressed sizes and md5s of the canonical MNIST files (as published with the data set), written out
# here so a changed fastvae.datasets.MNIST_FILES is caught.
README_TABLE = {
    "train-images-idx3-ubyte": (47040016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7840016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10008, "27ae3e4e09519cfbb04c329615203637"),
}
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(arr, code=0x08):
    arr = np.asarray(arr)
    dtype = {0x08: ">u1", 0x0C: ">i4"}[code]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(dtype).tobytes()


def raw_content(folder, name):
    for p in (folder / name, folder / (name + ".gz")):
        if p.is_file():
            blob = p.read_bytes()
            return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    raise FileNotFoundError(f"{name} not in {folder}")


# --------------------------------------------------------------------------- real MNIST


@real_mnist
def test_load_real_train():
    x, y = load_mnist("train", root=DATA, download=False)
    assert x.shape == (60000, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (60000,) and y.dtype == torch.int64
    assert int(y[0]) == 5 and y[:5].tolist() == [5, 0, 4, 1, 9]
    counts = torch.bincount(y, minlength=10)
    assert counts.numel() == 10 and int(counts.sum()) == 60000
    assert all(c > 5000 for c in counts.tolist())
    assert counts.tolist() == TRAIN_COUNTS
    assert int(x.min()) == 0 and int(x.max()) == 255


@real_mnist
def test_load_real_test():
    x, y = load_mnist("test", root=DATA, download=False)
    assert x.shape == (10000, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (10000,) and y.dtype == torch.int64
    assert y[:5].tolist() == [7, 2, 1, 0, 4]
    assert torch.bincount(y, minlength=10).tolist() == TEST_COUNTS


@pytest.mark.parametrize("name", sorted(README_TABLE))
@real_mnist
def test_real_files_match_readme_md5(name):
    content = raw_content(data_dir(DATA), name)
    size, md5 = README_TABLE[name]
    assert len(content) == size
    assert hashlib.md5(content).hexdigest() == md5
    assert datasets.MNIST_FILES[name] == (size, md5)


@real_mnist
def test_read_idx_real_labels_matches_load():
    folder = data_dir(DATA)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    if not path.exists():
        path = folder / "t10k-labels-idx1-ubyte"
    arr = read_idx(path)
    assert arr.dtype == np.uint8 and arr.shape == (10000,)
    _, y = load_mnist("test", root=DATA, download=False)
    assert np.array_equal(arr, y.numpy())


@real_mnist
def test_load_returns_copies_and_uses_cache():
    x1, y1 = load_mnist("test", root=DATA, download=False)
    hits = datasets._load_cached.cache_info().hits
    x1[0] = 255
    y1[0] = 3
    x2, y2 = load_mnist("test", root=DATA, download=False)
    assert datasets._load_cached.cache_info().hits == hits + 1
    assert int(y2[0]) == 7 and int(x2[0, 0, 0]) == 0
    assert x2.data_ptr() != x1.data_ptr()


@real_mnist
def test_parent_folder_with_mnist_subfolder_is_accepted(monkeypatch):
    folder = data_dir(DATA)
    monkeypatch.setenv("FASTVAE_DATA", str(folder.parent))
    assert data_dir() == folder
    _, y = load_mnist("test", download=False)
    assert y[:3].tolist() == [7, 2, 1]


def test_unknown_split():
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation", root=DATA, download=False)


# --------------------------------------------------------------------------- data_dir


def test_data_dir_resolution(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("FASTVAE_DATA", str(a))
    assert data_dir(b) == b  # explicit root wins
    assert data_dir() == a
    monkeypatch.delenv("FASTVAE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "fastvae" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".cache" / "fastvae" / "mnist"


def test_data_dir_descends_into_mnist_subfolder(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"x")
    assert data_dir(tmp_path) == tmp_path / "mnist"
    # a folder that itself holds MNIST files is used as is
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"x")
    assert data_dir(tmp_path) == tmp_path


# --------------------------------------------------------------------------- IDX parsing

GOOD = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)


def test_read_idx_raw_and_gzip_detected_by_magic(tmp_path):
    raw = idx_bytes(GOOD)
    (tmp_path / "a.idx").write_bytes(raw)
    (tmp_path / "b.idx").write_bytes(gzip.compress(raw))  # gzip without .gz name
    (tmp_path / "c.gz").write_bytes(raw)  # raw with .gz name
    for n in ("a.idx", "b.idx", "c.gz"):
        arr = read_idx(tmp_path / n)
        assert arr.dtype == np.uint8 and np.array_equal(arr, GOOD)
        assert arr.flags.writeable


def test_read_idx_int32_big_endian(tmp_path):
    vals = np.array([[1, -2, 70000]], dtype=np.int64)
    (tmp_path / "i.idx").write_bytes(idx_bytes(vals, code=0x0C))
    arr = read_idx(tmp_path / "i.idx")
    assert arr.dtype == np.int32 and arr.tolist() == [[1, -2, 70000]]


def _corruptions():
    raw = idx_bytes(GOOD)
    gz = gzip.compress(raw)
    bad_crc = bytearray(gz)
    bad_crc[-8] ^= 0xFF
    return {
        "bad_magic": (b"\x01\x00" + raw[2:], "bad magic"),
        "dtype_code": (raw[:2] + b"\x07" + raw[3:], "dtype code 0x07"),
        "zero_dims": (b"\x00\x00\x08\x00" + b"\x00" * 8, "0 dimensions"),
        "short_header": (raw[:9], "truncated header"),
        "truncated_payload": (raw[:-1], "truncated"),
        "trailing_bytes": (raw + b"\x00", "trailing bytes"),
        "ndim_mismatch": (raw[:3] + b"\x02" + raw[4:], "payload bytes"),
        "truncated_gzip": (gz[:-12], "gzip"),
        "gzip_crc": (bytes(bad_crc), "CRC"),
        "tiny": (b"\x00\x00", "too short"),
    }


@pytest.mark.parametrize("case", sorted(_corruptions()))
def test_read_idx_corrupt_files(tmp_path, case):
    blob, what = _corruptions()[case]
    path = tmp_path / f"corrupt-{case}.gz"
    path.write_bytes(blob)
    with pytest.raises(DataFileError) as err:
        read_idx(path)
    assert str(path) in str(err.value)
    assert what in str(err.value)
    assert isinstance(err.value, ValueError)


def test_read_idx_payload_counts_in_message(tmp_path):
    path = tmp_path / "short.idx"
    path.write_bytes(idx_bytes(GOOD)[:-5])
    with pytest.raises(DataFileError, match=r"24 items \(24 payload bytes\).*19 payload bytes"):
        read_idx(path)


# --------------------------------------------------------------------------- load_mnist validation


def _write_split(folder, images, labels, labels_code=0x08):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels, labels_code)))
    return folder / "t10k-images-idx3-ubyte", folder / "t10k-labels-idx1-ubyte.gz"


@pytest.fixture
def small_test_split(monkeypatch):
    """Pretend the test split has 5 examples so tiny files can pass the count check."""
    monkeypatch.setitem(datasets._SPLITS, "test", ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 5))


def _register(monkeypatch, folder):
    """Make the tiny files written by _write_split pass as the standard ones (size and md5 in MNIST_FILES)."""
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        content = raw_content(folder, name)
        monkeypatch.setitem(datasets.MNIST_FILES, name, (len(content), hashlib.md5(content).hexdigest()))


def test_load_small_split_and_cache_keyed_on_content(tmp_path, small_test_split, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    img_path, _ = _write_split(tmp_path, images, np.array([0, 1, 2, 3, 9]))
    _register(monkeypatch, tmp_path)
    x, y = load_mnist("test", root=tmp_path, download=False)
    assert np.array_equal(x.numpy(), images) and y.tolist() == [0, 1, 2, 3, 9]
    # same size, same mtime, other content: must not be served from the cache
    st = img_path.stat()
    img_path.write_bytes(idx_bytes(images[::-1]))
    os.utime(img_path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert img_path.stat().st_size == st.st_size and img_path.stat().st_mtime_ns == st.st_mtime_ns
    _register(monkeypatch, tmp_path)
    x2, _ = load_mnist("test", root=tmp_path, download=False)
    assert np.array_equal(x2.numpy(), images[::-1])


def test_load_verifies_md5_of_standard_files(tmp_path, small_test_split, monkeypatch):
    images = np.zeros((5, 28, 28), np.uint8)
    img_path, _ = _write_split(tmp_path, images, np.arange(5))
    _register(monkeypatch, tmp_path)
    blob = bytearray(img_path.read_bytes())
    blob[100] ^= 0x01  # one payload byte: structure intact, content wrong
    img_path.write_bytes(bytes(blob))
    with pytest.raises(DataFileError, match="md5 mismatch") as err:
        load_mnist("test", root=tmp_path, download=False)
    assert str(img_path) in str(err.value) and "download_mnist" in str(err.value)


@real_mnist
def test_load_real_file_with_one_flipped_byte(tmp_path):
    """The real t10k labels with one label changed (still a valid IDX file, still in 0..9) are refused."""
    content = bytearray(raw_content(data_dir(DATA), "t10k-labels-idx1-ubyte"))
    content[8] = (content[8] + 1) % 10
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(content))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes((data_dir(DATA) / "t10k-images-idx3-ubyte.gz").read_bytes())
    with pytest.raises(DataFileError, match="md5 mismatch for t10k-labels-idx1-ubyte"):
        load_mnist("test", root=tmp_path, download=False)


def test_hostile_gzip_is_refused_without_decompressing_it(tmp_path):
    """A standard name whose gzip holds more than the standard size, and a non-standard file whose header
    declares more than MAX_IDX_BYTES, are refused from the header / the cap."""
    big = gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", 60000, 28, 28) + bytes(47040000 + 10**6))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(big)
    with pytest.raises(DataFileError, match="trailing bytes"):
        read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    claim = gzip.compress(bytes([0, 0, 8, 2]) + struct.pack(">2I", 2**16, 2**16) + bytes(1000))
    (tmp_path / "claim.idx.gz").write_bytes(claim)
    with pytest.raises(DataFileError, match="MAX_IDX_BYTES"):
        read_idx(tmp_path / "claim.idx.gz")


@pytest.mark.parametrize(
    "images_shape, labels, labels_code, culprit, what",
    [
        ((5, 784), [0, 1, 2, 3, 4], 0x08, "images", "28, 28"),
        ((5, 28, 27), [0, 1, 2, 3, 4], 0x08, "images", "28, 28"),
        ((5, 28, 28), [[0], [1], [2], [3], [4]], 0x08, "labels", "shape [N]"),
        ((5, 28, 28), [0, 1, 2, 3], 0x08, "images", "4 labels"),
        ((5, 28, 28), [0, 1, 2, 3, 10], 0x08, "labels", "label 10 outside 0..9"),
        ((5, 28, 28), [0, 1, 2, 3, 4], 0x0C, "labels", "uint8"),
    ],
)
def test_load_rejects_malformed_split(
    tmp_path, small_test_split, images_shape, labels, labels_code, culprit, what
):
    img_path, lbl_path = _write_split(
        tmp_path, np.zeros(images_shape, np.uint8), np.array(labels), labels_code
    )
    with pytest.raises(DataFileError) as err:
        load_mnist("test", root=tmp_path, download=False)
    msg = str(err.value)
    assert str(img_path if culprit == "images" else lbl_path) in msg
    assert what in msg


def test_load_rejects_wrong_split_size(tmp_path):
    img_path, _ = _write_split(tmp_path, np.zeros((5, 28, 28), np.uint8), np.arange(5))
    with pytest.raises(DataFileError, match="10000") as err:
        load_mnist("test", root=tmp_path, download=False)
    assert str(img_path) in str(err.value)


def test_load_missing_files_message(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_mnist("train", root=empty, download=False)
    msg = str(err.value)
    for needle in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", str(empty), "FASTVAE_DATA", "root="):
        assert needle in msg


# --------------------------------------------------------------------------- download


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, directory, log, **kwargs):
        self._log = log
        super().__init__(*args, directory=directory, **kwargs)

    def do_GET(self):
        self._log.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    root = tmp_path / "srv"
    (root / "good").mkdir(parents=True)
    (root / "bad").mkdir()
    log = []
    handler = functools.partial(_Handler, directory=str(root), log=log)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield SimpleNamespace(root=root, url=url, good=url + "good/", bad=url + "bad/", log=log)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def fake_mnist(server, monkeypatch):
    """Small IDX files standing in for MNIST, served gzipped from good/; MNIST_FILES patched."""
    rng = np.random.default_rng(1)
    shapes = {
        "train-images-idx3-ubyte": (6, 28, 28),
        "train-labels-idx1-ubyte": (6,),
        "t10k-images-idx3-ubyte": (5, 28, 28),
        "t10k-labels-idx1-ubyte": (5,),
    }
    contents = {}
    for name, shape in shapes.items():
        high = 10 if len(shape) == 1 else 256
        contents[name] = idx_bytes(rng.integers(0, high, shape, dtype=np.uint8))
        (server.root / "good" / (name + ".gz")).write_bytes(gzip.compress(contents[name]))
    table = {n: (len(c), hashlib.md5(c).hexdigest()) for n, c in contents.items()}
    monkeypatch.setattr(datasets, "MNIST_FILES", table)
    return contents


def test_download_falls_back_to_second_mirror(tmp_path, server, fake_mnist):
    folder = tmp_path / "dl"
    out = download_mnist(folder, mirrors=(server.bad, server.good), timeout=5)
    assert out == folder
    assert sorted(os.listdir(folder)) == sorted(n + ".gz" for n in fake_mnist)
    for name, content in fake_mnist.items():
        assert gzip.decompress((folder / (name + ".gz")).read_bytes()) == content
        assert f"/bad/{name}.gz" in server.log and f"/good/{name}.gz" in server.log
    assert read_idx(folder / "t10k-images-idx3-ubyte.gz").shape == (5, 28, 28)


def test_download_then_load(tmp_path, server, fake_mnist, small_test_split, monkeypatch):
    monkeypatch.setattr(datasets, "MIRRORS", (server.good,))
    x, y = load_mnist("test", root=tmp_path / "auto", download=True)
    assert x.shape == (5, 28, 28) and y.dtype == torch.int64
    assert x.numpy().tobytes() == fake_mnist["t10k-images-idx3-ubyte"][16:]


def test_download_md5_mismatch_leaves_nothing(tmp_path, server, fake_mnist):
    name = "train-labels-idx1-ubyte"
    wrong = bytearray(fake_mnist[name])
    wrong[-1] ^= 0x01  # same size, different content
    (server.root / "good" / (name + ".gz")).write_bytes(gzip.compress(bytes(wrong)))
    folder = tmp_path / "dl"
    with pytest.raises(RuntimeError) as err:
        download_mnist(folder, mirrors=(server.bad, server.good), timeout=5)
    msg = str(err.value)
    assert "md5 mismatch" in msg and server.bad + name in msg and server.good + name in msg
    # the file before it in MNIST_FILES order was fine; nothing else, no temp files
    assert os.listdir(folder) == ["train-images-idx3-ubyte.gz"]


def test_failed_or_interrupted_download_keeps_existing_file(tmp_path, server, fake_mnist, monkeypatch):
    name = "train-images-idx3-ubyte"
    folder = tmp_path / "dl"
    folder.mkdir()
    stale = folder / name  # a present but invalid raw file
    stale.write_bytes(b"old contents")
    good_gz = server.root / "good" / (name + ".gz")
    full = good_gz.read_bytes()

    good_gz.write_bytes(full[: len(full) // 2])  # server sends a truncated gzip
    with pytest.raises(RuntimeError, match="gzip"):
        download_mnist(folder, mirrors=(server.good,), timeout=5)
    assert stale.read_bytes() == b"old contents" and os.listdir(folder) == [name]

    good_gz.write_bytes(full)  # valid download, but interrupted while writing
    real_fsync = os.fsync

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download_mnist(folder, mirrors=(server.good,), timeout=5)
    assert stale.read_bytes() == b"old contents" and os.listdir(folder) == [name]

    monkeypatch.setattr(datasets.os, "fsync", real_fsync)
    download_mnist(folder, mirrors=(server.good,), timeout=5)
    assert stale.read_bytes() == fake_mnist[name]  # replaced in place, uncompressed like the original
    assert sorted(os.listdir(folder)) == sorted([name] + [n + ".gz" for n in fake_mnist if n != name])


def test_download_skips_valid_files(tmp_path, server, fake_mnist):
    folder = tmp_path / "dl"
    folder.mkdir()
    for i, (name, content) in enumerate(fake_mnist.items()):
        if i % 2:
            (folder / name).write_bytes(content)
        else:
            (folder / (name + ".gz")).write_bytes(gzip.compress(content))
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    download_mnist(folder, mirrors=(server.good,), timeout=5)
    assert server.log == []
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_load_with_failed_download_explains(tmp_path, server, monkeypatch):
    monkeypatch.setattr(datasets, "MIRRORS", (server.bad,))
    empty = tmp_path / "nothing"
    with pytest.raises(FileNotFoundError) as err:
        load_mnist("test", root=empty, download=True)
    msg = str(err.value)
    for needle in ("t10k-images-idx3-ubyte", str(empty), "FASTVAE_DATA", "root=", server.bad):
        assert needle in msg
    assert isinstance(err.value.__cause__, RuntimeError)


def test_mirrors_are_urls():
    assert len(datasets.MIRRORS) >= 2
    assert all(m.startswith(("http://", "https://")) and m.endswith("/") for m in datasets.MIRRORS)


# --------------------------------------------------------------------------- transforms


def test_binarize_threshold_is_strict_on_the_byte_scale():
    x = torch.tensor([0, 127, 128, 129, 255], dtype=torch.uint8)
    out = binarize(x, 128)
    assert out.dtype == torch.float32 and out.tolist() == [0, 0, 0, 1, 1]
    # the same pixels as floats k / 255
    assert binarize(x.float() / 255, 128).tolist() == [0, 0, 0, 1, 1]
    assert binarize(x.double().numpy() / 255, 128).tolist() == [0, 0, 0, 1, 1]


def test_binarize_default_rounds_the_intensity():
    x = torch.tensor([[127, 128], [0, 255]], dtype=torch.uint8)
    assert binarize(x).tolist() == [[0, 1], [0, 1]]  # 127/255 < 0.5 < 128/255
    # round(255 x) > 127: x = 0.5 is 127.5, which rounds (half to even) to 128
    f = torch.tensor([0.2, 127.4 / 255, 0.5, 0.50001, 1.0])
    assert binarize(f).tolist() == [0, 0, 1, 1, 1]
    assert binarize(f, threshold=0).tolist() == [1, 1, 1, 1, 1]


@real_mnist
def test_binarize_matches_the_homework_rules_on_mnist():
    x, _ = load_mnist("test", root=DATA, download=False)
    x = x[:200]
    assert torch.equal(binarize(x, 128), (x > 128).float())  # ESE 546: pixel > 128
    assert torch.equal(binarize(x), torch.round(x.float() / 255))  # rounding, as STATS 305C, DD2434, HW7


def fit_pixels(images, threshold=127):
    """The pixels fit trains on with pixels='threshold': its byte conversion, then the C++ trainer's gather."""
    from fastvae import _C, pixels
    b = pixels.as_images(images, None, "train_images", "test")
    return _C.gather_pixels(b, torch.arange(b.shape[0]), threshold, "threshold", torch.Generator())


@real_mnist
def test_binarize_and_fit_see_the_same_pixels_on_all_of_mnist():
    # both against the rule's definition (tests/reference/training.py: p = round(255 x), p > threshold)
    for split in ("train", "test"):
        x, _ = load_mnist(split, root=DATA, download=False)
        for images in (x, x.float() / 255):
            want = threshold_pixels(images).reshape(len(x), -1)
            assert torch.equal(binarize(images).reshape(len(x), -1), want), split
            assert torch.equal(fit_pixels(images), want), split
        want = threshold_pixels(x, 128).reshape(len(x), -1)
        assert torch.equal(binarize(x, 128).reshape(len(x), -1), want) and torch.equal(fit_pixels(x, 128), want)


def test_binarize_and_fit_see_the_same_pixels_on_the_digits():
    from sklearn.datasets import load_digits  # in the test extra
    images = load_digits().images / 16.0  # float64 in [0, 1], 17 levels: 8/16 = 0.5 exactly
    assert (images == 0.5).any()
    for imgs in (images, images.astype(np.float32)):
        want = threshold_pixels(imgs).reshape(len(imgs), -1)
        assert torch.equal(binarize(imgs).reshape(len(imgs), -1), want)
        assert torch.equal(fit_pixels(imgs), want)


@pytest.mark.parametrize(
    "kwargs, images, error",
    [
        ({}, torch.tensor([0.1, float("nan")]), ValueError),
        ({"threshold": 1.5}, torch.tensor([0.1]), TypeError),
        ({"threshold": -1}, torch.tensor([0.1]), ValueError),
        ({"threshold": 300}, torch.tensor([1], dtype=torch.uint8), ValueError),
        ({"threshold": float("nan")}, torch.tensor([0.1]), TypeError),
        ({}, torch.tensor([0.0, 255.0]), ValueError),  # float bytes not divided by 255
        ({}, torch.tensor([0, 255], dtype=torch.int32), TypeError),
    ],
)
def test_binarize_errors(kwargs, images, error):
    with pytest.raises(error):
        binarize(images, **kwargs)


def test_subsample_pool_and_stride_values():
    x = torch.arange(28 * 28, dtype=torch.float32).reshape(1, 28, 28)
    i = torch.arange(14).reshape(14, 1)
    j = torch.arange(14).reshape(1, 14)
    pooled = subsample(x)
    assert pooled.shape == (1, 14, 14) and pooled.dtype == torch.float32
    assert torch.equal(pooled[0], (56 * i + 2 * j + 14.5).float())  # mean of 2x2 block
    strided = subsample(x, method="stride")
    assert torch.equal(strided[0], (56 * i + 2 * j).float())
    # flattened input gives flattened output with the same values
    assert torch.equal(subsample(x.reshape(1, 784)), pooled.reshape(1, 196))
    # size 7: 4x4 blocks
    assert subsample(x, 7)[0, 0, 0].item() == pytest.approx(np.mean([r * 28 + c for r in range(4) for c in range(4)]))


def test_subsample_uint8_rounds_and_keeps_dtype():
    x = torch.zeros(2, 28, 28, dtype=torch.uint8)
    x[0, 0:2, 0:2] = torch.tensor([[1, 2], [2, 2]], dtype=torch.uint8)  # mean 1.75 -> 2
    x[0, 0:2, 2:4] = torch.tensor([[0, 0], [0, 1]], dtype=torch.uint8)  # mean 0.25 -> 0
    x[1] = 255
    out = subsample(x)
    assert out.dtype == torch.uint8 and out.shape == (2, 14, 14)
    assert out[0, 0, 0].item() == 2 and out[0, 0, 1].item() == 0
    assert bool((out[1] == 255).all())


@pytest.mark.parametrize(
    "images, kwargs",
    [
        (torch.zeros(2, 28, 28), {"size": 5}),
        (torch.zeros(2, 28, 28), {"size": 56}),
        (torch.zeros(2, 27, 27), {}),
        (torch.zeros(2, 28, 28), {"method": "bilinear"}),
    ],
)
def test_subsample_errors(images, kwargs):
    with pytest.raises(ValueError):
        subsample(images, **kwargs)


def test_flatten_is_view():
    x = torch.zeros(3, 28, 28)
    f = flatten(x)
    assert f.shape == (3, 784)
    f[0, 29] = 1.0
    assert x[0, 1, 1].item() == 1.0


def _toy(n=300, classes=10):
    labels = torch.arange(n) % classes
    images = torch.arange(n).reshape(n, 1).repeat(1, 4)  # row i encodes its index
    return images, labels


def test_balanced_subset_counts_and_order():
    images, labels = _toy()
    sub_x, sub_y, idx = balanced_subset(images, labels, 7, seed=0)
    assert idx.dtype == torch.int64 and idx.shape == (70,)
    assert torch.bincount(sub_y).tolist() == [7] * 10
    assert torch.equal(sub_y, labels[idx]) and torch.equal(sub_x[:, 0], idx)
    assert len(set(idx.tolist())) == 70
    assert torch.equal(sub_y, torch.sort(sub_y, stable=True).values)  # class-sorted


def test_balanced_subset_reproducible():
    images, labels = _toy()
    a = balanced_subset(images, labels, 5, seed=123)[2]
    b = balanced_subset(images, labels, 5, seed=123)[2]
    c = balanced_subset(images, labels, 5, seed=124)[2]
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    d = balanced_subset(images, labels, 5, generator=g1)[2]
    e = balanced_subset(images, labels, 5, generator=g2)[2]
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(d, e)


def test_balanced_subset_exclude_and_errors():
    images, labels = _toy()
    _, _, train_idx = balanced_subset(images, labels, 20, seed=0)
    _, val_y, val_idx = balanced_subset(images, labels, 10, seed=1, exclude=train_idx)
    assert not set(val_idx.tolist()) & set(train_idx.tolist())
    assert torch.bincount(val_y).tolist() == [10] * 10
    with pytest.raises(ValueError, match="class"):
        balanced_subset(images, labels, 11, seed=0, exclude=train_idx)  # 30 - 20 < 11
    with pytest.raises(ValueError, match="class"):
        balanced_subset(images, labels, 31)
    with pytest.raises(ValueError):
        balanced_subset(images, labels, 1, seed=0, generator=torch.Generator())
    with pytest.raises(ValueError):
        balanced_subset(images, labels, 1, exclude=[300])


@real_mnist
def test_balanced_subset_on_mnist_train_val_split():
    # ESE 546 style: 1,000 training images per digit and a disjoint validation set of 10 per digit
    x, y = load_mnist("train", root=DATA, download=False)
    tx, ty, tidx = balanced_subset(x, y, 1000, seed=0)
    vx, vy, vidx = balanced_subset(x, y, 10, seed=1, exclude=tidx)
    assert tx.shape == (10000, 28, 28) and tx.dtype == torch.uint8
    assert torch.bincount(ty).tolist() == [1000] * 10 and torch.bincount(vy).tolist() == [10] * 10
    assert not set(vidx.tolist()) & set(tidx.tolist())
    assert torch.equal(tx, x[tidx])
