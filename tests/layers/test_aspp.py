import pytest
import torch
from tests.helpers import randomize_norm_stats
from torchvision.models.segmentation.deeplabv3 import ASPP as TorchvisionASPP

from atrous.layers import ASPP, ASPPSum, ImagePooling, SeparableConvNormAct


def test_aspp_matches_torchvision_with_its_weights():
    ours = ASPP(64, (12, 24, 36), 32).eval()
    ref = randomize_norm_stats(TorchvisionASPP(64, [12, 24, 36], 32)).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 64, 17, 23)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_aspp_branch_layout_is_the_papers():
    aspp = ASPP(64, (6, 12, 18), 32)
    assert len(aspp.convs) == 5  # 1×1, three 3×3 atrous, image pooling (§3.3)
    assert [b.conv.dilation[0] for b in aspp.convs[1:4]] == [6, 12, 18]
    assert aspp.project[0].in_channels == 5 * 32
    y = aspp(torch.randn(2, 64, 9, 11))
    assert y.shape == (2, 32, 9, 11)


def test_aspp_set_rates_changes_dilation_and_padding_only():
    aspp = ASPP(16, (6, 12, 18), 8)
    before = {k: v.clone() for k, v in aspp.state_dict().items()}
    aspp.set_rates((12, 24, 36))
    conv = aspp.convs[3].conv
    assert conv.dilation == (36, 36) and conv.padding == (36, 36)
    for k, v in aspp.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="3 atrous branches"):
        aspp.set_rates((1, 2))


def test_separable_aspp_uses_depthwise_branches():
    aspp = ASPP(32, (6, 12, 18), 16, separable=True)
    branch = aspp.convs[1]
    assert isinstance(branch, SeparableConvNormAct)
    assert branch.conv_dw.groups == 32 and branch.conv_dw.dilation == (6, 6)
    assert aspp(torch.randn(1, 32, 8, 8)).shape == (1, 16, 8, 8)


def test_image_pooling_trains_with_batch_size_one():
    pool = ImagePooling(8, 4).train()
    x = torch.randn(1, 8, 5, 7, requires_grad=True)
    y = pool(x)
    assert y.shape == (1, 4, 5, 7)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    # Every position holds the same image-level feature.
    assert torch.allclose(y, y[..., :1, :1].expand_as(y))


def test_image_pooling_batch_one_uses_running_stats_and_keeps_them():
    pool = randomize_norm_stats(ImagePooling(8, 4)).train()
    norm = pool[2]
    mean, var = norm.running_mean.clone(), norm.running_var.clone()
    x = torch.randn(1, 8, 5, 7)
    y_train = pool(x)
    assert torch.equal(norm.running_mean, mean) and torch.equal(norm.running_var, var)
    torch.testing.assert_close(y_train, pool.eval()(x))


def test_image_pooling_batch_two_is_ordinary_batchnorm():
    pool = ImagePooling(8, 4).train()
    pool(torch.randn(2, 8, 5, 7))
    assert pool[2].num_batches_tracked.item() == 1


def test_aspp_sum_adds_class_score_branches():
    head = ASPPSum(16, 5, (6, 12, 18, 24))
    x = torch.randn(2, 16, 9, 9)
    expected = sum(branch(x) for branch in head.branches)
    torch.testing.assert_close(head(x), expected)
    assert head(x).shape == (2, 5, 9, 9)
    head.set_rates((12, 24, 36, 48))
    assert head.branches[3].dilation == (48, 48) and head.branches[3].padding == (48, 48)


def test_aspp_sum_vgg_branches():
    head = ASPPSum(16, 5, (6, 12), hidden_chs=8)
    assert head(torch.randn(1, 16, 7, 7)).shape == (1, 5, 7, 7)
    head.set_rates((2, 3))
    assert head.branches[1][0].dilation == (3, 3)
