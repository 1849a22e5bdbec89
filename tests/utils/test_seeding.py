"""keyed_seed: the per-item seed that KeyedAugmentation and copy-paste draw from. Its values
must never change: runs resumed across versions rely on every key drawing what it drew."""

import torch

from atrous.utils.seeding import keyed_seed


def test_keyed_seed_values_are_fixed():
    assert keyed_seed(0, 5) == 5
    assert keyed_seed(1, 0) == 2654435761 == 0x9E3779B1
    assert keyed_seed(3, 7) == 3 * 2654435761 + 7
    assert keyed_seed(2**62, 1) == (2**62 * 2654435761 + 1) % 2**63  # always a seed torch takes
    torch.manual_seed(keyed_seed(2**62, 1))


def test_neighbouring_run_seeds_do_not_share_keys():
    first = {keyed_seed(0, key) for key in range(10_000)}
    second = {keyed_seed(1, key) for key in range(10_000)}
    assert not first & second
