"""The benchmark harness (benchmarks/): the same model in every framework, the command
line, the allocator choice and the report.

The peers' frameworks (flax, equinox, haiku) live in .venv-bench, not in the test
environment: their tests skip with the reason; fcnn's, stax's (part of jax) and
PyTorch's (when installed) run.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from benchmarks import bench, report
from benchmarks.peers import _common

# ----------------------------------------------------------------------------------
# Parameter counts by hand, from the architectures (not from any code under test).


def _conv(k, cin, cout, bias):
    return k * k * cin * cout + (cout if bias else 0)


def refnet_by_hand() -> int:
    return (_conv(3, 1, 32, True) + _conv(3, 32, 64, True)
            + 7 * 7 * 64 * 128 + 128 + 128 * 10 + 10)


def resnet20_by_hand() -> int:
    stem = _conv(3, 3, 16, False) + 2 * 16
    total, c_in = stem, 16
    for width in (16, 32, 64):
        for block in range(3):
            total += _conv(3, c_in, width, False) + 2 * width  # conv1, bn1
            total += _conv(3, width, width, False) + 2 * width  # conv2, bn2
            c_in = width  # option A shortcuts: no parameters
    return total + 64 * 10 + 10


def vgg11_bn_by_hand() -> int:
    total, c_in = 0, 3
    for width in (64, 128, 256, 256, 512, 512, 512, 512):
        total += _conv(3, c_in, width, True) + 2 * width
        c_in = width
    return total + 512 * 10 + 10


BY_HAND = {"refnet": refnet_by_hand(), "resnet20": resnet20_by_hand(),
           "vgg11_bn": vgg11_bn_by_hand()}


def test_the_hand_counts_are_the_published_ones():
    # fcnn.models docstrings / docs/models.md: 269,722 and 9,231,114.
    assert BY_HAND == {"refnet": 421_642, "resnet20": 269_722, "vgg11_bn": 9_231_114}


@pytest.mark.parametrize("model", sorted(_common.MODELS))
def test_the_shared_architecture_has_the_hand_count(model):
    spec = _common.MODELS[model]
    assert _common.param_count(spec) == BY_HAND[model]
    params = _common.make_params(0, spec)
    assert sum(v.size for v in params.values()) == BY_HAND[model]
    # He normal weights, zero biases, BatchNorm scale 1 and shift 0.
    for key, value in params.items():
        role = key.rsplit(".", 1)[1]
        if role == "scale":
            assert np.all(value == 1)
        elif role in ("b", "bias"):
            assert np.all(value == 0)
        else:
            fan_in = int(np.prod(value.shape[:-1]))
            assert abs(value.std() * np.sqrt(fan_in / 2) - 1) < (0.35 if value.size < 500 else 0.1)


def test_flops_by_hand():
    assert _common.forward_flops_per_image("refnet") == 8_482_304
    # ResNet-20: stem; 6 convs at 32x32x16; one stride-2 conv into 16x16x32 and five at
    # 16x16x32; the same into 8x8x64; the dense layer.
    res = (32 * 32 * 16 * 27 + 6 * 32 * 32 * 16 * 144 + 16 * 16 * 32 * 144
           + 5 * 16 * 16 * 32 * 288 + 8 * 8 * 64 * 288 + 5 * 8 * 8 * 64 * 576 + 64 * 10) * 2
    assert _common.forward_flops_per_image("resnet20") == res == 81_102_080
    vgg = (32 * 32 * 64 * 27 + 16 * 16 * 128 * 576 + 8 * 8 * 256 * 1152 + 8 * 8 * 256 * 2304
           + 4 * 4 * 512 * 2304 + 4 * 4 * 512 * 4608 + 2 * 2 * 2 * 512 * 4608 + 512 * 10) * 2
    assert _common.forward_flops_per_image("vgg11_bn") == vgg == 305_539_072
    assert _common.step_flops_per_image("vgg11_bn") == 3 * vgg


# ----------------------------------------------------------------------------------
# Each framework's model: its own parameter count, every shared array used once.

SKIP_REASON = ("{module} is not installed in this environment; the peers' frameworks "
               "are in the `bench` extra, which `make bench` installs into .venv-bench")


def peer(name: str):
    """The peer module, or a skip naming what is missing."""
    needs = {"linen": "flax", "equinox": "equinox", "haiku": "haiku", "torch": "torch",
             "stax": "jax.example_libraries.stax"}
    if name in needs:
        pytest.importorskip(needs[name], reason=SKIP_REASON.format(module=needs[name]))
    import importlib

    return importlib.import_module("benchmarks.peers." + ("fcnn_model" if name == "fcnn"
                                                          else name))


def built_count(name: str, model: str) -> int:
    """Builds the framework's model from the shared parameters, checks that each was
    taken once, and returns the framework's own count of its parameters."""
    spec = _common.MODELS[model]
    shared = _common.SharedParams(_common.make_params(0, spec))
    made = peer(name).make(spec, shared)  # every peer's make returns its count last
    return shared.check(made[-1], spec)


