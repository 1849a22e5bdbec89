"""The heart of the foundation: torchvision checkpoints give torchvision's outputs.

For each torchvision segmentation model, a state dict (norm statistics calibrated on
random batches, affine parameters randomised so a mis-wired norm cannot hide, and the
final convolution scaled so logits peak at 20, the size a trained model's have) is
saved to a file, loaded into the matching atrous
model through ``create_model(..., checkpoint_path=...)``, and both run on a 2×3×97×129
input in eval mode. The issue's bound is a max absolute difference of 1e-4.
"""

import pytest
import torch
from tests.helpers import calibrate_norm_stats, randomize_norm_stats, scale_logits
from torchvision.models import segmentation as tv_seg

import atrous

CASES = ["fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101"]


@pytest.mark.parametrize("aux", [True, False])
@pytest.mark.parametrize("name", CASES)
def test_outputs_equal_torchvision(name, aux, tmp_path):
    ref = getattr(tv_seg, name)(weights=None, weights_backbone=None, num_classes=21, aux_loss=aux)
    x = torch.randn(2, 3, 97, 129)
    ref = scale_logits(calibrate_norm_stats(ref), x)
    path = tmp_path / f"{name}.pth"
    torch.save(ref.state_dict(), path)
    # torchvision's segmentation ResNets are dilated to output stride 8.
    model = atrous.create_model(name, num_classes=21, output_stride=8, aux=aux, checkpoint_path=path).eval()
    with torch.no_grad():
        ours = model(x)
        theirs = ref(x)["out"]
    assert ours.shape == theirs.shape == (2, 21, 97, 129)
    assert theirs.abs().max().item() > 1.0  # not a degenerate, all-zero comparison
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_aux_outputs_equal_torchvision_in_train_mode(tmp_path):
    ref = tv_seg.fcn_resnet50(weights=None, weights_backbone=None, num_classes=5, aux_loss=True)
    ref = randomize_norm_stats(ref)
    path = tmp_path / "fcn.pth"
    torch.save(ref.state_dict(), path)
    model = atrous.create_model("fcn_resnet50", num_classes=5, output_stride=8, aux=True, checkpoint_path=path)
    # Train mode, batch statistics, dropout off on both sides so the comparison is exact.
    for m in (ref, model):
        m.train()
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    x = torch.randn(2, 3, 65, 81)
    ours, theirs = model(x), ref(x)
    torch.testing.assert_close(ours["out"], theirs["out"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours["aux"], theirs["aux"], atol=1e-4, rtol=1e-4)


def test_loading_aux_checkpoint_into_model_without_aux_says_how_to_fix(tmp_path):
    ref = tv_seg.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    path = tmp_path / "deeplabv3_resnet50_coco.pth"
    torch.save(ref.state_dict(), path)
    with pytest.raises(KeyError, match=r"unexpected keys \(aux_classifier\.0\.weight.*aux=True"):
        atrous.create_model("deeplabv3_resnet50", num_classes=21, output_stride=8, checkpoint_path=path)


def test_wrong_num_classes_checkpoint_names_the_shapes(tmp_path):
    ref = tv_seg.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21)
    path = tmp_path / "fcn.pth"
    torch.save(ref.state_dict(), path)
    with pytest.raises(KeyError, match=r"classifier\.4\.weight \(21, 512, 1, 1\) vs \(3, 512, 1, 1\)"):
        atrous.create_model("fcn_resnet50", num_classes=3, checkpoint_path=path)
