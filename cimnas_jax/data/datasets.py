"""Dataset loaders (host side, numpy only).

Images are kept as uint8 NHWC arrays (N, H, W, C) and labels as int32 (N,);
``preprocess`` turns a uint8 batch into float32 in [-1, 1] at the network's
input resolution (centre zero-padding or nearest resize).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

DEFAULT_FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FMNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
SPLIT_SEED = 20240531  # fixed: the train/validation split never changes


class DatasetMissingError(FileNotFoundError):
    """Raised when dataset files are absent; the message says how to get them."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """uint8 NHWC images and int32 labels, split into train / val / test."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple = ()

    @property
    def image_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of split ``name`` in {'train', 'val', 'test'}."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be one of 'train', 'val', 'test'; got {name!r}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally .gz): big-endian magic (0,0,dtype,ndim), dims, data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4]!r})")
    dtype = _IDX_DTYPES.get(raw[2])
    if dtype is None:
        raise ValueError(f"{path}: unknown IDX data type code 0x{raw[2]:02x}")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    data = np.frombuffer(raw, dtype=dtype, offset=offset)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} ({int(np.prod(dims))} items), file has {data.size}")
    return data.reshape(dims).astype(np.dtype(dtype).newbyteorder("="))


def split_train_val(x: np.ndarray, y: np.ndarray, n_val: int, seed: int = SPLIT_SEED):
    """Deterministic split of a training set into (x_tr, y_tr, x_val, y_val)."""
    if not 0 <= n_val < len(x):
        raise ValueError(f"n_val must be in [0, {len(x)}); got {n_val}")
    perm = np.random.default_rng(seed).permutation(len(x))
    val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return x[tr], y[tr], x[val], y[val]


def _as_nhwc_uint8(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{what}: expected images (N,H,W) or (N,H,W,C); got shape {x.shape}")
    if x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):  # NCHW -> NHWC
        x = np.transpose(x, (0, 2, 3, 1))
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and x.max() <= 1.0:
            x = np.round(x * 255.0)
        x = np.clip(x, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x)


def _finish(name, x_tr, y_tr, x_te, y_te, n_val, seed, class_names=()) -> Dataset:
    x_tr, x_te = _as_nhwc_uint8(x_tr, "x_train"), _as_nhwc_uint8(x_te, "x_test")
    y_tr, y_te = np.asarray(y_tr).astype(np.int32).ravel(), np.asarray(y_te).astype(np.int32).ravel()
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise ValueError(f"{name}: image/label counts differ: {len(x_tr)}/{len(y_tr)}, {len(x_te)}/{len(y_te)}")
    x_tr, y_tr, x_va, y_va = split_train_val(x_tr, y_tr, n_val, seed)
    num_classes = int(max(y_tr.max(initial=0), y_te.max(initial=0))) + 1
    return Dataset(name, x_tr, y_tr, x_va, y_va, x_te, y_te, num_classes, tuple(class_names))


def load_fashion_mnist(data_dir: Optional[str] = None, n_val: int = 5000,
                       seed: int = SPLIT_SEED) -> Dataset:
    """Fashion-MNIST from IDX .gz files: 60 000 train (minus n_val validation), 10 000 test."""
    data_dir = Path(data_dir or DEFAULT_FMNIST_DIR)
    missing = [f for f in FMNIST_FILES.values()
               if not (data_dir / f).exists() and not (data_dir / f[:-3]).exists()]
    if missing:
        raise DatasetMissingError(
            f"Fashion-MNIST not found in {data_dir} (missing: {', '.join(missing)}). "
            f"Install it with `apt-get install dataset-fashion-mnist` (files land in "
            f"{DEFAULT_FMNIST_DIR}), or pass --data_dir=<folder with the four IDX files "
            f"{', '.join(FMNIST_FILES.values())}>.")
    arr = {}
    for key, fname in FMNIST_FILES.items():
        p = data_dir / fname
        arr[key] = read_idx(p if p.exists() else data_dir / fname[:-3])
    return _finish("fashion_mnist", arr["x_train"], arr["y_train"], arr["x_test"], arr["y_test"],
                   n_val, seed, FMNIST_CLASSES)


