"""Study 9: the batch-size trade-off, from 1 to 1024 examples per step.

    python -m experiments.batch_size [--batch-sizes 8,32,128,1024] [--target 0.9]

Three sweeps.

1. The main sweep: the reference CNN trained for the same number of epochs at each
   batch size with the same learning rate. Larger batches use the hardware better
   (less time per epoch) but make fewer updates per epoch, so they need more epochs to
   reach a given accuracy; measured: time per epoch, epochs and wall time to a target
   test accuracy (checked after each epoch), final accuracy. From it, the
   time-optimal batch size (least wall time to the target) and the accuracy-optimal
   one (best final test accuracy), which the notes say differ.
2. The small-batch sweep (batch 1, 2 and larger, on a training subset for a few
   epochs, at one learning rate --noise-lr): how noisy training is (the jitter of
   the held-out loss, measured 16 times per epoch: the standard deviation of its
   change between measurements over the second half of training, which a steady
   trend does not inflate; failed runs left out) and how often a run fails (its loss
   not finite, or its held-out accuracy at the end below twice chance: the net
   collapsed, typically to predicting one class after too large a step).
3. Rprop against RMSProp on an MLP and a training subset, for the same number of
   epochs: Rprop with the whole subset as one batch (full-batch), Rprop on
   mini-batches, RMSProp on mini-batches. The notes: Rprop works full-batch only (the
   sign of a mini-batch gradient flips with the batch, and Rprop's step sizes follow
   the flips), RMSProp is its mini-batch version. Measured: the loss on the whole
   training subset at the end, as a fraction of the loss at initialisation.

Expected time with the defaults: digits about 4 minutes; MNIST about 15-20 minutes on
2 CPU cores, estimated: the main sweep (8 batch sizes x 3 seeds x 3 epochs, as before)
dominates; the small-batch sweep on 2000 examples and the Rprop MLPs add about 2
minutes together.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from fcnn import program
from fcnn.cli import UsageError
from fcnn.models import mlp, refnet
from fcnn.train import optimizers

from experiments.core import claims, plots, report, study
from experiments.core.study import option
from experiments.core.training import Variant, first_at_least

WIDTHS, HIDDEN = (16, 32), 128
BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
QUICK_BATCH_SIZES = (8, 64)
SMALL = (1, 2)  # the "batch size 1 and very small batches" of the notes
PROBES_PER_EPOCH = 16
# Rprop "converges" when the training loss ends at most this fraction of its value at
# initialisation (a tenfold reduction).
CONVERGED_RATIO = 0.1
# A small-batch run "failed" when its held-out accuracy ends below this multiple of chance.
FAIL_CHANCE = 2.0


@dataclass(frozen=True)
class Config(study.Config):
    batch_sizes: tuple[int, ...] | None = option(
        None, help=f"batch sizes (default: {','.join(map(str, BATCH_SIZES))}, those that fit the "
                   f"training set; --quick: {','.join(map(str, QUICK_BATCH_SIZES))})")
    target: float = option(0.97, per_dataset={"digits": 0.9, "fashion-mnist": 0.85, "cifar10": 0.5},
                           help="target test accuracy")
    noise_sizes: tuple[int, ...] = option((1, 2, 8, 32), quick=(1, 16),
                                          help="batch sizes of the small-batch stability sweep")
    noise_train_size: int = option(2000, quick=64, per_dataset={"digits": 500},
                                   help="training examples of the small-batch sweep")
    noise_epochs: int = option(2, quick=1, help="epochs of the small-batch sweep")
    noise_lr: float | None = option(None, help="the one learning rate of the small-batch sweep (default: --lr)")
    rprop_train_size: int = option(1000, quick=64, per_dataset={"digits": 500},
                                   help="training examples of the Rprop / RMSProp MLPs")
    rprop_epochs: int = option(100, quick=5, help="epochs of the Rprop / RMSProp MLPs (full-batch Rprop: "
                                                  "one step each)")
    rprop_batch: int = option(32, quick=16, help="mini-batch size of mini-batch Rprop and RMSProp")
    rprop_lr: float = option(0.001, help="Rprop's initial step size")
    rmsprop_lr: float = option(0.001, help="RMSProp's learning rate")


def sizes_for(config: Config, data) -> tuple[int, ...]:
    """The sizes given, or the default ones that fit the training set."""
    if config.batch_sizes:
        return tuple(sorted(config.batch_sizes))
    n_train = data.get().train.labels.shape[0]
    return tuple(b for b in (QUICK_BATCH_SIZES if config.quick else BATCH_SIZES) if b <= n_train)


def check(config: Config, data) -> None:
    n_train = data.get().train.labels.shape[0]
    sizes = sizes_for(config, data)
    if not sizes or max(sizes) > n_train:
        raise UsageError(f"--batch-sizes: at most {n_train} (the training examples), got {list(sizes)}")
    if config.target > 1:
        raise UsageError(f"--target {config.target}: expected an accuracy in (0, 1]")
    noise_n = min(config.noise_train_size, n_train)
    if max(config.noise_sizes) > noise_n:
        raise UsageError(f"--noise-sizes: at most {noise_n} (the small-batch sweep's training examples), "
                         f"got {list(config.noise_sizes)}")
    if config.rprop_batch > min(config.rprop_train_size, n_train):
        raise UsageError(f"--rprop-batch {config.rprop_batch}: at most --rprop-train-size "
                         f"({min(config.rprop_train_size, n_train)} examples here)")


def _needs_sizes(judge):
    """A check of the main sweep, inconclusive when no sizes were recorded."""
    def guarded(f: claims.Findings) -> claims.Judgement:
        if not f.facts.get("sizes"):
            return claims.Judgement(claims.INCONCLUSIVE, "the main sweep's batch sizes not recorded")
        return judge(f)
    return guarded


def _per_epoch_faster(f: claims.Findings) -> claims.Judgement:
    small, large = f"bs={min(f.facts['sizes'])}", f"bs={max(f.facts['sizes'])}"
    time = lambda n: claims.get(f.table, n, "time_per_epoch")  # noqa: E731
    return claims.smaller(large, time(large), small, time(small))


def _fewer_epochs(f: claims.Findings) -> claims.Judgement:
    small, large = f"bs={min(f.facts['sizes'])}", f"bs={max(f.facts['sizes'])}"
    return claims.faster(f.table, [small], [large], "epochs_to_target", f.facts["budget"],
                         unit="epochs")


def _optima(f: claims.Findings) -> claims.Judgement:
    """The size with the least mean time to the target against the one with the best
    mean final accuracy: supported when they differ and each wins its own measure
    beyond the spread over seeds."""
    names = [f"bs={b}" for b in f.facts.get("sizes", ()) if f"bs={b}" in f.table]
    time = {n: claims.mean(claims.get(f.table, n, "time_to_target")) for n in names}
    acc = {n: claims.mean(claims.get(f.table, n, "test_accuracy")) for n in names}
    reached = {n: t for n, t in time.items() if t is not None}
    measured = {n: a for n, a in acc.items() if a is not None}
    if not reached or len(measured) < 2:
        return claims.Judgement(claims.INCONCLUSIVE, "no batch size reached the target in every seed"
                                if measured else "final accuracies not measured")
    fastest, best = min(reached, key=reached.get), max(measured, key=measured.get)
    numbers = {"time_optimal": fastest, "accuracy_optimal": best}
    text = (f"time-optimal {fastest} ({claims.fmt(reached[fastest])} s to the target, final accuracy "
            f"{claims.fmt(measured.get(fastest))}); accuracy-optimal {best} (final accuracy "
            f"{claims.fmt(measured[best])}, ")
    text += f"{claims.fmt(time[best])} s to the target)" if time[best] is not None else \
        "target not reached in every seed)"
    acc_of = lambda n: claims.get(f.table, n, "test_accuracy")  # noqa: E731
    if fastest == best:
        rest = {n: a for n, a in measured.items() if n != best}
        runner = max(rest, key=rest.get)
        j = claims.smaller(runner, acc_of(runner), best, acc_of(best))
        status = claims.CONTRADICTED if j.status == claims.SUPPORTED else claims.INCONCLUSIVE
        return claims.Judgement(status, text + f"; the same size; next best accuracy: {j.evidence}", numbers)
    parts = [claims.smaller(fastest, acc_of(fastest), best, acc_of(best))]
    if time[best] is not None:
        t = lambda n: claims.get(f.table, n, "time_to_target")  # noqa: E731
        parts.append(claims.smaller(fastest, t(fastest), best, t(best)))
    j = claims.every(parts, ["accuracy", "time"][:len(parts)])
    return claims.Judgement(j.status, text + f"; {j.evidence}", numbers)


def small_names(f: claims.Findings) -> tuple[list[str], str | None]:
    """The small-batch sweep's sizes 1 and 2 measured, and its largest size."""
    sizes = [b for b in f.facts.get("noise_sizes", ()) if subset_name(b) in f.table]
    small = [subset_name(b) for b in sizes if b in SMALL]
    large = [b for b in sizes if b not in SMALL]
    return small, subset_name(max(large)) if large else None


