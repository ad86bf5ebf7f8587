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