FRAMEWORKS = ("fcnn", "stax", "linen", "equinox", "haiku", "torch")


@pytest.mark.parametrize("model", sorted(_common.MODELS))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_framework_builds_the_hand_counted_model(framework, model):
    assert built_count(framework, model) == BY_HAND[model]


def test_fcnn_counts_its_zoo_models_itself():
    """fcnn's own count_params of the zoo models, independent of the shared arrays."""
    import jax

    import fcnn
    from benchmarks.peers import fcnn_model

    for name, spec in _common.MODELS.items():
        layer = fcnn_model.zoo_model(name)
        params = jax.eval_shape(lambda: layer.init(jax.random.PRNGKey(0),
                                                   (2,) + spec.image)[1])
        assert fcnn.count_params(params) == BY_HAND[name], name


def test_a_missing_shared_parameter_is_caught():
    spec = _common.MODELS["resnet20"]
    shared = _common.SharedParams(_common.make_params(0, spec))
    for key in list(shared.params)[:-1]:
        shared.take(*key.rsplit(".", 1))
    with pytest.raises(AssertionError, match="unused"):
        shared.check(_common.param_count(spec), spec)
    shared.take("fc", "b")
    with pytest.raises(AssertionError, match="expected 269,722"):
        shared.check(269_722 + 576, spec)


@functools.lru_cache(maxsize=None)
def first_two_losses(name: str) -> tuple[float, float]:
    """The losses of the first two ResNet-20 training steps at batch 4.

    The peers run as in their own processes: stax's Dense adds its bias by rank
    promotion, which the suite's conftest turns into an error."""
    import jax

    module = peer(name)
    args = _common.parse_args(["--model", "resnet20", "--batch", "4"])
    spec = _common.MODELS["resnet20"]
    x, y = _common.make_data(4, 0, spec.image)
    shared = _common.SharedParams(_common.make_params(0, spec))
    with jax.numpy_rank_promotion("allow"):
        step, info = module.build(args, spec, shared, x, y)
        shared.check(info["param_count"], spec)
        return step(), step()


@pytest.mark.parametrize("framework", ["stax", "torch", "linen", "equinox", "haiku"])
def test_the_first_resnet20_step_has_fcnn_s_loss(framework):
    """Same architecture (option A shortcuts, BatchNorm on batch statistics), same
    parameters, same batch: the same loss, and the step runs."""
    theirs = first_two_losses(framework)
    ours = first_two_losses("fcnn")
    assert theirs[0] == pytest.approx(ours[0], rel=1e-4)
    assert theirs[1] == pytest.approx(ours[1], rel=1e-3)  # after one SGD step
    assert theirs[1] < theirs[0]


# ----------------------------------------------------------------------------------
# The command line.


