"""FLOPs of a forward pass or a training step, grouped convolutions counted right.

``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-accumulate of
convolutions and matrix products (normalisation, activations, pooling and interpolation
are not counted). Its formula for the backward of a convolution counts the weight
gradient as if the convolution were ungrouped, so a depthwise convolution's backward is
over-counted by a factor of its channel count (MobileNetV2, separable ASPP and the
Xception backbone would look hundreds of times costlier to train than they are).

Here the backward of a convolution is counted from the forward: the input gradient and
the weight gradient each take as many multiply-accumulates as the forward convolution
(every forward product ``w·x`` appears once in ``∂L/∂x`` and once in ``∂L/∂w``), for
whichever of the two autograd asks for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

aten = torch.ops.aten


def conv_backward_flops(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape,
    **kwargs: Any,
) -> int:
    """FLOPs of ``aten.convolution_backward``: one forward's worth per gradient computed.

    ``w_shape`` is (C_out, C_in / groups, k, k), so the forward count already divides by
    the groups.
    """
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(fn: Callable[[], Any]) -> int:
    """Total FLOPs of everything ``fn()`` runs (a forward, or forward + backward)."""
    counter = FlopCounterMode(display=False, custom_mapping={aten.convolution_backward: conv_backward_flops})
    with counter:
        fn()
    return int(counter.get_total_flops())