def _noisier(f: claims.Findings) -> claims.Judgement:
    small, large = small_names(f)
    if not small or large is None:
        return claims.Judgement(claims.INCONCLUSIVE, "the small-batch sweep has no batch of 1 or 2 and a larger one")
    # over the runs that did not fail (a collapsed net is steady); those are the other claim
    noise = lambda n: claims.finite(claims.get(f.table, n, "loss_jitter"))  # noqa: E731
    parts = [claims.smaller(large, noise(large), n, noise(n)) if noise(n) and noise(large) else
             claims.Judgement(claims.INCONCLUSIVE, f"every run of {n if not noise(n) else large} failed")
             for n in small]
    return claims.every(parts, small)


def _fail_more(f: claims.Findings) -> claims.Judgement:
    small, large = small_names(f)
    if not small or large is None:
        return claims.Judgement(claims.INCONCLUSIVE, "the small-batch sweep has no batch of 1 or 2 and a larger one")
    failed = lambda n: claims.get(f.table, n, "failed")  # noqa: E731
    if not any(claims.finite(failed(n)) and max(claims.finite(failed(n))) > 0 for n in (*small, large)):
        return claims.Judgement(claims.INCONCLUSIVE, f"no run of {', '.join((*small, large))} failed at lr "
                                                     f"{claims.fmt(f.facts.get('noise_lr'))}: a rate too small to "
                                                     "tell")
    return claims.every([claims.smaller(large, failed(large), n, failed(n)) for n in small], small)


