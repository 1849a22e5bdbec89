import pytest
import torch

import atrous
from atrous.engine.optim import build_optimizer, build_scheduler, param_groups, poly_lambda


def test_poly_schedule_is_deeplabs():
    fn = poly_lambda(100, power=0.9)
    assert fn(0) == 1.0
    assert fn(50) == pytest.approx(0.5**0.9)
    assert fn(100) == 0.0


def test_warmup_ramps_linearly_then_joins_poly():
    fn = poly_lambda(100, power=0.9, warmup_steps=10, warmup_ratio=0.1)
    assert fn(0) == pytest.approx(0.1)
    assert fn(5) == pytest.approx((1 - 0.05) ** 0.9 * 0.55)
    assert fn(10) == pytest.approx(0.9**0.9)


def test_param_groups_split_backbone_head_and_no_decay():
    model = atrous.create_model("deeplabv3_resnet18", num_classes=3)
    groups = {g["name"]: g for g in param_groups(model, lr=0.01, weight_decay=1e-4, head_lr_mult=10)}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert groups["head"]["lr"] == pytest.approx(0.1) and groups["backbone"]["lr"] == 0.01
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] == 1e-4
    assert all(p.ndim <= 1 for p in groups["head_no_decay"]["params"])
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(model.parameters()))


def test_scheduler_applies_multipliers_per_group():
    model = atrous.create_model("deeplabv3_resnet18", num_classes=3)
    opt = build_optimizer(model, "sgd", lr=0.01, weight_decay=1e-4, head_lr_mult=10)
    sched = build_scheduler(opt, 10)
    for _ in range(5):
        opt.step()
        sched.step()
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["head"] == pytest.approx(0.1 * 0.5**0.9) and lrs["backbone"] == pytest.approx(0.01 * 0.5**0.9)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match=r"train\.optimizer must be 'sgd' or 'adamw'"):
        build_optimizer(torch.nn.Conv2d(1, 1, 1), "adam", lr=0.1, weight_decay=0)
