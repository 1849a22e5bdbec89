"""The walk: one forward pass that attaches a receptive field to every tensor it makes.

Rather than describing each architecture by hand, :class:`FieldWalk` runs the model —
usually on PyTorch's ``meta`` device, shapes only — under a
:class:`torch.overrides.TorchFunctionMode`, which sees every torch function the forward
calls. Each call's output gets the field (:mod:`.fields`) its inputs' fields imply, so
the fields follow exactly what the model does: the strides and dilations
``set_output_stride`` chose, the branches it concatenates, the crops and paddings in its
forward. Forward hooks name the results by module path.

What each call does to a field:

* ``conv2d``, ``max_pool2d``, ``avg_pool2d``: their kernel, stride, padding and dilation
  (:func:`.fields.conv`); ``conv_transpose2d``: :func:`.fields.transposed`;
* adaptive pooling: PyTorch's windows (:func:`.fields.window`; one bin is global pooling),
  and reductions (``mean``, ``sum``, ``amax`` …) over height or width: the whole axis;
* ``interpolate``: :func:`.fields.resize`; ``pad``, slicing, ``narrow`` and
  ``index_select`` with an ``arange``-derived index (the U-Net's mirror padding): a shift
  of the start (:func:`.fields.pad`, :func:`.fields.select`);
* anything else whose output keeps its inputs' height and width — activations, norms,
  dropout, additions, products, ``cat`` of channels, ``where`` — is pointwise: the
  union of its inputs' fields (:func:`.fields.union`), exact for a chain and the largest
  of parallel branches; an input of one pixel along an axis is broadcast (its one cell,
  read by every pixel);
* any other call that changes or loses the height and width (a flatten, a matrix
  product over positions, a reduction) is taken to see the whole map
  (:func:`.fields.whole`): never smaller than the truth. Such calls are listed in
  :attr:`Trace.conservative` so a reader knows where the walk was unsure.

The same pass counts the activation memory: the bytes of every tensor a call returns
that is neither one of its inputs (an in-place result) nor a view of another tensor.
That is what a forward pass allocates if nothing is freed — what training keeps for the
backward pass is at most that; inference at any moment holds far less. Only the calls
seen here count: temporary buffers inside a kernel do not.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from . import fields as rf
from .fields import Field


@dataclass(frozen=True)
class Spatial:
    """A tensor's fields along its height (``h``) and width (``w``)."""

    h: Field
    w: Field

    def axis(self, i: int) -> Field:
        return self.h if i == 0 else self.w


INPUT_FIELDS = Spatial(rf.INPUT, rf.INPUT)


@dataclass(frozen=True)
class TensorNote:
    """A tensor a module returned: its shape and fields (``None`` for a tensor the input
    does not reach, such as an index)."""

    shape: tuple[int, ...]
    fields: Spatial | None


@dataclass(frozen=True)
class ConvCall:
    """One convolution the forward ran, with the module that ran it."""

    module: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]  # before the first cell, per axis
    dilation: tuple[int, int]
    groups: int
    transposed: bool
    in_size: tuple[int, int]
    out_size: tuple[int, int]


@dataclass
class ModuleCall:
    """What a module returned (its last call, if it ran more than once)."""

    name: str
    type: str
    inputs: list[TensorNote]
    outputs: list[TensorNote]
    calls: int = 1


@dataclass
class Trace:
    """Everything one walk learned (see the module docstring)."""

    input_size: tuple[int, int]
    modules: dict[str, ModuleCall]
    convs: list[ConvCall]
    outputs: list[TensorNote]
    activation_bytes: int
    conservative: list[str] = field(default_factory=list)
    flops: int | None = None

    def module(self, name: str) -> ModuleCall:
        if name not in self.modules:
            raise KeyError(f"module {name!r} did not run in the traced forward pass")
        return self.modules[name]


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _arg(args: Sequence[Any], kwargs: dict[str, Any], index: int, name: str, default: Any = None) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _pair(value: Any, default: int) -> tuple[int, int]:
    if value is None:
        return default, default
    if isinstance(value, int):
        return value, value
    values = list(value)
    return (int(values[0]), int(values[-1])) if values else (default, default)


def _spatial(t: torch.Tensor) -> tuple[int, int] | None:
    return (int(t.shape[-2]), int(t.shape[-1])) if t.dim() == 4 else None


