"""Fully connected CRF post-processing (DeepLab v1 §4, DeepLab v2 §3.2 and §4), in pure PyTorch.

DeepLab refines the network's per-pixel class probabilities with the fully connected
conditional random field of Krähenbühl & Koltun (NeurIPS 2011): every pixel is connected to
every other, the unary potential is the network's negative log-probability and the pairwise
potential is a Potts penalty weighted by two Gaussian kernels,

    ψ_p(x_i, x_j) = μ(x_i, x_j) · [ w₁ exp(−|p_i − p_j|²/2σ_α² − |I_i − I_j|²/2σ_β²)
                                    + w₂ exp(−|p_i − p_j|²/2σ_γ²) ],

the *appearance* (bilateral: position p and RGB colour I) kernel and the *smoothness*
(position only) kernel (K&K §2, DeepLab v2 eq. 2-3). Inference is mean-field (K&K §3): with
the Potts compatibility the update of the marginals Q is

    Q_i(l) ∝ exp(−U_i(l) + Σ_m w_m Σ_j k̃_m(f_i, f_j) Q_j(l)),

the sign convention under which equal labels are favoured (Krähenbühl's ``PottsCompatibility``
applies ``−w·Q`` and the update subtracts it). The sum over j is a Gaussian filter of Q in the
kernel's feature space (K&K §4), computed here for all classes at once by the
**permutohedral lattice** of Adams, Baek & Davis (Eurographics 2010): the scaled features are
lifted onto the hyperplane of a (d+1)-dimensional lattice, each pixel is splatted onto the d+1
vertices of its enclosing simplex with barycentric weights, the lattice is blurred with
[1 2 1] along each of its d+1 directions, and the result is sliced back at the pixels. The
lattice is built once per image and kernel; each mean-field iteration is then gathers and
index-adds only. Below :data:`EXACT_MAX_PIXELS` pixels (or with ``method="exact"``) the
filter is the exact O(N²) Gaussian instead — the oracle the lattice is tested against.

Constants follow Krähenbühl's released implementation (the ``densecrf`` library behind
``pydensecrf``), which the tests compare against:

* features are x/σ, y/σ (column, row) and r/σ, g/σ, b/σ; the lattice scales them by
  √(2/3)·(d+1)/√((i+1)(i+2)) (Adams et al. §3.1 and p. 6: the blur then has standard
  deviation 1 in feature units);
* the blur is ``v + ½(v₋ + v₊)`` along each lattice direction, and slicing multiplies by
  1/(1 + 2^−d);
* the kernel is normalised symmetrically (``NORMALIZE_SYMMETRIC``, pydensecrf's default):
  k̃ = D^−½ K D^−½ with D = K·1, which also makes the lattice's overall scale irrelevant;
* the pixel itself is **included** in the sum over j (the 2013 library does not subtract
  the self term as the 2011 paper's §4 does);
* the unary is −log p with p clipped to [1e−5, 1] (pydensecrf's ``unary_from_softmax``),
  and inference starts from Q = softmax(−U).

:meth:`DenseCRF.energy` is the mean-field free energy (the KL divergence to the CRF's
distribution up to log Z), Σ Q log Q + Σ U·Q − ½ Σ_m w_m Σ_l Qᵀ k̃_m Q. With positive-definite
kernels and the Potts (negative semi-definite) compatibility, the parallel update above is a
concave-convex step on this objective and cannot increase it (Krähenbühl & Koltun, ICML 2013,
"Parameter learning and convergent inference for dense random fields"); the lattice's kernel
is only approximately that, and the tests check the decrease. pydensecrf's ``klDivergence``
is the same expression without the ½ on the pairwise term.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch

UNARY_CLIP = 1e-5  # pydensecrf.utils.unary_from_softmax's default clip
EXACT_MAX_PIXELS = 512  # method="auto": the exact O(N²) filter up to here (as fast as the lattice, measured)
METHODS = ("auto", "lattice", "exact")


@dataclass(frozen=True)
class CRFParams:
    """The fully connected CRF's parameters, named as DeepLab's released configurations name them.

    ``bi_w`` (w₁), ``bi_xy_std`` (σ_α, pixels) and ``bi_rgb_std`` (σ_β, 0..255 intensity
    units) define the appearance kernel; ``pos_w`` (w₂) and ``pos_xy_std`` (σ_γ, pixels) the
    smoothness kernel; ``iterations`` is the number of mean-field updates (DeepLab: 10).
    A weight of 0 leaves its kernel out.
    """

    bi_w: float = 4.0
    bi_xy_std: float = 67.0
    bi_rgb_std: float = 3.0
    pos_w: float = 3.0
    pos_xy_std: float = 1.0
    iterations: int = 10

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "iterations":
                if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                    raise ValueError(f"iterations must be a non-negative integer, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value):
                raise ValueError(f"{field.name} must be a finite number, got {value!r}")
            if field.name.endswith("_std") and value <= 0:
                raise ValueError(f"{field.name} must be positive, got {value!r}")
            if field.name.endswith("_w") and value < 0:
                raise ValueError(f"{field.name} must be non-negative, got {value!r}")

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


# The CRF settings of DeepLab's released VOC 2012 models. The papers fix w₂ = 3, σ_γ = 3 and
# cross-validate w₁, σ_α, σ_β on val images, with 10 mean-field iterations (DeepLab v1 §4,
# Chen et al. ICLR 2015; DeepLab v2 §4.1, TPAMI 2017); the values chosen are those the
# released models' READMEs list (reproduced in public ports, e.g. kazuto1011/deeplab-pytorch
# configs/voc12.yaml for ResNet-101). The ResNet-101 release uses σ_γ = 1, not the paper's 3.
PRESETS: dict[str, CRFParams] = {
    # DeepLab v2, ResNet-101 (ASPP), PASCAL VOC 2012.
    "deeplab_v2": CRFParams(bi_w=4, bi_xy_std=67, bi_rgb_std=3, pos_w=3, pos_xy_std=1),
    # DeepLab v1 DeepLab-LargeFOV, VGG-16 (also DeepLab v2's VGG-16 LargeFOV), PASCAL VOC 2012.
    "deeplab_largefov": CRFParams(bi_w=4, bi_xy_std=121, bi_rgb_std=5, pos_w=3, pos_xy_std=3),
    "deeplab_v1": CRFParams(bi_w=4, bi_xy_std=121, bi_rgb_std=5, pos_w=3, pos_xy_std=3),
}
DEFAULT_PRESET = "deeplab_v2"


def resolve_crf(crf: str | CRFParams | None, iterations: int | None = None) -> CRFParams | None:
    """A preset name or :class:`CRFParams` (or None: no CRF) as :class:`CRFParams`, with
    ``iterations`` replacing the preset's when given."""
    if crf is None:
        if iterations is not None:
            raise ValueError("crf_iterations needs a CRF (give crf=PRESET or CRFParams)")
        return None
    if isinstance(crf, str):
        if crf not in PRESETS:
            raise ValueError(f"crf must be one of {', '.join(PRESETS)} or CRFParams, got {crf!r}")
        crf = PRESETS[crf]
    elif not isinstance(crf, CRFParams):
        raise ValueError(f"crf must be a preset name or CRFParams, got {type(crf).__name__}")
    return crf if iterations is None else replace(crf, iterations=iterations)


