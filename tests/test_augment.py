"""Augmentations: identities, shapes and dtypes under vmap and jit, determinism, and
comparison with plain-loop NumPy versions written from the documented formulas."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from fcnn import augment as A

KEY = jax.random.PRNGKey(42)
_rng = np.random.default_rng(0)
# One shape and dtype throughout, so eager runs reuse the compiled primitives.
IMAGE = _rng.uniform(0.0, 1.0, (8, 8, 3)).astype(np.float32)
IMAGE_U8 = _rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
SQUARE = IMAGE
ATOL = 2e-6
EIGVECS = np.linalg.qr(_rng.normal(size=(3, 3)))[0].astype(np.float32)
EIGVALS = np.array([0.5, 0.2, 0.05], np.float32)

ZERO_STRENGTH = (
    ("crop", functools.partial(A.random_crop, padding=0)),
    ("flip", functools.partial(A.random_flip, horizontal=True, vertical=True, probability=0.0)),
    ("shift", functools.partial(A.random_shift, max_shift=0.0)),
    ("rotation", functools.partial(A.random_rotation, max_degrees=0.0)),
    ("scale", functools.partial(A.random_scale, min_scale=1.0, max_scale=1.0)),
    ("noise", functools.partial(A.gaussian_noise, std=0.0)),
    ("blur", functools.partial(A.blur, max_sigma=0.0)),
    ("color", functools.partial(A.color_jitter, brightness=0.0, contrast=0.0, saturation=0.0)),
    ("pca", functools.partial(A.pca_lighting, eigvals=EIGVALS, eigvecs=EIGVECS, std=0.0)),
)

# Default settings, except noise and PCA strengths large enough to show on uint8 images.
RANDOM = (
    ("crop", A.random_crop),
    ("flip", A.random_flip),
    ("shift", A.random_shift),
    ("rotation", A.random_rotation),
    ("scale", A.random_scale),
    ("noise", functools.partial(A.gaussian_noise, std=20.0)),
    ("blur", A.blur),
    ("color", A.color_jitter),
    ("pca", functools.partial(A.pca_lighting, eigvals=EIGVALS * 100, eigvecs=EIGVECS)),
)


# NumPy oracles, plain loops over output pixels --------------------------------


def np_bilinear(image, source):
    """out[i, j] = bilinear sample of image at source(i, j), zero outside."""
    h, w, c = image.shape
    out = np.zeros((h, w, c))
    for i in range(h):
        for j in range(w):
            r, s = source(i, j)
            r0, s0 = math.floor(r), math.floor(s)
            for rr, wr in ((r0, 1 - (r - r0)), (r0 + 1, r - r0)):
                for ss, ws in ((s0, 1 - (s - s0)), (s0 + 1, s - s0)):
                    if 0 <= rr < h and 0 <= ss < w:
                        out[i, j] += wr * ws * image[rr, ss]
    return out


def np_rotate(image, degrees):
    h, w, _ = image.shape
    cr, cc, t = (h - 1) / 2, (w - 1) / 2, math.radians(degrees)

    def source(i, j):
        dy, dx = i - cr, j - cc
        return cr + dy * math.cos(t) + dx * math.sin(t), cc + dx * math.cos(t) - dy * math.sin(t)

    return np_bilinear(image, source)


def np_zoom(image, factor):
    h, w, _ = image.shape
    cr, cc = (h - 1) / 2, (w - 1) / 2
    return np_bilinear(image, lambda i, j: (cr + (i - cr) / factor, cc + (j - cc) / factor))


def np_blur(image, sigma, size):
    radius = size // 2
    taps = np.array([math.exp(-k * k / (2 * sigma * sigma)) for k in range(-radius, radius + 1)])
    taps /= taps.sum()
    h, w, c = image.shape
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    out = np.zeros((h, w, c))
    for i in range(h):
        for j in range(w):
            for a in range(size):
                for b in range(size):
                    out[i, j] += taps[a] * taps[b] * padded[i + a, j + b]
    return out


# Identities, shapes, dtypes, determinism ---------------------------------------


class IdentityTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*ZERO_STRENGTH)
    def test_zero_strength_is_identity(self, fn):
        out = self.variant(fn)(KEY, IMAGE)
        assert out.dtype == IMAGE.dtype
        np.testing.assert_array_equal(np.asarray(out), IMAGE)

    @chex.variants(with_jit=True, without_jit=True)
    def test_flips_twice_are_identity(self):
        for flip in (A.flip_horizontal, A.flip_vertical):
            np.testing.assert_array_equal(self.variant(lambda x: flip(flip(x)))(IMAGE), IMAGE)
        np.testing.assert_array_equal(A.flip_horizontal(IMAGE), IMAGE[:, ::-1])
        np.testing.assert_array_equal(A.flip_vertical(IMAGE), IMAGE[::-1])
        always = functools.partial(A.random_flip, horizontal=True, vertical=True, probability=1.0)
        np.testing.assert_array_equal(self.variant(always)(KEY, IMAGE), IMAGE[::-1, ::-1])
        twice = A.chain(always, always)
        np.testing.assert_array_equal(self.variant(twice)(KEY, IMAGE), IMAGE)

    @chex.variants(with_jit=True, without_jit=True)
    def test_crop_of_padded_image(self):
        crop = self.variant(lambda x, top, left: A.crop(x, top, left, 8, 8))
        padded = A.pad(IMAGE, 3)
        chex.assert_shape(padded, (14, 14, 3))
        np.testing.assert_array_equal(crop(padded, 3, 3), IMAGE)
        np.testing.assert_array_equal(crop(A.pad(IMAGE, 0), 0, 0), IMAGE)
        np.testing.assert_array_equal(crop(padded, 0, 0)[3:, 3:], IMAGE[:5, :5])
        np.testing.assert_array_equal(crop(padded, 0, 0)[:3], 0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_random_crop_is_a_shift_within_padding(self):
        padding = 2
        numpy_padded = np.pad(IMAGE, ((padding, padding), (padding, padding), (0, 0)))
        windows = [
            numpy_padded[t:t + 8, s:s + 8]
            for t in range(2 * padding + 1) for s in range(2 * padding + 1)
        ]
        crop = self.variant(functools.partial(A.random_crop, padding=padding))
        hits = set()
        for k in range(30):
            out = np.asarray(crop(jax.random.PRNGKey(k), IMAGE))
            matches = [i for i, w in enumerate(windows) if np.array_equal(out, w)]
            assert len(matches) == 1
            hits.add(matches[0])
        assert len(hits) > 5
        reflect = np.asarray(A.random_crop(KEY, IMAGE, padding=2, mode="reflect"))
        np.testing.assert_array_equal(np.isin(reflect, IMAGE), True)


def test_zero_strength_is_identity_for_integer_images():
    @jax.jit
    def run_all(rng, image):
        return {name: fn(rng, image) for name, fn in ZERO_STRENGTH}

    for name, out in run_all(KEY, IMAGE_U8).items():
        assert out.dtype == np.uint8, name
        np.testing.assert_array_equal(np.asarray(out), IMAGE_U8, err_msg=name)


@pytest.mark.parametrize("name, fn", RANDOM, ids=[name for name, _ in RANDOM])
def test_batch_shape_dtype_and_determinism(name, fn):
    del name
    batches = (np.stack([IMAGE] * 6), np.stack([IMAGE_U8] * 6))

    @jax.jit
    def run(rng):
        return tuple(A.map_batch(fn, rng, batch) for batch in batches)

    outs = run(KEY)
    for out, again, other, batch in zip(outs, run(KEY), run(jax.random.PRNGKey(7)), batches):
        chex.assert_shape(out, batch.shape)
        assert out.dtype == batch.dtype
        np.testing.assert_array_equal(np.asarray(again), np.asarray(out))
        # One key per example: the same image comes out differently across the batch.
        assert any(not np.array_equal(out[0], out[k]) for k in range(1, 6))
        assert not np.array_equal(np.asarray(other), np.asarray(out))


def test_max_traces_one_for_new_keys():
    chex.clear_trace_counter()
    fn = A.chain(A.random_flip, A.random_crop)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def augment(rng, batch):
        return A.map_batch(fn, rng, batch)

    batch = jnp.stack([IMAGE] * 4)
    for k in range(3):
        augment(jax.random.PRNGKey(k), batch)


# Geometry against the NumPy oracles --------------------------------------------


@pytest.mark.parametrize("degrees", [30.0, -17.0, 90.0])
def test_rotate_matches_numpy(degrees):
    np.testing.assert_allclose(A.rotate(SQUARE, degrees), np_rotate(SQUARE, degrees), atol=ATOL)


def test_rotate_quarter_turns_are_rot90():
    np.testing.assert_allclose(A.rotate(SQUARE, 90.0), np.rot90(SQUARE, 1), atol=ATOL)
    np.testing.assert_allclose(A.rotate(SQUARE, 180.0), SQUARE[::-1, ::-1], atol=ATOL)
    np.testing.assert_allclose(A.rotate(SQUARE, -90.0), np.rot90(SQUARE, -1), atol=ATOL)


@pytest.mark.parametrize("factor", [1.3, 0.7])
def test_zoom_matches_numpy(factor):
    np.testing.assert_allclose(A.zoom(SQUARE, factor), np_zoom(SQUARE, factor), atol=ATOL)


def test_translate_integer_and_fractional():
    out = np.asarray(A.translate(SQUARE, 2.0, -1.0))
    np.testing.assert_array_equal(out[2:, :-1], SQUARE[:-2, 1:])
    np.testing.assert_array_equal(out[:2], 0.0)
    np.testing.assert_array_equal(out[:, -1], 0.0)
    half = np.asarray(A.translate(SQUARE, 0.0, 0.5))
    np.testing.assert_allclose(half[:, 1:], (SQUARE[:, :-1] + SQUARE[:, 1:]) / 2, atol=ATOL)


def test_uint8_geometry_rounds_and_stays_in_range():
    out = np.asarray(A.rotate(IMAGE_U8, 33.0))
    assert out.dtype == np.uint8
    expected = np.clip(np.round(np_rotate(IMAGE_U8.astype(np.float64), 33.0)), 0, 255)
    assert np.max(np.abs(out.astype(int) - expected.astype(int))) <= 1


def test_random_rotation_within_range():
    # The angle is the documented uniform draw from the same key.
    out = A.random_rotation(KEY, SQUARE, max_degrees=20.0)
    angle = float(jax.random.uniform(KEY, (), jnp.float32, minval=-20.0, maxval=20.0))
    assert -20.0 <= angle <= 20.0
    np.testing.assert_allclose(out, np_rotate(SQUARE, angle), atol=ATOL)


# Blur, noise, colour -----------------------------------------------------------


@pytest.mark.parametrize("sigma, size", [(0.8, 3), (1.5, 5)])
def test_gaussian_blur_matches_numpy(sigma, size):
    np.testing.assert_allclose(A.gaussian_blur(SQUARE, sigma, size), np_blur(SQUARE, sigma, size), atol=ATOL)


def test_blur_keeps_constant_images():
    flat = np.full((5, 5, 3), 0.25, np.float32)
    np.testing.assert_allclose(A.blur(KEY, flat, max_sigma=2.0), flat, rtol=1e-6)


def test_gaussian_noise_statistics():
    big = np.zeros((64, 64, 3), np.float32)
    out = np.asarray(A.gaussian_noise(KEY, big, std=0.3))
    assert abs(out.mean()) < 0.02 and abs(out.std() - 0.3) < 0.02


def test_color_adjustments_match_formulas():
    x = IMAGE
    gray = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(A.adjust_brightness(x, 1.5), 1.5 * x, rtol=1e-6)
    np.testing.assert_allclose(A.adjust_contrast(x, 0.3), gray.mean() + 0.3 * (x - gray.mean()), atol=ATOL)
    np.testing.assert_allclose(A.adjust_saturation(x, 0.4), gray[..., None] + 0.4 * (x - gray[..., None]), atol=ATOL)
    np.testing.assert_allclose(A.adjust_saturation(x, 0.0), np.repeat(gray[..., None], 3, axis=2), atol=ATOL)
    np.testing.assert_allclose(A.adjust_contrast(x, 0.0), np.full_like(x, gray.mean()), atol=ATOL)
    one = IMAGE[..., :1]
    np.testing.assert_array_equal(A.adjust_saturation(one, 0.0), one)  # grey already
    jittered = np.asarray(A.color_jitter(KEY, IMAGE_U8, brightness=0.9, contrast=0.9, saturation=0.9))
    assert jittered.dtype == np.uint8 and not np.array_equal(jittered, IMAGE_U8)


# PCA lighting ------------------------------------------------------------------


def test_pca_components_match_numpy():
    mixing = np.array([[1.0, 0.5, 0.2], [0.0, 0.8, 0.3], [0.0, 0.0, 0.4]])
    pixels = _rng.normal(size=(4000, 3)) @ mixing
    images = pixels.reshape(40, 10, 10, 3)
    eigvals, eigvecs = A.pca_components(images)
    expected_vals, expected_vecs = np.linalg.eigh(np.cov(pixels, rowvar=False))
    np.testing.assert_allclose(eigvals, expected_vals[::-1], rtol=1e-10)
    # Eigenvectors are defined up to sign: compare the projectors v v^T.
    for i in range(3):
        v, e = np.asarray(eigvecs[:, i]), expected_vecs[:, 2 - i]
        np.testing.assert_allclose(np.outer(v, v), np.outer(e, e), atol=1e-10)
    assert np.all(np.diff(np.asarray(eigvals)) <= 0)


def test_pca_lighting_moves_pixels_along_components():
    x = IMAGE
    out = np.asarray(A.pca_lighting(KEY, x, EIGVALS, EIGVECS, std=0.5))
    delta = out.astype(np.float64) - x
    # The same colour shift for every pixel ...
    np.testing.assert_allclose(delta, np.broadcast_to(delta[0, 0], delta.shape), atol=ATOL)
    # ... whose coordinates along the components are alpha_i * lambda_i, alpha ~ N(0, 0.5^2).
    coords = EIGVECS.astype(np.float64).T @ delta[0, 0]
    alpha = 0.5 * np.asarray(jax.random.normal(KEY, (3,), jnp.float32))
    np.testing.assert_allclose(coords, alpha * EIGVALS, rtol=1e-4, atol=1e-6)
    # Only the first component has variance: the shift is parallel to it.
    only_first = np.array([1.0, 0.0, 0.0], np.float32)
    shift = np.asarray(A.pca_lighting(KEY, x, only_first, EIGVECS, std=0.5))[0, 0] - x[0, 0]
    shift = shift.astype(np.float64)
    np.testing.assert_allclose(np.abs(EIGVECS[:, 0] @ shift), np.linalg.norm(shift), rtol=1e-5)
    assert np.linalg.norm(shift) > 0


# Errors -----------------------------------------------------------------------


def test_errors():
    with pytest.raises(ValueError, match=r"random_crop: image has shape \(2, 8, 8, 3\).*jax.vmap"):
        A.random_crop(KEY, np.stack([IMAGE] * 2))
    with pytest.raises(ValueError, match=r"std=-0.1: expected a finite number >= 0"):
        A.gaussian_noise(KEY, IMAGE, std=-0.1)
    with pytest.raises(ValueError, match=r"kernel_size=4: expected a positive odd int"):
        A.gaussian_blur(IMAGE, 1.0, kernel_size=4)
    with pytest.raises(ValueError, match=r"padding=-1"):
        A.random_crop(KEY, IMAGE, padding=-1)
    with pytest.raises(ValueError, match=r"mode='mirror'"):
        A.pad(IMAGE, 2, mode="mirror")
    with pytest.raises(ValueError, match=r"min_scale=1.2, max_scale=1.1"):
        A.random_scale(KEY, IMAGE, min_scale=1.2, max_scale=1.1)
    with pytest.raises(ValueError, match=r"expected \(3,\) and \(3, 3\) from pca_components"):
        A.pca_lighting(KEY, IMAGE, EIGVALS[:2], EIGVECS)
    with pytest.raises(ValueError, match=r"probability=1.5: expected a finite number in \[0, 1\]"):
        A.random_flip(KEY, IMAGE, probability=1.5)
    with pytest.raises(ValueError, match=r"map_batch: images has shape \(8, 8, 3\)"):
        A.map_batch(A.random_flip, KEY, IMAGE)
