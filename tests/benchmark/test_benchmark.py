"""atrous.benchmark and `atrous bench`: FLOPs counted right, interleaved timing, results."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from atrous.benchmark import bench_model, build_bench_model, conv_ceiling, count_flops, time_interleaved
from atrous.cli import main


def _conv_step(conv: nn.Conv2d, x: torch.Tensor):
    return lambda: conv(x).sum().backward()


def test_forward_flops_are_two_per_multiply_accumulate():
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    x = torch.randn(2, 8, 10, 12)
    with torch.no_grad():
        assert count_flops(lambda: conv(x)) == 2 * 2 * 16 * 8 * 9 * 10 * 12


@pytest.mark.parametrize("groups", [1, 4, 32])
def test_training_flops_are_three_forwards_for_any_grouping(groups):
    """Input and weight gradients each cost one forward; torch's own counter agrees for
    ungrouped convolutions and over-counts the weight gradient by the group count."""
    conv = nn.Conv2d(32, 32, 3, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 32, 16, 16, requires_grad=True)
    forward = 2 * 2 * 32 * (32 // groups) * 9 * 16 * 16
    assert count_flops(_conv_step(conv, x)) == 3 * forward
    torch_counter = FlopCounterMode(display=False)
    with torch_counter:
        _conv_step(conv, x)()
    assert torch_counter.get_total_flops() == 2 * forward + forward * groups


def test_first_layer_backward_has_no_input_gradient():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.randn(1, 3, 8, 8)  # the image: no gradient wanted
    assert count_flops(_conv_step(conv, x)) == 2 * (2 * 8 * 3 * 9 * 64)


def test_time_interleaved_alternates_and_validates():
    calls = []
    times = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=5, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 5  # warm-up each, then rounds in turn
    assert {k: len(v) for k, v in times.items()} == {"a": 5, "b": 5}
    with pytest.raises(ValueError, match="at least 5"):
        time_interleaved({"a": lambda: None}, repeats=4)
    with pytest.raises(ValueError, match="warmup"):
        time_interleaved({"a": lambda: None}, warmup=0)


def test_conv_ceiling_is_a_positive_rate():
    assert 0 < conv_ceiling("cpu", None, channels_last=False, repeats=5) < 1e6


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_bench_model_reports_measured_figures(mode):
    result = bench_model("deeplabv3_resnet18", mode=mode, batch=2, size=64, repeats=5, warmup=1, ceiling=100.0)
    model = build_bench_model("deeplabv3_resnet18")
    assert result.params == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        forward = count_flops(lambda: model.eval()(torch.zeros(2, 3, 64, 64))) / 1e9
    if mode == "infer":
        assert result.gflops == pytest.approx(forward)
    else:  # forward + backward, the first layer without an input gradient: under 3×
        assert 2 * forward < result.gflops < 3 * forward
    assert len(result.latencies_s) == 5 and result.latency_s > 0
    assert result.images_per_s == pytest.approx(2 / result.latency_s)
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert result.peak_memory_bytes > weights
    assert result.achieved_gflops_per_s == pytest.approx(result.gflops / result.latency_s)
    assert result.ceiling_fraction == pytest.approx(result.achieved_gflops_per_s / 100.0)
    assert json.loads(json.dumps(result.as_dict()))["mode"] == mode


def test_torchvision_models_by_name():
    model = build_bench_model("torchvision:fcn_resnet50", num_classes=3)
    assert type(model).__module__.startswith("torchvision")
    with pytest.raises(ValueError, match="unknown torchvision segmentation model"):
        build_bench_model("torchvision:nope")
    with pytest.raises(ValueError, match="output stride of 8"):
        build_bench_model("torchvision:fcn_resnet50", output_stride=16)


def test_cli_json_and_table(capsys):
    args = ["bench", "deeplabv3_resnet18", "--size", "64", "--repeats", "5", "--warmup", "1"]
    assert main([*args, "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["model"] == "deeplabv3_resnet18" and record["size"] == 64 and record["gflops"] > 0
    assert main([*args, "--mode", "train", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "train, fp32, channels_last" in out and "ceiling:" in out and "deeplabv3_resnet18" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--repeats", "3"], "--repeats must be at least 5"),
        (["--size", "16"], "--size must be >= 32"),
        (["nope_model"], "nope_model"),
        (["--precision", "fp16"], "fp16 needs a CUDA device"),
    ],
)
def test_cli_bad_input(extra, message, capsys):
    assert main(["bench", "--size", "64", "--repeats", "5", *extra]) == 2
    assert message in capsys.readouterr().err
