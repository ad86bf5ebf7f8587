"""Strict test configuration: rank promotion raises, float64 is available for
gradient checks (tests choose dtypes explicitly), and dataset tests know whether a
missing dataset is a skip or a failure."""

import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_x64", True)

REQUIRE_DATA = os.environ.get("FCNN_REQUIRE_DATA", "") not in ("", "0")


def skip_or_fail_missing_data(reason: str):
    """Skips a test whose dataset is absent, or fails it when FCNN_REQUIRE_DATA=1."""
    if REQUIRE_DATA:
        pytest.fail(f"FCNN_REQUIRE_DATA=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cifar10_dir():
    """The data folder holding CIFAR-10 (the JPEG zip or the binary version)."""
    root = os.environ.get("FCNN_DATA_DIR")
    if not root:
        skip_or_fail_missing_data("FCNN_DATA_DIR is not set (it should point at shared/data)")
    from fcnn.data import find_cifar10_images

    for folder in (root, os.path.join(root, "cifar10")):
        if os.path.isdir(folder) and find_cifar10_images(folder):
            return root
    skip_or_fail_missing_data(f"CIFAR-10 not found in {root!r} or its cifar10/ folder")
