"""Study 2: vanishing gradients in a deep MLP with sigmoid, tanh and ReLU units.

    python -m experiments.vanishing_gradients [--depth 10] [--width 64]

The gradient norm of every layer's weights, and of its bias (the back-propagated
error delta = dL/dz, summed over the batch), is measured on a held-out batch at
initialisation, during and after training. With sigmoid units each layer multiplies
the back-propagated error by sigma'(z) <= 1/4, so it shrinks layer by layer towards
the input; tanh' <= 1 and ReLU' in {0, 1} shrink it less. The layer-by-layer claim
is judged on the error, not on the weight gradient: the first layer's weight
gradient also scales with its fan-in (784 pixels against 64 hidden units).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcnn import program
from fcnn.models import mlp

from experiments.core import claims, plots, probes, report, study
from experiments.core.study import option
from experiments.core.training import Variant

ACTIVATIONS = ("sigmoid", "tanh", "relu")


@dataclass(frozen=True)
class Config(study.Config):
    depth: int = option(10, quick=4, help="hidden layers")
    width: int = option(64, quick=32, help="units per hidden layer")
    activations: tuple[str, ...] = option(ACTIVATIONS, quick=("sigmoid", "relu"), choices=ACTIVATIONS,
                                          help="activations")


def _error_shrinks(f: claims.Findings) -> claims.Judgement:
    layers = f.facts["layers_output_to_input"]
    return claims.decreasing("sigmoid bias-gradient norm, output -> input",
                             [claims.mean(claims.get(f.table, "sigmoid", f"delta_init/{layer}"))
                              for layer in layers])


def _ratio_smaller(f: claims.Findings) -> claims.Judgement:
    others = [n for n in ("tanh", "relu") if n in f.table]
    ratio = lambda n: claims.get(f.table, n, "input_output_ratio_init")  # noqa: E731
    return claims.every([claims.smaller("sigmoid", ratio("sigmoid"), n, ratio(n)) for n in others],
                        [f"vs {n}" for n in others])


def _rate_falls_with_depth(f: claims.Findings) -> claims.Judgement:
    layers = list(reversed(f.facts["layers_output_to_input"]))[:-1]  # hidden layers, input first
    rates = [claims.mean(claims.get(f.table, "relu", f"active_end/{layer}")) for layer in layers]
    j = claims.decreasing("ReLU activation rate after training, input -> output", rates)
    halving = [b / a for a, b in zip(rates, rates[1:]) if a and b is not None]
    return claims.Judgement(j.status, j.evidence + (f"; the notes' halving per layer would be 0.5, "
                                                    f"measured mean ratio {np.mean(halving):.2f}"
                                                    if halving else ""), j.numbers)


CLAIMS = (
    claims.Claim("with sigmoid units the back-propagated error (the bias gradient dL/dz, summed "
                 "over the batch) shrinks layer by layer towards the input (sigma' <= 1/4), at "
                 "initialisation", _error_shrinks),
    claims.Claim("the input-layer / output-layer gradient ratio is smaller with sigmoid than with "
                 "tanh and ReLU", _ratio_smaller),
    claims.Claim("a ReLU network's activation rate falls with depth (the notes: by half with every "
                 "further layer)", _rate_falls_with_depth),
)


def draw(session, results, layers) -> list:
    x = np.arange(1, len(layers) + 1)
    drawn = []
    for key, file, ylabel, title, logy in (
        ("grad", "grad_per_layer.png", "gradient norm of the layer's weights",
         "Weight-gradient norm per layer:\nat initialisation (solid), after training (dashed)", True),
        ("delta", "error_per_layer.png", "bias-gradient norm (back-propagated error)",
         "Back-propagated error per layer:\nat initialisation (solid), after training (dashed)", True),
        ("active", "active_per_layer.png", "activation rate (share of positive pre-activations)",
         "Activation rate per hidden layer:\nat initialisation (solid), after training (dashed)", False),
    ):
        series = []
        for i, (name, r) in enumerate(results.items()):
            for when, index, style in (("init", 0, "-"), ("end", -1, "--")):
                runs = np.array([[np.nan if v is None else v
                                  for v in probes.probe_at(r, f"{key}/{layer}", index)]
                                 for layer in layers], float).T
                series.append({"label": f"{name} ({when})", "x": x, "runs": runs, "index": i,
                               "linestyle": style})
        plots.curves(session.path(file), series, xlabel="layer (1 = next to the input)",
                     ylabel=ylabel, title=title, logy=logy, integer_x=True)
        drawn.append((session.path(file), title.split(":")[0].lower()))
    c = session.config
    drawn.append(plots.training_error(session.path("train_error.png"), results,
                                      study="vanishing_gradients", dataset=c.dataset))
    return drawn


def run(session: study.Session) -> study.Outcome:
    c = session.config
    num_classes = session.data.get().num_classes
    results = session.train([Variant(name=n, model=mlp(num_classes, n, depth=c.depth, width=c.width),
                                     probe=probes.units_probe, info={"activation": n})
                             for n in c.activations])
    layers = probes.probe_layers(next(iter(results.values())), "grad")
    metrics = {}
    for name, r in results.items():
        m = metrics[name] = {}
        for layer in layers:
            m[f"grad_init/{layer}"] = probes.probe_at(r, f"grad/{layer}", 0)
            m[f"grad_end/{layer}"] = probes.probe_at(r, f"grad/{layer}", -1)
            m[f"delta_init/{layer}"] = probes.probe_at(r, f"delta/{layer}", 0)
            m[f"active_init/{layer}"] = probes.probe_at(r, f"active/{layer}", 0)
            m[f"active_end/{layer}"] = probes.probe_at(r, f"active/{layer}", -1)
        m["input_output_ratio_init"] = [None if a is None or not b else a / b for a, b in zip(
            m[f"grad_init/{layers[0]}"], m[f"grad_init/{layers[-1]}"])]
    middle = layers[len(layers) // 2]
    columns = [report.TEST_ACCURACY]
    for prefix, what in (("delta_init", "error"), ("grad_init", "grad")):
        columns += [report.Column(f"{prefix}/{layer}", f"{what} {layer} (init)", ".2e")
                    for layer in (layers[0], middle, layers[-1])]
    columns += [report.Column("input_output_ratio_init", "input/output grad ratio (init)", ".2e"),
                report.Column(f"grad_end/{layers[0]}", f"grad {layers[0]} (end)", ".2e")]
    return study.Outcome(
        metrics=metrics, columns=columns, facts={"layers_output_to_input": list(reversed(layers))},
        notes=[f"MLP: {c.depth} hidden layers of {c.width} units, LeCun-normal init, SGD momentum "
               "0.9; gradient norms on held-out validation images."],
        plots=draw(session, results, layers))


STUDY = study.Study(
    name="vanishing_gradients",
    description="Gradient norm per layer of a deep MLP with sigmoid, tanh and ReLU units.",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
