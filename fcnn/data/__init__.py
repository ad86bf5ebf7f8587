"""Datasets: readers (MNIST IDX, CIFAR-10 binary, embedded digits), splits,
normalization and batching.

    ds = fcnn.data.load_dataset("mnist", "/path/to/data", validation_size=5000)
    batches = fcnn.data.BatchIterator(ds.train.images, ds.train.labels, 128, seed=0)
    for images, labels in batches.epoch_batches():
        ...
"""

from fcnn.data.batching import BatchIterator
from fcnn.data.cifar10 import CIFAR10_CLASS_NAMES, read_cifar10, read_cifar10_class_names
from fcnn.data.dataset import DATA_DIR_ENV, DATASETS, Dataset, load_dataset
from fcnn.data.digits import load_digits
from fcnn.data.errors import DataFormatError
from fcnn.data.idx import (
    FASHION_MNIST_CLASS_NAMES,
    MNIST_CLASS_NAMES,
    read_fashion_mnist,
    read_idx,
    read_mnist,
)
from fcnn.data.normalize import Normalization, fit_normalization
from fcnn.data.split import Split, split_off, train_validation_test_split

__all__ = [
    "BatchIterator", "CIFAR10_CLASS_NAMES", "DATASETS", "DATA_DIR_ENV", "DataFormatError",
    "Dataset", "FASHION_MNIST_CLASS_NAMES", "MNIST_CLASS_NAMES", "Normalization", "Split",
    "fit_normalization", "load_dataset", "load_digits", "read_cifar10",
    "read_cifar10_class_names", "read_fashion_mnist", "read_idx", "read_mnist", "split_off",
    "train_validation_test_split",
]
