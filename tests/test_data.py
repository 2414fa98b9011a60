"""Data loaders: IDX parsing, Fashion-MNIST, npz and image-folder sets, split, preprocessing."""

import gzip
import struct

import numpy as np
import pytest

from cimnas_jax.data import (
    DEFAULT_FMNIST_DIR, DatasetMissingError, batches, load_arrays, load_dataset,
    load_fashion_mnist, load_image_folder, preprocess, read_idx, split_train_val)
from pathlib import Path


def _write_idx(path, arr: np.ndarray, gz=True):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def _fake_fmnist(d: Path, n_train=120, n_test=30):
    rng = np.random.default_rng(0)
    _write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28)))
    _write_idx(d / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, n_train))
    _write_idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28)))
    _write_idx(d / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)


def test_read_idx_roundtrip(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (5, 3, 4)).astype(np.uint8)
    _write_idx(tmp_path / "a.gz", a)
    _write_idx(tmp_path / "b", a, gz=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    _write_idx(tmp_path / "short", a)
    raw = gzip.open(tmp_path / "short").read()[:-3]
    (tmp_path / "short2").write_bytes(raw)
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "short2")


def test_fmnist_from_data_dir_and_split_is_deterministic(tmp_path):
    _fake_fmnist(tmp_path)
    d1 = load_fashion_mnist(tmp_path, n_val=20)
    d2 = load_fashion_mnist(str(tmp_path), n_val=20)
    assert d1.x_train.shape == (100, 28, 28, 1) and d1.x_val.shape == (20, 28, 28, 1)
    assert d1.x_test.shape == (30, 28, 28, 1) and d1.num_classes == 10
    np.testing.assert_array_equal(d1.x_val, d2.x_val)
    # train and val are disjoint parts of the original training set
    full = read_idx(tmp_path / "train-images-idx3-ubyte.gz").reshape(120, -1)
    rows = {r.tobytes() for r in full}
    assert all(r.tobytes() in rows for r in d1.x_val.reshape(20, -1))
    assert len({r.tobytes() for r in d1.x_train.reshape(100, -1)} & {r.tobytes() for r in d1.x_val.reshape(20, -1)}) == 0


def test_missing_dataset_says_what_to_install(tmp_path):
    with pytest.raises(DatasetMissingError) as e:
        load_fashion_mnist(tmp_path / "nowhere")
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "--data_dir" in msg
    with pytest.raises(ValueError, match="--dataset must be one of"):
        load_dataset("cifar", str(tmp_path))
    with pytest.raises(ValueError, match="needs --data_dir"):
        load_dataset("npz", None)


def test_npz_loader(tmp_path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "c.npz", x_train=rng.random((50, 3, 8, 8)).astype(np.float32),
             y_train=rng.integers(0, 4, 50), x_test=rng.integers(0, 256, (10, 8, 8, 3)).astype(np.uint8),
             y_test=rng.integers(0, 4, (10, 1)))
    d = load_arrays(tmp_path / "c.npz", n_val=10)
    assert d.x_train.shape == (40, 8, 8, 3) and d.x_train.dtype == np.uint8  # NCHW float -> NHWC uint8
    assert d.y_test.shape == (10,) and d.num_classes <= 4
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="missing arrays"):
        load_arrays(tmp_path / "bad.npz")


def test_image_folder_loader(tmp_path):
    PIL = pytest.importorskip("PIL.Image", reason="PIL not installed: image folders need it")
    rng = np.random.default_rng(3)
    for split, n in (("train", 6), ("test", 2)):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                PIL.fromarray(rng.integers(0, 256, (10, 12, 3)).astype(np.uint8)).save(
                    tmp_path / split / c / f"{i}.png")
    d = load_image_folder(tmp_path, image_size=8, n_val=2)
    assert d.x_train.shape == (10, 8, 8, 3) and d.x_val.shape == (2, 8, 8, 3)
    assert d.x_test.shape == (4, 8, 8, 3) and d.class_names == ("cat", "dog")
    assert sorted(np.unique(d.y_test).tolist()) == [0, 1]


def test_preprocess_and_batches():
    x = np.full((3, 28, 28, 1), 255, np.uint8)
    p = preprocess(x, 32)
    assert p.shape == (3, 32, 32, 1) and p.dtype == np.float32
    assert p[0, 0, 0, 0] == -1.0 and p[0, 2, 2, 0] == 1.0 and p[0, 29, 29, 0] == 1.0 and p[0, 30, 30, 0] == -1.0
    assert preprocess(x, 24).shape == (3, 24, 24, 1)
    xs = np.arange(10)[:, None]
    b1 = [b[1].tolist() for b in batches(xs, np.arange(10), 4, seed=0, epoch=1)]
    b2 = [b[1].tolist() for b in batches(xs, np.arange(10), 4, seed=0, epoch=1)]
    b3 = [b[1].tolist() for b in batches(xs, np.arange(10), 4, seed=0, epoch=2)]
    assert b1 == b2 and b1 != b3 and len(b1) == 2
    a = split_train_val(xs, np.arange(10), 3)
    assert len(a[2]) == 3 and len(a[0]) == 7


def test_real_fashion_mnist_if_installed():
    if not Path(DEFAULT_FMNIST_DIR, "train-images-idx3-ubyte.gz").exists():
        pytest.skip("dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)")
    d = load_fashion_mnist()
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (55000, 5000, 10000)
    assert d.image_shape == (28, 28, 1) and d.num_classes == 10
    assert np.bincount(d.y_test).tolist() == [1000] * 10