def load_arrays(path: str | os.PathLike, n_val: int = 5000, seed: int = SPLIT_SEED) -> Dataset:
    """Any image-classification set stored as .npz with x_train, y_train, x_test, y_test."""
    path = Path(path)
    if not path.exists():
        raise DatasetMissingError(f"--data_dir: {path} does not exist (expected an .npz with "
                                  "x_train, y_train, x_test, y_test)")
    with np.load(path) as z:
        need = ("x_train", "y_train", "x_test", "y_test")
        absent = [k for k in need if k not in z.files]
        if absent:
            raise ValueError(f"{path}: missing arrays {absent}; an .npz dataset needs {need}")
        names = tuple(str(s) for s in z["class_names"]) if "class_names" in z.files else ()
        return _finish(path.stem, z["x_train"], z["y_train"], z["x_test"], z["y_test"],
                       n_val, seed, names)


_IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _read_folder(root: Path, classes: list[str], size: int, channels: int):
    from PIL import Image  # lazy: only needed for image folders

    xs, ys = [], []
    for ci, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() in _IMG_EXT:
                im = Image.open(f).convert("L" if channels == 1 else "RGB").resize((size, size))
                xs.append(np.asarray(im, np.uint8))
                ys.append(ci)
    if not xs:
        raise DatasetMissingError(f"{root}: no images ({', '.join(_IMG_EXT)}) in class subfolders")
    return np.stack(xs), np.asarray(ys, np.int32)


def load_image_folder(path: str | os.PathLike, image_size: int = 32, channels: int = 3,
                      n_val: int = 5000, seed: int = SPLIT_SEED) -> Dataset:
    """Class-per-subfolder images.  ``path/train/<class>/*`` and ``path/test/<class>/*``
    (``val`` accepted for test); without those, all of ``path/<class>/*`` is split 80/20
    into train/test with the fixed seed.  Images are resized to image_size (needs PIL)."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetMissingError(f"--data_dir: {root} is not a folder of class subfolders")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
        x_tr, y_tr = _read_folder(root / "train", classes, image_size, channels)
        x_te, y_te = _read_folder(test_dir, classes, image_size, channels)
    else:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        x, y = _read_folder(root, classes, image_size, channels)
        x_tr, y_tr, x_te, y_te = split_train_val(x, y, max(1, len(x) // 5), seed)
    n_val = min(n_val, max(1, len(x_tr) // 5))  # at most 20 % of a small set
    return _finish(root.name, x_tr, y_tr, x_te, y_te, n_val, seed, classes)


def load_dataset(dataset: str = "fashion_mnist", data_dir: Optional[str] = None,
                 n_val: int = 5000, image_size: int = 32) -> Dataset:
    """Dispatch on --dataset: 'fashion_mnist' (IDX), 'npz' (file) or 'folder' (image folder)."""
    if dataset == "fashion_mnist":
        return load_fashion_mnist(data_dir, n_val)
    if data_dir is None:
        raise ValueError(f"--dataset={dataset} needs --data_dir (an .npz file or an image folder)")
    if dataset == "npz":
        return load_arrays(data_dir, n_val)
    if dataset == "folder":
        return load_image_folder(data_dir, image_size, n_val=n_val)
    raise ValueError(f"--dataset must be one of 'fashion_mnist', 'npz', 'folder'; got {dataset!r}")


def preprocess(x_uint8: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 NHWC -> float32 in [-1, 1] at resolution x resolution (zero-pad if smaller,
    centre crop if larger; e.g. 28x28 Fashion-MNIST -> 32x32 with a 2-pixel border)."""
    x = np.asarray(x_uint8, np.float32) * (2.0 / 255.0) - 1.0
    h, w = x.shape[1:3]
    if h < resolution or w < resolution:
        ph, pw = max(0, resolution - h), max(0, resolution - w)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
                   constant_values=-1.0)
        h, w = x.shape[1:3]
    if h > resolution or w > resolution:
        t, l = (h - resolution) // 2, (w - resolution) // 2
        x = x[:, t:t + resolution, l:l + resolution]
    return x


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epoch: int,
            drop_last: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled mini-batches, deterministic in (seed, epoch) so training can resume."""
    perm = np.random.default_rng([seed, epoch]).permutation(len(x))
    stop = len(x) - batch_size + 1 if drop_last else len(x)
    for i in range(0, max(stop, 0), batch_size):
        idx = perm[i:i + batch_size]
        yield x[idx], y[idx]
