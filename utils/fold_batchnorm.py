"""Inference copies of a network with each BatchNorm folded into the convolution before it."""
from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d

_NORMS = (FrozenBatchNorm2d, nn.BatchNorm2d)


class _NormsAsLeaves(fx.Tracer):
    """Keeps torchvision's FrozenBatchNorm2d and subclasses of nn.Conv2d as one call each (FX traces
    into modules from outside torch.nn); a Conv2d subclass folds alike through its weight and bias."""

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return isinstance(module, (*_NORMS, nn.Conv2d)) or super().is_leaf_module(module, name)


def fold_batchnorm(module: nn.Module) -> fx.GraphModule:
    """A copy of `module` (in eval mode) where every conv → BatchNorm pair is one conv with a bias.

    A frozen or eval-mode BatchNorm after a convolution is an affine map per channel, so it folds
    into the convolution's weights (torch.nn.utils.fusion): one pass less over each activation,
    and under autocast no float32 intermediate between the convolutions. The copy is a snapshot:
    later changes to `module`'s weights do not reach it. The results equal the module's to ~1e-6.
    """
    root = copy.deepcopy(module).eval()
    traced = fx.GraphModule(root, _NormsAsLeaves().trace(root))
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        source = node.args[0] if node.args else None
        if not (node.op == "call_module" and isinstance(modules[node.target], _NORMS) and isinstance(source, fx.Node)
                and source.op == "call_module" and isinstance(modules[source.target], nn.Conv2d)
                and len(source.users) == 1):
            continue
        conv, norm = modules[source.target], modules[node.target]
        with torch.no_grad():
            conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                                          norm.eps, norm.weight, norm.bias)
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
    traced.recompile()
    traced.delete_all_unused_submodules()
    return traced