def crf_name(params: CRFParams) -> str | None:
    """The preset ``params`` are (iterations aside), or None."""
    for name, preset in PRESETS.items():
        if replace(preset, iterations=params.iterations) == params:
            return name
    return None


# -- the permutohedral lattice ------------------------------------------------------------


class PermutohedralLattice:
    """Gaussian filtering of values at N points with d-dimensional features (Adams et al. 2010).

    Built once from the features (N, d): every point's enclosing simplex, barycentric
    weights and lattice vertices, and each vertex's two neighbours along every lattice
    direction. :meth:`filter` then splats, blurs along the d+1 directions and slices, for
    any number of value channels at once. Where sparse CSR products run (CPU, CUDA) the
    three steps are stored as CSR matrices built once from those indices — the same sums as
    index-add and gathers, several times faster on a CPU; elsewhere they are index-adds and
    gathers.
    """

    def __init__(self, features: torch.Tensor, *, sparse: bool | None = None) -> None:
        if features.ndim != 2:
            raise ValueError(f"features must be (N, d), got shape {tuple(features.shape)}")
        features = features.float()
        n, d = features.shape
        device = features.device
        self.num_points, self.dim = n, d
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))  # the slice's scaling constant (Krähenbühl's "alpha")

        # Elevate onto the hyperplane x·1 = 0 of R^{d+1} (Adams et al. p. 5: y = E·p), scaled
        # so that the [1 2 1] blur has standard deviation 1 in feature units (p. 6).
        i = torch.arange(d, device=device, dtype=torch.float32)
        scale = math.sqrt(2.0 / 3.0) * (d + 1) / torch.sqrt((i + 1) * (i + 2))
        cf = features * scale
        suffix = cf.flip(1).cumsum(1).flip(1)  # Σ_{k≥j} cf_k
        elevated = torch.empty(n, d + 1, device=device)
        elevated[:, 0] = suffix[:, 0]
        tail = torch.cat([suffix[:, 1:], cf.new_zeros(n, 1)], dim=1)  # Σ_{k≥j} cf_k for j = 1..d
        elevated[:, 1:] = tail - torch.arange(1, d + 1, device=device, dtype=torch.float32) * cf

        # The nearest remainder-0 lattice point (coordinates multiples of d+1), by rounding.
        down = torch.round(elevated * (1.0 / (d + 1)))
        rem0 = down * (d + 1)
        total = down.sum(1, keepdim=True).long()

        # rank_i: the position of coordinate i in the descending order of elevated − rem0
        # (ties: the earlier coordinate first) — which simplex of the lattice holds the point.
        diff = elevated - rem0
        idx = torch.arange(d + 1, device=device)
        later = idx[None, :] > idx[:, None]  # [i, j]: j > i
        earlier = idx[None, :] < idx[:, None]
        rank = ((diff[:, None, :] > diff[:, :, None]) & later).sum(2)
        rank += ((diff[:, None, :] >= diff[:, :, None]) & earlier).sum(2)
        # A point off the plane's 0-colouring (coordinate sum ≠ 0) is brought back.
        rank = rank + total
        low, high = rank < 0, rank > d
        rank = torch.where(low, rank + (d + 1), torch.where(high, rank - (d + 1), rank))
        rem0 = torch.where(low, rem0 + (d + 1), torch.where(high, rem0 - (d + 1), rem0))

        # Barycentric coordinates (Adams et al. p. 10).
        v = (elevated - rem0) * (1.0 / (d + 1))
        bary = torch.zeros(n, d + 2, device=device)
        bary.scatter_add_(1, d - rank, v)
        bary.scatter_add_(1, d - rank + 1, -v)
        bary[:, 0] += 1.0 + bary[:, d + 1]
        weights = bary[:, : d + 1]

        # The simplex's vertices: rem0 plus the canonical simplex's r-th vertex permuted by rank,
        # whose coordinate i is r, or r − (d+1) where rank_i > d − r. Keys are the first d
        # coordinates (the last follows: they sum to 0), (n, d+1, d) in int32.
        r = torch.arange(d + 1, device=device, dtype=torch.int32)[None, :, None]
        low_rank = rank[:, None, :d].to(torch.int32)
        keys = rem0[:, None, :d].to(torch.int32) + r - (d + 1) * (low_rank > d - r).to(torch.int32)
        del low_rank

        # Hash: pack the d integer coordinates into one int64 (mixed radix, with a margin so
        # that every neighbour packs too), then unique (sorted) + sorted search.
        lowest = keys.amin(dim=(0, 1)).long() - (d + 1)
        span = (keys.amax(dim=(0, 1)).long() - lowest + d + 2).tolist()
        if math.prod(span) >= 2**62:
            raise ValueError(
                "the lattice's coordinates do not fit 64-bit keys: the standard deviations are too small "
                "for these features (use larger stds or method='exact')"
            )
        radix = [math.prod(span[:k]) for k in range(d)]
        packed = torch.zeros(n * (d + 1), dtype=torch.long, device=device)
        for k in range(d):
            packed += (keys[..., k].reshape(-1).long() - int(lowest[k])) * radix[k]
        del keys
        vertices, inverse = torch.unique(packed, sorted=True, return_inverse=True)
        m = vertices.numel()
        self.num_vertices = m
        self.offsets = inverse.view(n, d + 1)  # (n, d+1): the vertex of each remainder
        self.weights = weights.contiguous()  # (n, d+1)

        # Neighbours along lattice direction j: every coordinate −1 and coordinate j + d
        # (i.e. −1 + (d+1)), or the opposite; for j = d only the implicit last coordinate moves.
        self.shifts = [-sum(radix) + ((d + 1) * radix[j] if j < d else 0) for j in range(d + 1)]
        self._vertices = vertices
        self.sparse = device.type in ("cpu", "cuda") if sparse is None else sparse
        if self.sparse:
            with warnings.catch_warnings():  # torch says sparse CSR is "in beta": nothing for the user to act on
                warnings.simplefilter("ignore", UserWarning)
                self._build_sparse()
            del self.offsets, self.weights  # all in the matrices now
        else:
            self.neighbours = torch.stack([torch.stack(self._neighbours(j)) for j in range(d + 1)])
        del self._vertices

    def _neighbours(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each vertex's neighbours at key + shift_j and key − shift_j (int32; M where there
        is none). Vertices are sorted by key, so a neighbour's index is a sorted search."""
        vertices, m = self._vertices, self.num_vertices
        found = []
        for delta in (self.shifts[j], -self.shifts[j]):
            target = vertices + delta
            pos = torch.searchsorted(vertices, target).clamp_max_(m - 1)
            found.append(torch.where(vertices[pos] == target, pos, m).to(torch.int32))
        return found[0], found[1]

    def _build_sparse(self) -> None:
        """Splat (M × N), blur (M × M per direction) and slice (N × M) as CSR matrices with
        int32 indices (half the memory of int64), each row's columns in increasing order."""
        n, d, m = self.num_points, self.dim, self.num_vertices
        if max(n, m) * (d + 1) * 3 >= 2**31:
            raise ValueError(f"an image of {n} pixels is too large for the CRF's int32 sparse indices")
        device = self.offsets.device
        index = torch.int32

        def csr(counts: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, size: tuple[int, int]):
            crow = torch.zeros(size[0] + 1, dtype=index, device=device)
            crow[1:] = counts.cumsum(0)
            return torch.sparse_csr_tensor(crow, cols.to(index), values.contiguous(), size)

        # Slice: pixel i takes Σ_r α·w_ir·grid[vertex_ir].
        cols, perm = self.offsets.sort(dim=1)
        weights = self.weights.gather(1, perm)
        self.slice_matrix = csr(
            torch.full((n,), d + 1, dtype=index, device=device),
            cols.reshape(-1),
            (weights * self.alpha).reshape(-1),
            (n, m),
        )
        # Splat: vertex v gathers w_ir·value_i from every (pixel i, remainder r) that lands on it.
        vertex = cols.reshape(-1)
        pixel = torch.arange(n, device=device).repeat_interleave(d + 1)
        order = torch.argsort(vertex * n + pixel)
        self.splat_matrix = csr(torch.bincount(vertex, minlength=m), pixel[order], weights.reshape(-1)[order], (m, n))
        del cols, perm, weights, vertex, pixel, order
        # Blur along direction j: v + ½(v₋ + v₊), missing neighbours left out.
        self.blur_matrices = []
        own = torch.arange(m, device=device, dtype=index)
        for j, shift in enumerate(self.shifts):
            n1, n2 = self._neighbours(j)  # key + shift, key − shift: sorted keys make the order known
            lo, hi = (n1, n2) if shift < 0 else (n2, n1)
            cols = torch.stack([lo, own, hi], dim=1)  # increasing along each row (m = missing sorts last)
            keep = cols < m
            values = torch.tensor([0.5, 1.0, 0.5], device=device).expand(m, 3)[keep]
            self.blur_matrices.append(csr(keep.sum(1, dtype=index), cols[keep], values, (m, m)))

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """Σ_j k(f_i, f_j) v_j (approximately, up to a global scale) for values (N, C)."""
        if values.shape[0] != self.num_points:
            raise ValueError(f"values must have {self.num_points} rows, got {values.shape[0]}")
        values = values.float()
        if self.sparse:
            grid = self.splat_matrix @ values
            for matrix in self.blur_matrices:
                grid = matrix @ grid
            return self.slice_matrix @ grid
        return self._filter_indexed(values)

    def _filter_indexed(self, values: torch.Tensor) -> torch.Tensor:
        """The same sums by index-add (splat) and gathers (blur, slice), for devices without
        sparse CSR products."""
        channels = values.shape[1]
        m, d = self.num_vertices, self.dim
        grid = values.new_zeros(m + 1, channels)  # row m stays zero: the missing neighbour
        grid.index_add_(0, self.offsets.reshape(-1), (values[:, None, :] * self.weights[:, :, None]).flatten(0, 1))
        spare = values.new_zeros(m + 1, channels)
        for j in range(d + 1):  # blur: [1 2 1]/2 along each lattice direction
            n1, n2 = self.neighbours[j]
            torch.add(grid.index_select(0, n1), grid.index_select(0, n2), out=spare[:m])
            spare[:m].mul_(0.5).add_(grid[:m])
            grid, spare = spare, grid
        out = grid.index_select(0, self.offsets.reshape(-1)).view(-1, d + 1, channels)
        return (out * self.weights[:, :, None]).sum(1).mul_(self.alpha)


