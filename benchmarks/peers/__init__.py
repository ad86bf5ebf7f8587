"""One module per framework, each training the same models the same way.

Every module is run as `python -m benchmarks.peers.<name> --model M --batch B
--steps N --warmup W` in a fresh process and prints one JSON line (see `_common.run`).
The architectures are described once, in `_common.MODELS`.
"""

# Framework name (as given to `benchmarks.bench --frameworks`) -> module, options.
PEERS = {
    "fcnn": ("benchmarks.peers.fcnn_model", ()),
    "stax": ("benchmarks.peers.stax", ()),
    "linen": ("benchmarks.peers.linen", ()),
    "equinox": ("benchmarks.peers.equinox", ()),
    "haiku": ("benchmarks.peers.haiku", ()),
    "torch": ("benchmarks.peers.torch", ()),
    "torch_cl": ("benchmarks.peers.torch", ("--channels-last",)),
    "torch_compile": ("benchmarks.peers.torch", ("--compile",)),
}

# Frameworks timed only on some models (the others: on every model).
ONLY_ON = {"torch_cl": ("resnet20", "vgg11_bn")}

# Human names, for the report.
LABELS = {
    "fcnn": "fcnn", "stax": "jax stax", "linen": "flax.linen", "equinox": "equinox",
    "haiku": "haiku", "torch": "PyTorch eager", "torch_cl": "PyTorch eager, channels_last",
    "torch_compile": "PyTorch torch.compile",
}


def runs_on(framework: str, model: str) -> bool:
    return model in ONLY_ON.get(framework, (model,))
