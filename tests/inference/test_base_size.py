"""``data.base_size`` at test time: the network sees each image at the shorter side the model
was trained at, and its results come back at the image's own size — in ``predict_batch``
(what predict and eval score), :class:`~atrous.inference.Predictor` and portrait mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import atrous
from atrous.inference import Predictor
from atrous.inference.portrait import subject_probability
from atrous.inference.tta import base_scales, predict_batch, returns_probabilities
from atrous.layers.upsample import ALIGN_CORNERS


def test_base_scales():
    assert base_scales((30, 80), (1.0,), 60) == (2.0,)
    assert base_scales((120, 45), (0.5, 1.0), 90) == (1.0, 2.0)
    assert base_scales((30, 80), (0.75,), None) == (0.75,)
    with pytest.raises(ValueError, match="base_size must be a positive integer"):
        base_scales((30, 80), (1.0,), 0)
    assert returns_probabilities((1.0,), False, 64) and not returns_probabilities((1.0,), False)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = atrous.create_model("deeplabv3_resnet18", num_classes=3).eval()
    for m in net.modules():  # realistic batch-norm statistics, so that labels vary over the image
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(0.5)
    return net


def _by_hand(net, x, side):
    """Resize to the shorter side (antialiased when shrinking, as training's RandomScale does),
    mirror-pad to the output stride, run, crop, resize back, softmax."""
    h, w = x.shape[-2:]
    factor = side / min(h, w)
    size = (round(h * factor), round(w * factor))
    small = F.interpolate(x, size=size, mode="bilinear", align_corners=ALIGN_CORNERS, antialias=factor < 1)
    sh, sw = small.shape[-2:]
    padded = F.pad(small, (0, -sw % 16, 0, -sh % 16), mode="reflect")
    logits = net(padded)[..., :sh, :sw]
    return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=ALIGN_CORNERS).softmax(1)


@pytest.mark.parametrize(("size", "side"), [((37, 53), 24), ((61, 45), 90)], ids=["down", "up"])
def test_predict_batch_sees_the_image_at_the_base_size(model, size, side):
    torch.manual_seed(1)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        expected = _by_hand(model, x, side)
        got = predict_batch(model, x, base_size=side)
    assert got.shape == (1, 3, *size)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # not the image's own size: that gives other scores
    assert not torch.allclose(predict_batch(model, x).softmax(1), expected, atol=1e-3)


def test_predictor_takes_the_models_base_size_by_default(model):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    model.metadata = {"base_size": 32}
    try:
        default = Predictor(model, precision="fp32")
        assert default.base_size == 32
        explicit = Predictor(model, precision="fp32", base_size=32)
        own = Predictor(model, precision="fp32", base_size=None)
        a, b, c = (p(image, probabilities=True) for p in (default, explicit, own))
        assert a.labels.shape == (50, 70) and a.probabilities.shape == (3, 50, 70)
        assert np.array_equal(a.labels, b.labels) and np.allclose(a.probabilities, b.probabilities)
        assert not np.allclose(a.probabilities, c.probabilities, atol=1e-3)
        np.testing.assert_allclose(a.probabilities.sum(0), 1.0, atol=1e-5)  # probabilities, not logits
        with pytest.raises(ValueError, match="tiles need base_size=None"):
            Predictor(model, precision="fp32", tile=32)
        # portrait mode shows the model the photo at the same side
        subject = subject_probability(image, model, 1, precision="fp32")
        np.testing.assert_allclose(subject.numpy(), a.probabilities[1], atol=1e-4)
        own_size = subject_probability(image, model, 1, precision="fp32", base_size=None)
        assert not np.allclose(own_size.numpy(), a.probabilities[1], atol=1e-3)
    finally:
        model.metadata = {}


def test_a_strip_that_base_size_would_make_huge_is_refused_before_it_runs(model):
    # 2000×1 at base size 64 is 128000×64 for the network: the plan refuses it, naming both
    # sizes, instead of allocating; an ordinary image under the same budget runs.
    predictor = Predictor(model, precision="fp32", base_size=64, memory_budget="256MiB")
    with pytest.raises(MemoryError, match=r"a 1×2000 image is 64×128000 for the network \(base size 64\)"):
        predictor(np.zeros((1, 2000, 3), dtype=np.uint8))
    assert predictor(np.zeros((48, 40, 3), dtype=np.uint8)).labels.shape == (48, 40)
    assert predictor(np.zeros((1, 30, 3), dtype=np.uint8)).labels.shape == (1, 30)  # 64×1920 fits
    # The memory model is one pass at the size given, not the resized probe: it grows with pixels.
    assert predictor.working_memory().per_pixel > 0


def test_portrait_refuses_a_strip_at_the_base_size(model):
    with pytest.raises(ValueError, match="at most 20× the shorter"):
        subject_probability(np.zeros((5, 400, 3), dtype=np.uint8), model, 1, precision="fp32", base_size=64)
