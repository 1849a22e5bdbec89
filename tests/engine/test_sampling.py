import torch

from atrous.engine.sampling import KeyedAugmentation, ResumableBatchSampler, ShardSampler


def _take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_resumed_sampler_continues_the_same_stream():
    full = _take(ResumableBatchSampler(10, 3, seed=1), 7)
    assert _take(ResumableBatchSampler(10, 3, seed=1, start_batch=4), 3) == full[4:]


def test_each_epoch_is_a_permutation_and_ranks_do_not_overlap():
    a = _take(ResumableBatchSampler(12, 2, seed=0, rank=0, world_size=2), 3)
    b = _take(ResumableBatchSampler(12, 2, seed=0, rank=1, world_size=2), 3)
    indices = sorted(k % 12 for batch in a + b for k in batch)
    assert indices == list(range(12))


def test_shard_sampler_covers_every_sample_exactly_once():
    shards = [list(ShardSampler(7, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(7))


def test_keyed_augmentation_depends_on_the_key_only():
    data = [(torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(4, 4, dtype=torch.int64))] * 5

    def noisy(image, mask):
        return image.float() + torch.rand(1), mask

    keyed = KeyedAugmentation(data, noisy, seed=3)
    first = keyed[7][0]
    torch.rand(10)  # the global stream moving on does not matter
    assert torch.equal(keyed[7][0], first)
    assert not torch.equal(keyed[2][0], first)  # same sample (7 % 5), another epoch
    state = torch.get_rng_state()
    keyed[1]
    assert torch.equal(torch.get_rng_state(), state)  # and is left untouched