def _full_batch_rprop(f: claims.Findings) -> claims.Judgement:
    return claims.within("full-batch rprop: final / initial training loss",
                         claims.get(f.table, "full-batch rprop", "loss_ratio"), 0.0, CONVERGED_RATIO)


def _mini_batch_rprop(f: claims.Findings) -> claims.Judgement:
    rprop = claims.get(f.table, "mini-batch rprop", "loss_ratio")
    rms = claims.get(f.table, "mini-batch rmsprop", "loss_ratio")
    if not rprop or not rms:
        return claims.Judgement(claims.INCONCLUSIVE, "mini-batch Rprop and RMSProp not both measured")
    fails = [v is None or v > CONVERGED_RATIO for v in rprop]
    if all(fails) and not any(v is None or v > CONVERGED_RATIO for v in rms):
        return claims.Judgement(claims.SUPPORTED, f"mini-batch rprop failed in every seed (final / initial loss "
                                                  f"{', '.join(claims.fmt(v) for v in rprop)}; not finite or > "
                                                  f"{CONVERGED_RATIO:g}), mini-batch rmsprop "
                                                  f"{claims.fmt(claims.mean(rms))}")
    if any(v is None for v in rprop) and not any(v is None for v in rms):
        return claims.Judgement(claims.SUPPORTED, "mini-batch rprop diverged in "
                                                  f"{sum(v is None for v in rprop)} of {len(rprop)} seeds, "
                                                  "mini-batch rmsprop in none")
    return claims.smaller("mini-batch rmsprop final / initial loss", rms, "mini-batch rprop", rprop)


CLAIMS = (
    claims.Claim("larger batches take less time per epoch", _needs_sizes(_per_epoch_faster)),
    claims.Claim("smaller batches need fewer epochs to reach the target accuracy", _needs_sizes(_fewer_epochs)),
    claims.Claim("the time-optimal batch size (least wall time to the target accuracy) differs from the "
                 "accuracy-optimal one (best final test accuracy)", _optima),
    claims.Claim("batch sizes 1 and 2 make training noisier than a larger batch at the same learning rate "
                 "(the held-out loss jitters more)", _noisier),
    claims.Claim("batch sizes 1 and 2 fail (diverge) more often than a larger batch at the same learning rate",
                 _fail_more),
    claims.Claim("full-batch Rprop converges (training loss down tenfold)", _full_batch_rprop),
    claims.Claim("mini-batch Rprop fails or is worse than mini-batch RMSProp", _mini_batch_rprop),
)


# ---------------------------------------------------------------------------------
# The small-batch sweep and the Rprop MLPs


def subset_name(batch_size: int) -> str:
    return f"subset bs={batch_size}"


