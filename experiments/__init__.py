"""The studies: one small typed module per claim of the notes, all on one engine.

    python -m experiments                 # the studies and the claims each tests
    python -m experiments.<study> --help

Each study module (the shared code is in `experiments.core`) holds its `Config` (options and defaults, from which its command
line is generated), the variants it trains, the measurements it derives, its claims
(sentence and check in one object) and its plots; `STUDY` ties them together. It
trains its variants with several seeds (batched with jax.vmap where that is faster),
writes runs/<study>/<timestamp>/ (config.json, metrics.jsonl, summary.json,
report.md, PNG plots) and prints each claim with the measured numbers and a verdict.
"""

import pkgutil

import fcnn  # noqa: F401  (first: under `python -m`, Ctrl-C while JAX imports ends the
#                           program with one line and code 130, see fcnn/__init__.py)

# Every module of this package is a study (the shared code is in experiments.core):
# adding a study is adding its module.
STUDIES = tuple(sorted(info.name for info in pkgutil.iter_modules(__path__)
                       if not info.ispkg and not info.name.startswith("_")))
