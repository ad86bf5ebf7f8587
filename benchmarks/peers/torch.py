"""The three models in PyTorch (NCHW): eager, eager with `--channels-last` (model and
input in the channels_last memory format, oneDNN's preferred one), or `--compile`
(torch.compile)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.peers import _common


class Block(nn.Module):
    def __init__(self, spec, make):
        super().__init__()
        c1, b1, c2, b2 = spec.layers()
        self.conv1, self.bn1, self.conv2, self.bn2 = make(c1), make(b1), make(c2), make(b2)
        self.stride, self.pad = spec.stride, spec.cout - spec.cin
        self.projects = spec.projects

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.projects:
            x = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.pad))
        return F.relu(y + x)


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def make(model, shared):
    """(nn.Sequential with the shared parameters, count)."""
    shared = shared.channels_first(model)

    def make_layer(spec):
        if isinstance(spec, _common.Conv):
            m = nn.Conv2d(spec.cin, spec.cout, spec.k, stride=spec.stride, padding=spec.k // 2,
                          bias=spec.bias)
            m.weight.data.copy_(torch.from_numpy(shared.take(spec.name, "w")))
            if spec.bias:
                m.bias.data.copy_(torch.from_numpy(shared.take(spec.name, "b")))
            return m
        if isinstance(spec, _common.BN):
            m = nn.BatchNorm2d(spec.c, eps=_common.BN_EPSILON, momentum=1 - _common.BN_MOMENTUM)
            m.weight.data.copy_(torch.from_numpy(shared.take(spec.name, "scale")))
            m.bias.data.copy_(torch.from_numpy(shared.take(spec.name, "bias")))
            return m
        if isinstance(spec, _common.Dense):
            m = nn.Linear(spec.fin, spec.fout)
            m.weight.data.copy_(torch.from_numpy(shared.take(spec.name, "w")))
            m.bias.data.copy_(torch.from_numpy(shared.take(spec.name, "b")))
            return m
        if isinstance(spec, _common.Block):
            return Block(spec, make_layer)
        if spec == _common.RELU:
            return nn.ReLU()
        if spec == _common.MAXPOOL:
            return nn.MaxPool2d(2, 2)
        if spec == _common.FLATTEN:
            return nn.Flatten()
        if spec == _common.GLOBAL_AVG_POOL:
            return GlobalAvgPool()
        raise ValueError(f"no torch layer for {spec!r}")

    net = nn.Sequential(*[make_layer(s) for s in model.layers])
    return net, sum(p.numel() for p in net.parameters())


def build(args, model, shared, x, y):
    net, n = make(model, shared)
    net.train()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=_common.LEARNING_RATE, momentum=_common.MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()  # mean over the batch
    forward = torch.compile(net) if args.compile else net
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).contiguous(
        memory_format=fmt)
    yt = torch.from_numpy(y.astype(np.int64))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()  # CPU ops are synchronous; item() returns after the step

    info = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "param_count": n,
            "channels_last": bool(args.channels_last)}
    return step, info


def framework_name(args) -> str:
    if args.compile:
        return "torch_compile"
    return "torch_cl" if args.channels_last else "torch"


if __name__ == "__main__":
    _common.run(build, framework=framework_name(_common.parse_args()))
