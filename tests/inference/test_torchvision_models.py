"""``torchvision:NAME``: torchvision's VOC-label segmentation weights through torch.hub's cache.

No test downloads anything: the offline test makes the download fail as it does without a
network, and the loading test places a torchvision-format file (random weights) in an
empty ``$TORCH_HOME`` under the name torchvision's URL gives it.
"""

from __future__ import annotations

import urllib.error

import pytest
import torch
from tests.helpers import randomize_norm_stats
from torchvision.models import segmentation as tv_seg

from atrous.cli import main
from atrous.inference import load_trained_model
from atrous.inference.torchvision_models import TORCHVISION_MODELS, load_torchvision_model, torchvision_weights

FILES = {
    "deeplabv3_resnet50": "deeplabv3_resnet50_coco-cd0a2569.pth",
    "deeplabv3_resnet101": "deeplabv3_resnet101_coco-586e9e4e.pth",
    "fcn_resnet50": "fcn_resnet50_coco-1167a1af.pth",
    "fcn_resnet101": "fcn_resnet101_coco-7ecb50ca.pth",
}


@pytest.fixture
def offline(monkeypatch):
    def fail(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


def test_names_map_to_torchvision_weights_without_downloading():
    assert set(TORCHVISION_MODELS) == set(FILES)
    for name, filename in FILES.items():
        weights = torchvision_weights(f"torchvision:{name}")
        assert weights.url == f"https://download.pytorch.org/models/{filename}"
        assert len(weights.meta["categories"]) == 21


def test_unknown_name_lists_the_supported_ones():
    expected = r"unknown torchvision model 'torchvision:lraspp'; supported: .*torchvision:deeplabv3_resnet101"
    with pytest.raises(ValueError, match=expected):
        load_torchvision_model("torchvision:lraspp")


def test_offline_error_names_the_file_and_where_to_put_it(torch_home, offline):
    expected = torch_home / "hub" / "checkpoints" / "deeplabv3_resnet101_coco-586e9e4e.pth"
    with pytest.raises(ConnectionError) as info:
        load_trained_model("torchvision:deeplabv3_resnet101")
    message = str(info.value)
    assert "https://download.pytorch.org/models/deeplabv3_resnet101_coco-586e9e4e.pth" in message
    assert f"place it at {expected}" in message


def test_offline_error_from_the_command_line(torch_home, offline, tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (40, 30)).save(tmp_path / "in.png")
    argv = ["portrait", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--model", "torchvision:fcn_resnet50"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(torch_home / "hub" / "checkpoints" / "fcn_resnet50_coco-1167a1af.pth") in err


def test_cached_checkpoint_loads_and_gives_torchvision_outputs(torch_home, offline):
    # Random weights with random norm statistics (test_torchvision_equivalence does the
    # calibrated, every-architecture comparison; this checks the cache and the build).
    ref = tv_seg.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    ref = randomize_norm_stats(ref).eval()
    x = torch.randn(1, 3, 33, 41)
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(ref.state_dict(), cache / FILES["fcn_resnet50"])

    model = load_trained_model("torchvision:fcn_resnet50")  # offline: only the cached file can serve
    assert not model.training and model.aux_classifier is not None
    assert model.output_stride == 8 and model.num_classes == 21
    with torch.no_grad():
        ours, theirs = model(x), ref(x)["out"]
    assert ours.shape == theirs.shape == (1, 21, 33, 41)
    assert theirs.abs().max() > 1.0
    assert (ours - theirs).abs().max().item() <= 1e-5 * theirs.abs().max().item()

    meta = model.metadata
    assert meta["source"] == "torchvision:fcn_resnet50"
    assert meta["class_names"][15] == "person" and len(meta["class_names"]) == 21
    assert len(meta["palette"]) == 21 and meta["palette"][15] == [192, 128, 128]
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406]) and meta["std"] == pytest.approx([0.229, 0.224, 0.225])
