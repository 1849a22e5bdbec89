import pytest
import torch
import torch.nn.functional as F

from atrous.data.constants import IGNORE_INDEX
from atrous.losses import (
    CombinedLoss,
    CrossEntropy,
    DiceLoss,
    FocalLoss,
    LovaszSoftmaxLoss,
    OHEMCrossEntropy,
    SegmentationLoss,
    WeightedCrossEntropy,
    build_loss,
    check_loss_options,
    list_losses,
)

C = 5


def batch(shape=(2, 6, 7), num_classes=C, ignore_frac=0.25, seed=0):
    """Random logits (B, C, H, W) and targets (B, H, W) with some ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(shape[0], num_classes, *shape[1:], generator=g)
    target = torch.randint(num_classes, shape, generator=g)
    target = torch.where(torch.rand(shape, generator=g) < ignore_frac, IGNORE_INDEX, target)
    return logits, target


LOSSES = {
    "ce": lambda: CrossEntropy(),
    "ce_weighted": lambda: CrossEntropy([1.0, 2.0, 0.5, 1.0, 3.0]),
    "ohem": lambda: OHEMCrossEntropy(thresh=0.7, min_kept=10),
    "dice": lambda: DiceLoss(),
    "dice_all": lambda: DiceLoss(classes="all", squared=True),
    "focal": lambda: FocalLoss(gamma=2.0, alpha=[1.0, 2.0, 0.5, 1.0, 3.0]),
    "focal_half": lambda: FocalLoss(gamma=0.5),
    "ce+dice": lambda: CombinedLoss({"ce": CrossEntropy(), "dice": DiceLoss()}, {"dice": 0.5}),
    "lovasz": lambda: LovaszSoftmaxLoss(),
    "lovasz_per_image_all": lambda: LovaszSoftmaxLoss(classes="all", per_image=True),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_ignored_pixels_get_zero_gradient_and_the_rest_finite(name):
    logits, target = batch()
    logits.requires_grad_(True)
    loss = LOSSES[name]()(logits, target)
    assert loss.ndim == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grad = logits.grad
    assert torch.isfinite(grad).all()
    ignored = (target == IGNORE_INDEX).unsqueeze(1).expand_as(grad)
    assert torch.equal(grad[ignored], torch.zeros_like(grad[ignored]))
    assert grad[~ignored].abs().sum() > 0


@pytest.mark.parametrize("name", list(LOSSES))
def test_a_batch_with_no_labelled_pixel_gives_zero_with_a_graph(name):
    logits = torch.randn(2, C, 4, 4, requires_grad=True)
    loss = LOSSES[name]()(logits, torch.full((2, 4, 4), IGNORE_INDEX))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("name", list(LOSSES))
def test_bad_input_raises_clear_errors(name):
    loss = LOSSES[name]()
    logits, target = batch()
    bad = target.clone()
    bad[0, 0, :2] = torch.tensor([7, -1])
    with pytest.raises(ValueError, match=r"target has labels \{-1, 7\}"):
        loss(logits, bad)
    with pytest.raises(ValueError, match="float"):
        loss(logits[0], target[0])
    with pytest.raises(ValueError, match="float"):
        loss(logits.long(), target)
    with pytest.raises(ValueError, match=r"\(2, 6, 6\).*\(2, 5, 6, 7\)"):
        loss(logits, target[..., :6])
    with pytest.raises(ValueError, match="integer"):
        loss(logits, target.float())


@pytest.mark.parametrize("name", list(LOSSES))
def test_bf16_autocast_logits_are_computed_in_float32(name):
    logits, target = batch()
    conv = torch.nn.Conv2d(C, C, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = conv(logits)
        assert low.dtype == torch.bfloat16
        loss = LOSSES[name]()(low, target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, LOSSES[name]()(low.float(), target))
    loss.backward()
    assert torch.isfinite(conv.weight.grad).all()


def test_cross_entropy_equals_torch_with_ignore_index_and_weights():
    logits, target = batch()
    torch.testing.assert_close(CrossEntropy()(logits, target), F.cross_entropy(logits, target, ignore_index=255))
    w = [1.0, 2.0, 0.5, 1.0, 3.0]
    torch.testing.assert_close(
        CrossEntropy(torch.tensor(w))(logits, target),
        F.cross_entropy(logits, target, weight=torch.tensor(w), ignore_index=255),
    )
    # uint8 masks work; another ignore label is honoured.
    other = torch.where(target == IGNORE_INDEX, -1, target)
    torch.testing.assert_close(CrossEntropy(ignore_index=-1)(logits, other), CrossEntropy()(logits, target))


def test_class_weights_are_validated():
    for bad, match in (([1.0, -1.0], "non-negative"), ([0.0, 0.0], "positive"), ([[1.0]], "1-D")):
        with pytest.raises(ValueError, match=match):
            CrossEntropy(bad)
    logits, target = batch()
    with pytest.raises(ValueError, match="3 entries but logits have 5 classes"):
        CrossEntropy([1.0, 1.0, 1.0])(logits, target)


def test_ohem_keeps_only_hard_pixels_when_there_are_enough():
    # Two classes; the true-class probability of pixel i is sigmoid(x_i).
    target = torch.zeros(1, 1, 40, dtype=torch.long)
    prob = torch.linspace(0.05, 0.95, 40)
    logits = torch.stack([torch.logit(prob), torch.zeros(40)]).view(1, 2, 1, 40)
    target[..., 0] = IGNORE_INDEX  # the hardest pixel is ignored
    hard = (prob < 0.7) & (torch.arange(40) > 0)

    kept, p = OHEMCrossEntropy(thresh=0.7, min_kept=5).select(logits, target)
    assert torch.equal(kept.flatten(), hard)
    torch.testing.assert_close(p.flatten()[1:], prob[1:])

    loss = OHEMCrossEntropy(thresh=0.7, min_kept=5)(logits, target)
    nll = F.cross_entropy(logits, target, ignore_index=255, reduction="none").flatten()
    torch.testing.assert_close(loss, nll[hard].mean())


def test_ohem_keeps_at_least_min_kept_hardest_pixels():
    target = torch.zeros(1, 1, 40, dtype=torch.long)
    prob = torch.linspace(0.05, 0.95, 40)[torch.randperm(40)]
    logits = torch.stack([torch.logit(prob), torch.zeros(40)]).view(1, 2, 1, 40)
    target[..., :3] = IGNORE_INDEX
    kept, _ = OHEMCrossEntropy(thresh=0.1, min_kept=12).select(logits, target)
    kept = kept.flatten()
    assert kept.sum() == 12 and not kept[:3].any()
    labelled = prob[3:]
    assert torch.equal(kept[3:], labelled <= labelled.sort().values[11])
    # More than there are labelled pixels: all of them, never an ignored one.
    kept, _ = OHEMCrossEntropy(thresh=0.1, min_kept=1000).select(logits, target)
    assert kept.flatten().sum() == 37 and not kept.flatten()[:3].any()


def test_ohem_is_cross_entropy_when_it_keeps_everything():
    logits, target = batch()
    w = [1.0, 2.0, 0.5, 1.0, 3.0]
    for weight in (None, w):
        ohem = OHEMCrossEntropy(thresh=1.0, min_kept=10**6, weight=weight)
        torch.testing.assert_close(ohem(logits, target), CrossEntropy(weight)(logits, target))


def test_ohem_rejects_bad_arguments():
    with pytest.raises(ValueError, match="thresh"):
        OHEMCrossEntropy(thresh=0.0)
    with pytest.raises(ValueError, match="min_kept"):
        OHEMCrossEntropy(min_kept=-1)


@pytest.mark.parametrize("classes", ["present", "all"])
def test_dice_is_in_unit_range_and_zero_for_a_perfect_prediction(classes):
    logits, target = batch(seed=1)
    loss = DiceLoss(classes=classes)(logits, target)
    assert 0.0 < loss.item() < 1.0
    perfect = 30.0 * F.one_hot(target.clamp_max(C - 1), C).permute(0, 3, 1, 2).float()
    # Whatever is predicted at ignored pixels does not matter.
    perfect = torch.where((target == IGNORE_INDEX).unsqueeze(1), 30.0 * torch.rand_like(perfect), perfect)
    assert DiceLoss(classes=classes)(perfect, target).item() < 1e-6
    assert DiceLoss(classes=classes)(-perfect, target).item() > 0.5


def test_dice_matches_its_formula_and_class_selection():
    logits, target = batch(seed=2)
    target[target == 4] = 0  # class 4 is absent
    valid = (target != IGNORE_INDEX).unsqueeze(1)
    p = logits.softmax(1) * valid
    g = F.one_hot(torch.where(valid[:, 0], target, 0), C).permute(0, 3, 1, 2) * valid
    dice = (2 * (p * g).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + g.sum((0, 2, 3)) + 1)
    torch.testing.assert_close(DiceLoss()(logits, target), 1 - dice[:4].mean())
    torch.testing.assert_close(DiceLoss(classes="all")(logits, target), 1 - dice.mean())


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = batch()
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target), CrossEntropy()(logits, target))
    w = [1.0, 2.0, 0.5, 1.0, 3.0]
    torch.testing.assert_close(FocalLoss(gamma=0.0, alpha=w)(logits, target), CrossEntropy(w)(logits, target))


def test_focal_down_weights_easy_pixels():
    logits, target = batch()
    valid = target != IGNORE_INDEX
    log_p = logits.log_softmax(1).gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)
    expected = (-((1 - log_p.exp()) ** 2) * log_p)[valid].mean()
    torch.testing.assert_close(FocalLoss(gamma=2.0)(logits, target), expected)
    assert FocalLoss(gamma=2.0)(logits, target) < CrossEntropy()(logits, target)
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1.0)


def test_segmentation_loss_adds_the_weighted_aux_loss():
    out, target = batch(seed=3)
    aux, _ = batch(seed=4)
    ce = CrossEntropy()
    seg = SegmentationLoss(ce, aux_weight=0.4)
    total = seg({"out": out, "aux": aux}, target)
    torch.testing.assert_close(total, ce(out, target) + 0.4 * ce(aux, target))
    assert set(seg.last_components) == {"out", "aux", "total"}
    torch.testing.assert_close(seg.last_components["aux"], ce(aux, target))
    torch.testing.assert_close(seg(out, target), ce(out, target))
    assert set(seg.last_components) == {"out", "total"}
    torch.testing.assert_close(seg({"out": out}, target), ce(out, target))
    with pytest.raises(ValueError, match="'out'"):
        seg({"logits": out}, target)
    with pytest.raises(ValueError, match="aux_weight"):
        SegmentationLoss(ce, aux_weight=-0.1)


@pytest.mark.parametrize("name", ["ce", "ohem", "dice", "focal", "ce+dice", "lovasz", "ce+lovasz"])
def test_build_loss_by_name(name):
    assert name in list_losses()
    loss_fn = build_loss(name, num_classes=C)
    assert isinstance(loss_fn, SegmentationLoss) and loss_fn.aux_weight == 0.4
    out, target = batch()
    out.requires_grad_(True)
    loss = loss_fn({"out": out, "aux": out * 0.5}, target)
    assert torch.isfinite(loss)
    loss.backward()


def test_build_loss_passes_options_and_weights():
    logits, target = batch()
    w = [1.0, 2.0, 0.5, 1.0, 3.0]
    ce = build_loss("ce", num_classes=C, class_weights=w, aux_weight=0.0)
    torch.testing.assert_close(ce(logits, target), CrossEntropy(w)(logits, target))
    ohem = build_loss("ohem", num_classes=C, thresh=0.9, min_kept=7)
    assert (ohem.criterion.thresh, ohem.criterion.min_kept) == (0.9, 7)
    mixed = build_loss("ce+dice", num_classes=C, dice_weight=0.5, classes="all")
    torch.testing.assert_close(
        mixed(logits, target), CrossEntropy()(logits, target) + 0.5 * DiceLoss(classes="all")(logits, target)
    )


def test_build_loss_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown loss 'ohme'.*Did you mean: 'ohem'"):
        build_loss("ohme", num_classes=C)
    with pytest.raises(ValueError, match=r"unknown option 'threshold'.*'thresh'"):
        build_loss("ohem", num_classes=C, threshold=0.5)
    with pytest.raises(ValueError, match="3 entries for num_classes=5"):
        build_loss("ce", num_classes=C, class_weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="class_weights"):
        build_loss("dice", num_classes=C, class_weights=[1.0] * C)
    with pytest.raises(ValueError, match="class_weights"):
        build_loss("lovasz", num_classes=C, class_weights=[1.0] * C)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        (
            "ohem",
            {"thresh": "abc"},
            r"train\.loss_options\.thresh must be a number in \(0, 1\] .* for loss 'ohem', got 'abc'",
        ),
        ("ohem", {"thresh": 0}, r"train\.loss_options\.thresh must be a number in \(0, 1\]"),
        ("ohem", {"thresh": 1.5}, r"train\.loss_options\.thresh .*got 1\.5"),
        ("ohem", {"thresh": float("nan")}, r"train\.loss_options\.thresh .*got nan"),
        ("ohem", {"min_kept": -1}, r"train\.loss_options\.min_kept must be a whole number >= 0 .*got -1"),
        ("ohem", {"min_kept": 2.5}, r"train\.loss_options\.min_kept .*got 2\.5"),
        ("ohem", {"min_kept": "1e5"}, r"train\.loss_options\.min_kept .*got '1e5'"),
        ("focal", {"gamma": -1}, r"train\.loss_options\.gamma must be a finite number >= 0 .*for loss 'focal', got -1"),
        ("focal", {"gamma": "abc"}, r"train\.loss_options\.gamma .*got 'abc'"),
        ("focal", {"gamma": True}, r"train\.loss_options\.gamma .*got True"),
        ("dice", {"smooth": -0.5}, r"train\.loss_options\.smooth must be a finite number >= 0 for loss 'dice'"),
        ("dice", {"smooth": float("inf")}, r"train\.loss_options\.smooth .*got inf"),
        ("dice", {"classes": "some"}, r"train\.loss_options\.classes must be 'present' or 'all' .*got 'some'"),
        ("dice", {"squared": "no"}, r"train\.loss_options\.squared must be true or false .*got 'no'"),
        ("ce+dice", {"dice_weight": -1}, r"train\.loss_options\.dice_weight must be .* for loss 'ce\+dice', got -1"),
        ("ce+dice", {"smooth": None}, r"train\.loss_options\.smooth .*got None"),
        ("ce", {"gamma": 2}, r"train\.loss_options: unknown option 'gamma' for loss 'ce'.*it takes none"),
        ("lovasz", {"per_image": "yes"}, r"train\.loss_options\.per_image must be true or false .*got 'yes'"),
        ("lovasz", {"classes": 3}, r"train\.loss_options\.classes must be 'present' or 'all' .*got 3"),
        ("ce+lovasz", {"lovasz_weight": -1}, r"train\.loss_options\.lovasz_weight must be .*'ce\+lovasz', got -1"),
        ("lovasz", {"smooth": 1}, r"unknown option 'smooth' for loss 'lovasz'.*it takes classes, per_image"),
    ],
)
def test_loss_options_are_checked_when_the_loss_is_built(name, options, match):
    # One line naming the option, the loss, the value and what is allowed (the CLI prints it as is).
    with pytest.raises(ValueError, match=match) as info:
        build_loss(name, num_classes=C, **options)
    assert "\n" not in str(info.value)


def test_loss_options_from_a_recipe_are_accepted_as_yaml_reads_them():
    # YAML reads min_kept: 1e5 as the float 100000.0: a whole float is a count.
    assert check_loss_options("ohem", {"thresh": 1, "min_kept": 1e5}) == {"thresh": 1.0, "min_kept": 100_000}
    ohem = build_loss("ohem", num_classes=C, min_kept=1e3).criterion
    assert ohem.min_kept == 1000 and isinstance(ohem.min_kept, int)
    assert build_loss("focal", num_classes=C, gamma=0).criterion.gamma == 0.0
    dice = build_loss("ce+dice", num_classes=C, smooth=0, classes="all", squared=True, dice_weight=0).criterion
    assert dice.weights == {"ce": 1.0, "dice": 0.0} and dice.losses["dice"].squared is True
    with pytest.raises(ValueError, match=r"unknown loss 'ohme'"):
        check_loss_options("ohme", {})


def test_loss_constructors_name_a_value_that_is_not_a_number():
    with pytest.raises(ValueError, match=r"thresh must be a number in \(0, 1\], got 'abc'"):
        OHEMCrossEntropy(thresh="abc")
    with pytest.raises(ValueError, match=r"gamma must be a finite number >= 0, got 'x'"):
        FocalLoss(gamma="x")
    with pytest.raises(ValueError, match=r"smooth must be a finite number >= 0, got None"):
        DiceLoss(smooth=None)
    with pytest.raises(ValueError, match=r"weight of 'dice' must be a finite number >= 0"):
        CombinedLoss({"ce": CrossEntropy(), "dice": DiceLoss()}, {"dice": "1"})
    # Numbers that are not Python floats still pass.
    assert OHEMCrossEntropy(thresh=torch.tensor(0.5)).thresh == 0.5


def pixel_weights(shape=(2, 6, 7), seed=1):
    return 10 * torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_weighted_cross_entropy_is_the_weighted_mean_of_per_pixel_losses():
    logits, target = batch()
    w = pixel_weights()
    valid = target != IGNORE_INDEX
    nll = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
    expected = (w * nll)[valid].sum() / w[valid].sum()
    torch.testing.assert_close(WeightedCrossEntropy()(logits, target, w), expected)
    # All ones: plain cross-entropy; the weights' scale does not matter.
    ones = torch.ones_like(w)
    torch.testing.assert_close(WeightedCrossEntropy()(logits, target, ones), CrossEntropy()(logits, target))
    torch.testing.assert_close(WeightedCrossEntropy()(logits, target, 3 * w), expected)


def test_weighted_cross_entropy_gradients_follow_the_weights():
    logits, target = batch()
    w = pixel_weights()
    w[0, 0, 0] = 0.0
    target[0, 0, 0] = 1
    logits.requires_grad_(True)
    WeightedCrossEntropy()(logits, target, w).backward()
    grad = logits.grad
    ignored = (target == IGNORE_INDEX).unsqueeze(1).expand_as(grad)
    assert torch.equal(grad[ignored], torch.zeros_like(grad[ignored]))
    assert torch.equal(grad[0, :, 0, 0], torch.zeros(C))  # zero weight: no gradient
    # A batch whose labelled pixels all weigh 0 gives 0, with a graph.
    loss = WeightedCrossEntropy()(logits, target, torch.zeros_like(w))
    assert loss.item() == 0.0 and loss.requires_grad


def test_weighted_cross_entropy_rejects_bad_weights():
    logits, target = batch()
    w = pixel_weights()
    loss = WeightedCrossEntropy()
    with pytest.raises(ValueError, match="pixel_weight must be a float tensor shaped like target"):
        loss(logits, target, w[..., :6])
    with pytest.raises(ValueError, match="pixel_weight must be a float"):
        loss(logits, target, w.long())
    for bad in (-1.0, float("nan")):
        w2 = w.clone()
        w2[1, 2, 3] = bad
        with pytest.raises(ValueError, match="finite and >= 0"):
            loss(logits, target, w2)
    with pytest.raises(TypeError, match="pixel_weight"):
        loss(logits, target, 1.0)
    with pytest.raises(ValueError, match=r"target has labels \{7\}"):
        loss(logits, torch.where(target == 0, 7, target), w)


def test_segmentation_loss_passes_pixel_weights_to_both_heads():
    out, target = batch(seed=3)
    aux, _ = batch(seed=4)
    w = pixel_weights()
    wce = WeightedCrossEntropy()
    seg = SegmentationLoss(wce, aux_weight=0.4)
    torch.testing.assert_close(
        seg({"out": out, "aux": aux}, target, w), wce(out, target, w) + 0.4 * wce(aux, target, w)
    )


def _lovasz_by_definition(prob, target, classes="present"):
    """Berman et al. 2018 eq. 8–9 written out: Σ_i m_π(i) (Δ(M_i) − Δ(M_{i−1})) per class, Δ(M) = |M| / |F ∪ M|
    with sets of pixel indices, over the labelled pixels of one flattened image (prob (N, C), target (N,))."""
    labelled = [i for i in range(len(target)) if target[i] != IGNORE_INDEX]
    losses = []
    for c in range(prob.shape[1]):
        fg = {i for i in labelled if target[i] == c}
        if classes == "present" and not fg:
            continue
        errors = {i: abs((1.0 if i in fg else 0.0) - float(prob[i, c])) for i in labelled}
        order = sorted(labelled, key=lambda i: -errors[i])
        total, previous, mispredicted = 0.0, 0.0, set()
        for i in order:
            mispredicted.add(i)
            current = len(mispredicted) / len(fg | mispredicted)
            total += errors[i] * (current - previous)
            previous = current
        losses.append(total)
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("classes", ["present", "all"])
def test_lovasz_matches_its_definition_with_sets(classes):
    logits, target = batch(shape=(1, 4, 5), num_classes=4, seed=3)
    target[target == 2] = 1  # class 2 absent: "present" and "all" differ
    got = LovaszSoftmaxLoss(classes=classes)(logits, target)
    prob = logits.softmax(1)[0].reshape(4, -1).T.double()
    assert got.item() == pytest.approx(_lovasz_by_definition(prob, target.reshape(-1).tolist(), classes), abs=1e-6)


def test_lovasz_on_hard_predictions_is_one_minus_iou_as_scikit_learn_counts_it():
    # At the corners of the probability cube the Lovász extension equals the set function itself.
    from sklearn.metrics import jaccard_score

    logits, target = batch(shape=(2, 9, 11), num_classes=4, seed=5)
    predicted = logits.argmax(1)
    hard = 1e4 * F.one_hot(predicted, 4).permute(0, 3, 1, 2).float()  # softmax is exactly 0/1
    labelled = target != IGNORE_INDEX
    present = sorted(target[labelled].unique().tolist())
    iou = jaccard_score(target[labelled].numpy(), predicted[labelled].numpy(), labels=present, average=None)
    assert LovaszSoftmaxLoss()(hard, target).item() == pytest.approx(1 - iou.mean(), abs=1e-6)


def test_lovasz_per_image_is_the_mean_of_single_image_losses_and_differs_from_the_batch_loss():
    logits, target = batch(shape=(3, 6, 7), num_classes=3, seed=7)
    per_image = LovaszSoftmaxLoss(per_image=True)(logits, target)
    singles = [LovaszSoftmaxLoss()(logits[i : i + 1], target[i : i + 1]) for i in range(3)]
    torch.testing.assert_close(per_image, torch.stack(singles).mean())
    assert abs(per_image.item() - LovaszSoftmaxLoss()(logits, target).item()) > 1e-4


def test_ce_plus_lovasz_is_the_weighted_sum():
    logits, target = batch()
    mixed = build_loss("ce+lovasz", num_classes=C, lovasz_weight=0.5, per_image=True, aux_weight=0.0)
    expected = CrossEntropy()(logits, target) + 0.5 * LovaszSoftmaxLoss(per_image=True)(logits, target)
    torch.testing.assert_close(mixed(logits, target), expected)
