"""Study 1, the main job: the same CNN with nine activations, trained the same way.

    python -m experiments.compare_activations                    # the 8x8 digits
    python -m experiments.compare_activations --dataset mnist --data-dir DIR
    python -m experiments.compare_activations --dataset cifar10 --data-dir DIR --tune-lr

The network is `fcnn.models.refnet` (conv-pool-conv-pool-dense-dense, LeCun-normal
initialisation) or, by default on CIFAR-10, `fcnn.models.alexnet_cifar`: the
four-layer network of AlexNet's Fig. 1 (ReLU reaches 25% training error on
CIFAR-10 six times sooner than tanh), with sigmoid, tanh, ReLU, leaky ReLU, PReLU,
RReLU, softplus, ELU or maxout units (maxout, two pieces per unit: refnet only).
Every activation gets the same data order, initialisation family, optimizer (SGD
with momentum 0.9) and learning rate, or with --tune-lr its own rate picked on the
validation split from --lr-grid (as the figure did: "the learning rates for each
network were chosen independently to make training as fast as possible").

Measured: training loss and error per step, test accuracy per epoch, wall time;
steps to a smoothed training error of 25% (the AlexNet figure), 10%, 5% and 2%;
per layer on a held-out batch: the activation rate (the share of values above the
activation's value at 0, i.e. of positive pre-activations: comparable across
activations), dead units (never active), saturated units (sigmoid/tanh), and the
gradient norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcnn import program
from fcnn.models import alexnet_cifar, refnet
from fcnn.ops.activations import activation_spec

from experiments.core import claims, plots, probes, report, study
from experiments.core.study import option
from experiments.core.search import grid_search
from experiments.core.study import UsageError
from experiments.core.training import SMOOTHING, Variant

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "rrelu", "softplus", "elu", "maxout")
TARGETS = (0.25, 0.10, 0.05, 0.02)
EARLY_LAYERS = ("conv1", "conv2")
WIDTHS, HIDDEN = (16, 32), 128
MODELS = ("refnet", "alexnet_cifar")
ALEXNET_SPEEDUP = 6.0  # AlexNet Fig. 1: ReLU vs tanh to 25% training error on CIFAR-10


@dataclass(frozen=True)
class Config(study.Config):
    activations: tuple[str, ...] = option(
        ACTIVATIONS, quick=("sigmoid", "tanh", "relu"), choices=ACTIVATIONS,
        per_dataset={"cifar10": tuple(a for a in ACTIVATIONS if a != "maxout")},
        help="activations to compare")
    tune_lr: bool = option(False, help="pick each activation's learning rate on the validation "
                                       "split from --lr-grid (a fair comparison), then train with it")
    lr_grid: tuple[float, ...] = option((0.003, 0.01, 0.03, 0.1),
                                        help="learning rates tried by --tune-lr")
    model: str = option("refnet", choices=MODELS, per_dataset={"cifar10": "alexnet_cifar"},
                        help="the network: refnet (widths 16/32, hidden 128) or alexnet_cifar "
                             "(AlexNet's Fig. 1 network, 32x32x3 inputs)")


def check(config: Config, data) -> None:
    if config.model == "alexnet_cifar":
        if "maxout" in config.activations:
            raise UsageError("--activations maxout: alexnet_cifar has no maxout variant (its "
                             "widths are the paper's); use --model refnet or leave maxout out")
        shape = tuple(data.get().image_shape)
        if shape[-1] != 3 or shape[0] < 16:
            raise UsageError(f"--model alexnet_cifar: expects 32x32 colour images, and "
                             f"--dataset {config.dataset} has images of shape {shape}")


def _steps(target: float) -> str:
    return report.target_key(target)


def _relu_family(table) -> list[str]:
    return [n for n in table if n in ACTIVATIONS and activation_spec(n).family == "relu"]


def _faster_at_targets(fast_of, slow: list[str]):
    def check(f: claims.Findings) -> claims.Judgement:
        parts = [claims.faster(f.table, fast_of(f.table), slow, _steps(t), f.facts["budget"])
                 for t in TARGETS]
        return claims.majority(parts, [f"{100 * t:g}%" for t in TARGETS])
    return check


def _sigmoid_smallest(prefix: str):
    def check(f: claims.Findings) -> claims.Judgement:
        others = [n for n in f.table if n != "sigmoid"]
        return claims.every([claims.smallest(f.table, "sigmoid", f"{prefix}/{layer}", others)
                             for layer in EARLY_LAYERS], EARLY_LAYERS)
    return check


def _alexnet_speedup(f: claims.Findings) -> claims.Judgement:
    """ReLU's steps to 25% training error, tanh's, and their ratio against 6x."""
    if f.facts.get("dataset") != "cifar10" or f.facts.get("model") != "alexnet_cifar":
        return claims.Judgement(claims.INCONCLUSIVE, "the figure is for AlexNet's CIFAR-10 network; "
                                f"this run is {f.facts.get('model')} on {f.facts.get('dataset')}")
    j = claims.faster(f.table, ["relu"], ["tanh"], _steps(0.25), f.facts["budget"])
    ratio = j.numbers.get("ratio")
    if j.status == claims.INCONCLUSIVE or ratio is None:
        return j
    text = f"{j.evidence}; the figure says {ALEXNET_SPEEDUP:g}x"
    if ratio >= ALEXNET_SPEEDUP:  # a censored tanh (not reached) makes the ratio a lower bound
        return claims.Judgement(claims.SUPPORTED, text, j.numbers)
    if j.numbers["slow_reached_all"]:
        return claims.Judgement(claims.CONTRADICTED, text, j.numbers)
    return claims.Judgement(claims.INCONCLUSIVE, text + " (tanh not reached in every seed: the "
                            "ratio is only a lower bound)", j.numbers)


TARGETS_TEXT = ", ".join(f"{100 * t:g}%" for t in TARGETS)


def _active(table, names) -> list:
    """Per-seed activation rates of the variants `names`, pooled."""
    return claims.pooled(table, [n for n in names if n in table], "active_mean")


def _sigmoid_half_active(f: claims.Findings) -> claims.Judgement:
    return claims.within("sigmoid activation rate", claims.get(f.table, "sigmoid", "active_mean"), 0.4, 0.6)


def _relu_sparser(f: claims.Findings) -> claims.Judgement:
    family = _relu_family(f.table)
    return claims.smaller("ReLU family", _active(f.table, family), "sigmoid", _active(f.table, ["sigmoid"]))


def _relu_ideal(f: claims.Findings) -> claims.Judgement:
    return claims.within("ReLU family activation rate", _active(f.table, _relu_family(f.table)), 0.15, 0.30)


CLAIMS = (
    claims.Claim(f"ReLU-family units reach the training-error targets ({TARGETS_TEXT}) in fewer "
                 "steps than tanh units (at most of the targets)",
                 _faster_at_targets(_relu_family, ["tanh"])),
    claims.Claim(f"tanh units reach the training-error targets ({TARGETS_TEXT}) in fewer steps "
                 "than sigmoid units (at most of the targets)",
                 _faster_at_targets(lambda table: ["tanh"], ["sigmoid"])),
    claims.Claim(f"sigmoid has the smallest gradients in the early layers ({', '.join(EARLY_LAYERS)}), "
                 "at initialisation", _sigmoid_smallest("grad_init")),
    claims.Claim(f"sigmoid has the smallest gradients in the early layers ({', '.join(EARLY_LAYERS)}), "
                 "averaged over training", _sigmoid_smallest("grad_mean")),
    claims.Claim("about 50% of a sigmoid network's units are active (40-60%; active: above the "
                 "activation's value at 0, i.e. a positive pre-activation)", _sigmoid_half_active),
    claims.Claim("ReLU-family units are active less often than sigmoid units (sparser)", _relu_sparser),
    claims.Claim("ReLU-family units are active 15-30% of the time, the rate the notes call ideal",
                 _relu_ideal),
    claims.Claim(f"ReLU units reach 25% training error on CIFAR-10 at least {ALEXNET_SPEEDUP:g} "
                 "times sooner than tanh units (AlexNet, Fig. 1; judged on alexnet_cifar and "
                 "CIFAR-10 only)", _alexnet_speedup),
)


def network(model: str, activation: str, num_classes: int):
    if model == "alexnet_cifar":
        return alexnet_cifar(num_classes, activation)
    return refnet(num_classes, activation, widths=WIDTHS, hidden=HIDDEN)


def variant(name: str, num_classes: int, lr=None, model: str = "refnet") -> Variant:
    return Variant(name=name, model=network(model, name, num_classes), lr=lr,
                   probe=probes.units_probe, info={"activation": name, "model": model})


def measure(results) -> dict:
    """Per activation: seconds to each target, per-layer gradient norms and units."""
    metrics = {}
    for name, r in results.items():
        m = metrics[name] = {"lr": [r.lr] * len(r.seeds),
                             "ms_per_step": [1000 * t for t in r.scalars["time_per_step"]]}
        for target in TARGETS:
            m[f"seconds_to_{100 * target:g}"] = probes.time_to(r, r.scalars[_steps(target)])
        for layer in probes.probe_layers(r, "grad"):
            m[f"grad_init/{layer}"] = probes.probe_at(r, f"grad/{layer}", 0)
            m[f"grad_mean/{layer}"] = probes.probe_mean(r, f"grad/{layer}")
        for kind, reduce in (("dead", np.nanmax), ("active", np.nanmean), ("saturated", np.nanmean)):
            layers = probes.probe_layers(r, kind)
            for layer in layers:
                m[f"{kind}_end/{layer}"] = probes.probe_at(r, f"{kind}/{layer}", -1)
            if layers:
                per_seed = np.array([probes.probe_at(r, f"{kind}/{l}", -1) for l in layers], float)
                m[f"{kind}_{'max' if kind == 'dead' else 'mean'}"] = reduce(per_seed, axis=0)
    return metrics


def draw(session, results) -> list:
    c = session.config
    drawn = [
        plots.training_error(session.path("train_error.png"), results, study="compare_activations",
                             dataset=c.dataset, targets=TARGETS,
                             title=f"Training error by activation ({c.dataset})"),
        plots.epoch_metric(session.path("test_accuracy.png"), results, "test_accuracy",
                           ylabel="test accuracy", study="compare_activations", dataset=c.dataset),
        plots.layer_bars(session.path("grad_norm.png"), results,
                         [("grad", 0, "gradient norm"), ("grad", None, "gradient norm")], logy=True,
                         title="Gradient norm per layer (held-out batch)",
                         caption="gradient norm per layer"),
    ]
    panels = [("dead", -1, "dead (never active) fraction"), ("active", -1, "active fraction")]
    if any(probes.probe_layers(r, "saturated") for r in results.values()):
        panels.append(("saturated", -1, "saturated fraction"))
    drawn.append(plots.layer_bars(session.path("units.png"), results, panels,
                                  title="Units after training (held-out batch)",
                                  caption="dead, active and saturated units"))
    series = [{"label": n, "x": r.probe_steps, "runs": r.probes["grad/conv1"], "index": i}
              for i, (n, r) in enumerate(results.items()) if "grad/conv1" in r.probes]
    drawn.append((plots.curves(session.path("grad_conv1_steps.png"), series, xlabel="training step",
                               ylabel="gradient norm of conv1", logy=True,
                               title="First-layer gradient norm during training"),
                  "first-layer gradient norm vs step"))
    return drawn


def run(session: study.Session) -> study.Outcome:
    c = session.config
    num_classes = session.data.get().num_classes
    lrs = {name: c.lr for name in c.activations}
    network_text = (f"refnet widths {WIDTHS}, hidden {HIDDEN}" if c.model == "refnet" else
                    "alexnet_cifar (AlexNet's Fig. 1 network: three 5x5 convolutions 32/32/64, "
                    "LRN, overlapping 3x3/2 pooling, 89,578 parameters)")
    notes = [f"Network: {network_text}, LeCun-normal init, SGD momentum "
             f"0.9; training error = mean over the last {SMOOTHING} mini-batches; unit statistics "
             "on held-out validation images."]
    if c.tune_lr:
        for name in c.activations:
            best, _ = grid_search(session, f"lr/{name}", lambda _, n=name: variant(n, num_classes, model=c.model),
                                  {"lr": c.lr_grid})
            lrs[name] = best["lr"] if best else c.lr
        notes.append("Learning rates tuned per activation on the validation split: " +
                     ", ".join(f"{n} {lr:g}" for n, lr in lrs.items()))
    results = session.train([variant(n, num_classes, lrs[n], c.model) for n in c.activations],
                            targets=TARGETS)
    columns = [
        report.TEST_ACCURACY, report.LEARNING_RATE, *[report.steps_to_column(t) for t in TARGETS],
        report.Column("seconds_to_25", "s to 25%", ".2f"),
        report.Column("ms_per_step", "ms/step", ".2f"),
        report.Column("grad_init/conv1", "grad conv1 (init)", ".2e"),
        report.Column("grad_mean/conv1", "grad conv1 (mean)", ".2e"),
        report.DEAD_MAX, report.Column("active_mean", "active", ".3f"),
        report.Column("saturated_mean", "saturated", ".3f"),
    ]
    return study.Outcome(metrics=measure(results), columns=columns, notes=notes,
                         facts={"budget": max(r.total_steps for r in results.values()),
                                "dataset": c.dataset, "model": c.model},
                         plots=draw(session, results))


STUDY = study.Study(
    name="compare_activations",
    description="The same CNN with sigmoid, tanh, ReLU, leaky ReLU, PReLU, RReLU, softplus, "
                "ELU and maxout units: training speed, unit statistics and gradients.",
    config=Config, claims=CLAIMS, run=run, check=check,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
