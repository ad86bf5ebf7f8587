"""Datasets: readers (MNIST IDX, CIFAR-10 binary, image folders and zips, embedded
digits), splits, normalization and batching.

    ds = fcnn.data.load_dataset("mnist", "/path/to/data", validation_size=5000)
    ds = fcnn.data.load_image_folder("my_images.zip")   # train/<class>/*.jpg, test/...
    batches = fcnn.data.BatchIterator(ds.train.images, ds.train.labels, 128, seed=0)
    for images, labels in batches.epoch_batches():
        ...
"""

from fcnn.data.batching import BatchIterator
from fcnn.data.cache import CACHE_ENV
from fcnn.data.cifar10 import (
    CIFAR10_CLASS_NAMES,
    find_cifar10_images,
    read_cifar10,
    read_cifar10_class_names,
    read_cifar10_images,
)
from fcnn.data.dataset import DATA_DIR_ENV, DATASETS, Dataset, load_dataset, load_image_folder
from fcnn.data.digits import load_digits
from fcnn.data.errors import DataFormatError
from fcnn.data.idx import (
    FASHION_MNIST_CLASS_NAMES,
    MNIST_CLASS_NAMES,
    read_fashion_mnist,
    read_idx,
    read_mnist,
)
from fcnn.data.image_folder import (
    IMAGE_EXTENSIONS,
    ImageFolderInfo,
    image_folder_class_names,
    inspect_image_folder,
    read_image_folder,
)
from fcnn.data.normalize import Normalization, fit_normalization
from fcnn.data.split import Split, split_off, subsample, train_validation_test_split

__all__ = [
    "BatchIterator", "CACHE_ENV", "CIFAR10_CLASS_NAMES", "DATASETS", "DATA_DIR_ENV",
    "DataFormatError", "Dataset", "FASHION_MNIST_CLASS_NAMES", "IMAGE_EXTENSIONS",
    "ImageFolderInfo", "MNIST_CLASS_NAMES", "Normalization", "Split", "find_cifar10_images",
    "fit_normalization", "image_folder_class_names", "inspect_image_folder", "load_dataset",
    "load_digits", "load_image_folder", "read_cifar10", "read_cifar10_class_names",
    "read_cifar10_images", "read_fashion_mnist", "read_idx", "read_image_folder",
    "read_mnist", "split_off", "subsample", "train_validation_test_split",
]
