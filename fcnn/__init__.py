"""fcnn: a functional convolutional-network library in JAX with hand-derived backward rules."""

from fcnn import initializers
from fcnn.layers import *  # noqa: F401,F403
from fcnn.layers import __all__ as _layer_names  # noqa: F401

__version__ = "0.1.0"
