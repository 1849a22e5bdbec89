"""Export to ONNX and to ``torch.export`` programs, with dynamic batch, height and width.

Every registered model is exported once (the ResNet-101 ones through their ResNet-50
twins) and run by ONNX Runtime at two input sizes (batch, height and width all different,
none a multiple of 32): one file, any size.

The models are small variants of the registered ones, so that the whole registry exports
in about a minute on two CPU cores: U-Nets with ``base_chs=4``; in the ResNet, Xception
and MobileNetV2 backbones, of the residual blocks with an identity shortcut only the first
of each ``nn.Sequential`` stays and the others become ``nn.Identity`` (every block with a
stride, a projection or a feature tap stays); VGG's fully connected convolutions (1024 or
4096 channels) get 64. The heads, poolings, upsamplings and crops — where the export
problems live — are the registered models' own.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.helpers import randomize_norm_stats
from torch import nn

import atrous
from atrous.backbones.mobilenetv2 import InvertedResidual
from atrous.backbones.resnet import BasicBlock, Bottleneck
from atrous.backbones.xception import XceptionBlock
from atrous.export import DEFAULT_OPSET, ExportCheck, ExportError, export_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

# The ResNet-101 models are their ResNet-50 twins once shrunk (the extra blocks of layer3
# are identity residuals, which become nn.Identity): the same operators in the same order,
# which test_twins_shrink_to_the_same_network checks. Exporting them again would cost 30 s
# of the suite and test nothing new.
TWINS = {
    "deeplabv3_paper_resnet101": "deeplabv3_paper_resnet50",
    "deeplabv3_resnet101": "deeplabv3_resnet50",
    "deeplabv3plus_resnet101": "deeplabv3plus_resnet50",
    "fcn_resnet101": "fcn_resnet50",
    "pspnet_resnet101": "pspnet_resnet50",
}
MODELS = [name for name in atrous.list_models(task="semantic") if name not in TWINS]
NUM_CLASSES = 3
EXAMPLE = (2, 64, 80)  # (batch, height, width) the model is traced with
SECOND = (1, 96, 72)  # a second size for the same file
ATOL = 1e-3
MIN_AGREEMENT = 0.999


def _identity_residual(m: nn.Module) -> bool:
    if isinstance(m, BasicBlock | Bottleneck):
        return m.downsample is None
    if isinstance(m, XceptionBlock):
        return m.skip and m.shortcut is None
    if isinstance(m, InvertedResidual):
        return m.use_res_connect
    return False


def _narrow_conv(conv: nn.Conv2d, narrow: dict[int, int]) -> nn.Conv2d:
    return nn.Conv2d(
        narrow.get(conv.in_channels, conv.in_channels),
        narrow.get(conv.out_channels, conv.out_channels),
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )


def shrink(model: nn.Module) -> nn.Module:
    """The small variant described in the module docstring (in place)."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        kept = False
        for name, child in list(seq.named_children()):
            if _identity_residual(child):
                if kept:
                    setattr(seq, name, nn.Identity())  # shape-preserving: x + f(x) → x
                kept = True
    if model.config["name"].endswith("vgg16"):
        narrow = {1024: 64, 4096: 64}  # only the fc-style convolutions are this wide
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Conv2d) and {child.in_channels, child.out_channels} & narrow.keys():
                    setattr(parent, name, _narrow_conv(child, narrow))
    return model


@torch.no_grad()
def small_model(name: str, seed: int = 0) -> nn.Module:
    """A small variant with random norm statistics and logits of a trained model's size.

    The class-score convolutions (those with ``NUM_CLASSES`` outputs) are drawn at random
    (FCN starts them at zero) and scaled so that |logits| peaks near 20; everything after
    them is linear, so the scale is exact.
    """
    torch.manual_seed(seed)
    kwargs = {"base_chs": 4} if name.startswith("unet") else {}
    with torch.device("meta"):  # built without weights, shrunk, then only what is kept is drawn
        model = shrink(atrous.create_model(name, num_classes=NUM_CLASSES, **kwargs))
    model.to_empty(device="cpu")
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()  # PyTorch's default init; the norms are randomised next
    randomize_norm_stats(model, seed=seed).eval()
    scores = [m for m in model.classifier.modules() if isinstance(m, nn.Conv2d) and m.out_channels == NUM_CLASSES]
    assert scores, name
    for conv in scores:
        nn.init.normal_(conv.weight, std=0.05)
        nn.init.normal_(conv.bias, std=0.05)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    factor = 20.0 / model(x).abs().max().item()
    for conv in scores:
        conv.weight.mul_(factor)
        conv.bias.mul_(factor)
    return model


