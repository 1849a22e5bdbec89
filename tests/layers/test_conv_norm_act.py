import torch
from torch import nn

from atrous.layers import ConvNormAct, SeparableConvNormAct


def test_conv_norm_act_keeps_size_for_any_dilation():
    for d in (1, 2, 6, 12):
        block = ConvNormAct(4, 8, 3, dilation=d)
        assert block(torch.randn(1, 4, 9, 11)).shape == (1, 8, 9, 11)
    assert [type(m) for m in ConvNormAct(4, 8)] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert ConvNormAct(4, 8).conv.bias is None
    block = ConvNormAct(4, 8, 3)
    block.set_dilation(4)
    assert block.conv.dilation == (4, 4) and block.conv.padding == (4, 4)


def test_separable_is_depthwise_bn_relu_then_pointwise_bn_relu():
    block = SeparableConvNormAct(6, 10, 3, dilation=2)
    names = [n for n, _ in block.named_children()]
    assert names == ["conv_dw", "bn_dw", "act_dw", "conv_pw", "bn_pw", "act_pw"]
    assert block.conv_dw.groups == 6 and block.conv_dw.dilation == (2, 2) and block.conv_pw.kernel_size == (1, 1)
    x = torch.randn(2, 6, 7, 9)
    y = block(x)
    assert y.shape == (2, 10, 7, 9) and (y >= 0).all()
    # Depthwise-separable: far fewer weights than a dense 3×3.
    dense = 6 * 10 * 9
    assert block.conv_dw.weight.numel() + block.conv_pw.weight.numel() < dense