class ExactGaussian:
    """The exact Gaussian filter Σ_j exp(−½|f_i − f_j|²) v_j: an (N, N) matrix, for small N."""

    def __init__(self, features: torch.Tensor) -> None:
        f = features.double()
        sq = (f * f).sum(1)
        dist = (sq[:, None] + sq[None, :] - 2.0 * f @ f.t()).clamp_min(0.0)
        self.matrix = torch.exp(-0.5 * dist).float()
        self.num_points = features.shape[0]

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        return self.matrix @ values.float()


class NormalizedKernel:
    """A Gaussian kernel normalised symmetrically, k̃ = D^−½ K D^−½ with D = K·1
    (Krähenbühl's ``DenseKernel`` with ``NORMALIZE_SYMMETRIC``)."""

    def __init__(self, features: torch.Tensor, method: str) -> None:
        self.gaussian = ExactGaussian(features) if method == "exact" else PermutohedralLattice(features)
        ones = features.new_ones(features.shape[0], 1, dtype=torch.float32)
        self.norm = 1.0 / torch.sqrt(self.gaussian.filter(ones) + 1e-20)  # (N, 1)

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        return self.gaussian.filter(q * self.norm) * self.norm


# -- the CRF ---------------------------------------------------------------------------------


def _check_inputs(probabilities: torch.Tensor, image: torch.Tensor) -> None:
    if probabilities.ndim != 3:
        raise ValueError(f"probabilities must be (classes, H, W), got shape {tuple(probabilities.shape)}")
    if not probabilities.is_floating_point():
        raise ValueError(f"probabilities must be floating point, got {probabilities.dtype}")
    if image.dtype != torch.uint8:
        raise ValueError(f"image must be uint8 RGB (0..255), got {image.dtype}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W) uint8 RGB, got shape {tuple(image.shape)}")
    if image.shape[-2:] != probabilities.shape[-2:]:
        raise ValueError(
            f"image and probabilities must have the same height and width: image {tuple(image.shape)}, "
            f"probabilities {tuple(probabilities.shape)}"
        )
    if probabilities.numel() and not bool(torch.isfinite(probabilities).all() and (probabilities >= 0).all()):
        raise ValueError("probabilities must be finite and non-negative")


