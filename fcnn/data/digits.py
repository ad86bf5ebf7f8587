"""The embedded default dataset: scikit-learn's bundled 8x8 handwritten digits.

1797 images of 8 x 8 pixels with integer intensities 0..16, 10 classes (the UCI
"Optical Recognition of Handwritten Digits" test set, Alpaydin and Kaynak, 1998).
They ship inside scikit-learn, so this needs no download and no data directory.
"""

from __future__ import annotations

import numpy as np

from fcnn.data.split import split_off

NUM_EXAMPLES = 1797
MAX_VALUE = 16
DIGITS_CLASS_NAMES = tuple(str(d) for d in range(10))
# The test split is fixed once and for all: it never depends on the caller's seed.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 0.2


def load_digits(*, test_size=DIGITS_TEST_SIZE, seed: int = DIGITS_SPLIT_SEED, as_float: bool = False):
    """Returns the digits as `((train_images, train_labels), (test_images, test_labels))`.

    Images are (N, 8, 8, 1) NHWC, uint8 in 0..16, or float32 in [0, 1] (value / 16)
    when `as_float`; labels (N,) int32. The test part (`test_size`, a count or a
    fraction, 20% = 359 images by default) is stratified by class and fixed by `seed`.
    """
    from sklearn import datasets  # deferred: importing scikit-learn takes a second

    bunch = datasets.load_digits()
    images = np.asarray(bunch.images).astype(np.uint8)[..., None]
    labels = np.asarray(bunch.target).astype(np.int32)
    if as_float:
        images = np.divide(images, np.float32(MAX_VALUE), dtype=np.float32)
    train, test = split_off(images, labels, test_size, seed=seed, name="test_size")
    return tuple(train), tuple(test)
