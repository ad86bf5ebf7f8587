"""Peak Python-level allocation of a call that must fail (tests of bounded reading)."""

import tracemalloc

import pytest


def peak_of_failure(fn, error) -> tuple[int, str]:
    """(peak traced allocation in bytes, message) of `fn()`, which must raise `error`."""
    tracemalloc.start()
    try:
        with pytest.raises(error) as raised:
            fn()
        return tracemalloc.get_traced_memory()[1], str(raised.value)
    finally:
        tracemalloc.stop()
