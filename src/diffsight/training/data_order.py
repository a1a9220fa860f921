"""Seedable data order: the training stream is an endless concatenation of seeded permutations.

Position ``p`` of the stream is item ``perm_e[p mod N]`` of epoch ``e = p // N``, with ``perm_e`` drawn from a
generator seeded by ``(seed, e)``. The batch of step ``s`` is positions ``[s B, (s + 1) B)``. So the data order is
a pure function of (seed, N, B, step): resuming at step ``s`` needs no saved iterator state, and every process
of a multi-process run can compute the global batch and take its own slice.
"""

from __future__ import annotations

import torch

__all__ = ["DataOrder"]


class DataOrder:
    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError("need n >= 1 and batch_size >= 1")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._cache: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._cache[epoch] = torch.randperm(self.n, generator=generator)
        return self._cache[epoch]

    def batch(self, step: int) -> torch.Tensor:
        """Indices (batch_size,) of the global batch used at optimizer step ``step`` (0-based)."""
        positions = torch.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs = positions // self.n
        out = torch.empty(self.batch_size, dtype=torch.long)
        for epoch in epochs.unique().tolist():
            mask = epochs == epoch
            out[mask] = self.permutation(int(epoch))[positions[mask] % self.n]
        return out

    def epoch_of(self, step: int) -> float:
        return step * self.batch_size / self.n
