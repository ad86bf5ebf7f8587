"""Study 3: dead ReLU units after training, against the learning rate and the setting.

    python -m experiments.dead_relu [--lrs 0.01,0.1,0.3,1] [--models mlp,cnn]
                                    [--optimizers sgd,momentum]

Networks with ReLU, leaky ReLU or PReLU units (an MLP and a small CNN) are trained
with plain SGD or SGD with momentum 0.9 at several learning rates (the rates of one
setting are trained together, vmapped, with the seeds, where that is faster). A unit
is dead when it is never active (never above 0) on a held-out batch: through a ReLU it
passes no gradient and cannot recover. The notes: with a too large learning rate up
to 40% of a ReLU network can die; leaky units keep a gradient. The study reports
which setting and rate come closest to the 40%, leaving out runs that diverged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcnn import program
from fcnn.models import cnn, mlp
from fcnn.train import optimizers

from experiments.core import claims, plots, probes, report, study
from experiments.core.study import option
from experiments.core.training import Variant

ACTIVATIONS = ("relu", "leaky_relu", "prelu")
MODELS = ("mlp", "cnn")
OPTIMIZERS = {"sgd": optimizers.sgd, "momentum": optimizers.momentum}
DEPTH = 3
NOTES_SHARE = 0.40  # the notes' figure
SAME_ORDER = 0.20   # half of it: the same order of magnitude


@dataclass(frozen=True)
class Config(study.Config):
    lr: float = 0.1
    lrs: tuple[float, ...] = option((0.01, 0.1, 0.3, 0.5, 0.7, 1.0), quick=(0.03, 1.0),
                                    help="learning rates swept")
    activations: tuple[str, ...] = option(ACTIVATIONS, quick=("relu", "leaky_relu"), choices=ACTIVATIONS,
                                          help="activations")
    models: tuple[str, ...] = option(MODELS, quick=("mlp",), choices=MODELS,
                                     help=f"networks: an MLP ({DEPTH} hidden layers) and/or a CNN")
    optimizers: tuple[str, ...] = option(tuple(OPTIMIZERS), quick=("sgd",), choices=tuple(OPTIMIZERS),
                                         help="plain SGD and/or SGD with momentum 0.9")
    width: int = option(128, quick=32, help="units per hidden layer of the MLP")


def setting_name(activation: str, model: str, optimizer: str) -> str:
    return f"{activation} {model} {optimizer}"


def _dead(f: claims.Findings, setting: str, lr: float):
    return claims.get(f.table, f.facts["by_setting"].get(setting, {}).get(lr), "dead_max")


def _relu_dies(f: claims.Findings) -> claims.Judgement:
    worst, closest, parts = None, None, []
    for setting in (s for s in f.facts["by_setting"] if s.startswith("relu ")):
        known = [(lr, claims.mean(_dead(f, setting, lr))) for lr in sorted(f.facts["by_setting"][setting])]
        known = [(lr, d) for lr, d in known if d is not None]
        if not known:
            parts.append(f"{setting}: every rate diverged")
            continue
        lr, d = max(known, key=lambda item: item[1])
        parts.append(f"{setting}: at most {d:.1%} (lr {claims.fmt(lr)})")
        if worst is None or d > worst[2]:
            worst = (setting, lr, d)
        near_lr, near_d = min(known, key=lambda item: abs(item[1] - NOTES_SHARE))
        if closest is None or abs(near_d - NOTES_SHARE) < abs(closest[2] - NOTES_SHARE):
            closest = (setting, near_lr, near_d)
    if worst is None:
        return claims.Judgement(claims.INCONCLUSIVE, "; ".join(parts) or "no ReLU setting measured")
    setting, lr, d = worst
    text = (f"largest dead share of the worst layer, over the rates that did not diverge: "
            f"{'; '.join(parts)}; closest to the notes' {NOTES_SHARE:.0%}: {closest[0]} at lr "
            f"{claims.fmt(closest[1])} ({closest[2]:.1%})")
    status = (claims.SUPPORTED if d >= NOTES_SHARE else claims.INCONCLUSIVE if d >= SAME_ORDER
              else claims.CONTRADICTED)
    return claims.Judgement(status, text, {"setting": setting, "lr": lr, "dead": d})


def _leaky_survive(f: claims.Findings) -> claims.Judgement:
    parts, labels = [], []
    for setting in f.facts["by_setting"]:
        activation, rest = setting.split(" ", 1)
        relu = f"relu {rest}"
        if activation == "relu" or relu not in f.facts["by_setting"]:
            continue
        common = sorted(lr for lr in f.facts["by_setting"][setting]
                        if claims.mean(_dead(f, setting, lr)) is not None
                        and claims.mean(_dead(f, relu, lr)) is not None)
        labels.append(setting)
        if not common:
            parts.append(claims.Judgement(claims.INCONCLUSIVE, "no learning rate measured for both"))
            continue
        lr = common[-1]
        part = claims.smaller(f"{setting} at lr {claims.fmt(lr)}", _dead(f, setting, lr),
                              f"{relu} at lr {claims.fmt(lr)}", _dead(f, relu, lr))
        if part.status == claims.CONTRADICTED and part.numbers["a"] == part.numbers["b"]:
            part = claims.Judgement(claims.INCONCLUSIVE, part.evidence, part.numbers)
        parts.append(part)
    if not parts:
        return claims.Judgement(claims.INCONCLUSIVE, "no leaky setting measured beside ReLU")
    return claims.every(parts, labels)


CLAIMS = (
    claims.Claim(f"a too large learning rate kills up to {NOTES_SHARE:.0%} of a ReLU network's units "
                 f"(supported at >= {NOTES_SHARE:.0%} in the worst layer, inconclusive from "
                 f"{SAME_ORDER:.0%}, contradicted below)", _relu_dies),
    claims.Claim("leaky ReLU and PReLU units do not die (fewer never-active units than ReLU at the "
                 "largest rate measured for both, in the same setting; a never-active leaky unit "
                 "still passes gradient)", _leaky_survive),
)


def build(num_classes: int, activation: str, model: str, width: int):
    if model == "mlp":
        return mlp(num_classes, activation, depth=DEPTH, width=width)
    return cnn(num_classes, activation)


def run(session: study.Session) -> study.Outcome:
    c = session.config
    lrs = tuple(sorted(c.lrs))
    num_classes = session.data.get().num_classes
    results = session.train([
        Variant(name=setting_name(a, m, o), model=build(num_classes, a, m, c.width), lr=lrs,
                optimizer=OPTIMIZERS[o], probe=probes.units_probe,
                info={"activation": a, "model": m, "optimizer": o})
        for m in c.models for o in c.optimizers for a in c.activations])
    by_setting: dict[str, dict[float, str]] = {}
    metrics = {}
    for name, r in results.items():
        by_setting.setdefault(r.base, {})[r.lr] = name
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
        for i, (setting, by_lr) in enumerate(by_setting.items()):
            xs = sorted(by_lr)
            runs = np.array([[np.nan if v is None else v for v in metrics[by_lr[lr]][metric]]
                             for lr in xs], float).T
            plots.band(ax, xs, runs, label=setting, index=i)
        if metric == "dead_max":
            ax.axhline(NOTES_SHARE, color="black", linestyle=":", linewidth=0.8, label="the notes' 40%")
        plots.finish(ax, xlabel="learning rate", ylabel=ylabel, title=f"{ylabel} after training",
                     logx=True, legend_cols=2)
    fig.suptitle(f"Dead units vs learning rate ({c.dataset}; diverged runs left out)")
    return study.Outcome(
        metrics=metrics, facts={"by_setting": by_setting},
        columns=[report.LEARNING_RATE, report.DEAD_MAX, report.Column("active_mean", "active", ".3f"),
                 report.TEST_ACCURACY, report.DIVERGED],
        notes=[f"MLP: {DEPTH} hidden layers of {c.width} units; CNN: conv 16 - pool - conv 32 - pool - "
               "dense 128; LeCun-normal init; plain SGD or SGD with momentum 0.9; dead = never active "
               "over the held-out validation batch; runs that diverged are left out of the dead share."],
        plots=[(plots.save(fig, session.path("dead_vs_lr.png")),
                "dead and active fractions vs learning rate")])


STUDY = study.Study(
    name="dead_relu",
    description="Dead ReLU units after training against the learning rate, in an MLP and a CNN, "
                "with plain SGD and momentum; leaky ReLU and PReLU beside them.",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
