import torch
import torch.nn.functional as F

from atrous.layers import PyramidPooling


def test_channels_and_concatenation_with_input():
    ppm = PyramidPooling(64).eval()
    assert [s[0].output_size for s in ppm.stages] == [1, 2, 3, 6]
    assert [s[1].conv.out_channels for s in ppm.stages] == [16] * 4  # C / 4 each (§3.3)
    x = torch.randn(2, 64, 13, 17)
    y = ppm(x)
    assert y.shape == (2, 64 + 4 * 16, 13, 17) == (2, ppm.out_chs, 13, 17)
    assert torch.equal(y[:, :64], x)


def test_each_level_is_pool_reduce_then_bilinear_upsample():
    ppm = PyramidPooling(8, bins=(2,)).eval()
    x = torch.randn(1, 8, 12, 12)
    stage = ppm.stages[0]
    expected = F.interpolate(stage[1](F.adaptive_avg_pool2d(x, 2)), size=(12, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(ppm(x)[:, 8:], expected)


def test_trains_with_batch_size_one():
    ppm = PyramidPooling(16).train()
    x = torch.randn(1, 16, 6, 6, requires_grad=True)
    ppm(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_exportable_pooling_uses_the_native_kernel_in_eager_and_the_matrix_form_when_exporting(monkeypatch):
    from atrous.layers import ExportableAdaptiveAvgPool2d
    from atrous.layers import adaptive_pool as module

    pool = ExportableAdaptiveAvgPool2d(3)
    x = torch.randn(2, 5, 17, 23).contiguous(memory_format=torch.channels_last)
    eager = pool(x)
    assert torch.equal(eager, torch.nn.functional.adaptive_avg_pool2d(x, 3))
    monkeypatch.setattr(module, "is_exporting", lambda: True)
    torch.testing.assert_close(pool(x), eager, rtol=1e-6, atol=1e-6)
