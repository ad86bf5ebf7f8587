"""Input normalization with statistics fitted on the training split only.

Both kinds are the per-channel affine map x' = (x - shift[c]) / scale[c]:

- "standardize": shift = mean, scale = standard deviation of channel c over all
  training pixels (zero mean, unit variance per channel);
- "minmax": shift = min, scale = max - min of channel c (values in [0, 1]).

The fitted `Normalization` travels with the dataset, so validation, test and later
inference use the training statistics, never their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALIZATIONS = ("standardize", "minmax")
_CHUNK_EXAMPLES = 4096


@dataclass(frozen=True, eq=False)
class Normalization:
    """Per-channel statistics: x' = (x - shift) / scale, shift and scale of shape (C,)."""

    kind: str
    shift: np.ndarray
    scale: np.ndarray

    def apply(self, images):
        """Normalizes images (..., C) (numpy or jax); numpy input gives float32."""
        shift, scale = self._broadcastable(images)
        if isinstance(images, np.ndarray):
            out = np.subtract(images, shift, dtype=np.float32)
            out /= scale
            return out
        return (images - shift) / scale

    def invert(self, images):
        """Maps normalized images back to the original units: x = x' * scale + shift."""
        shift, scale = self._broadcastable(images)
        return images * scale + shift

    def _broadcastable(self, images):
        channels = self.shift.shape[0]
        if images.shape[-1] != channels:
            raise ValueError(
                f"images have shape {tuple(images.shape)}: this {self.kind} normalization "
                f"was fitted on {channels} channels (the last axis)"
            )
        # Explicit ranks: jax is configured to refuse implicit rank promotion.
        shape = (1,) * (images.ndim - 1) + (channels,)
        return self.shift.reshape(shape), self.scale.reshape(shape)

    @property
    def mean(self) -> np.ndarray:
        """Alias of `shift` (the channel means for "standardize")."""
        return self.shift

    @property
    def std(self) -> np.ndarray:
        """Alias of `scale` (the channel standard deviations for "standardize")."""
        return self.scale


def _chunks(images):
    for start in range(0, images.shape[0], _CHUNK_EXAMPLES):
        yield images[start:start + _CHUNK_EXAMPLES].reshape(-1, images.shape[-1])


def channel_mean_std(images) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation over (N, H, W), in float64.

    Two passes over chunks of examples: no float64 copy of the whole set is made.
    """
    images = np.asarray(images)
    count = images.size // images.shape[-1]
    total = sum(chunk.sum(axis=0, dtype=np.float64) for chunk in _chunks(images))
    mean = total / count
    squares = sum(
        np.square(chunk.astype(np.float64) - mean).sum(axis=0) for chunk in _chunks(images)
    )
    return mean, np.sqrt(squares / count)


def check_normalization(kind) -> str | None:
    """A normalization name: one of NORMALIZATIONS, or None for raw values."""
    if kind is not None and kind not in NORMALIZATIONS:
        raise ValueError(f"normalize={kind!r}: expected one of {NORMALIZATIONS} or None")
    return kind


def fit_normalization(images, kind: str = "standardize") -> Normalization:
    """Fits per-channel statistics on training images (N, H, W, C).

    A channel that is constant gets scale 1 (it is only shifted), so nothing divides
    by zero.
    """
    if check_normalization(kind) is None:
        raise ValueError(f"normalize=None: nothing to fit; expected one of {NORMALIZATIONS}")
    images = np.asarray(images)
    if images.ndim < 2 or images.shape[0] == 0:
        raise ValueError(
            f"images have shape {images.shape}: fitting a normalization needs at least "
            "one example, channels last"
        )
    if kind == "standardize":
        shift, scale = channel_mean_std(images)
    else:
        flat = images.reshape(-1, images.shape[-1])
        shift = flat.min(axis=0).astype(np.float64)
        scale = flat.max(axis=0).astype(np.float64) - shift
    scale = np.where(scale > 0, scale, 1.0)
    return Normalization(kind, shift.astype(np.float32), scale.astype(np.float32))