def _features(image: torch.Tensor, xy_std: float, rgb_std: float | None, device: torch.device) -> torch.Tensor:
    """(H·W, 2 or 5) features in row-major pixel order: x/σ, y/σ[, r/σ, g/σ, b/σ]."""
    h, w = image.shape[-2:]
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    parts = [xs.reshape(-1) / xy_std, ys.reshape(-1) / xy_std]
    if rgb_std is not None:
        rgb = image.to(device=device, dtype=torch.float32).reshape(3, -1)
        parts += list(rgb / rgb_std)
    return torch.stack(parts, dim=1)


class DenseCRF:
    """The fully connected CRF of one image: its unary, and its kernels built once.

    ``probabilities`` (classes, H, W), ``image`` (3, H, W) uint8 RGB. :meth:`start` gives
    the initial marginals, :meth:`step` one parallel mean-field update, :meth:`energy` the
    free energy being minimised, :meth:`run` the whole inference — the steps of Krähenbühl's
    ``startInference`` / ``stepInference`` / ``klDivergence``. ``method``: ``"lattice"``
    (permutohedral), ``"exact"`` (the O(N²) Gaussian) or ``"auto"`` (exact up to
    :data:`EXACT_MAX_PIXELS` pixels).
    """

    def __init__(
        self,
        probabilities: torch.Tensor,
        image: torch.Tensor,
        params: CRFParams | str = DEFAULT_PRESET,
        *,
        method: str = "auto",
    ) -> None:
        params = resolve_crf(params)
        assert params is not None
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        _check_inputs(probabilities, image)
        self.params = params
        classes, h, w = probabilities.shape
        self.shape = (classes, h, w)
        self.device = probabilities.device
        if method == "auto":
            method = "exact" if h * w <= EXACT_MAX_PIXELS else "lattice"
        self.method = method
        p = probabilities.detach().float().reshape(classes, -1).t()  # (N, C)
        self.unary = -torch.log(p.clamp(UNARY_CLIP, 1.0))
        self.kernels: list[tuple[float, NormalizedKernel]] = []
        if params.pos_w > 0:
            features = _features(image, params.pos_xy_std, None, self.device)
            self.kernels.append((float(params.pos_w), NormalizedKernel(features, method)))
        if params.bi_w > 0:
            features = _features(image, params.bi_xy_std, params.bi_rgb_std, self.device)
            self.kernels.append((float(params.bi_w), NormalizedKernel(features, method)))

    def _pairwise(self, q: torch.Tensor) -> torch.Tensor:
        """Σ_m w_m k̃_m Q for Q (N, C): the message that favours a pixel's neighbours' labels."""
        message = torch.zeros_like(q)
        for weight, kernel in self.kernels:
            message.add_(kernel(q), alpha=weight)
        return message

    def _as_flat(self, q: torch.Tensor) -> torch.Tensor:
        if tuple(q.shape) != self.shape:
            raise ValueError(f"Q must have shape {self.shape}, got {tuple(q.shape)}")
        return q.float().reshape(self.shape[0], -1).t()

    def _as_map(self, q: torch.Tensor) -> torch.Tensor:
        return q.t().reshape(self.shape).contiguous()

    def start(self) -> torch.Tensor:
        """Q⁰ = softmax(−U), (classes, H, W)."""
        return self._as_map(torch.softmax(-self.unary, dim=1))

    def step(self, q: torch.Tensor) -> torch.Tensor:
        """One parallel mean-field update (K&K §3, Algorithm 1): Q ← softmax(−U + Σ_m w_m k̃_m Q)."""
        flat = self._as_flat(q)
        return self._as_map(torch.softmax(self._pairwise(flat) - self.unary, dim=1))

    def run(self, iterations: int | None = None) -> torch.Tensor:
        """The marginals after ``iterations`` updates (default: the params')."""
        iterations = self.params.iterations if iterations is None else iterations
        q = torch.softmax(-self.unary, dim=1)
        for _ in range(iterations):
            q = torch.softmax(self._pairwise(q) - self.unary, dim=1)
        return self._as_map(q)

    def energy_terms(self, q: torch.Tensor) -> dict[str, float]:
        """The parts of the free energy of Q (float64 sums): ``entropy`` Σ Q log Q, ``unary``
        Σ U·Q and ``pairwise`` −Σ_m w_m Σ_l Qᵀ k̃_m Q (every ordered pair i, j, i = j included).
        pydensecrf's ``klDivergence`` is their plain sum."""
        flat = self._as_flat(q)
        return {
            "entropy": float((flat * torch.log(flat.clamp_min(1e-20))).double().sum()),
            "unary": float((self.unary * flat).double().sum()),
            "pairwise": float(-(flat * self._pairwise(flat)).double().sum()),
        }

    def energy(self, q: torch.Tensor) -> float:
        """The mean-field free energy of Q, KL(Q ‖ P) − log Z = Σ Q log Q + Σ U·Q + ½ pairwise
        (each unordered pair once): the objective the parallel updates decrease (K&K 2013)."""
        terms = self.energy_terms(q)
        return terms["entropy"] + terms["unary"] + 0.5 * terms["pairwise"]


