"""inference_path: explicit precisions as named, auto measured on a probe and checked against fp32."""

from __future__ import annotations

import pytest
import torch

import atrous
from atrous.inference import Predictor, inference_path
from atrous.inference.fast import probe_input

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return atrous.create_model("deeplabv3_resnet18", num_classes=4).eval()


def test_fp32_is_the_model_as_given(model):
    path = inference_path(model, CPU, "fp32")
    assert path.model is model and path.dtype is None and not path.channels_last
    assert path.precision == "fp32" and path.choice.source == "requested"


def test_bf16_is_the_fast_copy_under_autocast(model):
    path = inference_path(model, CPU, "bf16")
    assert path.model is not model and path.dtype is torch.bfloat16 and path.channels_last
    assert path(probe_input(64)).dtype == torch.bfloat16


def test_auto_measures_keeps_a_checked_path_and_caches_it(model, tmp_path, monkeypatch):
    monkeypatch.setenv("ATROUS_CACHE", str(tmp_path))
    path = inference_path(model, CPU, "auto")
    choice = path.choice
    assert choice.source == "measured" and choice.probe == [1, 3, 256, 256]
    assert set(choice.timings) == {"fp32", "bf16"}
    assert choice.agreement["fp32"] > 0.999  # the folded fp32 copy gives the model's labels
    assert path.precision in ("fp32", "bf16") and path.channels_last and path.model is not model
    x = probe_input(96)
    with torch.inference_mode():
        agreement = (path(x).float().argmax(1) == model(x).argmax(1)).float().mean()
    assert agreement > 0.9
    assert inference_path(model, CPU, "auto").choice.source == "cache"
    torch.manual_seed(1)
    other = atrous.create_model("deeplabv3_resnet18", num_classes=4).eval()  # new weights: a new decision
    assert inference_path(other, CPU, "auto").choice.source == "measured"


def test_the_predictor_reports_its_resolved_precision(model):
    predictor = Predictor(model)
    assert predictor.precision in ("fp32", "bf16")
    assert predictor.path.choice.source in ("measured", "cache")
    assert Predictor(model, precision="fp32").precision == "fp32"


def test_int8_needs_an_int8_model(model):
    with pytest.raises(ValueError, match="atrous quantize"):
        inference_path(model, CPU, "int8")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        inference_path(model, CPU, "fp16")


def test_int8_without_a_quantized_model_names_the_command(tmp_path):
    from atrous.inference import load_inference_model

    with pytest.raises(FileNotFoundError, match="atrous quantize"):
        load_inference_model(tmp_path, "int8")
