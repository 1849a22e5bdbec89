"""The unpadded U-Net trains as the paper does: valid output, weight maps, elastic, overlap-tile eval."""

from __future__ import annotations

import pytest
import torch

from atrous.engine.trainer import Trainer

UNET = [
    "model.name=unet",
    "model.options={base_chs: 2}",
    "data.options={size: 96, num_classes: 2}",
    "data.crop_size=[188, 188]",  # the smallest valid input: 188 -> 4
    "data.scale_range=[1.0, 1.0]",
    "data.batch_size=2",
    "data.elastic=true",
    "train.steps=2",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.weight_map={w0: 10, sigma: 5}",
    "eval.tile=20",
]


def test_unet_trains_on_valid_centres_with_weight_maps(tiny_config, tmp_path):
    trainer = Trainer(tiny_config(*UNET), tmp_path / "run")
    images, masks, weights = next(iter(trainer.train_loader))
    assert images.shape == (2, 3, 188, 188) and weights.shape == masks.shape == (2, 188, 188)
    assert weights.max() > 1.0  # the border term of §3 is there
    trainer.model.train()
    assert trainer.model(images).shape == (2, 2, 4, 4)  # the bare network's valid output in training
    seen = []
    original = trainer.criterion.forward

    def spy(output, target, *extra):
        seen.append((tuple(output.shape), tuple(target.shape), tuple(extra[0].shape)))
        return original(output, target, *extra)

    trainer.criterion.forward = spy
    result = trainer.run()
    assert seen and all(o[-2:] == t[-2:] == w[-2:] == (4, 4) for o, t, w in seen)  # centre crops
    assert result.steps == 2 and result.history[-1]["kind"] == "val"
    trainer.model.eval()
    x = torch.randn(1, 3, 40, 50)
    with torch.no_grad():
        assert trainer.model(x).shape == (1, 2, 40, 50)  # eval: logits at the input size


def test_unet_crop_must_be_a_valid_input(tiny_config, tmp_path):
    with pytest.raises(ValueError, match=r"input size 190 is not valid .* the nearest valid sizes are 188 and 204"):
        Trainer(tiny_config(*UNET, "data.crop_size=[190, 190]"), tmp_path / "run")


def test_weight_map_needs_plain_cross_entropy(tiny_config, tmp_path):
    with pytest.raises(ValueError, match=r"train.weight_map .* needs train.loss=ce"):
        Trainer(tiny_config(*UNET, "train.loss=dice"), tmp_path / "run")
