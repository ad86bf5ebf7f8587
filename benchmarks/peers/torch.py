"""RefNet-MNIST in PyTorch (NCHW), eager or with `--compile` (torch.compile)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.peers import _common


def refnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(_common.FLATTEN, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def build(args, p, x, y):
    model = refnet()
    c = _common.to_channels_first(p)
    with torch.no_grad():
        for layer, name in ((model[0], "conv1"), (model[3], "conv2"),
                            (model[7], "dense1"), (model[9], "dense2")):
            layer.weight.copy_(torch.from_numpy(c[name + "_w"]))
            layer.bias.copy_(torch.from_numpy(c[name + "_b"]))
    opt = torch.optim.SGD(model.parameters(), lr=_common.LEARNING_RATE,
                          momentum=_common.MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()  # mean over the batch
    forward = torch.compile(model) if args.compile else model
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y.astype(np.int64))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()  # CPU ops are synchronous; item() returns after the step

    info = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads()}
    return step, info


if __name__ == "__main__":
    _args = _common.parse_args()
    _common.run(build, framework="torch_compile" if _args.compile else "torch")
