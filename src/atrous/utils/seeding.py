"""One seed per (run seed, item key): what makes every augmented sample the same whenever and
wherever it is loaded — in any worker, rank, or after a resume."""

from __future__ import annotations

# 2³² / φ: consecutive run seeds land far apart, so (seed, key) and (seed + 1, key') collide
# only for keys about 2.6 billion apart.
_GOLDEN = 0x9E3779B1


def keyed_seed(seed: int, key: int) -> int:
    """The seed of item ``key`` under run seed ``seed``, in [0, 2⁶³) as ``torch.manual_seed`` takes."""
    return (seed * _GOLDEN + key) % (2**63)
