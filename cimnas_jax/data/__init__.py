"""Image-classification data for accuracy ground truth.

Default: Fashion-MNIST read from the IDX .gz files of the Debian package
``dataset-fashion-mnist``.  Any other image-classification set can be loaded
from an ``.npz`` (x_train/y_train/x_test/y_test) or a class-per-subfolder
image folder.  All loaders return a :class:`Dataset` of uint8 NHWC images with a
deterministic train/validation split; the test split is for final numbers only.
"""

from cimnas_jax.data.datasets import (
    DEFAULT_FMNIST_DIR,
    Dataset,
    DatasetMissingError,
    batches,
    load_arrays,
    load_dataset,
    load_fashion_mnist,
    load_image_folder,
    preprocess,
    read_idx,
    split_train_val,
)

__all__ = [
    "DEFAULT_FMNIST_DIR",
    "Dataset",
    "DatasetMissingError",
    "batches",
    "load_arrays",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "preprocess",
    "read_idx",
    "split_train_val",
]