def _input(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _assert_matches(reference: torch.Tensor, output: np.ndarray | torch.Tensor, what: str) -> tuple[float, float]:
    output = torch.as_tensor(output)
    assert tuple(output.shape) == tuple(reference.shape), what
    diff = (output - reference).abs().max().item()
    agreement = (output.argmax(1) == reference.argmax(1)).float().mean().item()
    assert diff <= ATOL, f"{what}: max |Δ| {diff:.2e}"
    assert agreement >= MIN_AGREEMENT, f"{what}: argmax agreement {agreement:.5f}"
    return diff, agreement


@pytest.mark.slow  # about 5 s a model, 2 minutes for the registry on 2 CPU cores
@pytest.mark.parametrize("name", MODELS)
def test_every_model_exports_to_onnx_with_dynamic_sizes(name, tmp_path):
    model = small_model(name)
    path = export_model(model, tmp_path / f"{name}.onnx", example_size=EXAMPLE, verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.onnx"]  # one file, no leftovers

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (image,), (logits,) = session.get_inputs(), session.get_outputs()
    assert (image.name, image.shape) == ("image", ["batch", 3, "height", "width"])
    assert (logits.name, logits.shape) == ("logits", ["batch", NUM_CLASSES, "height", "width"])
    for seed, size in enumerate((EXAMPLE, SECOND)):
        x = _input(*size, seed=seed)
        with torch.no_grad():
            reference = model(x)
        assert reference.shape == (size[0], NUM_CLASSES, *size[1:])
        output = session.run(["logits"], {"image": x.numpy()})[0]
        _assert_matches(reference, output, f"{name} at {size}")


def _leaf_modules(model: nn.Module) -> list[str]:
    """What the shrunk network computes, in order: its leaf modules, identities left out."""
    return [repr(m) for m in model.modules() if not list(m.children()) and not isinstance(m, nn.Identity)]


@pytest.mark.parametrize(("twin", "exported"), sorted(TWINS.items()))
def test_twins_shrink_to_the_same_network(twin, exported):
    assert twin in atrous.list_models(task="semantic")
    with torch.device("meta"):  # structure only: no weights drawn, no forward pass
        shrunk = [shrink(atrous.create_model(name, num_classes=NUM_CLASSES)) for name in (twin, exported)]
    assert _leaf_modules(shrunk[0]) == _leaf_modules(shrunk[1])


@pytest.mark.parametrize("name", ["deeplabv3plus_resnet18", "pspnet_resnet50", "unet", "fcn8s_vgg16"])
def test_exported_program_round_trip(name, tmp_path):
    model = small_model(name)
    checks: list[ExportCheck] = []
    path = export_model(
        model, tmp_path / "model.pt2", format="exported-program", example_size=EXAMPLE, check_size=SECOND, checks=checks
    )
    assert [c.input_shape for c in checks] == [(2, 3, 64, 80), (1, 3, 96, 72)]
    loaded = torch.export.load(str(path)).module()
    for seed, size in enumerate([(3, 57, 75), (1, 80, 112)], start=5):
        x = _input(*size, seed=seed)
        with torch.no_grad():
            _assert_matches(model(x), loaded(x), f"{name} at {size}")


def test_cli_exports_a_saved_model(tmp_path, capsys):
    from atrous.cli import main

    model = small_model("unet_padded")
    model.save_pretrained(tmp_path / "saved", metadata={"class_names": ["a", "b", "c"]})
    assert main(["export", str(tmp_path / "saved"), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "unet_padded" in out and "opset 18" in out and out.count("matches PyTorch") == 2
    path = tmp_path / "saved" / "model.onnx"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "README.md",
        "config.json",
        "model.onnx",
        "model.safetensors",
    ]
    proto = onnx.load(str(path))
    assert [(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [("", DEFAULT_OPSET)]
    props = {p.key: p.value for p in proto.metadata_props}
    assert '"unet_padded"' in props["atrous_config"] and "class_names" in props["atrous_metadata"]

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _input(2, 50, 37, seed=3)
    with torch.no_grad():
        _assert_matches(model(x), session.run(None, {"image": x.numpy()})[0], "CLI export")

    pt2 = tmp_path / "out" / "unet.pt2"
    assert main(["export", str(tmp_path / "saved"), "-f", "exported-program", "-o", str(pt2), "--no-verify"]) == 0
    assert "matches PyTorch" not in capsys.readouterr().out
    with torch.no_grad():
        _assert_matches(model(x), torch.export.load(str(pt2)).module()(x), "CLI exported program")


def test_an_output_name_that_does_not_fit_the_format_is_refused(tmp_path, capsys):
    from atrous.cli import main

    small_model("unet_padded").save_pretrained(tmp_path / "saved")
    saved = str(tmp_path / "saved")
    assert main(["export", saved, "-f", "exported-program", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "the exported-program format is written as a .pt2 file" in capsys.readouterr().err
    assert main(["export", saved, "-o", str(tmp_path / "deploy") + "/"]) == 2
    assert f"-o {tmp_path / 'deploy'}/ is a folder; give the file's name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]


def test_a_failed_export_writes_nothing_and_names_the_model(tmp_path, capsys, monkeypatch):
    from atrous.cli import main

    small_model("unet_padded").save_pretrained(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())

    def broken(*args, **kwargs):
        raise RuntimeError("no ONNX translation for aten::frobnicate")

    monkeypatch.setattr(torch.onnx, "export", broken)
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unet_padded cannot be exported to onnx" in err and "aten::frobnicate" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no model.onnx, no temporary file


def test_a_wrong_file_is_never_moved_into_place(tmp_path, monkeypatch):
    """The check at the second size catches a graph that only works at the example size."""
    import atrous.export as export

    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous export")
    real_runner = export._onnx_runner

    def runner_that_ignores_the_size(path):
        run = real_runner(path)
        return lambda x: run(x) if tuple(x.shape) == (2, 3, *EXAMPLE[1:]) else run(x)[..., :-1]

    monkeypatch.setattr(export, "_onnx_runner", runner_that_ignores_the_size)
    with pytest.raises(ExportError, match=r"the exported unet_padded is wrong on an input of shape \(1, 3, 96, 72\)"):
        export_model(small_model("unet_padded"), target, example_size=EXAMPLE, check_size=SECOND)
    assert target.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


class _DataDependent(nn.Module):
    """Control flow on tensor values: no graph can hold it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if y.mean() > 0 else -y


def test_a_model_that_cannot_be_traced_gets_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="_DataDependent cannot be exported with dynamic batch, height and width"):
        export_model(_DataDependent(), tmp_path / "m.onnx", example_size=(1, 8, 8), check_size=None)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path):
    model = small_model("unet_padded")
    with pytest.raises(ValueError, match="format must be one of onnx, exported-program"):
        export_model(model, tmp_path / "m.onnx", format="tflite")
    with pytest.raises(ValueError, match="opset applies to the onnx format only"):
        export_model(model, tmp_path / "m.pt2", format="exported-program", opset=17)
    for opset in (0, -1, 1.5):
        with pytest.raises(ValueError, match="opset must be a positive integer"):
            export_model(model, tmp_path / "m.onnx", opset=opset)
    with pytest.raises(ExportError, match="opset 999 is newer than this onnx package knows"):
        export_model(model, tmp_path / "m.onnx", opset=999, verify=False)
    assert list(tmp_path.iterdir()) == []


def test_an_opset_torch_onnx_cannot_convert_to_is_refused_not_relabelled(tmp_path):
    # Asked for opset 7, torch.onnx fails to convert the graph down and keeps opset 18 with a
    # warning: the file would not be what was asked for, so nothing is written.
    with pytest.raises(ExportError, match=r"could not write unet at opset 7 \(it wrote opset 18\)"):
        export_model(atrous.create_model("unet", num_classes=2, base_chs=4), tmp_path / "m.onnx", opset=7)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size", [1, 2, 3, 5, 6, 7, 13, 64])
def test_exportable_adaptive_pool_equals_pytorchs(size):
    from atrous.layers import adaptive_avg_pool2d_export

    for bins in (1, 2, 3, 6):
        for width in (1, 4, 6, 11):
            x = torch.randn(2, 5, size, width)
            expected = torch.nn.functional.adaptive_avg_pool2d(x, bins)
            assert (adaptive_avg_pool2d_export(x, bins) - expected).abs().max().item() <= 1e-6
