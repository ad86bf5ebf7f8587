"""fcnn: a functional convolutional-network library in JAX with hand-derived backward rules.

Layers and combinators live at the top level (`fcnn.Conv`, `fcnn.serial`, ...); the
rest by topic: `fcnn.ops`, `fcnn.losses`, `fcnn.initializers`, `fcnn.schedules`,
`fcnn.data`, `fcnn.augment`, `fcnn.train`, `fcnn.models`, `fcnn.metrics`,
`fcnn.diagnostics`.
"""

from fcnn.layers import *  # noqa: F401,F403
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

__version__ = "0.1.0"
