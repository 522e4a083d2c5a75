"""Bad inputs of the data readers (read_idx, load_mnist, download_mnist) and the transforms (binarize, subsample,
balanced_subset, flatten), one table row each: (id, a factory building the call from a temp folder, the
exception type, a fragment the message must contain). ``{tmp}`` in a fragment is replaced by the temp folder,
so rows about files also check that the file is named. Nothing here needs the network or the real MNIST files.
The CAVI readers and estimator: tests/cavi/test_cavi_errors.py."""
import gzip
import hashlib
import re
import struct

import numpy as np
import pytest
import torch

from fastvae import datasets
from fastvae.datasets import DataFileError, download_mnist, load_mnist, read_idx

NAN, INF = float("nan"), float("inf")


def idx(arr, code=0x08):
    arr = np.asarray(arr)
    dtype = {0x08: ">u1", 0x0C: ">i4"}[code]
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(dtype).tobytes()


GOOD = idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


def write(folder, name, blob):
    path = folder / name
    path.write_bytes(blob)
    return path


def reads(name, blob):
    """read_idx of ``blob`` stored as ``name``."""
    return lambda t, mp: lambda: read_idx(write(t, name, blob))


def bad_crc():
    gz = bytearray(gzip.compress(GOOD))
    gz[-8] ^= 0xFF
    return bytes(gz)


READ_IDX = [
    ("missing", lambda t, mp: lambda: read_idx(t / "nope.idx"), FileNotFoundError, "nope.idx"),
    ("path_int", lambda t, mp: lambda: read_idx(123), TypeError, "read_idx: path must be a str"),
    ("path_none", lambda t, mp: lambda: read_idx(None), TypeError, "read_idx: path must be a str"),
    ("directory", lambda t, mp: lambda: read_idx(t), IsADirectoryError, "{tmp}"),
    ("empty", reads("e.idx", b""), DataFileError, "{tmp}/e.idx: only 0 bytes"),
    ("tiny", reads("t.idx", b"\x00\x00"), DataFileError, "too short"),
    ("bad_magic", reads("m.idx", b"\x01" + GOOD[1:]), DataFileError, "bad magic"),
    ("dtype_code", reads("c.idx", GOOD[:2] + b"\x07" + GOOD[3:]), DataFileError, "unknown IDX dtype code 0x07"),
    ("zero_dims", reads("z.idx", b"\x00\x00\x08\x00" + bytes(8)), DataFileError, "0 dimensions"),
    ("short_header", reads("h.idx", GOOD[:9]), DataFileError, "truncated header"),
    ("truncated", reads("p.idx", GOOD[:-1]), DataFileError, "23 payload bytes (truncated)"),
    ("trailing_raw", reads("r.idx", GOOD + b"\x00\x00"), DataFileError, "26 payload bytes (trailing bytes)"),
    ("trailing_gzip", reads("g.idx", gzip.compress(GOOD + b"\x00")), DataFileError,
     "more than 24 payload bytes (trailing bytes)"),
    ("gzip_truncated", reads("gt.gz", gzip.compress(GOOD)[:-12]), DataFileError, "corrupt or truncated gzip"),
    ("gzip_crc", reads("gc.gz", bad_crc()), DataFileError, "CRC check failed"),
    ("gzip_garbage_after", reads("ga.gz", gzip.compress(GOOD) + b"xyz"), DataFileError, "corrupt or truncated gzip"),
    ("gzip_header_only", reads("gh.gz", gzip.compress(GOOD)[:10]), DataFileError, "gzip"),
    ("claim_over_cap", reads("big.idx", bytes([0, 0, 8, 2]) + struct.pack(">2I", 2**16, 2**16)),
     DataFileError, "MAX_IDX_BYTES"),
    ("absurd_claim", reads("abs.idx", bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", *[2**32 - 1] * 3)),
     DataFileError, "more than the limit"),
    ("standard_name_claims_more", reads("t10k-labels-idx1-ubyte", idx(np.zeros(20000, np.uint8))),
     DataFileError, "limit of 10008 bytes"),
    ("standard_name_disk_too_big", reads("t10k-labels-idx1-ubyte.gz", bytes(100_000)), DataFileError,
     "bytes on disk"),
]


def split_files(folder, images, labels, labels_code=0x08, gz_labels=False):
    (folder / "t10k-images-idx3-ubyte").write_bytes(idx(images))
    blob = idx(labels, labels_code)
    (folder / ("t10k-labels-idx1-ubyte" + (".gz" if gz_labels else ""))).write_bytes(
        gzip.compress(blob) if gz_labels else blob)
    return folder


def small_split(mp, register=None):
    """Pretend the test split has 5 examples; with ``register``, the files in it count as the standard ones."""
    mp.setitem(datasets._SPLITS, "test", ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 5))
    if register is not None:
        for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            content = (register / name).read_bytes()
            mp.setitem(datasets.MNIST_FILES, name, (len(content), hashlib.md5(content).hexdigest()))


