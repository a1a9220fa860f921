from __future__ import annotations

import torch

from diffsight.training.data_order import DataOrder


def test_each_epoch_is_a_permutation_and_batches_tile_the_stream() -> None:
    order = DataOrder(n=10, batch_size=4, seed=3)
    stream = torch.cat([order.batch(step) for step in range(5)])  # 20 positions = 2 epochs
    assert sorted(stream[:10].tolist()) == list(range(10))
    assert sorted(stream[10:].tolist()) == list(range(10))
    assert not torch.equal(stream[:10], stream[10:])  # a fresh order per epoch


def test_order_is_a_pure_function_of_seed_and_step() -> None:
    a, b = DataOrder(37, 8, seed=5), DataOrder(37, 8, seed=5)
    for step in (0, 3, 11, 50, 4):  # any access order
        assert torch.equal(a.batch(step), b.batch(step))
    assert not torch.equal(DataOrder(37, 8, seed=6).batch(0), a.batch(0))


def test_batch_larger_than_dataset_wraps_over_epochs() -> None:
    order = DataOrder(n=3, batch_size=7, seed=0)
    batch = order.batch(0)
    assert batch.shape == (7,)
    assert sorted(batch[:3].tolist()) == [0, 1, 2]
    assert order.epoch_of(3) == 7.0
