"""Multi-scale + flip test-time augmentation (DeepLab v3 §4.3) against a by-hand computation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import atrous
from atrous.inference.tta import predict_probabilities
from atrous.layers.upsample import ALIGN_CORNERS


def _by_hand(net, x, scales, flip):
    """Each scale (shrunk images antialiased, as training's RandomScale shrinks them), each
    flip: run, flip back, resize to the input, softmax; the mean over passes."""
    h, w = x.shape[-2:]
    passes = []
    for scale in scales:
        size = (round(h * scale), round(w * scale))
        xs = F.interpolate(x, size=size, mode="bilinear", align_corners=ALIGN_CORNERS, antialias=scale < 1)
        for flipped in (False, True) if flip else (False,):
            logits = net(xs.flip(-1)).flip(-1) if flipped else net(xs)
            passes.append(F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=ALIGN_CORNERS).softmax(1))
    return torch.stack(passes).mean(0)


def test_multi_scale_and_flip_average_the_softmax_of_every_pass():
    torch.manual_seed(0)
    net = atrous.create_model("deeplabv3_resnet18", num_classes=3).eval()
    for m in net.modules():  # realistic batch-norm statistics, so that the scores vary over the image
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(0.5)
    x = torch.randn(1, 3, 64, 80)
    scales = (0.5, 1.0, 1.25)
    with torch.no_grad():
        got = predict_probabilities(net, x, scales=scales, flip=True)
        expected = _by_hand(net, x, scales, flip=True)
    assert got.shape == (1, 3, 64, 80)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.sum(1), torch.ones(1, 64, 80))
    # one scale, no flip: the logits themselves
    with torch.no_grad():
        torch.testing.assert_close(predict_probabilities(net, x), net(x))