def loads(images, labels, labels_code=0x08, register=False, small=True, corrupt=None, gz_labels=False):
    def build(t, mp):
        split_files(t, np.asarray(images, np.uint8), np.asarray(labels), labels_code, gz_labels)
        if small:
            small_split(mp, t if register else None)
        if corrupt is not None:
            corrupt(t)
        return lambda: load_mnist("test", root=t, download=False)
    return build


def flip_byte(t):
    p = t / "t10k-images-idx3-ubyte"
    b = bytearray(p.read_bytes())
    b[-1] ^= 1
    p.write_bytes(bytes(b))


def cut_gzip(t):
    p = t / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-6])


IMGS = np.zeros((5, 28, 28), np.uint8)
LOAD_MNIST = [
    ("split_int", lambda t, mp: lambda: load_mnist(5, root=t), TypeError, "load_mnist: split must be one of"),
    ("split_unknown", lambda t, mp: lambda: load_mnist("validation", root=t), ValueError,
     "load_mnist: split must be one of ['train', 'test'], got 'validation'"),
    ("split_none", lambda t, mp: lambda: load_mnist(None, root=t), TypeError, "split must be one of"),
    ("download_str", lambda t, mp: lambda: load_mnist("test", root=t, download="no"), TypeError,
     "load_mnist: download must be True or False"),
    ("download_int", lambda t, mp: lambda: load_mnist("test", root=t, download=0), TypeError,
     "download must be True or False"),
    ("root_int", lambda t, mp: lambda: load_mnist("test", root=5), TypeError, "load_mnist: root must be a path"),
    ("missing", lambda t, mp: lambda: load_mnist("test", root=t, download=False), FileNotFoundError,
     "MNIST files missing: t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"),
    ("md5_flipped_byte", loads(IMGS, np.arange(5), register=True, corrupt=flip_byte), DataFileError,
     "{tmp}/t10k-images-idx3-ubyte: md5 mismatch for t10k-images-idx3-ubyte"),
    ("not_the_standard_size", loads(IMGS, np.arange(5)), DataFileError,
     "uncompressed size 3936 bytes, expected 7840016"),
    ("labels_int32", loads(IMGS, np.arange(5), labels_code=0x0C), DataFileError, "expected IDX type 0x08"),
    ("images_flat", loads(np.zeros((5, 784)), np.arange(5)), DataFileError, "expected images of shape [N, 28, 28]"),
    ("labels_2d", loads(IMGS, np.arange(5).reshape(5, 1)), DataFileError, "expected labels of shape [N]"),
    ("count_mismatch", loads(IMGS, np.arange(4)), DataFileError, "5 images but"),
    ("label_10", loads(IMGS, [0, 1, 2, 3, 10]), DataFileError, "label 10 outside 0..9"),
    ("wrong_split_size", loads(IMGS, np.arange(5), small=False), DataFileError, "the MNIST test split has 10000"),
    ("labels_gzip_cut", loads(IMGS, np.arange(5), gz_labels=True, corrupt=cut_gzip), DataFileError,
     "{tmp}/t10k-labels-idx1-ubyte.gz: corrupt or truncated gzip"),
]


def dl(**kwargs):
    return lambda t, mp: lambda: download_mnist(**{"root": t, **kwargs})


DOWNLOAD = [
    ("root_int", dl(root=3.5), TypeError, "download_mnist: root must be a path"),
    ("no_mirrors", dl(mirrors=()), ValueError, "no mirrors given"),
    ("mirrors_none", dl(mirrors=None), TypeError, "mirrors must be a sequence of URL strings"),
    ("mirrors_int", dl(mirrors=[1]), TypeError, "mirrors must be a sequence of URL strings"),
    ("mirror_not_url", dl(mirrors=["ftp://example.org/"]), ValueError, "mirrors must be http(s) URLs"),
    ("mirror_path", dl(mirrors="/tmp/mnist"), ValueError, "mirrors must be http(s) URLs"),
    ("timeout_zero", dl(timeout=0), ValueError, "download_mnist: timeout must be > 0.0"),
    ("timeout_negative", dl(timeout=-5), ValueError, "timeout must be > 0.0"),
    ("timeout_nan", dl(timeout=NAN), ValueError, "timeout must be a finite number"),
    ("timeout_str", dl(timeout="30"), TypeError, "timeout must be a real number"),
    ("timeout_bool", dl(timeout=True), TypeError, "timeout must be a real number"),
]

TABLE = [("read_idx", *r) for r in READ_IDX] + [("load_mnist", *r) for r in LOAD_MNIST] \
    + [("download_mnist", *r) for r in DOWNLOAD]