def _as_tensor(value, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        return value
    raise ValueError(f"{name} must be a tensor or NumPy array, got {type(value).__name__}")


@torch.no_grad()
def dense_crf(
    probabilities: torch.Tensor | np.ndarray,
    image: torch.Tensor | np.ndarray,
    params: CRFParams | str = DEFAULT_PRESET,
    iterations: int | None = None,
    *,
    method: str = "auto",
) -> torch.Tensor:
    """Class probabilities refined by the fully connected CRF (DeepLab's post-processing).

    Args:
        probabilities: softmax probabilities, (classes, H, W) or (B, classes, H, W).
        image: the picture, uint8 RGB: (3, H, W) or (B, 3, H, W); a NumPy array may also be
            (H, W, 3), the layout PIL gives.
        params: :class:`CRFParams` or a preset name (:data:`PRESETS`; default ``deeplab_v2``).
        iterations: mean-field updates (default: ``params.iterations``, 10).
        method: ``"lattice"`` (permutohedral, O(N)), ``"exact"`` (O(N²)) or ``"auto"``
            (exact up to :data:`EXACT_MAX_PIXELS` pixels).

    Returns:
        float32 marginals Q of the input's shape, on the probabilities' device; each pixel's
        sum to 1, and ``argmax`` over classes is the CRF's labelling.
    """
    params = resolve_crf(params, iterations)
    assert params is not None
    probs = _as_tensor(probabilities, "probabilities")
    rgb = _as_tensor(image, "image")
    if isinstance(image, np.ndarray) and rgb.ndim in (3, 4) and rgb.shape[-1] == 3 and rgb.shape[-3] != 3:
        rgb = rgb.movedim(-1, -3)  # (…, H, W, 3) → (…, 3, H, W)
    if probs.ndim == 4:
        if rgb.ndim != 4 or rgb.shape[0] != probs.shape[0]:
            raise ValueError(
                f"a batch of probabilities {tuple(probs.shape)} needs a batch of images (B, 3, H, W), "
                f"got image {tuple(rgb.shape)}"
            )
        return torch.stack([_dense_crf_one(p, i, params, method) for p, i in zip(probs, rgb, strict=True)])
    return _dense_crf_one(probs, rgb, params, method)


def _dense_crf_one(probabilities: torch.Tensor, image: torch.Tensor, params: CRFParams, method: str) -> torch.Tensor:
    return DenseCRF(probabilities, image, params, method=method).run()


def refine_with_crf(scores: torch.Tensor, rgb: torch.Tensor, params: CRFParams, *, probabilities: bool) -> torch.Tensor:
    """The CRF's marginals (B, classes, H, W) for a batch of class scores and its uint8 RGB
    images (B, 3, H, W): what ``atrous predict --crf`` writes and ``atrous eval --crf``
    scores. ``probabilities``: whether ``scores`` are already softmax probabilities
    (test-time augmentation averages them) rather than logits."""
    probs = scores.float() if probabilities else scores.float().softmax(dim=1)
    return dense_crf(probs, rgb.to(probs.device), params)


def crf_memory_bytes(pixels: int, classes: int) -> int:
    """A bound on the CRF's working memory for one image, in bytes: (2304 + 72·classes) per
    pixel. Measured (peak resident memory added by ``dense_crf``, deeplab_v2, 2 classes at
    512×512, 11 and 21 at 360×480 and 720×960) on pictures of smoothly varying random
    colours — an appearance lattice of 5.4 vertices per pixel, near the most there can be
    (6) — it is 2050 + 62·classes; on a real CamVid picture (11 classes) 1211."""
    return pixels * (2304 + 72 * classes)


__all__ = [
    "DEFAULT_PRESET",
    "EXACT_MAX_PIXELS",
    "PRESETS",
    "CRFParams",
    "DenseCRF",
    "PermutohedralLattice",
    "crf_memory_bytes",
    "crf_name",
    "dense_crf",
    "refine_with_crf",
    "resolve_crf",
]