class _FieldMode(TorchFunctionMode):
    """Propagates fields through torch calls (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[int, Spatial] = {}
        self.origins: dict[int, tuple[int, int]] = {}  # index tensors from arange: (first, step)
        self.keep: list[torch.Tensor] = []  # ids stay unique while the walk runs
        self.stack: list[str] = []
        self.convs: list[ConvCall] = []
        self.conservative: list[str] = []
        self.bytes = 0
        self.handlers = {
            torch.conv2d: self._conv,
            torch.conv_transpose2d: self._conv_transpose,
            F.max_pool2d: self._max_pool,
            F.max_pool2d_with_indices: self._max_pool,
            torch.max_pool2d: self._max_pool,
            F.avg_pool2d: self._avg_pool,
            F.adaptive_avg_pool2d: self._adaptive,
            F.adaptive_max_pool2d: self._adaptive,
            torch._C._nn.adaptive_avg_pool2d: self._adaptive,
            F.interpolate: self._interpolate,
            F.pad: self._pad,
            torch.Tensor.__getitem__: self._getitem,
            torch.Tensor.index_select: self._index_select,
            torch.index_select: self._index_select,
            torch.Tensor.narrow: self._narrow,
            torch.narrow: self._narrow,
            torch.cat: self._cat,
            torch.concat: self._cat,
            torch.concatenate: self._cat,
            torch.stack: self._cat,
        }
        for reduction in ("mean", "sum", "amax", "amin", "max", "min", "logsumexp"):
            self.handlers[getattr(torch, reduction)] = self._reduce
            self.handlers[getattr(torch.Tensor, reduction)] = self._reduce

    # --- bookkeeping ---------------------------------------------------------------

    def mark(self, t: torch.Tensor, fields: Spatial) -> None:
        self.fields[id(t)] = fields
        self.keep.append(t)

    def get(self, t: torch.Tensor) -> Spatial | None:
        return self.fields.get(id(t))

    def note(self, t: torch.Tensor) -> TensorNote:
        return TensorNote(tuple(int(s) for s in t.shape), self.get(t))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = list(_tensors((args, kwargs)))
        outs = list(_tensors(out))
        self._count(inputs, outs)
        tracked = [t for t in inputs if id(t) in self.fields]
        if tracked and outs:
            handler = self.handlers.get(func)
            result = handler(args, kwargs, tracked, outs[0]) if handler is not None else None
            for t in outs:
                self.mark(t, result if result is not None else self._default(func, tracked, t))
        elif outs:
            self._follow_index(func, args, kwargs, inputs, outs)
        return out

    def _count(self, inputs: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
        seen = {id(t) for t in inputs}
        for t in outs:
            if id(t) not in seen and t._base is None:
                self.bytes += t.numel() * t.element_size()

    def _follow_index(self, func, args, kwargs, inputs, outs) -> None:
        """An index built by ``arange`` (and remainders, comparisons, ``where`` of it) keeps
        the arange's first value and step: where it selects from a map, that is the shift."""
        if func is torch.arange:
            numbers = [a for a in args if isinstance(a, int | float)]
            start = kwargs.get("start", numbers[0] if len(numbers) >= 2 else 0)
            step = kwargs.get("step", numbers[2] if len(numbers) >= 3 else 1)
            if isinstance(start, int) and isinstance(step, int):
                self.origins[id(outs[0])] = (start, step)
                self.keep.append(outs[0])
            return
        for t in inputs:
            if id(t) in self.origins:
                for o in outs:
                    self.origins[id(o)] = self.origins[id(t)]
                    self.keep.append(o)
                return

    # --- the default -----------------------------------------------------------------

    def _default(self, func, tracked: list[torch.Tensor], out: torch.Tensor) -> Spatial:
        size = _spatial(out)
        if size is not None and func not in _MOVES_PIXELS:
            aligned = [self._broadcast(t, size) for t in tracked]
            if all(f is not None for f in aligned):
                return Spatial(*(rf.union(f.axis(a) for f in aligned) for a in (0, 1)))
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
        if name not in self.conservative:
            self.conservative.append(name)
        return self._whole(tracked)

    def _broadcast(self, t: torch.Tensor, size: tuple[int, int]) -> Spatial | None:
        """``t``'s fields on an output of ``size`` pixel by pixel: its own where its size
        is the output's, a single cell repeated where it broadcasts (a pooled 1×1 map
        times a feature map), ``None`` where neither holds. A tensor that is not a map
        (flattened earlier) already sees its whole input and passes as it is."""
        fields, own = self.fields[id(t)], _spatial(t)
        if own is None:
            return fields
        axes = []
        for a in (0, 1):
            if own[a] == size[a]:
                axes.append(fields.axis(a))
            elif own[a] == 1:
                axes.append(rf.resize(fields.axis(a), 1, size[a], "nearest"))
            else:
                return None
        return Spatial(*axes)

    def _whole(self, tracked: list[torch.Tensor]) -> Spatial:
        axes = []
        for a in (0, 1):
            parts = []
            for t in tracked:
                f = self.fields[id(t)].axis(a)
                size = _spatial(t)
                parts.append(rf.whole(f, size[a]) if size is not None else f)
            axes.append(rf.union(parts))
        return Spatial(*axes)

    def _first(self, tracked: list[torch.Tensor]) -> tuple[torch.Tensor, Spatial, tuple[int, int]] | None:
        x = tracked[0]
        size = _spatial(x)
        return None if size is None else (x, self.fields[id(x)], size)

    # --- the calls that move fields ------------------------------------------------------

    def _conv(self, args, kwargs, tracked, out):
        call = self._conv_call(args, kwargs, out, transposed=False)
        if call is None:
            return None
        fx, c = call
        return Spatial(*(rf.conv(fx.axis(a), c.kernel[a], c.stride[a], c.padding[a], c.dilation[a]) for a in (0, 1)))

    def _conv_transpose(self, args, kwargs, tracked, out):
        call = self._conv_call(args, kwargs, out, transposed=True)
        if call is None:
            return None
        fx, c = call
        return Spatial(
            *(
                rf.transposed(
                    fx.axis(a), c.kernel[a], c.stride[a], c.padding[a], c.dilation[a], c.in_size[a], c.out_size[a]
                )
                for a in (0, 1)
            )
        )

    def _conv_call(self, args, kwargs, out, *, transposed: bool) -> tuple[Spatial, ConvCall] | None:
        """The input's field and the convolution's geometry (recorded), or None when the input
        is not followed. ``conv2d(input, weight, bias, stride, padding, dilation, groups)``;
        ``conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)``."""
        x, weight = args[0], _arg(args, kwargs, 1, "weight")
        first = self._first([x]) if id(x) in self.fields else None
        if first is None or weight is None:
            return None
        _, fx, size = first
        kernel = (int(weight.shape[-2]), int(weight.shape[-1]))
        stride = _pair(_arg(args, kwargs, 3, "stride", 1), 1)
        padding = _arg(args, kwargs, 4, "padding", 0)
        if transposed:
            groups = int(_arg(args, kwargs, 6, "groups", 1))
            dilation = _pair(_arg(args, kwargs, 7, "dilation", 1), 1)
        else:
            dilation = _pair(_arg(args, kwargs, 5, "dilation", 1), 1)
            groups = int(_arg(args, kwargs, 6, "groups", 1))
            if isinstance(padding, str):  # "valid" or "same" (PyTorch puts the odd pixel after)
                padding = tuple(
                    0 if padding == "valid" else d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True)
                )
        self._record_conv(kernel, stride, _pair(padding, 0), dilation, groups, transposed, size, out)
        return fx, self.convs[-1]

    def _record_conv(self, kernel, stride, padding, dilation, groups, transposed, size, out) -> None:
        self.convs.append(
            ConvCall(
                module=self.stack[-1] if self.stack else "",
                kernel=kernel,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                transposed=transposed,
                in_size=size,
                out_size=(int(out.shape[-2]), int(out.shape[-1])),
            )
        )

    def _max_pool(self, args, kwargs, tracked, out):
        return self._pool(args, kwargs, tracked, dilation_index=4)

    def _avg_pool(self, args, kwargs, tracked, out):
        return self._pool(args, kwargs, tracked, dilation_index=None)

    def _pool(self, args, kwargs, tracked, dilation_index):
        first = self._first(tracked)
        if first is None:
            return None
        _, fx, _ = first
        kernel = _pair(_arg(args, kwargs, 1, "kernel_size"), 1)
        stride = _pair(_arg(args, kwargs, 2, "stride") or kernel, 1)
        padding = _pair(_arg(args, kwargs, 3, "padding", 0), 0)
        dilation = _pair(_arg(args, kwargs, dilation_index, "dilation", 1), 1) if dilation_index else (1, 1)
        return Spatial(*(rf.conv(fx.axis(a), kernel[a], stride[a], padding[a], dilation[a]) for a in (0, 1)))

    def _adaptive(self, args, kwargs, tracked, out):
        first = self._first(tracked)
        if first is None or _spatial(out) is None:
            return None
        _, fx, size = first
        bins = _spatial(out)
        return Spatial(*(rf.window(fx.axis(a), size[a], bins[a]) for a in (0, 1)))

    def _interpolate(self, args, kwargs, tracked, out):
        first = self._first(tracked)
        if first is None or _spatial(out) is None:
            return None
        _, fx, size = first
        mode = _arg(args, kwargs, 3, "mode", "nearest")
        align = _arg(args, kwargs, 4, "align_corners")
        factor = _arg(args, kwargs, 2, "scale_factor")
        # PyTorch samples with the caller's 1/scale_factor unless asked to recompute it.
        scales = (None, None)
        if factor is not None and not _arg(args, kwargs, 5, "recompute_scale_factor"):
            factors = (factor, factor) if isinstance(factor, int | float) else tuple(factor)
            scales = (1 / factors[0], 1 / factors[-1])
        out_size = _spatial(out)
        return Spatial(*(rf.resize(fx.axis(a), size[a], out_size[a], mode, align, scales[a]) for a in (0, 1)))

    def _pad(self, args, kwargs, tracked, out):
        first = self._first(tracked)
        if first is None:
            return None
        _, fx, _ = first
        widths = list(_arg(args, kwargs, 1, "pad"))
        before_w = widths[0] if len(widths) >= 2 else 0
        before_h = widths[2] if len(widths) >= 4 else 0
        return Spatial(rf.pad(fx.h, before_h), rf.pad(fx.w, before_w))

    def _getitem(self, args, kwargs, tracked, out):
        x, index = args[0], args[1]
        first = self._first([x]) if id(x) in self.fields else None
        if first is None:
            return None
        _, fx, size = first
        items = list(index) if isinstance(index, tuple) else [index]
        if any(not isinstance(i, slice | int) and i is not Ellipsis for i in items) or items.count(Ellipsis) > 1:
            return None  # None, tensors, lists: the default decides
        if Ellipsis in items:
            at = items.index(Ellipsis)
            items = items[:at] + [slice(None)] * (4 - len(items) + 1) + items[at + 1 :]
        items += [slice(None)] * (4 - len(items))
        h, w = items[2], items[3]
        if not isinstance(h, slice) or not isinstance(w, slice) or any(isinstance(i, int) for i in items[:2]):
            return None
        (h0, _, hs), (w0, _, ws) = h.indices(size[0]), w.indices(size[1])
        return Spatial(rf.select(fx.h, h0, hs), rf.select(fx.w, w0, ws))

    def _index_select(self, args, kwargs, tracked, out):
        x = args[0]
        dim = int(_arg(args, kwargs, 1, "dim"))
        index = _arg(args, kwargs, 2, "index")
        first = self._first([x]) if id(x) in self.fields else None
        if first is None or dim % 4 < 2:
            return None if first is None else first[1]
        origin = self.origins.get(id(index))
        if origin is None:
            return None
        _, fx, _ = first
        axis = dim % 4 - 2
        moved = rf.select(fx.axis(axis), origin[0], origin[1])
        return Spatial(moved, fx.w) if axis == 0 else Spatial(fx.h, moved)

    def _narrow(self, args, kwargs, tracked, out):
        x = args[0]
        first = self._first([x]) if id(x) in self.fields else None
        if first is None:
            return None
        _, fx, _ = first
        dim, start = int(_arg(args, kwargs, 1, "dim")), int(_arg(args, kwargs, 2, "start"))
        if dim % 4 < 2:
            return fx
        axis = dim % 4 - 2
        moved = rf.select(fx.axis(axis), start)
        return Spatial(moved, fx.w) if axis == 0 else Spatial(fx.h, moved)

    def _reduce(self, args, kwargs, tracked, out):
        """A reduction: over height or width it sees that whole axis (global pooling written
        as ``mean``); over batch or channels it is pointwise."""
        first = self._first([args[0]]) if id(args[0]) in self.fields else None
        if first is None:
            return None
        _, fx, size = first
        dim = _arg(args, kwargs, 1, "dim")
        if dim is None:
            dims = {0, 1, 2, 3}
        elif isinstance(dim, int):
            dims = {dim % 4}
        elif isinstance(dim, list | tuple):
            dims = {int(d) % 4 for d in dim}
        else:
            return None  # max(x, other): elementwise, the default's union
        return Spatial(*(rf.whole(fx.axis(a), size[a]) if 2 + a in dims else fx.axis(a) for a in (0, 1)))

    def _cat(self, args, kwargs, tracked, out):
        dim = int(_arg(args, kwargs, 1, "dim", 0))
        if out.dim() == 4 and dim % 4 >= 2:
            return None  # joined along height or width: the default takes the whole maps
        return Spatial(*(rf.union(self.fields[id(t)].axis(a) for t in tracked) for a in (0, 1)))


