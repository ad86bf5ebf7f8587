"""One module per framework, each training the same RefNet-MNIST the same way.

Every module is run as `python -m benchmarks.peers.<name> --batch B --steps N
--warmup W` in a fresh process and prints one JSON line (see `_common.run`).
"""

# Framework name (as given to `benchmarks.refnet --frameworks`) -> module, options.
PEERS = {
    "fcnn": ("benchmarks.peers.fcnn_model", ()),
    "stax": ("benchmarks.peers.stax", ()),
    "linen": ("benchmarks.peers.linen", ()),
    "equinox": ("benchmarks.peers.equinox", ()),
    "haiku": ("benchmarks.peers.haiku", ()),
    "torch": ("benchmarks.peers.torch", ()),
    "torch_compile": ("benchmarks.peers.torch", ("--compile",)),
}
