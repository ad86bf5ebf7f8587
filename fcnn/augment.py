"""Data augmentation: pure, jittable functions of one image (H, W, C), keyed by rng.

Each random augmentation is `fn(rng, image, **settings) -> image` with the same shape
and dtype as its input (integer images are computed in float32, then rounded and
clipped back). They act on one example; map them over a batch with `jax.vmap` and one
key per example, as `map_batch` does. Settings are Python values fixed when the
function is traced (close over them with functools.partial before jit); strengths of
zero give back the input unchanged. Each random transform has a deterministic
counterpart (`flip_horizontal`, `crop`, `translate`, `rotate`, `zoom`,
`gaussian_blur`, `adjust_brightness`, ...).

Geometric transforms resample with bilinear interpolation about the image centre and
fill what falls outside the input with `fill`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from fcnn._checks import check_int, is_int, number_or_array

PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")
# ITU-R BT.601 luma weights, used for grayscale by contrast and saturation jitter.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_MIN_SIGMA = 1e-6


# Checks and dtype handling -----------------------------------------------------


def _check_image(image, fn: str):
    image = jnp.asarray(image)
    if image.ndim != 3:
        raise ValueError(
            f"{fn}: image has shape {tuple(image.shape)}: expected one image (H, W, C); "
            f"for a batch use jax.vmap or fcnn.augment.map_batch({fn}, rng, images)"
        )
    return image


def _non_negative(value, name: str):
    """A strength >= 0: checked when it is a number; an array (traced) passes unchecked."""
    return number_or_array(value, name, low=0.0)


def _int_pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if is_int(value) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(is_int(v) and v >= 0 for v in pair)
    ):
        raise ValueError(
            f"{name}={value!r}: expected a non-negative int or a pair (rows, cols) of them"
        )
    return int(pair[0]), int(pair[1])


def _check_mode(mode: str) -> str:
    if mode not in PAD_MODES:
        raise ValueError(f"mode={mode!r}: expected one of {PAD_MODES}")
    return mode


def _float_dtype(dtype):
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32


def _as_float(image):
    return image.astype(_float_dtype(image.dtype))


def _restore(result, dtype):
    """Casts back to the input dtype; integer images are rounded and clipped."""
    if jnp.issubdtype(dtype, jnp.integer):
        info = jnp.iinfo(dtype)
        result = jnp.clip(jnp.round(result), info.min, info.max)
    return result.astype(dtype)


def _uniform(rng, low, high, dtype):
    return jax.random.uniform(rng, (), dtype, minval=low, maxval=high)


# Flips -------------------------------------------------------------------------


def flip_horizontal(image):
    """Mirrors left-right: out[i, j] = image[i, W - 1 - j]. (H, W, C) -> (H, W, C)."""
    return _check_image(image, "flip_horizontal")[:, ::-1, :]


def flip_vertical(image):
    """Mirrors top-bottom: out[i, j] = image[H - 1 - i, j]. (H, W, C) -> (H, W, C)."""
    return _check_image(image, "flip_vertical")[::-1, :, :]


def random_flip(rng, image, horizontal: bool = True, vertical: bool = False, probability: float = 0.5):
    """Flips left-right (and/or top-bottom), each with `probability`."""
    image = _check_image(image, "random_flip")
    probability = number_or_array(probability, "probability", low=0.0, high=1.0)
    key_h, key_v = jax.random.split(rng)
    if horizontal:
        image = jnp.where(jax.random.bernoulli(key_h, probability), image[:, ::-1, :], image)
    if vertical:
        image = jnp.where(jax.random.bernoulli(key_v, probability), image[::-1, :, :], image)
    return image


# Crops -------------------------------------------------------------------------


def pad(image, padding=4, mode: str = "constant"):
    """Pads rows and columns by `padding` (int or (rows, cols)) on both sides.

    (H, W, C) -> (H + 2 p_r, W + 2 p_c, C); "constant" pads with zeros.
    """
    image = _check_image(image, "pad")
    p_rows, p_cols = _int_pair(padding, "padding")
    return jnp.pad(image, ((p_rows, p_rows), (p_cols, p_cols), (0, 0)), mode=_check_mode(mode))


def crop(image, top, left, height: int, width: int):
    """The window image[top:top + height, left:left + width]; top and left may be traced.

    `height` and `width` are ints that fit the image; a concrete `top` or `left` must
    keep the window inside it (a traced one is clamped, as `lax.dynamic_slice` does).
    """
    image = _check_image(image, "crop")
    rows, cols = image.shape[:2]
    for name, size, limit in (("height", height, rows), ("width", width, cols)):
        check_int(size, f"crop: {name}", low=1, high=limit,
                  hint=f"for an image of shape {tuple(image.shape)}")
    for name, start, size, span, limit in (("top", top, "height", height, rows),
                                           ("left", left, "width", width, cols)):
        if is_int(start) and not 0 <= start <= limit - span:
            raise ValueError(
                f"crop: {name}={start!r} with {size}={span}: the window leaves the image of "
                f"shape {tuple(image.shape)}; expected {name} in [0, {limit - span}]"
            )
    return lax.dynamic_slice(image, (top, left, 0), (height, width, image.shape[2]))


def random_crop(rng, image, padding=4, mode: str = "constant"):
    """Pads by `padding` then crops back to (H, W) at a uniform random offset.

    The offset (in [0, 2 p] per axis) moves the content by up to `padding` pixels
    each way; offset (p_r, p_c) returns the input. As in the CIFAR-10 training of
    He et al. (2016), "Deep residual learning for image recognition".
    """
    image = _check_image(image, "random_crop")
    p_rows, p_cols = _int_pair(padding, "padding")
    height, width, _ = image.shape
    padded = pad(image, (p_rows, p_cols), mode)
    key_r, key_c = jax.random.split(rng)
    top = jax.random.randint(key_r, (), 0, 2 * p_rows + 1)
    left = jax.random.randint(key_c, (), 0, 2 * p_cols + 1)
    return crop(padded, top, left, height, width)


# Resampling (shift, rotation, scale) ------------------------------------------


def _bilinear(image, rows, cols, fill):
    """Samples image (H, W, C) at float coordinates rows, cols (H', W') -> (H', W', C).

    Samples outside the image read `fill`. Integer coordinates return the pixels
    exactly (the other taps get weight 0).
    """
    height, width, _ = image.shape
    row0, col0 = jnp.floor(rows), jnp.floor(cols)
    frac_r, frac_c = (rows - row0)[..., None], (cols - col0)[..., None]
    row0, col0 = row0.astype(jnp.int32), col0.astype(jnp.int32)

    def tap(r, c):
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        values = image[jnp.clip(r, 0, height - 1), jnp.clip(c, 0, width - 1)]
        return jnp.where(inside[..., None], values, fill)

    top = (1 - frac_c) * tap(row0, col0) + frac_c * tap(row0, col0 + 1)
    bottom = (1 - frac_c) * tap(row0 + 1, col0) + frac_c * tap(row0 + 1, col0 + 1)
    return (1 - frac_r) * top + frac_r * bottom


def _centred_grid(image):
    """Output pixel offsets from the image centre ((H - 1) / 2, (W - 1) / 2)."""
    height, width, _ = image.shape
    dtype = _float_dtype(image.dtype)
    centre_r, centre_c = (height - 1) / 2, (width - 1) / 2
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=dtype), jnp.arange(width, dtype=dtype), indexing="ij"
    )
    return rows - centre_r, cols - centre_c, centre_r, centre_c


def translate(image, shift_rows, shift_cols, fill: float = 0.0):
    """Moves the content down by `shift_rows` and right by `shift_cols` pixels.

    out[i, j] = image[i - shift_rows, j - shift_cols], bilinear for fractional shifts.
    """
    image = _check_image(image, "translate")
    x = _as_float(image)
    d_rows, d_cols, c_rows, c_cols = _centred_grid(image)
    rows = d_rows + c_rows - jnp.asarray(shift_rows, x.dtype)
    cols = d_cols + c_cols - jnp.asarray(shift_cols, x.dtype)
    return _restore(_bilinear(x, rows, cols, fill), image.dtype)


def rotate(image, degrees, fill: float = 0.0):
    """Rotates the content counter-clockwise (as displayed, row 0 on top) about the centre.

    With offsets (dy, dx) of an output pixel from the centre (dy downwards), it reads
    the input at (dy cos t + dx sin t, dx cos t - dy sin t), t = degrees * pi / 180.
    """
    image = _check_image(image, "rotate")
    x = _as_float(image)
    d_rows, d_cols, c_rows, c_cols = _centred_grid(image)
    angle = jnp.deg2rad(jnp.asarray(degrees, x.dtype))
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    rows = c_rows + (d_rows * cos + d_cols * sin)
    cols = c_cols + (d_cols * cos - d_rows * sin)
    return _restore(_bilinear(x, rows, cols, fill), image.dtype)


def zoom(image, factor, fill: float = 0.0):
    """Scales the content by `factor` about the centre (> 1 enlarges), same output size.

    out at offset d from the centre reads the input at offset d / factor.
    """
    image = _check_image(image, "zoom")
    factor = number_or_array(factor, "zoom: factor", low=0.0, low_open=True,
                             hint="(1 is the identity)")
    x = _as_float(image)
    d_rows, d_cols, c_rows, c_cols = _centred_grid(image)
    factor = jnp.asarray(factor, x.dtype)
    return _restore(
        _bilinear(x, c_rows + d_rows / factor, c_cols + d_cols / factor, fill), image.dtype
    )


def random_shift(rng, image, max_shift: float = 0.1, fill: float = 0.0):
    """Translates by a uniform random fraction in [-max_shift, max_shift] of H and of W."""
    image = _check_image(image, "random_shift")
    _non_negative(max_shift, "max_shift")
    height, width, _ = image.shape
    dtype = _float_dtype(image.dtype)
    key_r, key_c = jax.random.split(rng)
    shift_rows = _uniform(key_r, -max_shift, max_shift, dtype) * height
    shift_cols = _uniform(key_c, -max_shift, max_shift, dtype) * width
    return translate(image, shift_rows, shift_cols, fill)


def random_rotation(rng, image, max_degrees: float = 15.0, fill: float = 0.0):
    """Rotates by a uniform random angle in [-max_degrees, max_degrees] degrees."""
    image = _check_image(image, "random_rotation")
    _non_negative(max_degrees, "max_degrees")
    angle = _uniform(rng, -max_degrees, max_degrees, _float_dtype(image.dtype))
    return rotate(image, angle, fill)


def random_scale(rng, image, min_scale: float = 0.9, max_scale: float = 1.1, fill: float = 0.0):
    """Zooms by a uniform random factor in [min_scale, max_scale] (1, 1 is the identity)."""
    image = _check_image(image, "random_scale")
    min_scale = number_or_array(min_scale, "min_scale", low=0.0, low_open=True)
    max_scale = number_or_array(max_scale, "max_scale", low=0.0, low_open=True)
    if isinstance(min_scale, float) and isinstance(max_scale, float):
        if min_scale > max_scale:
            raise ValueError(
                f"min_scale={min_scale!r}, max_scale={max_scale!r}: expected "
                "0 < min_scale <= max_scale"
            )
    factor = _uniform(rng, min_scale, max_scale, _float_dtype(image.dtype))
    return zoom(image, factor, fill)


# Noise and blur ----------------------------------------------------------------


def gaussian_noise(rng, image, std: float = 0.05):
    """Adds independent N(0, std^2) noise to every value (std in the image's units)."""
    image = _check_image(image, "gaussian_noise")
    _non_negative(std, "std")
    x = _as_float(image)
    return _restore(x + std * jax.random.normal(rng, x.shape, x.dtype), image.dtype)


def _gaussian_taps(sigma, kernel_size: int, dtype):
    radius = kernel_size // 2
    offsets = jnp.arange(-radius, radius + 1, dtype=dtype)
    sigma = jnp.maximum(jnp.asarray(sigma, dtype), _MIN_SIGMA)
    weights = jnp.exp(-jnp.square(offsets) / (2 * jnp.square(sigma)))
    return weights / jnp.sum(weights)


def gaussian_blur(image, sigma, kernel_size: int = 5, mode: str = "reflect"):
    """Separable Gaussian blur: rows then columns with w_k ~ exp(-k^2 / (2 sigma^2)).

    `kernel_size` (odd) taps k = -r..r, weights normalised to sum 1; borders padded
    with `mode`. sigma = 0 is the identity.
    """
    image = _check_image(image, "gaussian_blur")
    if not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size={kernel_size!r}: expected a positive odd int (taps -r..r around "
            "each pixel)"
        )
    _non_negative(sigma, "sigma")
    _check_mode(mode)
    x = _as_float(image)
    weights = _gaussian_taps(sigma, kernel_size, x.dtype)
    radius = kernel_size // 2
    height, width, _ = x.shape
    padded = jnp.pad(x, ((radius, radius), (0, 0), (0, 0)), mode=mode)
    x = sum(weights[k] * padded[k:k + height] for k in range(kernel_size))
    padded = jnp.pad(x, ((0, 0), (radius, radius), (0, 0)), mode=mode)
    x = sum(weights[k] * padded[:, k:k + width] for k in range(kernel_size))
    return _restore(x, image.dtype)


def blur(rng, image, max_sigma: float = 1.0, kernel_size: int = 5, mode: str = "reflect"):
    """Gaussian blur with sigma drawn uniformly in [0, max_sigma] pixels."""
    image = _check_image(image, "blur")
    _non_negative(max_sigma, "max_sigma")
    sigma = _uniform(rng, 0.0, max_sigma, _float_dtype(image.dtype))
    return gaussian_blur(image, sigma, kernel_size, mode)


# Colour ------------------------------------------------------------------------


def grayscale(image):
    """Luma (H, W, 1): BT.601 weights for 3 channels, the mean over channels otherwise."""
    image = _check_image(image, "grayscale")
    x = _as_float(image)
    if x.shape[2] == 3:
        return jnp.tensordot(x, jnp.asarray(LUMA_WEIGHTS, x.dtype), axes=1)[..., None]
    return jnp.mean(x, axis=2, keepdims=True)


def adjust_brightness(image, factor):
    """Scales intensities: out = factor * x."""
    image = _check_image(image, "adjust_brightness")
    x = _as_float(image)
    return _restore(x * jnp.asarray(factor, x.dtype), image.dtype)


def adjust_contrast(image, factor):
    """Blends with the mean grey level m: out = m + factor (x - m) = x + (factor - 1)(x - m)."""
    image = _check_image(image, "adjust_contrast")
    x = _as_float(image)
    mean = jnp.mean(grayscale(x))
    return _restore(x + (jnp.asarray(factor, x.dtype) - 1) * (x - mean), image.dtype)


def adjust_saturation(image, factor):
    """Blends with the pixel's own grey g: out = x + (factor - 1)(x - g); 0 gives grey."""
    image = _check_image(image, "adjust_saturation")
    x = _as_float(image)
    return _restore(x + (jnp.asarray(factor, x.dtype) - 1) * (x - grayscale(x)), image.dtype)


def color_jitter(rng, image, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2):
    """Random brightness, contrast and saturation, in that order.

    Each factor is drawn uniformly in [max(0, 1 - s), 1 + s] for its strength s. Meant
    for non-negative intensities (before standardization).
    """
    image = _check_image(image, "color_jitter")
    for value, name in ((brightness, "brightness"), (contrast, "contrast"), (saturation, "saturation")):
        _non_negative(value, name)
    dtype = _float_dtype(image.dtype)
    key_b, key_c, key_s = jax.random.split(rng, 3)

    def factor(key, strength):
        return _uniform(key, jnp.maximum(1 - jnp.asarray(strength, dtype), 0), 1 + jnp.asarray(strength, dtype), dtype)

    x = _as_float(image)
    x = adjust_brightness(x, factor(key_b, brightness))
    x = adjust_contrast(x, factor(key_c, contrast))
    x = adjust_saturation(x, factor(key_s, saturation))
    return _restore(x, image.dtype)


def pca_components(images):
    """Eigenvalues and eigenvectors of the channel covariance of a training set.

    images (N, H, W, C) or pixels (M, C) -> (eigvals (C,), eigvecs (C, C)), eigenvalues
    in decreasing order, eigvecs[:, i] the i-th principal component. The covariance is
    computed in floating point on the device; pass a subsample for very large sets.
    """
    x = jnp.asarray(images)
    if x.ndim < 2:
        raise ValueError(
            f"pca_components: images has shape {tuple(x.shape)}: expected (N, H, W, C) "
            "or pixels (M, C)"
        )
    pixels = _as_float(x).reshape(-1, x.shape[-1])
    if pixels.shape[0] < 2:
        raise ValueError("pca_components needs at least two pixels")
    centred = pixels - jnp.mean(pixels, axis=0, keepdims=True)
    covariance = centred.T @ centred / (pixels.shape[0] - 1)
    eigvals, eigvecs = jnp.linalg.eigh(covariance)
    return jnp.maximum(eigvals[::-1], 0), eigvecs[:, ::-1]


def pca_lighting(rng, image, eigvals, eigvecs, std: float = 0.1):
    """AlexNet's "lighting" jitter: adds sum_i alpha_i lambda_i p_i to every pixel.

    alpha_i ~ N(0, std^2), one draw per image; lambda_i, p_i are the eigenvalues and
    eigenvectors from `pca_components` of the training set (in the same units as the
    image). Krizhevsky, Sutskever and Hinton (2012), section 4.1.
    """
    image = _check_image(image, "pca_lighting")
    _non_negative(std, "std")
    x = _as_float(image)
    channels = x.shape[2]
    eigvals = jnp.asarray(eigvals, x.dtype)
    eigvecs = jnp.asarray(eigvecs, x.dtype)
    if eigvals.shape != (channels,) or eigvecs.shape != (channels, channels):
        raise ValueError(
            f"pca_lighting: eigvals {tuple(eigvals.shape)} and eigvecs "
            f"{tuple(eigvecs.shape)} do not match an image of {channels} channels: "
            f"expected ({channels},) and ({channels}, {channels}) from pca_components"
        )
    alpha = std * jax.random.normal(rng, (channels,), x.dtype)
    delta = eigvecs @ (alpha * eigvals)
    return _restore(x + delta.reshape(1, 1, channels), image.dtype)


# Batches -----------------------------------------------------------------------


def chain(*augmentations):
    """Composes `fn(rng, image)` augmentations into one, each with its own key."""

    def augment(rng, image):
        for fn, key in zip(augmentations, jax.random.split(rng, max(len(augmentations), 1))):
            image = fn(key, image)
        return image

    return augment


def map_batch(fn, rng, images):
    """Applies `fn(rng, image)` to every image of a batch (N, H, W, C), one key each."""
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"map_batch: images has shape {tuple(images.shape)}: expected (N, H, W, C)"
        )
    return jax.vmap(fn)(jax.random.split(rng, images.shape[0]), images)
