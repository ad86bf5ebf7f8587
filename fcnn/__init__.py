"""fcnn: a functional convolutional-network library in JAX with hand-derived backward rules.

Layers and combinators live at the top level (`fcnn.Conv`, `fcnn.serial`, ...); the
rest by topic: `fcnn.ops`, `fcnn.losses`, `fcnn.initializers`, `fcnn.schedules`,
`fcnn.data`, `fcnn.augment`, `fcnn.train`, `fcnn.models`, `fcnn.metrics`,
`fcnn.diagnostics`, `fcnn.precision` (mixed precision), `fcnn.export` (serialized
inference functions) and `fcnn.plots` (the confusion-matrix plot; needs matplotlib).
"""

import sys as _sys

if _sys.argv[:1] == ["-m"]:  # `python -m fcnn.<program>`, while its imports run
    import os as _os
    import signal as _signal

    # Ctrl-C during the seconds JAX takes to import ends the program with one line and
    # the shell's code for an interrupt; the program's main takes over the handling.
    _signal.signal(_signal.SIGINT, lambda *_: (_os.write(2, b"\ninterrupted\n"), _os._exit(130)))

from fcnn.layers import *  # noqa: F401,F403,E402
from fcnn import (  # noqa: F401  (import order: layers first, the rest build on them)
    augment,
    data,
    diagnostics,
    initializers,
    losses,
    metrics,
    models,
    ops,
    schedules,
    train,
)
from fcnn import export, plots, precision  # noqa: F401,E402  (they build on train)

__version__ = "0.1.0"
