"""Predictor: any input type and size, whole or tiled under a memory budget, the fast path."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from tests.helpers import calibrate_norm_stats

import atrous
from atrous.data import build_dataset
from atrous.data.errors import ImageReadError
from atrous.inference import Predictor
from atrous.inference.fast import fold_conv_bn
from atrous.inference.memory import MemoryModel, measure_memory, parse_bytes, plan_tiles
from atrous.inference.predictor import as_rgb_uint8


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    model = atrous.create_model("deeplabv3plus_mobilenetv2", num_classes=3)
    return calibrate_norm_stats(model, shape=(2, 3, 64, 64)).eval()


def test_every_input_type_gives_the_same_labels(small_model, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    predictor = Predictor(small_model, precision="fp32")
    reference = predictor(rgb).labels
    assert reference.shape == (37, 45)
    for image in (
        str(path),
        path,
        Image.fromarray(rgb),
        Image.fromarray(rgb).convert("RGBA"),
        np.concatenate([rgb, np.full((37, 45, 1), 255, np.uint8)], axis=2),
        rgb.astype(np.float32) / 255,
        torch.from_numpy(rgb).permute(2, 0, 1),
        torch.from_numpy(rgb).permute(2, 0, 1).float() / 255,
    ):
        assert np.array_equal(predictor(image).labels, reference), type(image)
    gray = rgb[..., 0]
    assert np.array_equal(predictor(gray).labels, predictor(np.stack([gray] * 3, axis=2)).labels)


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (np.zeros((4, 4, 2), np.uint8), ValueError, r"must be \(H, W\), \(H, W, 3\) or \(H, W, 4\)"),
        (torch.zeros(4, 3, 3), ValueError, r"must be \(3, H, W\) or \(H, W\)"),
        (np.full((4, 4, 3), 2.0, np.float32), ValueError, "values in 0..1"),
        (np.zeros((4, 4, 3), np.int32), ValueError, "uint8 or floating point"),
        ([[0, 1]], TypeError, "path, PIL image, NumPy array or tensor"),
    ],
)
def test_bad_images_are_named(image, error, message):
    with pytest.raises(error, match=message):
        as_rgb_uint8(image)


def test_a_missing_file_names_the_path(small_model, tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png does not exist"):
        Predictor(small_model)(tmp_path / "nope.png")


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (97, 130)])
def test_whole_image_mode_any_size_and_probabilities(small_model, size):
    result = Predictor(small_model, precision="fp32")(np.zeros((*size, 3), np.uint8), probabilities=True)
    assert result.mode == "whole" and result.labels.shape == size
    assert result.probabilities.shape == (3, *size)
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-5)
    assert np.array_equal(result.probabilities.argmax(0), result.labels)
    assert result.overlay(0.5).shape == (*size, 3)


def test_a_small_budget_switches_to_tiles_that_agree_with_the_whole_image(demo_model):
    model, _ = demo_model
    image = np.random.default_rng(1).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    whole = Predictor(model, precision="fp32")(image)
    budget = int(Predictor(model, precision="fp32").working_memory().bytes_for(96 * 96) * 4)
    tiled = Predictor(model, precision="fp32", memory_budget=budget)(image, probabilities=True)
    assert whole.mode == "whole" and tiled.mode == "tiled" and tiled.tile < 150
    assert (tiled.labels == whole.labels).mean() >= 0.97  # windows see less context at their edges
    np.testing.assert_allclose(tiled.probabilities.sum(0), 1.0, atol=1e-5)


def test_the_fast_path_agrees_with_fp32_on_a_trained_model(demo_model):
    model, _ = demo_model
    fast, reference = Predictor(model), Predictor(model, precision="fp32")
    assert reference.model is model and fast.model is not model  # the fast copy leaves the model alone
    dataset = build_dataset("synthetic", split="val", size=64, num_classes=4, num_samples=12, seed=1)
    agreement = [float((fast(dataset[i][0]).labels == reference(dataset[i][0]).labels).mean()) for i in range(12)]
    assert np.mean(agreement) >= 0.995, agreement


def test_test_time_augmentation_runs_through_the_predictor(demo_model):
    model, _ = demo_model
    image = np.random.default_rng(2).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    result = Predictor(model, scales=(0.75, 1.0, 1.25), flip=True)(image, probabilities=True)
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-3)


FOLD_CASES = ["deeplabv3plus_resnet18", "deeplabv3plus_xception65", "deeplabv3_mobilenetv2", "unet_padded"]


@pytest.mark.parametrize("name", atrous.list_models(task="semantic"))
def test_conv_bn_folding_leaves_no_norm_in_any_model(name):
    with torch.device("meta"):
        model = atrous.create_model(name, num_classes=3).eval()
        norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        assert fold_conv_bn(model) == norms
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", FOLD_CASES)
def test_conv_bn_folding_is_exact(name):
    kwargs = {"base_chs": 8} if name.startswith("unet") else {}
    model = calibrate_norm_stats(atrous.create_model(name, num_classes=3, **kwargs), shape=(2, 3, 64, 64))
    folded = copy.deepcopy(model)
    fold_conv_bn(folded)
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        a, b = model(x), folded(x)
    assert (a - b).abs().max() <= 1e-4 * max(1.0, a.abs().max().item())


def test_fold_needs_eval_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_conv_bn(atrous.create_model("deeplabv3_resnet18").train())


def test_memory_model_and_tile_plan():
    assert parse_bytes("2GiB") == 2 * 2**30 and parse_bytes("512MB") == 512 * 2**20 and parse_bytes(1000) == 1000
    with pytest.raises(ValueError, match="memory budget"):
        parse_bytes("lots")
    # A conv net's working memory grows with the pixels: the two probes extrapolate exactly.
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    with torch.inference_mode():
        memory = measure_memory(net, torch.zeros(1, 3, 1, 1))
    # Peak: the first conv's output and the ReLU's (8 float32 channels each) alive together.
    assert memory.per_pixel == pytest.approx(2 * 8 * 4, rel=0.01)
    plan = plan_tiles(MemoryModel(per_pixel=1000.0, fixed=0.0), 2**30)
    assert plan.tile % 32 == 0 and 1000.0 * plan.tile**2 * plan.batch * 1.25 <= 2**30
    with pytest.raises(MemoryError, match="raise the memory budget"):
        plan_tiles(MemoryModel(per_pixel=1000.0, fixed=0.0), 2**20)


def test_fast_model_casts_conv_weights_once_with_the_same_results():
    """Weights stored in bf16 give what autocast gives when it casts them on every call."""
    from atrous.inference.fast import fast_model

    torch.manual_seed(0)
    model = atrous.create_model("pspnet_resnet50", num_classes=3).eval()
    x = torch.randn(1, 3, 96, 96).contiguous(memory_format=torch.channels_last)
    cast = fast_model(model, dtype=torch.bfloat16)
    convs = [m for m in cast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    assert next(model.parameters()).dtype == torch.float32  # the original is untouched
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(cast(x), fast_model(model)(x), rtol=0, atol=0)