def _run_main(main, argv, capsys):
    try:
        code = main(list(argv))
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, expected", [
    (["--models", "resnet21"],
     "argument --models: unknown models 'resnet21'; valid models: refnet, resnet20, vgg11_bn"),
    (["--models", "refnet,refnet"], "each of the models at most once"),
    (["--frameworks", "fcnn,mxnet"], "unknown frameworks 'mxnet'"),
    (["--allocator", "jemalloc"], "unknown allocators 'jemalloc'; valid allocators: default, "
                                  "tcmalloc, mimalloc, both"),
    (["--steps", "0"], "'0': expected a positive integer"),
])
def test_bad_arguments_are_refused_in_one_line(argv, expected, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("parsed " + str(argv)))
    code, _, err = _run_main(bench.main, argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and expected in err, err


def test_the_peer_process_refuses_an_unknown_model(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _common.parse_args(["--model", "resnet21"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "argument --model: invalid choice: 'resnet21'" in err


def test_defaults_per_model_and_quick():
    args = bench.parse_args([])
    assert args.models == ["refnet", "resnet20", "vgg11_bn"]
    assert "torch_cl" in args.frameworks and args.rounds == 3
    assert args.allocator == ["both"]
    assert args.plan == {
        "refnet": {"batch": [128, 32], "steps": 50, "warmup": 10, "max_seconds": 0.0},
        "resnet20": {"batch": [128], "steps": 30, "warmup": 2, "max_seconds": 20.0},
        "vgg11_bn": {"batch": [128], "steps": 30, "warmup": 2, "max_seconds": 20.0}}
    quick = bench.parse_args(["--quick", "--models", "resnet20", "--batch", "8"])
    assert quick.rounds == 1 and quick.plan == {
        "resnet20": {"batch": [8], "steps": 3, "warmup": 1, "max_seconds": 20.0}}
    given = bench.parse_args(["--quick", "--steps", "7", "--max-seconds", "0"])
    assert given.plan["vgg11_bn"]["steps"] == 7 and given.plan["vgg11_bn"]["max_seconds"] == 0
    # Estimate: more rounds and allocators, more time; minutes, not hours, by default;
    # the time limit per process shortens it.
    one = bench.estimate_s(args.plan, args.frameworks, 2, 1)
    assert bench.estimate_s(args.plan, args.frameworks, 2, 3) == pytest.approx(3 * one)
    assert bench.estimate_s(args.plan, args.frameworks, 1, 1) < one
    assert 10 * 60 < 3 * one < 120 * 60
    unlimited = bench.parse_args(["--max-seconds", "0"]).plan
    assert bench.estimate_s(unlimited, args.frameworks, 2, 1) > one


def test_a_process_stops_timing_after_max_seconds_but_not_before_min_steps(monkeypatch):
    class Clock:  # every step takes exactly one second
        now = 0.0

        def perf_counter(self):
            return self.now

        process_time = perf_counter

    clock = Clock()
    monkeypatch.setattr(_common, "time", clock)

    def step():
        clock.now += 1.0
        return 1.0

    assert _common.time_steps(step, 50, 1, max_seconds=3.5, min_steps=2)["steps_timed"] == 4
    assert _common.time_steps(step, 50, 1, max_seconds=0.5, min_steps=3)["steps_timed"] == 3
    timed = _common.time_steps(step, 5, 2)
    assert timed["steps_timed"] == 5 and timed["step_ms_median"] == 1000.0


def test_torch_channels_last_runs_on_the_cifar_models_only():
    from benchmarks.peers import runs_on

    assert not runs_on("torch_cl", "refnet")
    assert runs_on("torch_cl", "resnet20") and runs_on("torch_cl", "vgg11_bn")
    assert runs_on("fcnn", "refnet")


# ----------------------------------------------------------------------------------
# Allocators.

def test_both_means_default_and_the_first_preloadable(monkeypatch):
    monkeypatch.setattr(bench, "preloads", lambda path: True)
    finders = {"tcmalloc": lambda: "/lib/libtcmalloc.so", "mimalloc": lambda: "/lib/libmimalloc.so"}
    wanted, paths, notes = bench.resolve_allocators(["both"], finders)
    assert wanted == ["default", "mimalloc"] and not notes
    assert paths == {"default": None, "mimalloc": "/lib/libmimalloc.so"}
    finders["mimalloc"] = lambda: None
    wanted, paths, _ = bench.resolve_allocators(["both"], finders)
    assert wanted == ["default", "tcmalloc"] and paths["tcmalloc"] == "/lib/libtcmalloc.so"
    wanted, _, _ = bench.resolve_allocators(["mimalloc", "tcmalloc"], finders)
    assert wanted == ["tcmalloc"]


def test_a_missing_allocator_is_reported_and_left_out():
    finders = {"tcmalloc": lambda: None, "mimalloc": lambda: "/no/such/libmimalloc.so"}
    wanted, paths, notes = bench.resolve_allocators(["both"], finders)
    assert wanted == ["default"] and paths == {"default": None}
    text = " ".join(notes)
    assert "did not load with LD_PRELOAD" in text            # the path that does not load
    assert "apt-get install libtcmalloc-minimal4" in text and "cmeel-mimalloc" in text
    wanted, _, notes = bench.resolve_allocators(["tcmalloc"], finders)
    assert wanted == ["default"] and "left out" in notes[-1]


def test_mimalloc_of_the_wheel_is_found_when_installed():
    from importlib import metadata

    try:
        metadata.distribution("cmeel-mimalloc")
    except metadata.PackageNotFoundError:
        pytest.skip("cmeel-mimalloc is not installed here (it is in the `bench` extra)")
    path = bench.find_mimalloc()
    assert path is not None and "libmimalloc.so" in path and bench.preloads(path)


# ----------------------------------------------------------------------------------
# Medians, ratios and the report.

def _result(ms, **extra):
    return dict({"step_ms_median": ms, "cpu_ms_median": ms, "compile_s": 1.0,
                 "peak_rss_mb": 400.0, "loss_first": 2.3, "loss_last": 2.0,
                 "param_count": 269_722}, **extra)


def test_ratios_are_taken_within_each_round():
    rounds = [{"fcnn": _result(10.0), "torch": _result(20.0)},
              {"fcnn": _result(20.0), "torch": _result(30.0)},
              {"fcnn": _result(30.0), "torch": _result(90.0)}]
    out = bench.summarise(rounds, batch=128, peak=100.0, model="resnet20")
    # Per round 2.0, 1.5, 3.0: median 2.0 (the ratio of the medians would be 1.5).
    assert out["torch"]["ratio_to_fcnn"] == pytest.approx(2.0)
    assert out["torch"]["step_ms_median"] == 30.0 and out["fcnn"]["step_ms_median"] == 20.0
    gflops = _common.step_flops_per_image("resnet20") * 128 / 0.020 / 1e9
    assert out["fcnn"]["gflops"] == pytest.approx(gflops)
    assert out["fcnn"]["share_of_matmul_peak"] == pytest.approx(gflops / 100.0)


def fabricated() -> dict:
    def run(model, alloc, batch, fcnn_ms, torch_ms, share):
        return {"model": model, "allocator": alloc, "batch": batch, "matmul_peak_gflops": 200.0,
                "step_mflop_per_image": 243.3, "results": {
                    "fcnn": _result(fcnn_ms, ratio_to_fcnn=1.0, images_per_s=1000.0,
                                    gflops=share * 200.0, share_of_matmul_peak=share),
                    "torch": _result(torch_ms, ratio_to_fcnn=torch_ms / fcnn_ms,
                                     images_per_s=500.0, gflops=50.0,
                                     share_of_matmul_peak=0.25),
                    "linen": {"skipped": "flax is not installed"}}}

    return {"runs": [run("resnet20", "default", 128, 250.0, 500.0, 0.4),
                     run("resnet20", "mimalloc", 128, 200.0, 300.0, 0.5)],
            "env": {"threads": 2, "rounds": 3,
                    "allocators": {"default": None, "mimalloc": "/x/libmimalloc.so"},
                    "plan": {"resnet20": {"batch": [128], "steps": 30, "warmup": 3}}}}


def test_the_report_renders_every_table_with_the_ratios(tmp_path, capsys):
    ops = {"results": [{"op": "batchnorm (train) 32x32x16", "custom_ms": 1.0, "autodiff_ms": 2.0,
                        "ratio": 0.5, "torch_ms": 4.0, "ratio_torch": 0.25}],
           "conv_passes": [{"conv": "resnet20 32x32x16->16", "pass_": "kernel_grad",
                            "route": "onednn", "auto_ms": 1.0, "xla_ms": 3.0,
                            "auto_over_xla": 1 / 3, "torch_ms": 2.0, "auto_over_torch": 0.5,
                            "auto_gflops": 75.5}],
           "env": {"batch": 128, "repeats": 15}}
    data_path, ops_path, out = tmp_path / "bench.json", tmp_path / "ops.json", tmp_path / "r.md"
    data_path.write_text(json.dumps(fabricated()))
    ops_path.write_text(json.dumps(ops))
    code, _, err = _run_main(report.main, [str(data_path), "--ops", str(ops_path),
                                           "--out", str(out)], capsys)
    assert code in (0, None) and not err
    text = out.read_text()
    # Summary: fcnn in bold, torch with its ratio in each allocator's column.
    assert "| fcnn | **250.0** | **200.0** | 1.00 | 400 |" in text
    assert "| PyTorch eager | 500.0 (2.00x) | 300.0 (1.50x) | 1.00 | 400 |" in text
    assert "flax.linen: flax is not installed" in text
    # Allocator speed-up: 250/200 and 500/300.
    assert "| fcnn | 1.25 |" in text and "| PyTorch eager | 1.67 |" in text
    # fcnn's share of the matmul peak.
    assert "| resnet20 | 128 | default | 243.3 | 80.0 | 200 | 40% |" in text
    # The detailed tables and the op tables.
    assert "| torch | 500.0 | 2.00 |" in text
    assert "| batchnorm (train) 32x32x16 | 1.00 | 2.00 | 4.00 | 0.50 | 0.25 |" in text
    assert "| resnet20 32x32x16->16 | kernel_grad | onednn | 1.00 | 3.00 | 2.00 | 0.33 | 0.50" in text


def test_the_report_refuses_a_foreign_file(tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"runs": [{"batch": 1}]}))
    code, _, err = _run_main(report.main, [str(path)], capsys)
    assert code == 2 and "is not the output of benchmarks.refnet or benchmarks.bench" in err
