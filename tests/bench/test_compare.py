"""bench/compare.py builds honest pairs: the same weights where the modules are the same."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "compare.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("bench_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deeplabv3_pair_is_torchvision_name_for_name(compare):
    ours, reference, _, _ = compare.build_pair("deeplabv3")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x)["out"], rtol=0, atol=0)
    assert compare.count_params(ours) == compare.count_params(reference)


def test_reference_training_loop_and_atrous_path_run(compare):
    ours, reference, _, _ = compare.build_pair("deeplabv3")
    x, target = torch.randn(2, 3, 64, 64), torch.randint(0, 21, (2, 64, 64))
    before = reference.classifier[4].weight.detach().clone()
    loss = compare.plain_train_step(reference, x, target)()
    assert torch.isfinite(loss) and not torch.equal(before, reference.classifier[4].weight)
    # the agreement of the atrous default path with the float32 reference, same weights
    agreement = compare._agreement_one(ours, reference.eval(), torch.randn(1, 3, 64, 64))
    assert 0.0 <= agreement <= 1.0


@pytest.mark.parametrize("pair", ["deeplabv3plus", "pspnet"])
def test_smp_pairs_share_the_encoder(compare, pair):
    pytest.importorskip("segmentation_models_pytorch")
    ours, reference, _, _ = compare.build_pair(pair)
    torch.testing.assert_close(reference.encoder.conv1.weight, ours.backbone.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(reference.encoder.layer2[0].conv2.weight, ours.backbone.layer2[0].conv2.weight)


def test_unknown_pair_is_refused(compare, capsys):
    with pytest.raises(SystemExit):
        compare.main(["--pairs", "deeplabv3,nope"])
    assert "unknown pair 'nope'" in capsys.readouterr().err