# Calls that keep a map's size but move its pixels: taken as seeing the whole map.
_MOVES_PIXELS = {torch.roll, torch.flip, torch.Tensor.flip, torch.rot90, torch.Tensor.roll}


class FieldWalk:
    """Run ``model`` with fields attached (see the module docstring).

    Usage::

        with FieldWalk(model) as walk:
            out = model(walk.input(x))
        trace = walk.trace(out)
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.mode = _FieldMode()
        self.modules: dict[str, ModuleCall] = {}
        self._stack = ExitStack()
        self._input_size = (0, 0)
        self._pending: dict[str, list[TensorNote]] = {}

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """Mark ``x`` as the image whose pixels the fields count."""
        self.mode.mark(x, INPUT_FIELDS)
        self._input_size = (int(x.shape[-2]), int(x.shape[-1]))
        return x

    def __enter__(self) -> FieldWalk:
        for name, module in self.model.named_modules():
            self._stack.enter_context(_removing(module.register_forward_pre_hook(self._pre(name))))
            self._stack.enter_context(_removing(module.register_forward_hook(self._post(name))))
        self._stack.enter_context(self.mode)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _pre(self, name: str):
        def hook(module, args):
            self.mode.stack.append(name)
            self._pending[name] = [self.mode.note(t) for t in _tensors(args)]

        return hook

    def _post(self, name: str):
        def hook(module, args, output):
            if self.mode.stack and self.mode.stack[-1] == name:
                self.mode.stack.pop()
            previous = self.modules.get(name)
            self.modules[name] = ModuleCall(
                name=name,
                type=type(module).__name__,
                inputs=self._pending.pop(name, []),
                outputs=[self.mode.note(t) for t in _tensors(output)],
                calls=previous.calls + 1 if previous is not None else 1,
            )

        return hook

    def trace(self, output: Any, *, flops: int | None = None) -> Trace:
        """What the walk learned, once ``output`` (the model's) is computed."""
        return Trace(
            input_size=self._input_size,
            modules=self.modules,
            convs=list(self.mode.convs),
            outputs=[self.mode.note(t) for t in _tensors(output)],
            activation_bytes=self.mode.bytes,
            conservative=list(self.mode.conservative),
            flops=flops,
        )


class _removing:
    """A hook handle as a context manager."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def __enter__(self):
        return self.handle

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def in_chans_of(model: nn.Module) -> int:
    """Input channels: the backbone's ``in_chans``, else the first convolution's."""
    backbone = getattr(model, "backbone", None)
    if backbone is not None and hasattr(backbone, "in_chans"):
        return int(backbone.in_chans)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return 3


def model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def trace_model(model: nn.Module, size: Sequence[int], *, count_flops: bool = False) -> Trace:
    """Walk one 1×C×H×W zero input through ``model`` in evaluation mode, on the device of
    its parameters (``meta``: shapes only, nothing computed). With ``count_flops`` the
    same pass counts FLOPs with :func:`atrous.benchmark.flops.count_flops` (2 per
    multiply-accumulate of convolutions and matrix products)."""
    h, w = int(size[0]), int(size[1])
    x = torch.zeros(1, in_chans_of(model), h, w, device=model_device(model))
    was_training = model.training
    model.eval()
    result: dict[str, Any] = {}
    try:
        with torch.no_grad(), FieldWalk(model) as walk:

            def forward() -> None:
                result["out"] = model(walk.input(x))

            if count_flops:
                from ..benchmark.flops import count_flops as count_run_flops

                flops = count_run_flops(forward)
            else:
                forward()
                flops = None
        return walk.trace(result["out"], flops=flops)
    finally:
        model.train(was_training)
