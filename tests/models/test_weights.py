import json
import os
import re

import pytest
import torch

import atrous
from atrous.utils.state_dict import StateDictMismatchError, fetch_weights


def test_save_pretrained_and_load_model_round_trip(tmp_path):
    model = atrous.create_model("deeplabv3plus_resnet18", num_classes=7, output_stride=8, aux=True).eval()
    model.save_pretrained(tmp_path / "run")
    assert sorted(os.listdir(tmp_path / "run")) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["name"] == "deeplabv3plus_resnet18" and config["num_classes"] == 7
    assert config["output_stride"] == 8 and config["aux"] is True
    loaded = atrous.load_model(tmp_path / "run")
    assert not loaded.training
    x = torch.randn(1, 3, 41, 37)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


def test_round_trip_keeps_multi_grid_and_switched_output_stride(tmp_path):
    model = atrous.create_model("deeplabv3_resnet50", num_classes=2, multi_grid=(1, 2, 4))
    model.set_output_stride(8)
    model.save_pretrained(tmp_path)
    loaded = atrous.load_model(tmp_path)
    assert loaded.output_stride == 8 and loaded.config["multi_grid"] == [1, 2, 4]
    assert [u.conv2.dilation[0] for u in loaded.backbone.layer4] == [4, 8, 16]


def test_failed_save_keeps_the_previous_files(tmp_path, monkeypatch):
    model = atrous.create_model("deeplabv3_resnet18", num_classes=2)
    model.save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    import safetensors.torch

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atrous.create_model("deeplabv3_resnet18", num_classes=2).save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["README.md", "config.json", "model.safetensors"]  # no temporary left


def test_load_model_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json does not exist"):
        atrous.load_model(tmp_path)
    atrous.create_model("deeplabv3_resnet18", num_classes=2).save_pretrained(tmp_path)
    good = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        atrous.load_model(tmp_path)
    (tmp_path / "config.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        atrous.load_model(tmp_path)
    # Fields that are there but wrong: each error names config.json.
    for change, says in (
        ({"metadata": "oops"}, "metadata must be a mapping"),
        ({"metadata": {"palette": [[0, 0], [1, 2]]}}, "metadata palette must be a list of [r, g, b] colours"),
        ({"num_classes": -1}, "does not describe a model atrous can build"),
        ({"name": "no_such_model"}, "does not describe a model atrous can build"),
        ({"name": 5}, "has no model 'name'"),
    ):
        (tmp_path / "config.json").write_text(json.dumps({**good, **change}))
        with pytest.raises(ValueError, match=re.escape(says)) as caught:
            atrous.load_model(tmp_path)
        assert str(tmp_path / "config.json") in str(caught.value)


def test_load_model_rejects_weights_of_another_model(tmp_path):
    atrous.create_model("deeplabv3_resnet18", num_classes=2).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_classes"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(StateDictMismatchError, match=r"model\.safetensors does not match"):
        atrous.load_model(tmp_path)


def test_checkpoint_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth is not a readable PyTorch weights file"):
        atrous.create_model("fcn_resnet50", checkpoint_path=path)
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match=r"junk\.pth does not hold a state dict"):
        atrous.create_model("fcn_resnet50", checkpoint_path=path)


def test_training_checkpoint_wrapper_is_unwrapped(tmp_path):
    model = atrous.create_model("deeplabv3_resnet18", num_classes=2)
    torch.save({"model": model.state_dict(), "step": 3}, tmp_path / "ckpt.pt")
    again = atrous.create_model("deeplabv3_resnet18", num_classes=2, checkpoint_path=tmp_path / "ckpt.pt")
    assert torch.equal(again.classifier[-1].weight, model.classifier[-1].weight)


# -- pretrained_backbone sources: file, URL through torch.hub's cache, torchvision name --


def _imagenet_resnet18_file(path):
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, path)
    return state


def test_pretrained_backbone_from_a_local_file(tmp_path):
    state = _imagenet_resnet18_file(tmp_path / "resnet18.pth")
    model = atrous.create_model("deeplabv3_resnet18", pretrained_backbone=str(tmp_path / "resnet18.pth"))
    assert torch.equal(model.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_pretrained_backbone_from_a_url_goes_through_the_hub_cache(tmp_path, torch_home):
    state = _imagenet_resnet18_file(tmp_path / "resnet18-remote.pth")
    url = (tmp_path / "resnet18-remote.pth").as_uri()  # file:// exercises the real download code
    model = atrous.create_model("deeplabv3_resnet18", pretrained_backbone=url)
    cached = torch_home / "hub" / "checkpoints" / "resnet18-remote.pth"
    assert cached.is_file()
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])


def test_pretrained_backbone_by_torchvision_weight_name_uses_the_cached_file(tmp_path, torch_home):
    from torchvision.models import ResNet18_Weights

    filename = ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    state = _imagenet_resnet18_file(cache / filename)
    for source in ("ResNet18_Weights.IMAGENET1K_V1", "IMAGENET1K_V1", "DEFAULT"):
        model = atrous.create_model("deeplabv3_resnet18", pretrained_backbone=source)
        assert torch.equal(model.backbone.bn1.running_var, state["bn1.running_var"])


def test_offline_download_says_which_file_to_place_where(torch_home, monkeypatch):
    import urllib.error

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    expected = str(torch_home / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth")
    with pytest.raises(ConnectionError) as info:
        atrous.create_model("deeplabv3_resnet50", pretrained_backbone="ResNet50_Weights.IMAGENET1K_V2")
    message = str(info.value)
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in message
    assert f"place it at {expected}" in message


def test_unknown_weights_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a file, a URL, nor a torchvision weight name"):
        fetch_weights(str(tmp_path / "nope.pth"))
