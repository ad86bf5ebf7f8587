"""A study's settings as a typed dataclass, and the command line generated from it.

    @dataclass(frozen=True)
    class Config(config.Config):
        lr: float = 0.1                                   # a new default; help inherited
        lrs: tuple[float, ...] = option((0.01, 0.1, 1.0), quick=(0.01, 1.0),
                                        help="learning rates swept")

Every field becomes an option (`lrs` -> `--lrs X,Y,...`) whose type, help and choices
come from the field. A value is resolved in this order: the command line, else the
`--quick` value (with --quick), else the per-dataset default, else the default.
`Config` holds the options every study has; a study's Config adds its own fields and
may change the defaults of the common ones (a field declared again without `option`
keeps the help of the one it overrides).

Bad values end the program with exit code 2 and one line on stderr (no traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from fcnn import cli
from fcnn.data import DATA_DIR_ENV, DATASETS

POPULATION_MODES = ("auto", "vmap", "sequential")
_NO_QUICK = object()


def option(default, *, help: str | None = None, quick=_NO_QUICK, per_dataset=None,
           choices: Sequence | None = None, parse=None, metavar: str | None = None):
    """A Config field: its default, help text, --quick value, per-dataset defaults
    ({"mnist": 3, ...}), allowed choices, and an argparse type overriding the one
    inferred from the annotation."""
    meta = {"help": help, "quick": quick, "per_dataset": per_dataset, "choices": choices,
            "parse": parse, "metavar": metavar}
    return field(default=default,
                 metadata={k: v for k, v in meta.items() if v is not None and v is not _NO_QUICK})


@dataclass(frozen=True)
class Config:
    """The options every study has."""

    dataset: str = option("digits", choices=DATASETS,
                          help="dataset to train on (default: digits, the 8x8 digits bundled with "
                               "scikit-learn, no files needed)")
    data_dir: str | None = option(None, metavar="DIR",
                                  help=f"folder with the dataset files (mnist, fashion-mnist, "
                                       f"cifar10); default: ${DATA_DIR_ENV}")
    epochs: int = option(20, quick=1, per_dataset={"mnist": 3, "fashion-mnist": 3, "cifar10": 5},
                         help="training epochs per run")
    seeds: int = option(3, quick=1, help="seeds per variant, 0..N-1")
    batch_size: int = option(32, quick=32, per_dataset={"mnist": 128, "fashion-mnist": 128,
                                                        "cifar10": 128},
                             help="mini-batch size")
    lr: float = option(0.01, help="learning rate")
    out: str = option("runs", metavar="DIR",
                      help="results root; each run writes DIR/<study>/<timestamp>/ and never "
                           "overwrites an existing folder")
    quick: bool = option(False, help="a tiny setting for tests: a small training subset, a few "
                                     "steps, one seed; finishes in seconds")
    population: str = option(
        "auto", choices=POPULATION_MODES,
        help="how the seeds of a variant are trained: 'vmap' batches them in one jax.vmap-ped "
             "step, 'sequential' trains them one after another with one compiled step; 'auto' "
             "uses vmap except for convolutional models on the CPU, where the batched "
             "convolution is slower than running the seeds in turn")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


COMMON = tuple(f.name for f in dataclasses.fields(Config))


def metadata(cls, name: str) -> dict:
    """The merged `option` metadata of field `name` along the class hierarchy."""
    merged: dict = {}
    for klass in reversed(cls.__mro__):
        for f in dataclasses.fields(klass) if dataclasses.is_dataclass(klass) else ():
            if f.name == name and f.metadata:
                merged.update(f.metadata)
    return merged


def _type_name(f: dataclasses.Field) -> str:
    """The annotation as written ("int", "tuple[float, ...]", "int | None"), also when
    the module defining the Config does not postpone annotations."""
    return f.type if isinstance(f.type, str) else (
        f.type.__name__ if isinstance(f.type, type) else str(f.type))


def _parse_type(f: dataclasses.Field, meta: dict):
    """The argparse type of a field, from `parse` or from its annotation."""
    if "parse" in meta:
        return meta["parse"]
    what = f.name.replace("_", " ")
    kind = _type_name(f).replace(" | None", "")
    if kind == "tuple[str, ...]":
        return cli.name_list(tuple(meta.get("choices", ())), what)
    if kind in ("tuple[float, ...]", "tuple[int, ...]"):
        return cli.number_list(float if "float" in kind else int, what)
    return {"int": cli.positive_int, "float": cli.positive_float, "str": str}[kind]


def _describe_default(cls, f: dataclasses.Field, meta: dict) -> str:
    show = lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
    parts = [f"default: {show(f.default)}"] if f.default is not None else []
    parts += [f"{name}: {show(v)}" for name, v in (meta.get("per_dataset") or {}).items()]
    if "quick" in meta:
        parts.append(f"--quick: {show(meta['quick'])}")
    return f" ({'; '.join(parts)})" if parts else ""


def build_parser(cls, prog: str, description: str, epilog: str = "") -> cli.Parser:
    """The command line of a Config class: the common options, then the study's own."""
    parser = cli.Parser(prog=prog, description=description, epilog=epilog, allow_abbrev=False,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {True: parser.add_argument_group("common options (every study)"),
              False: parser.add_argument_group(f"{prog.rsplit('.', 1)[-1]} options")}
    for f in dataclasses.fields(cls):
        meta = metadata(cls, f.name)
        flag = "--" + f.name.replace("_", "-")
        group = groups[f.name in COMMON]
        text = (meta.get("help") or f.name) + _describe_default(cls, f, meta)
        if _type_name(f) == "bool":
            group.add_argument(flag, action="store_true", default=None, help=text)
            continue
        kwargs = dict(type=_parse_type(f, meta), default=None, help=text,
                      metavar=meta.get("metavar") or ("X,Y,..." if "tuple" in _type_name(f) else None))
        if _type_name(f) == "str" and "choices" in meta:
            kwargs.update(choices=tuple(meta["choices"]), metavar=None)
        group.add_argument(flag, **kwargs)
    return parser


def resolve(cls, args: argparse.Namespace):
    """The Config of parsed arguments: given, else --quick, else per dataset, else default."""
    dataset = args.dataset or Config.dataset
    quick = bool(args.quick)
    values = {}
    for f in dataclasses.fields(cls):
        given = getattr(args, f.name)
        meta = metadata(cls, f.name)
        if given is not None:
            values[f.name] = given
        elif quick and "quick" in meta:
            values[f.name] = meta["quick"]
        elif dataset in (meta.get("per_dataset") or {}):
            values[f.name] = meta["per_dataset"][dataset]
        else:
            values[f.name] = f.default
    return cls(**values)


__all__ = ["COMMON", "Config", "POPULATION_MODES", "build_parser", "metadata", "option", "resolve"]
