"""Weight-decay groups declared by the models themselves.

A parameter is left out of weight decay when the module that owns it says so: every
parameter of a normalisation layer, the bias of a linear or convolution layer, and the
names a module lists in its ``no_weight_decay_params`` class attribute (positional
embeddings, a patch-embedding bias, a temperature). Nothing is guessed from names.
"""

from __future__ import annotations

from torch import nn

__all__ = ["no_weight_decay_names", "weight_decay_groups"]

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.RMSNorm)
_WITH_BIAS = (nn.Linear, nn.modules.conv._ConvNd)


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Full names (as in ``model.named_parameters()``) of the parameters that must not be
    decayed, from what each sub-module declares."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, _NORMS):
            names.update(dot + n for n, _ in module.named_parameters(recurse=False))
        elif isinstance(module, _WITH_BIAS) and module.bias is not None:
            names.add(dot + "bias")
        for n in getattr(module, "no_weight_decay_params", ()):
            if not isinstance(getattr(module, n, None), nn.Parameter):
                raise ValueError(
                    f"{type(module).__name__}.no_weight_decay_params names {n!r}, which is not "
                    f"one of its parameters"
                )
            names.add(dot + n)
    return names


def weight_decay_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(decay, no_decay)``: the trainable parameters of ``model`` in
    ``named_parameters()`` order, split by :func:`no_weight_decay_names`."""
    skip = no_weight_decay_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    return decay, no_decay
