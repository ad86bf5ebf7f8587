"""Study: data augmentation against overfitting, one augmentation at a time and all combined.

    python -m experiments.augmentation --dataset cifar10 [--augmentations crop,flip,all]

The reference CNN is trained long on a small training subset, so that it overfits,
without augmentation and with each of

    crop    pad by --crop-pad pixels (edge values repeated) and crop back at a random
            offset (He et al., 2016, on CIFAR-10: pad 4 on 32x32)
    flip    mirror left-right with probability 1/2
    jitter  random brightness, contrast and saturation (factors in [1 - s, 1 + s],
            s = --jitter), applied in pixel units, then standardized again
    pca     AlexNet's PCA lighting: every pixel moved by sum_i alpha_i lambda_i p_i,
            alpha_i ~ N(0, --pca-std^2), (lambda_i, p_i) the eigenpairs of the channel
            covariance of the training pixels (Krizhevsky et al., 2012)
    noise   Gaussian noise of std --noise-std (in standardized units) on every value
    all     every applicable one above, chained

The augmentation runs inside the compiled train step (`make_train_step(augment=...)`,
a fresh draw per image and step). The gap between training and test accuracy, both
measured in evaluation mode on the un-augmented images, shows the overfitting; the
notes' claims are that each augmentation narrows it and the combination most.

Grayscale datasets (digits, MNIST, Fashion-MNIST): flip, jitter and pca are left out
(mirroring turns digits into other shapes or into non-digits, so it does not keep
the label; colour jitter and PCA lighting need colour channels); the digits get a
1-pixel crop pad (4 would move an 8x8 digit by half its width).

Expected time with the defaults: digits about 1.5 minutes; MNIST about 5 minutes on 2
CPU cores (4 variants x 3 seeds, 1000 images, 30 epochs, the 10,000 test images
evaluated after each); CIFAR-10 about 20-25 minutes (7 variants on 2000 images).
The MNIST and CIFAR-10 times are estimates (not run here).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax.numpy as jnp

from fcnn import augment as aug
from fcnn import program
from fcnn.models import refnet

from experiments.core import claims, plots, report, study
from experiments.core.study import option
from experiments.core.training import Variant

WIDTHS, HIDDEN = (16, 32), 128
SINGLE = ("crop", "flip", "jitter", "pca", "noise")
AUGMENTATIONS = (*SINGLE, "all")
COLOUR_ONLY = ("flip", "jitter", "pca")
BASELINE = "none"
PCA_PIXELS = 200_000  # training pixels sampled for the PCA lighting's covariance
TEXT = {"crop": "random crop", "flip": "horizontal flip", "jitter": "colour jitter", "pca": "PCA lighting",
        "noise": "Gaussian noise", "all": "all combined"}


@dataclass(frozen=True)
class Config(study.Config):
    epochs: int = option(30, per_dataset={"digits": 60})
    batch_size: int = option(32, per_dataset={})
    augmentations: tuple[str, ...] = option(AUGMENTATIONS, quick=("crop", "noise", "all"), choices=AUGMENTATIONS,
                                            help="augmentations compared with none (flip, jitter and pca are "
                                                 "left out on grayscale data)")
    train_size: int = option(1000, per_dataset={"digits": 300, "cifar10": 2000},
                             help="training examples used, to force overfitting")
    crop_pad: int = option(4, per_dataset={"digits": 1}, help="padding of the random crop, pixels")
    jitter: float = option(0.4, help="colour jitter strength s of brightness, contrast and saturation")
    pca_std: float = option(0.1, help="std of the PCA lighting's alpha")
    noise_std: float = option(0.2, help="std of the Gaussian noise, in standardized units")


def applicable(names, channels: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(kept, skipped) augmentations for images of `channels` channels."""
    skipped = tuple(n for n in names if channels == 1 and n in COLOUR_ONLY)
    return tuple(n for n in names if n not in skipped), skipped