def heldout_loss_probe(model, loss_fn):
    """Probe: the loss and accuracy on the held-out batch (evaluation mode)."""

    def probe(params, state, images, labels):
        logits = model.apply(params, state, images, train=False)[0]
        return {"heldout_loss": loss_fn(logits, labels),
                "heldout_accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == labels)}

    return probe


def jitter(curve) -> float | None:
    """Std of the change between successive points of the second half of `curve`
    (None when fewer than 3 finite points): noise, not the trend."""
    half = np.asarray(curve, float)[len(curve) // 2:]
    half = half[np.isfinite(half)]
    return float(np.std(np.diff(half), ddof=1)) if half.size >= 3 else None


def noise_metrics(r, num_classes: int) -> dict:
    """Per seed: failed (loss not finite, or the held-out accuracy at the end below
    FAIL_CHANCE x chance: the net collapsed, typically to one class after a step too
    large); the held-out loss jitter (None for a failed run: a collapsed net is
    steady); the std of the per-step training loss over the second half."""
    loss, acc = r.probes["heldout_loss"], r.probes["heldout_accuracy"]
    step_loss = r.step["loss"][:, r.total_steps // 2:]
    failed = [d is not None or not a[-1] >= FAIL_CHANCE / num_classes for d, a in zip(r.diverged_at(), acc)]
    with np.errstate(all="ignore"):
        batch_noise = [None if bad else float(np.std(row)) for bad, row in zip(failed, step_loss)]
    return {"loss_jitter": [None if bad else jitter(row) for bad, row in zip(failed, loss)],
            "batch_loss_std": batch_noise, "failed": [float(bad) for bad in failed],
            "heldout_accuracy": [float(a[-1]) for a in acc], "batch_size": [r.batch_size] * len(r.seeds)}


def rprop_metrics(r) -> dict:
    loss = r.epoch["train_loss"]
    ratio = [float(row[-1] / row[0]) if np.isfinite(row[-1]) and row[0] > 0 else None for row in loss]
    return {"loss_ratio": ratio, "final_subset_loss": [float(v) if np.isfinite(v) else None for v in loss[:, -1]],
            "batch_size": [r.batch_size] * len(r.seeds)}


def run(session: study.Session) -> study.Outcome:
    c = session.config
    sizes = sizes_for(c, session.data)
    num_classes = session.data.get().num_classes
    results = session.train([Variant(name=f"bs={bs}", model=refnet(num_classes, "relu", widths=WIDTHS,
                                                                  hidden=HIDDEN),
                                     batch_size=bs, info={"batch_size": bs}) for bs in sizes])
    n_train = session.data.get().train.labels.shape[0]
    noise_n = min(c.noise_train_size, n_train)
    noise_lr = c.lr if c.noise_lr is None else c.noise_lr
    noisy = session.train([
        Variant(name=subset_name(bs), model=refnet(num_classes, "relu", widths=WIDTHS, hidden=HIDDEN),
                lr=noise_lr, batch_size=bs, epochs=c.noise_epochs, train_size=noise_n,
                probe=heldout_loss_probe, probe_every=max(noise_n // bs // PROBES_PER_EPOCH, 1),
                info={"batch_size": bs, "sweep": "small batches"})
        for bs in sorted(c.noise_sizes)], phase="small batches")
    rprop_n = min(c.rprop_train_size, n_train)
    net = lambda: mlp(num_classes, "relu")  # noqa: E731
    solvers = session.train([
        Variant(name="full-batch rprop", model=net(), lr=c.rprop_lr, optimizer=optimizers.rprop,
                batch_size=rprop_n, epochs=c.rprop_epochs, train_size=rprop_n, eval_train=True),
        Variant(name="mini-batch rprop", model=net(), lr=c.rprop_lr, optimizer=optimizers.rprop,
                batch_size=c.rprop_batch, epochs=c.rprop_epochs, train_size=rprop_n, eval_train=True),
        Variant(name="mini-batch rmsprop", model=net(), lr=c.rmsprop_lr,
                optimizer=optimizers.rmsprop, batch_size=c.rprop_batch,
                epochs=c.rprop_epochs, train_size=rprop_n, eval_train=True)], phase="rprop")
    metrics = {}
    for name, r in results.items():
        epochs = [first_at_least(row, c.target) for row in r.epoch["test_accuracy"]]
        metrics[name] = {
            "epochs_to_target": epochs, "batch_size": [r.batch_size] * len(r.seeds),
            "time_to_target": [None if e is None else float(r.epoch["time"][i, e]) for i, e in enumerate(epochs)]}
    fig, axes = plots.figure(1, 3, width=5.0)
    for ax, (metric, ylabel, logy) in zip(axes, (
            ("time_per_epoch", "seconds per epoch", True),
            ("epochs_to_target", f"epochs to {c.target:g} test accuracy", False),
            ("test_accuracy", "final test accuracy", False))):
        rows = [metrics[f"bs={bs}"].get(metric) or session.table[f"bs={bs}"][metric] for bs in sizes]
        runs = np.array([[np.nan if v is None else v for v in row] for row in rows], float).T
        plots.band(ax, sizes, runs, label=metric, index=0, logy=logy)
        ax.set_xscale("log", base=2)
        plots.finish(ax, xlabel="batch size", ylabel=ylabel, title=ylabel, logy=logy, legend=False)
    fig.suptitle(f"Batch size trade-off ({c.dataset}, {c.epochs} epochs; missing points: target not reached)")
    metrics.update({name: noise_metrics(r, num_classes) for name, r in noisy.items()})
    metrics.update({name: rprop_metrics(r) for name, r in solvers.items()})
    noise_plot = plots.curves(
        session.path("small_batches.png"),
        [{"label": name, "x": r.probe_steps * r.batch_size / noise_n, "runs": r.probes["heldout_loss"], "index": i}
         for i, (name, r) in enumerate(noisy.items())],
        xlabel="epoch", ylabel="held-out loss", logy=True,
        title=f"small batches at lr {noise_lr:g}: held-out loss ({c.dataset}, {noise_n} training examples)")
    rprop_plot = plots.epoch_metric(session.path("rprop.png"), solvers, "train_loss",
                                    ylabel=f"loss on the {rprop_n} training examples", study="batch_size",
                                    dataset=c.dataset, logy=True)
    return study.Outcome(
        metrics=metrics,
        columns=[report.Column("time_per_epoch", "s/epoch", ".3f"),
                 report.Column("epochs_to_target", f"epochs to {c.target:g}", ".2g"),
                 report.Column("time_to_target", f"s to {c.target:g}", ".2f"),
                 report.Column("test_accuracy", "final test acc", ".4f"),
                 report.Column("compile_time", "compile s", ".2f"),
                 report.Column("loss_jitter", "held-out loss jitter", ".3g"),
                 report.Column("batch_loss_std", "mini-batch loss std", ".3g"),
                 report.Column("failed", "failed", ".2f"),
                 report.Column("loss_ratio", "final / initial train loss", ".3g")],
        facts={"sizes": sizes, "budget": c.epochs + 1, "noise_sizes": tuple(sorted(c.noise_sizes)),
               "noise_lr": noise_lr},
        notes=[f"refnet widths {WIDTHS}, hidden {HIDDEN}, SGD momentum 0.9, lr {c.lr:g} at every batch "
               f"size; target test accuracy {c.target:g} (checked after each epoch).",
               f"small-batch sweep ('subset bs=...'): the same CNN on {noise_n} training examples for "
               f"{c.noise_epochs} epoch(s) at lr {noise_lr:g}; held-out loss on the probe batch "
               f"{PROBES_PER_EPOCH} times per epoch; jitter = std of its change between measurements over "
               "the second half (failed runs left out); failed = loss not finite, or held-out accuracy at the end "
               f"below {FAIL_CHANCE:g} x chance (the net collapsed, typically to one class, or did not learn); "
               "mini-batch loss std: of the training loss per step over the second half (sampling noise "
               "included).",
               f"Rprop vs RMSProp: MLP 2 x 128 ReLU on {rprop_n} training examples for {c.rprop_epochs} epochs; "
               f"full-batch Rprop (one step per epoch), mini-batch Rprop and RMSProp at batch {c.rprop_batch}; "
               f"Rprop initial step {c.rprop_lr:g}, RMSProp lr {c.rmsprop_lr:g}; converged = final loss on the "
               f"training examples at most {CONVERGED_RATIO:g} x the initial one."],
        plots=[(plots.save(fig, session.path("batch_size.png")),
                "time, epochs to target and accuracy vs batch size"),
               plots.epoch_metric(session.path("test_accuracy.png"), results, "test_accuracy",
                                  ylabel="test accuracy", study="batch_size", dataset=c.dataset),
               (noise_plot, "small batches: held-out loss vs epoch"), rprop_plot])


STUDY = study.Study(
    name="batch_size",
    description="Batch sizes from 1 to 1024: time per epoch, epochs and time to a target accuracy, "
                "final accuracy, the time- and accuracy-optimal sizes; small-batch noise and failures; "
                "full-batch vs mini-batch Rprop against RMSProp.",
    config=Config, claims=CLAIMS, run=run, check=check,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