def test_table_is_large_and_ids_unique():
    ids = [f"{fn}-{name}" for fn, name, *_ in TABLE]
    assert len(ids) == len(set(ids)) and len(ids) >= 40


@pytest.mark.parametrize("fn, name, build, exc, fragment", TABLE, ids=[f"{r[0]}-{r[1]}" for r in TABLE])
def test_bad_input(fn, name, build, exc, fragment, tmp_path, monkeypatch):
    call = build(tmp_path, monkeypatch)
    with pytest.raises(exc, match=re.escape(fragment.replace("{tmp}", str(tmp_path)))) as err:
        call()
    assert type(err.value) is exc  # not merely a subclass: DataFileError rows say so


# -- fastvae.datasets transforms: (call, exception type, message regex), as tests/models/test_model_errors.py
TRANSFORMS = []


def with_entry(t, index, value):
    t = t.clone()
    t[index] = value
    return t


def transform(name, call, exc, match):
    TRANSFORMS.append(pytest.param(call, exc, match, id=name))


# -- fastvae.datasets transforms ------------------------------------------------------------------------------
IM = torch.rand(2, 28, 28)
transform("binarize-list", lambda: datasets.binarize([[0.1]]), TypeError, "images must be a torch.Tensor")
transform("binarize-threshold-str", lambda: datasets.binarize(IM, "127"), TypeError, "threshold must be an integer")
transform("binarize-threshold-bool", lambda: datasets.binarize(IM, True), TypeError, "threshold must be an integer")
transform("binarize-threshold-unit-scale", lambda: datasets.binarize(IM, 0.5), TypeError, "threshold must be an integer")
transform("binarize-threshold-range", lambda: datasets.binarize(IM, 256), ValueError, "threshold must be an integer <= 255")
transform("binarize-images-above-1", lambda: datasets.binarize(IM * 2), ValueError, "in \\[0, 1\\] without NaN")
transform("binarize-nan-images", lambda: datasets.binarize(with_entry(IM, (0, 0, 0), NAN)), ValueError, "NaN")
transform("binarize-bool-images", lambda: datasets.binarize(IM > 0.5), TypeError, "must be uint8 intensities or floats")
transform("subsample-list", lambda: datasets.subsample([[0.0]]), TypeError, "images must be a torch.Tensor")
transform("subsample-size-float", lambda: datasets.subsample(IM, 14.0), TypeError, "size must be an integer")
transform("subsample-size-bool", lambda: datasets.subsample(IM, True), TypeError, "size must be an integer")
transform("subsample-size-5", lambda: datasets.subsample(IM, 5), ValueError, "divisor of 28")
transform("subsample-size-0", lambda: datasets.subsample(IM, 0), ValueError, "divisor of 28")
transform("subsample-shape", lambda: datasets.subsample(torch.zeros(2, 27, 27)), ValueError, "28, 28")
transform("subsample-method", lambda: datasets.subsample(IM, method=None), TypeError, "method must be one of")
LAB = torch.arange(20) % 2
IMS = torch.zeros(20, 4)
transform("balanced_subset-n-float", lambda: datasets.balanced_subset(IMS, LAB, 2.5), TypeError,
    "n_per_class must be an integer")
transform("balanced_subset-n-bool", lambda: datasets.balanced_subset(IMS, LAB, True), TypeError, "must be an integer")
transform("balanced_subset-n-0", lambda: datasets.balanced_subset(IMS, LAB, 0), ValueError,
    "n_per_class must be an integer >= 1")
transform("balanced_subset-seed-float", lambda: datasets.balanced_subset(IMS, LAB, 2, seed=2.5), TypeError,
    "seed must be an integer")
transform("balanced_subset-generator", lambda: datasets.balanced_subset(IMS, LAB, 2, generator=3), TypeError,
    "generator must be a torch.Generator")
transform("balanced_subset-labels-float", lambda: datasets.balanced_subset(IMS, LAB + 0.7, 2), TypeError,
    "labels must be integers")
transform("balanced_subset-images-list", lambda: datasets.balanced_subset(IMS.tolist(), LAB, 2), TypeError,
    "images must be a torch.Tensor")
transform("flatten-list", lambda: datasets.flatten([[0.0]]), TypeError, "images must be a torch.Tensor")
transform("flatten-1d", lambda: datasets.flatten(torch.zeros(784)), ValueError, "expected")


@pytest.mark.parametrize("call,exc,match", TRANSFORMS)
def test_transform_bad_input(call, exc, match):
    with pytest.raises(Exception) as info:
        call()
    assert type(info.value) is exc, f"expected {exc.__name__}, got {type(info.value).__name__}: {info.value}"
    assert match and re.search(match, str(info.value)), str(info.value)
