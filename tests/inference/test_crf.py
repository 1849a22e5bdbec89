"""The dense CRF (:mod:`atrous.inference.crf`) against Krähenbühl's implementation (pydensecrf2),
against its own exact O(N²) filter, and on cases worked by hand."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from atrous.inference import CRFParams, dense_crf
from atrous.inference.crf import (
    PRESETS,
    DenseCRF,
    NormalizedKernel,
    PermutohedralLattice,
    _features,
    resolve_crf,
)

REPO = Path(__file__).resolve().parents[2]


def smooth_probabilities(seed: int, classes: int, height: int, width: int) -> np.ndarray:
    """Softmax of coarse random logits, upsampled smoothly, plus pixel noise: regions with
    uncertain borders, like a network's output."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.normal(size=(1, classes, height // 8 + 2, width // 8 + 2)).astype(np.float32) * 3)
    logits = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    logits = logits + 0.5 * torch.from_numpy(rng.normal(size=(1, classes, height, width)).astype(np.float32))
    return logits.softmax(1)[0].numpy()


def edge_image(seed: int, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8: two halves of different colour and a disc across them, with noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (200, 40, 40)
    image[:, width // 2 :] = (30, 160, 60)
    yy, xx = np.mgrid[:height, :width]
    image[(yy - height / 2) ** 2 + (xx - width / 3) ** 2 < (min(height, width) / 4) ** 2] = (40, 60, 220)
    return np.clip(image.astype(int) + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)


def camvid_crop() -> np.ndarray | None:
    """A 72×96 crop of a real CamVid picture (validation split, else training), or None."""
    root = Path(os.environ.get("ATROUS_DATA", REPO.parent / "shared" / "data")) / "camvid"
    for split in ("val", "train"):
        files = sorted((root / split).glob("*.png")) if (root / split).is_dir() else []
        if files:
            from PIL import Image

            image = np.array(Image.open(files[0]).convert("RGB"))
            return np.ascontiguousarray(image[150:222, 200:296])
    return None


CASES = {
    "40x60-3cls": lambda: (smooth_probabilities(0, 3, 40, 60), edge_image(0, 40, 60)),
    "64x48-5cls": lambda: (smooth_probabilities(1, 5, 64, 48), edge_image(1, 64, 48)),
    "camvid-72x96-4cls": lambda: (smooth_probabilities(2, 4, 72, 96), camvid_crop()),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Results are checked here, not speed: on a busy 2-core machine two threads mostly wait
    for each other (this file took 14-38 s with two, a few with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dcrf():
    return pytest.importorskip(
        "pydensecrf.densecrf", reason="pydensecrf2 (the reference dense CRF, in the dev extra) is not installed"
    )


def reference_run(dcrf, probabilities: np.ndarray, image: np.ndarray, params: CRFParams, iterations: int):
    """pydensecrf's marginals after each step and its klDivergence before and after each."""
    classes, height, width = probabilities.shape
    crf = dcrf.DenseCRF2D(width, height, classes)
    unary = -np.log(np.clip(probabilities, 1e-5, 1.0)).reshape(classes, -1).astype(np.float32)  # unary_from_softmax
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=params.pos_xy_std, compat=params.pos_w)
    crf.addPairwiseBilateral(
        sxy=params.bi_xy_std, srgb=params.bi_rgb_std, rgbim=np.ascontiguousarray(image), compat=params.bi_w
    )
    q, tmp1, tmp2 = crf.startInference()
    marginals, kl = [], [crf.klDivergence(q)]
    for _ in range(iterations):
        crf.stepInference(q, tmp1, tmp2)
        marginals.append(np.array(q).reshape(classes, height, width))
        kl.append(crf.klDivergence(q))
    return marginals, kl


def decreasing(values: list[float]) -> bool:
    return all(b <= a + 1e-6 * abs(a) for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("preset", ["deeplab_v2", "deeplab_largefov"])
@pytest.mark.parametrize("case", list(CASES))
def test_agrees_with_pydensecrf(dcrf, case, preset):
    probabilities, image = CASES[case]()
    if image is None:
        pytest.skip("CamVid is not under $ATROUS_DATA (default ../shared/data)")
    params = PRESETS[preset]
    expected, kl = reference_run(dcrf, probabilities, image, params, 10)

    crf = DenseCRF(torch.from_numpy(probabilities), torch.from_numpy(image).permute(2, 0, 1), params, method="lattice")
    q = crf.start()
    ours = [crf.energy_terms(q)]
    for step in range(1, 11):
        q = crf.step(q)
        ours.append(crf.energy_terms(q))
        if step in (5, 10):
            agreement = (q.argmax(0).numpy() == expected[step - 1].argmax(0)).mean()
            assert agreement >= 0.99, f"{step} iterations: MAP labels agree on {agreement:.2%}"
            assert np.abs(q.numpy() - expected[step - 1]).max() < 1e-3
    # The same objective (pydensecrf's klDivergence is entropy + unary + pairwise, the pairwise
    # counted over ordered pairs), and it decreases at every step in both implementations.
    theirs = [sum(t.values()) for t in ours]
    np.testing.assert_allclose(theirs, kl, rtol=1e-4)
    assert decreasing(kl), kl
    free_energy = [t["entropy"] + t["unary"] + 0.5 * t["pairwise"] for t in ours]
    assert decreasing(free_energy), free_energy
    assert free_energy[-1] < free_energy[0]


def test_dense_crf_matches_the_step_by_step_run():
    probabilities, image = CASES["40x60-3cls"]()
    q = dense_crf(probabilities, image, "deeplab_v2", iterations=5)  # NumPy (H, W, 3) image
    crf = DenseCRF(torch.from_numpy(probabilities), torch.from_numpy(image).permute(2, 0, 1), "deeplab_v2")
    stepped = crf.start()
    for _ in range(5):
        stepped = crf.step(stepped)
    assert torch.allclose(q, stepped, atol=1e-6)
    assert math.isclose(crf.energy(stepped), crf.energy(q), rel_tol=1e-6)


@pytest.mark.parametrize("preset", ["deeplab_v2", "deeplab_largefov"])
def test_lattice_filter_is_close_to_the_exact_gaussian(preset):
    """Each normalised kernel k̃ Q by the lattice against the O(N²) sum, and the CRF's labels
    by both. Measured (relative L2): smoothness 1.5 % (σ 1) and 2.7 % (σ 3); appearance 6.8 %
    (σ_β 3, colour noise of ±4σ_β) and 3.1 % (σ_β 5): the lattice's piecewise-linear splat
    and [1 2 1] blur only approximate a Gaussian. Labels agree on 98.0 % and 99.7 %."""
    probabilities, image = smooth_probabilities(3, 3, 24, 32), edge_image(3, 24, 32)
    rgb = torch.from_numpy(image).permute(2, 0, 1)
    params = PRESETS[preset]
    q = torch.from_numpy(probabilities).reshape(3, -1).t()
    for xy, colour in ((params.pos_xy_std, None), (params.bi_xy_std, params.bi_rgb_std)):
        features = _features(rgb, xy, colour, torch.device("cpu"))
        lattice, exact = NormalizedKernel(features, "lattice")(q), NormalizedKernel(features, "exact")(q)
        assert float((lattice - exact).norm() / exact.norm()) < (0.03 if colour is None else 0.08)
    labels = {
        method: dense_crf(probabilities, image, params, method=method).argmax(0).numpy()
        for method in ("lattice", "exact")
    }
    assert (labels["lattice"] == labels["exact"]).mean() >= 0.97


def test_sparse_and_indexed_lattice_agree():
    """The CSR products (CPU, CUDA) and the index-add/gather fallback are the same sums."""
    rgb = torch.from_numpy(edge_image(4, 30, 40)).permute(2, 0, 1)
    values = torch.rand(30 * 40, 4, generator=torch.Generator().manual_seed(0))
    features = _features(rgb, 5.0, 10.0, torch.device("cpu"))
    sparse = PermutohedralLattice(features, sparse=True).filter(values)
    indexed = PermutohedralLattice(features, sparse=False).filter(values)
    assert torch.allclose(sparse, indexed, rtol=1e-5, atol=1e-6)


def test_one_pair_worked_by_hand():
    """Two pixels side by side, same colour, two classes, one exact mean-field step.

    Each kernel between them is k = exp(−½(1/σ)²) (colours equal); with itself 1. Normalised
    symmetrically (D = 1 + k for both), k̃ = [[1, k], [k, 1]] / (1 + k). Then
    Q¹_i(l) ∝ p_i(l) · exp(Σ_m w_m (Q⁰_i(l) + k_m Q⁰_j(l)) / (1 + k_m)), with Q⁰ = p."""
    p = np.array([[0.9, 0.4], [0.1, 0.6]], dtype=np.float32).reshape(2, 1, 2)  # classes × 1 × 2
    image = np.full((3, 1, 2), 120, np.uint8)
    params = CRFParams(bi_w=4, bi_xy_std=2, bi_rgb_std=3, pos_w=3, pos_xy_std=1)
    kernels = [(params.pos_w, math.exp(-0.5)), (params.bi_w, math.exp(-0.5 / 4))]
    expected = np.zeros((2, 2))
    for i, j in ((0, 1), (1, 0)):
        logits = [
            math.log(p[label, 0, i]) + sum(w * (p[label, 0, i] + k * p[label, 0, j]) / (1 + k) for w, k in kernels)
            for label in range(2)
        ]
        expected[:, i] = np.exp(logits) / np.exp(logits).sum()
    q = dense_crf(p, torch.from_numpy(image), params, iterations=1, method="exact")
    np.testing.assert_allclose(q[:, 0].numpy(), expected, rtol=1e-5)
    assert torch.equal(dense_crf(p, torch.from_numpy(image), params, iterations=1), q)  # "auto": exact here


@pytest.mark.parametrize("method", ["exact", "lattice"])
def test_one_class_and_uniform_probabilities_stay_as_they_are(method):
    image = torch.from_numpy(edge_image(5, 24, 36)).permute(2, 0, 1)
    one = dense_crf(torch.ones(1, 24, 36), image, "deeplab_v2", method=method)
    assert torch.equal(one, torch.ones(1, 24, 36))
    # Equal probabilities: every class gets the same unary and the same message.
    uniform = dense_crf(torch.full((4, 24, 36), 0.25), image, "deeplab_largefov", method=method)
    assert torch.allclose(uniform, torch.full_like(uniform, 0.25), atol=1e-6)


def test_float32_on_the_cpu_summing_to_one_and_batched():
    probabilities = torch.stack([torch.from_numpy(smooth_probabilities(s, 3, 30, 40)) for s in (6, 7)]).double()
    images = torch.stack([torch.from_numpy(edge_image(s, 30, 40)).permute(2, 0, 1) for s in (6, 7)])
    q = dense_crf(probabilities, images)
    assert q.dtype == torch.float32 and q.device.type == "cpu" and q.shape == (2, 3, 30, 40)
    assert torch.allclose(q.sum(1), torch.ones(2, 30, 40), atol=1e-5)
    assert torch.equal(q[1], dense_crf(probabilities[1], images[1]))
    assert not torch.equal(q.argmax(1), probabilities.argmax(1))  # it did something


def test_bad_inputs_name_the_argument():
    probabilities = torch.rand(3, 10, 12).softmax(0)
    image = torch.zeros(3, 10, 12, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"image and probabilities .* same height and width"):
        dense_crf(probabilities, torch.zeros(3, 10, 13, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"image must be uint8"):
        dense_crf(probabilities, image.float())
    with pytest.raises(ValueError, match=r"image must be \(3, H, W\)"):
        dense_crf(probabilities, torch.zeros(4, 10, 12, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"probabilities must be finite and non-negative"):
        dense_crf(-probabilities, image)
    with pytest.raises(ValueError, match=r"bi_xy_std must be positive"):
        CRFParams(bi_xy_std=-1)
    with pytest.raises(ValueError, match=r"pos_xy_std must be positive"):
        dense_crf(probabilities, image, CRFParams(pos_xy_std=0))
    with pytest.raises(ValueError, match=r"pos_w must be non-negative"):
        CRFParams(pos_w=-3)
    with pytest.raises(ValueError, match=r"iterations must be a non-negative integer"):
        dense_crf(probabilities, image, iterations=-1)
    with pytest.raises(ValueError, match=r"crf must be one of deeplab_v2"):
        resolve_crf("deeplab_v3")
    with pytest.raises(ValueError, match=r"method must be one of"):
        dense_crf(probabilities, image, method="fast")


def test_presets_are_deeplabs_released_values():
    assert PRESETS["deeplab_v2"] == CRFParams(bi_w=4, bi_xy_std=67, bi_rgb_std=3, pos_w=3, pos_xy_std=1, iterations=10)
    largefov = CRFParams(bi_w=4, bi_xy_std=121, bi_rgb_std=5, pos_w=3, pos_xy_std=3, iterations=10)
    assert PRESETS["deeplab_largefov"] == PRESETS["deeplab_v1"] == largefov
    assert resolve_crf("deeplab_v1", 5).iterations == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    probabilities, image = CASES["64x48-5cls"]()
    cpu = dense_crf(probabilities, image, "deeplab_v2")
    cuda = dense_crf(torch.from_numpy(probabilities).cuda(), torch.from_numpy(image).cuda().permute(2, 0, 1))
    assert cuda.device.type == "cuda"
    assert (cuda.argmax(0).cpu() == cpu.argmax(0)).float().mean() >= 0.999


def test_cli_options(tmp_path, capsys):
    """--crf's choices are the presets; --crf alone is deeplab_v2; --crf-iterations needs --crf
    and is refused (exit 2, one line) before any model loads."""
    from atrous.cli import build_parser, main
    from atrous.cli.common import CRF_PRESETS, resolve_crf_option

    assert tuple(PRESETS) == CRF_PRESETS
    parser = build_parser()
    for command in (["predict", "m", "x.png"], ["eval", "m"]):
        args = parser.parse_args([*command, "--crf"])
        assert resolve_crf_option(args) == PRESETS["deeplab_v2"]
        args = parser.parse_args([*command, "--crf", "deeplab_largefov", "--crf-iterations", "3"])
        assert resolve_crf_option(args) == resolve_crf("deeplab_largefov", 3)
        assert resolve_crf_option(parser.parse_args(command)) is None
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert main(["predict", str(tmp_path / "no-model"), str(image), "--crf-iterations", "3"]) == 2
    assert capsys.readouterr().err.strip() == "atrous predict: error: --crf-iterations needs --crf"
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "m", "x.png", "--crf", "deeplab_v9"])


def test_the_evaluator_recovers_the_pictures_exactly():
    """``atrous eval --crf`` runs the CRF on the uint8 pictures its normalised batch came from."""
    from atrous.data.constants import IMAGENET_MEAN, IMAGENET_STD
    from atrous.engine.evaluator import uint8_pictures
    from atrous.inference.predictor import normalize

    rgb = torch.randint(0, 256, (2, 3, 17, 23), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rgb[0, :, 0, :2] = torch.tensor([0, 255], dtype=torch.uint8)
    images = normalize(rgb, IMAGENET_MEAN, IMAGENET_STD)
    assert torch.equal(uint8_pictures(images, IMAGENET_MEAN, IMAGENET_STD), rgb)
    with pytest.raises(ValueError, match="not uint8 pictures normalised with mean"):
        uint8_pictures(images, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_the_predictor_plans_the_crf_memory_and_returns_its_probabilities():
    """The CRF runs after the model on the whole image: an image whose CRF cannot fit the
    budget is refused up front; one that fits gets the CRF's marginals as its probabilities."""
    import atrous
    from atrous.inference import Predictor

    torch.manual_seed(0)
    model = atrous.create_model("deeplabv3_mobilenetv2", num_classes=3)
    predictor = Predictor(model, precision="fp32", crf="deeplab_v2", memory_budget="8MiB")
    with pytest.raises(MemoryError, match="for the dense CRF"):
        predictor.plan(1000, 1000)
    image = edge_image(8, 40, 56)
    result = predictor(image, probabilities=True)
    assert result.probabilities.shape == (3, 40, 56)
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-5)
    assert np.array_equal(result.labels, result.probabilities.argmax(0))
