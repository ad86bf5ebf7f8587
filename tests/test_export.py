"""Export: the inference function as serialized StableHLO, reloaded in a fresh process.

Tolerance: the reloaded function is compiled again from the StableHLO (with the
params as constants), so XLA may fuse and order the float32 sums differently from
`predict`'s compilation: outputs agree to rtol = atol = 1e-5 (measured: ~1e-6).
"""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import fcnn
from fcnn.export import export_predict, load_exported
from fcnn.train import predict

pytest.importorskip(
    "flatbuffers", reason="jax.export serialization needs the flatbuffers package "
                          "(a dependency of fcnn's export; pip install flatbuffers)")

TOL = dict(rtol=1e-5, atol=1e-5)


def conv_net():
    model = fcnn.serial(fcnn.Conv(4, 3), fcnn.BatchNorm(), fcnn.Relu(), fcnn.MaxPool(2),
                        fcnn.Flatten(), fcnn.Dropout(0.5), fcnn.Dense(5))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 8, 8, 1))
    state = jax.tree.map(lambda x: x + 0.25 if x.dtype == np.float32 else x, state)
    return model, params, state


def images(n, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(np.float32)


def test_exported_model_reloads_in_a_fresh_process_and_matches_predict(tmp_path):
    model, params, state = conv_net()
    path = export_predict(model, params, state, (8, 8, 8, 1), tmp_path / "net.stablehlo")
    assert os.listdir(tmp_path) == ["net.stablehlo"]  # no temporary file left
    x = images(13)  # two batches of 8, the last padded
    np.save(tmp_path / "x.npy", x)
    code = textwrap.dedent(f"""
        import numpy as np
        from fcnn.export import load_exported
        fn = load_exported({str(path)!r})
        assert fn.batch_size == 8 and fn.input_shape == (8, 8, 1), fn
        np.save({str(tmp_path / "y.npy")!r}, fn(np.load({str(tmp_path / "x.npy")!r})))
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(tmp_path / "y.npy")
    want = predict(model, params, state, x)
    assert got.shape == (13, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, **TOL)


def test_jax_alone_reads_the_file(tmp_path):
    model, params, state = conv_net()
    path = export_predict(model, params, state, (4, 8, 8, 1), tmp_path / "net.bin",
                          output="probabilities")
    exported = jax.export.deserialize(bytearray(open(path, "rb").read()))
    x = images(4, seed=1)
    np.testing.assert_allclose(np.asarray(exported.call(x)),
                               predict(model, params, state, x, output="probabilities"), **TOL)


def test_symbolic_batch_serves_any_batch_size(tmp_path):
    model = fcnn.models.mlp(3, depth=1, width=16)
    _, params, state = model.init(jax.random.PRNGKey(1), (-1, 8, 8, 1))
    for shape in ("b, 8, 8, 1", (None, 8, 8, 1)):
        fn = load_exported(export_predict(model, params, state, shape, tmp_path / "mlp.bin"))
        assert fn.batch_size is None
        for n in (1, 7, 300):
            x = images(n, seed=n)
            np.testing.assert_allclose(fn(x), predict(model, params, state, x), **TOL)


def test_a_symbolic_batch_through_convolutions(tmp_path):
    """A convolution with a symbolic batch takes XLA's convolution (the CPU lowerings are
    chosen from concrete shapes): one exported function serves every batch size."""
    model, params, state = conv_net()
    export_predict(model, params, state, (None, 8, 8, 1), tmp_path / "net.bin")
    fn = load_exported(tmp_path / "net.bin")
    for n in (1, 5):
        x = images(n, seed=n)
        np.testing.assert_allclose(fn(x), predict(model, params, state, x), **TOL)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(example_shape=(8, 8)), ValueError, r"images of shape \(8, 8\) does not fit the model"),
    (dict(example_shape=(0, 8, 8, 1)), ValueError, r"example_shape=\(0, 8, 8, 1\): expected"),
    (dict(example_shape=(2, 8, -8, 1)), ValueError, r"example_shape=\(2, 8, -8, 1\)"),
    (dict(example_shape=(2, 10, 10, 1)), ValueError, r"does not fit the parameters"),
    (dict(output="classes"), ValueError, r"output='classes'"),
    (dict(path=3), TypeError, r"path=3"),
    (dict(dtype="text"), TypeError, r"dtype='text'"),
])
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs, error, match):
    model, params, state = conv_net()
    args = dict(example_shape=(2, 8, 8, 1), path=tmp_path / "net.bin")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        export_predict(model, params, state, args.pop("example_shape"), args.pop("path"), **args)
    assert os.listdir(tmp_path) == []


def test_loading_checks_the_file_and_the_images(tmp_path):
    model, params, state = conv_net()
    fn = load_exported(export_predict(model, params, state, (2, 8, 8, 1), tmp_path / "net.bin"))
    with pytest.raises(ValueError, match=r"images has shape \(3, 4, 4, 1\): this exported model "
                                         r"takes \(N, 8, 8, 1\)"):
        fn(np.zeros((3, 4, 4, 1), np.float32))
    (tmp_path / "junk.bin").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"junk\.bin' is not a serialized jax.export function"):
        load_exported(tmp_path / "junk.bin")
    assert "batch 2" in repr(fn)
