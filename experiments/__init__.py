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

import os
import pkgutil
import signal
import sys

if sys.argv[:1] == ["-m"]:  # `python -m experiments.<study>`, while its imports run
    # Ctrl-C before the study's own handling starts (JAX's imports take seconds) ends
    # the program quietly with the shell's code for an interrupt, not a traceback.
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))

# Every module of this package is a study (the shared code is in experiments.core):
# adding a study is adding its module.
STUDIES = tuple(sorted(info.name for info in pkgutil.iter_modules(__path__)
                       if not info.ispkg and not info.name.startswith("_")))
