"""Study 3: dead ReLU units after training, against the learning rate.

    python -m experiments.dead_relu [--lrs 0.01,0.03,0.1,0.3,1]

An MLP with ReLU, leaky ReLU or PReLU units is trained with plain SGD at several
learning rates (the rates of one activation are trained together, vmapped, with the
seeds). A unit is dead when it is never active (output <= 0) on a held-out batch:
it passes no gradient through a ReLU and cannot recover. The notes: with a too large
learning rate up to 40% of a ReLU network can die; leaky units keep a gradient.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from fcnn.models import mlp
from fcnn.train import optimizers

from experiments.core import claims, plots, probes, report, study
from experiments.core.study import option
from experiments.core.training import Variant

ACTIVATIONS = ("relu", "leaky_relu", "prelu")
DEPTH = 3
LARGE_SHARE = 0.1


@dataclass(frozen=True)
class Config(study.Config):
    lr: float = 0.1
    lrs: tuple[float, ...] = option((0.01, 0.1, 0.3, 0.5, 0.7, 1.0), quick=(0.03, 1.0),
                                    help="learning rates swept")
    activations: tuple[str, ...] = option(ACTIVATIONS, quick=("relu", "leaky_relu"), choices=ACTIVATIONS,
                                          help="activations")
    width: int = option(128, quick=32, help="units per hidden layer")


def _dead(f: claims.Findings, activation: str, lr: float):
    return claims.get(f.table, f.facts["by_activation"].get(activation, {}).get(lr), "dead_max")


def _relu_dies(f: claims.Findings) -> claims.Judgement:
    lrs = sorted(f.facts["by_activation"].get("relu", {}))
    dead = [claims.mean(_dead(f, "relu", lr)) for lr in lrs]
    known = [(lr, d) for lr, d in zip(lrs, dead) if d is not None]
    text = "ReLU dead share by learning rate: " + ", ".join(
        f"lr {claims.fmt(lr)}: {claims.fmt(d) if d is not None else 'diverged/n.a.'}"
        for lr, d in zip(lrs, dead))
    if len(known) < 2:
        return claims.Judgement(claims.INCONCLUSIVE, text + " (fewer than two rates measured)")
    grows, big = known[-1][1] > known[0][1], known[-1][1] >= LARGE_SHARE
    if grows and not big:
        text += f" (grows, but stays below {claims.fmt(LARGE_SHARE)} at the largest rate)"
    status = claims.SUPPORTED if grows and big else claims.CONTRADICTED if not grows else claims.INCONCLUSIVE
    return claims.Judgement(status, text, {"lrs": lrs, "dead": dead})


def _leaky_survive(f: claims.Findings) -> claims.Judgement:
    parts, labels = [], []
    for name in [a for a in f.facts["by_activation"] if a != "relu"]:
        common = sorted(lr for lr in f.facts["by_activation"][name]
                        if claims.mean(_dead(f, name, lr)) is not None
                        and claims.mean(_dead(f, "relu", lr)) is not None)
        labels.append(name)
        if not common:
            parts.append(claims.Judgement(claims.INCONCLUSIVE, "no learning rate measured for both"))
            continue
        lr = common[-1]
        part = claims.smaller(f"{name} at lr {claims.fmt(lr)}", _dead(f, name, lr),
                              f"relu at lr {claims.fmt(lr)}", _dead(f, "relu", lr))
        if part.status == claims.CONTRADICTED and part.numbers["a"] == part.numbers["b"]:
            part = claims.Judgement(claims.INCONCLUSIVE, part.evidence, part.numbers)
        parts.append(part)
    return claims.every(parts, labels)


CLAIMS = (
    claims.Claim(f"large learning rates kill a large share (>= {LARGE_SHARE:.0%}) of ReLU units "
                 "(the notes: up to 40%)", _relu_dies),
    claims.Claim("leaky ReLU and PReLU units do not die (fewer never-active units than ReLU at the "
                 "largest rate measured for both; a never-active leaky unit still passes gradient)",
                 _leaky_survive),
)


def run(session: study.Session) -> study.Outcome:
    c = session.config
    lrs = tuple(sorted(c.lrs))
    num_classes = session.data.get().num_classes
    results = session.train([Variant(name=n, model=mlp(num_classes, n, depth=DEPTH, width=c.width),
                                     lr=lrs, optimizer=optimizers.sgd, probe=probes.units_probe,
                                     info={"activation": n}) for n in c.activations])
    by_activation: dict[str, dict[float, str]] = {}
    metrics = {}
    for name, r in results.items():
        by_activation.setdefault(r.base, {})[r.lr] = name
        layers = probes.probe_layers(r, "dead")
        m = metrics[name] = {f"dead/{layer}": probes.probe_at(r, f"dead/{layer}", -1) for layer in layers}
        at_end = lambda kind: np.array([[np.nan if v is None else v  # noqa: E731
                                         for v in probes.probe_at(r, f"{kind}/{layer}", -1)]
                                        for layer in layers], float)
        diverged = r.scalars["diverged"]
        m["dead_max"] = [None if d else v for d, v in zip(diverged, np.max(at_end("dead"), axis=0))]
        m["active_mean"] = [None if d else v for d, v in zip(diverged, np.mean(at_end("active"), axis=0))]
        m["lr"] = [r.lr] * len(r.seeds)
    fig, axes = plots.figure(1, 2)
    for ax, metric, ylabel in ((axes[0], "dead_max", "dead fraction (max over layers)"),
                               (axes[1], "active_mean", "active fraction (mean over layers)")):
        for i, (activation, by_lr) in enumerate(by_activation.items()):
            xs = sorted(by_lr)
            runs = np.array([[np.nan if v is None else v for v in metrics[by_lr[lr]][metric]]
                             for lr in xs], float).T
            plots.band(ax, xs, runs, label=activation, index=i)
        plots.finish(ax, xlabel="learning rate", ylabel=ylabel, title=f"{ylabel} after training",
                     logx=True)
    fig.suptitle(f"Dead units vs learning rate ({c.dataset}; diverged runs left out)")
    return study.Outcome(
        metrics=metrics, facts={"by_activation": by_activation},
        columns=[report.LEARNING_RATE, report.DEAD_MAX, report.Column("active_mean", "active", ".3f"),
                 report.TEST_ACCURACY, report.DIVERGED],
        notes=[f"MLP: {DEPTH} hidden layers of {c.width} units, LeCun-normal init, plain SGD; "
               "dead = never active over the held-out validation batch."],
        plots=[(plots.save(fig, session.path("dead_vs_lr.png")),
                "dead and active fractions vs learning rate")])


STUDY = study.Study(
    name="dead_relu",
    description="Dead ReLU units after training against the learning rate, with leaky ReLU and PReLU.",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
