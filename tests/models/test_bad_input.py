import pytest
import torch

import atrous


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown model 'deeplabv3_resnet5'\. Did you mean: deeplabv3_resnet50"):
        atrous.create_model("deeplabv3_resnet5")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "21"])
def test_num_classes_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 1"):
        atrous.create_model("deeplabv3_resnet18", num_classes=bad)


@pytest.mark.parametrize("bad", [4, 24, 64])
def test_output_stride_outside_8_16_32(bad):
    with pytest.raises(ValueError, match=r"output_stride must be one of \(8, 16, 32\), got"):
        atrous.create_model("deeplabv3_resnet50", output_stride=bad)
    model = atrous.create_model("deeplabv3_resnet18")
    with pytest.raises(ValueError, match="output_stride must be one of"):
        model.set_output_stride(bad)


def test_multi_grid_of_the_wrong_length():
    with pytest.raises(
        ValueError, match=r"multi_grid must give one positive rate per unit .*\(3 units\), got \(1, 2\)"
    ):
        atrous.create_model("deeplabv3_resnet101", multi_grid=(1, 2))
    with pytest.raises(ValueError, match=r"\(2 units\)"):
        atrous.create_model("deeplabv3_resnet18", multi_grid=(1, 2, 4))


def test_unknown_argument_is_named():
    with pytest.raises(TypeError, match="num_class"):
        atrous.create_model("deeplabv3_resnet18", num_class=3)


@pytest.mark.parametrize(
    ("x", "error", "pattern"),
    [
        (torch.randn(3, 32, 32), ValueError, r"must be 4-D .* got shape \(3, 32, 32\) — add a batch dimension"),
        (torch.randn(1, 1, 3, 32, 32), ValueError, r"must be 4-D"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, r"floating-point tensor, got torch.uint8"),
        (torch.randn(1, 4, 32, 32), ValueError, r"must have 3 channels, got shape \(1, 4, 32, 32\)"),
    ],
)
def test_bad_model_input(x, error, pattern):
    model = atrous.create_model("deeplabv3_resnet18", num_classes=2).eval()
    with pytest.raises(error, match=pattern):
        model(x)


def test_non_tensor_input():
    model = atrous.create_model("fcn_resnet50", num_classes=2).eval()
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor, got ndarray"):
        import numpy as np

        model(np.zeros((1, 3, 8, 8), dtype=np.float32))