def augmentations(config: Config, ds) -> dict:
    """name -> (rng, image) -> image, on standardized images, for `ds`'s channels."""
    _, skipped = applicable(SINGLE, ds.image_shape[-1])
    norm = ds.normalization
    out = {"crop": functools.partial(aug.random_crop, padding=config.crop_pad, mode="edge"),
           "noise": functools.partial(aug.gaussian_noise, std=config.noise_std)}
    if "flip" not in skipped:
        out["flip"] = functools.partial(aug.random_flip, horizontal=True)
    if "jitter" not in skipped:
        def jitter(rng, image):  # in pixel units (the jitter expects intensities >= 0)
            pixels = jnp.maximum(norm.invert(image), 0.0)
            return norm.apply(aug.color_jitter(rng, pixels, config.jitter, config.jitter, config.jitter))

        out["jitter"] = jitter
    if "pca" not in skipped:
        pixels = ds.train.images.reshape(-1, ds.image_shape[-1])
        step = max(pixels.shape[0] // PCA_PIXELS, 1)
        eigvals, eigvecs = aug.pca_components(pixels[::step])
        out["pca"] = functools.partial(aug.pca_lighting, eigvals=eigvals, eigvecs=eigvecs, std=config.pca_std)
    out["all"] = aug.chain(*(out[n] for n in SINGLE if n in out))
    return out


# ---------------------------------------------------------------------------------
# Claims


def _gap(f, name):
    return claims.get(f.table, name, "gap")


def _skipped_note(f) -> str:
    skipped = f.facts.get("skipped", ())
    return f"; left out: {', '.join(skipped)} (grayscale images)" if skipped else ""


def _each_narrows(f: claims.Findings) -> claims.Judgement:
    singles = [n for n in SINGLE if n in f.table]
    if BASELINE not in f.table or not singles:
        return claims.Judgement(claims.INCONCLUSIVE, "no augmentation and the baseline both measured"
                                + _skipped_note(f))
    parts = [claims.smaller(n, _gap(f, n), BASELINE, _gap(f, BASELINE)) for n in singles]
    j = claims.every(parts, [f"{n} [{p.status}]" for n, p in zip(singles, parts)])
    return claims.Judgement(j.status, "train - test accuracy gap: " + j.evidence + _skipped_note(f), j.numbers)


def _combination_most(f: claims.Findings) -> claims.Judgement:
    others = [n for n in (BASELINE, *SINGLE) if n in f.table and claims.mean(_gap(f, n)) is not None]
    if "all" not in f.table or not others:
        return claims.Judgement(claims.INCONCLUSIVE, "the combination and another variant not both measured"
                                + _skipped_note(f))
    runner = min(others, key=lambda n: claims.mean(_gap(f, n)))
    j = claims.smaller("all", _gap(f, "all"), runner, _gap(f, runner))
    return claims.Judgement(j.status, f"train - test accuracy gap, the combination vs the smallest other "
                                      f"({runner}): {j.evidence}{_skipped_note(f)}", j.numbers)


CLAIMS = (
    claims.Claim("each augmentation narrows the train/test gap", _each_narrows),
    claims.Claim("the combination of the augmentations narrows it most", _combination_most),
)


# ---------------------------------------------------------------------------------
# The study


def run(session: study.Session) -> study.Outcome:
    c = session.config
    ds = session.data.get()
    kept, skipped = applicable(c.augmentations, ds.image_shape[-1])
    functions = augmentations(c, ds)
    model = lambda: refnet(ds.num_classes, "relu", widths=WIDTHS, hidden=HIDDEN)  # noqa: E731
    variants = [Variant(name=BASELINE, model=model(), train_size=c.train_size, eval_train=True,
                        info={"augment": None})]
    variants += [Variant(name=n, model=model(), train_size=c.train_size, eval_train=True, augment=functions[n],
                         info={"augment": n}) for n in kept]
    results = session.train(variants)
    fig, axes = plots.figure(1, 2)
    for ax, key, ylabel in zip(axes, ("train_accuracy", "test_accuracy"), ("training accuracy", "test accuracy")):
        for i, (name, r) in enumerate(results.items()):
            plots.band(ax, range(r.epoch[key].shape[1]), r.epoch[key], label=name, index=i)
        plots.finish(ax, xlabel="epoch", ylabel=ylabel, title=f"{ylabel} (evaluation mode, no augmentation)",
                     legend=ax is axes[0], integer_x=True)
    fig.suptitle(f"augmentation: training vs test accuracy ({c.dataset}, {c.train_size} training images)")
    gap_fig, (gap_ax,) = plots.figure()
    plots.grouped_bars(gap_ax, list(results), {"gap": [session.table[n]["gap"] for n in results]},
                       ylabel="train - test accuracy", title="final train/test gap per augmentation",
                       xlabel="augmentation", legend=False)
    return study.Outcome(
        columns=[report.Column("gap", "train - test acc", ".4f"), report.Column("train_accuracy", "train acc", ".4f"),
                 report.TEST_ACCURACY, report.FINAL_TRAIN_LOSS],
        facts={"skipped": skipped},
        notes=[f"refnet widths {WIDTHS}, hidden {HIDDEN}; SGD momentum 0.9, lr {c.lr:g}, batch {c.batch_size}, "
               f"{c.epochs} epochs on {min(c.train_size, ds.train.labels.shape[0])} training images; "
               f"inputs standardized; crop pad {c.crop_pad} (edge), jitter {c.jitter:g}, PCA lighting std "
               f"{c.pca_std:g}, noise std {c.noise_std:g}; gap = training minus test accuracy at the end, both "
               "without augmentation.",
               *([f"left out on these grayscale images: {', '.join(skipped)} (mirroring does not keep a digit's "
                  "label; colour jitter and PCA lighting need colour channels)"] if skipped else []),
               "all = " + " + ".join(TEXT[n] for n in SINGLE if n in functions and n not in skipped)],
        plots=[(plots.save(fig, session.path("accuracy.png")), "training and test accuracy vs epoch"),
               (plots.save(gap_fig, session.path("gap.png")), "final train/test gap per augmentation")])


STUDY = study.Study(
    name="augmentation",
    description="Crop, flip, colour jitter, PCA lighting and Gaussian noise, alone and combined, against no "
                "augmentation: the train/test gap of a CNN that overfits a small training subset.",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
