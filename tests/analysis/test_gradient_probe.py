"""The theoretical field checked against gradients: the centre output pixel's input gradient
never leaves its field, and once the network is linear and positive it fills the field to
its edges exactly (clipped by the image border)."""

import torch
from torch import nn

from atrous.analysis import trace_model
from atrous.backbones import create_backbone
from atrous.models import create_model

SIZE = 97
SMALL = 65  # for the larger networks: seconds, not tens of seconds, on two cores


class _ProbeNet(nn.Module):
    """conv3, BN, ReLU; conv3 stride 2 with a strided 1×1 shortcut; conv3 rate 2; max-pool 2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.shortcut = nn.Conv2d(4, 4, 1, stride=2)
        self.atrous = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.relu(self.bn(self.conv1(x)))
        x = self.relu(self.conv2(x) + self.shortcut(x))
        return self.pool(self.relu(self.atrous(x)))


def linearise(model: nn.Module) -> nn.Module:
    """ReLU → identity, max-pool → average pool of the same window, every weight positive:
    every path from input to output then carries gradient."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    with torch.no_grad():
        for p in model.parameters():
            p.abs_().add_(0.01)
    return model.eval()


def _extent(grad: torch.Tensor) -> tuple[int, int, int, int]:
    """First and last row, first and last column where the gradient is non-zero."""
    nz = (grad.abs().sum(dim=(0, 1)) > 0).nonzero()
    return int(nz[:, 0].min()), int(nz[:, 0].max()), int(nz[:, 1].min()), int(nz[:, 1].max())


def _field_extent(fields, shape, size=SIZE) -> tuple[int, int, int, int]:
    """The centre pixel's field (bounds, with any slack), clipped to the image."""
    (h0, h1), (w0, w1) = fields.h.bounds(shape[-2] // 2), fields.w.bounds(shape[-1] // 2)
    clip = lambda v: min(max(v, 0), size - 1)  # noqa: E731
    return clip(round(h0)), clip(round(h1)), clip(round(w0)), clip(round(w1))


def _probe(model, targets, *, exact: bool, size: int = SIZE):
    """``targets``: (name, output tensor, fields, input) of maps computed from the input."""
    for name, out, fields, x in targets:
        c = (out.shape[-2] // 2, out.shape[-1] // 2)
        (grad,) = torch.autograd.grad(out[:, :, c[0], c[1]].sum(), x, retain_graph=True)
        got, field = _extent(grad), _field_extent(fields, out.shape, size)
        if exact:
            assert got == field, name
        else:
            assert field[0] <= got[0] and got[1] <= field[1] and field[2] <= got[2] and got[3] <= field[3], name


def _probe_net(model):
    trace = trace_model(model, (SIZE, SIZE))
    x = torch.rand(1, 3, SIZE, SIZE, requires_grad=True)
    return [("probe net", model(x), trace.outputs[0].fields, x)]


def _probe_backbone(backbone, size):
    """The stages whose field does not already cover the image (a covering field says
    nothing: every pixel is inside it), which also spares the deep stages' backward."""
    trace = trace_model(backbone, (size, size))
    x = torch.rand(1, 3, size, size, requires_grad=True)
    notes = trace.module("").outputs
    targets = [
        (spec.module, out, note.fields, x)
        for spec, out, note in zip(backbone.feature_info, backbone(x), notes, strict=True)
        if _field_extent(note.fields, note.shape, size) != (0, size - 1, 0, size - 1)
    ]
    assert [name for name, *_ in targets] == ["relu", "layer1"]
    return targets


def test_a_small_network_stays_inside_and_fills_its_field():
    model = _ProbeNet().eval()
    _probe(model, _probe_net(model), exact=False)
    model = linearise(model)
    _probe(model, _probe_net(model), exact=True)


def test_dilated_resnet18_stages_stay_inside_and_fill_their_fields():
    """atrous's ResNet-18 at output stride 8 (layer3 and layer4 dilated): the stem (7 px)
    and layer1 (43 px, through the max-pool and two residual units) stay inside their
    fields, and fill them exactly once linear."""
    backbone = create_backbone("resnet18", output_stride=8).eval()
    _probe(backbone, _probe_backbone(backbone, SMALL), exact=False, size=SMALL)
    backbone = linearise(backbone)
    _probe(backbone, _probe_backbone(backbone, SMALL), exact=True, size=SMALL)


def test_unet_fields_with_slack_hold_every_pixel():
    """The U-Net's transposed convolutions read their cells in a phase that changes from
    pixel to pixel; with the slack, the bounds still hold every output pixel's gradient."""
    model = linearise(create_model("unet", base_chs=2, num_classes=1))
    trace = trace_model(model, (SMALL, SMALL))
    fields = trace.outputs[0].fields
    assert fields.h.slack > 0
    x = torch.rand(1, 3, SMALL, SMALL, requires_grad=True)
    out = model(x)
    for i in range(0, SMALL, 16):
        (grad,) = torch.autograd.grad(out[0, :, i, i].sum(), x, retain_graph=True)
        r0, r1, c0, c1 = _extent(grad)
        first, last = fields.h.bounds(i)
        assert first <= r0 and r1 <= last and first <= c0 and c1 <= last, i
