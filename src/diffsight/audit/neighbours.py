"""Exact k-nearest neighbours of query samples among a training set, chunked so large training sets fit in memory.

The squared Euclidean distance is expanded as ``|a - b|^2 = |a|^2 - 2 a.b + |b|^2`` and evaluated in float64 one
(query chunk x training chunk) block at a time; a running top-k per query is merged block by block, so memory is
``query_chunk x (train_chunk + k)`` whatever the sizes (100k training images are fine). The expansion cancels
badly for near-copies and its last bits depend on where a row sits in a block, so the search keeps ``k + margin``
candidates, recomputes their distances directly as ``sum (a - b)^2`` (exact, and independent of the chunking) and
keeps the k nearest, ties to the lower training index. Chunked and unchunked searches therefore return the same
neighbours unless more than ``margin`` training items lie within float64 rounding of the k-th distance.

Any feature space works: pass ``features``, a callable that embeds a batch of images, e.g. the shipped
classifier's ``FactorClassifier.features`` (the embedding of Carlini et al. 2023 and Somepalli et al. 2023 is a
network's; pixels are the special case ``features=None``).

The tiled variant cuts every image into a grid of tiles and searches each tile position separately (tile t of
a sample against tile t of every training image), the per-patch distance of Carlini et al. 2023 (sec. 4.2) and
Somepalli et al. 2023's split-image retrieval: it sees a copy of part of an image that the whole-image distance
dilutes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffsight.errors import DiffsightError, ShapeError

__all__ = ["Neighbours", "embed_batches", "nearest_neighbours", "tile", "tiled_neighbours"]

Features = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Neighbours:
    """The k nearest training items of each query.

    Attributes:
        distances: (Q, k) float64 Euclidean distances, ascending along k.
        indices: (Q, k) int64 row indices into the training set.
    """

    distances: torch.Tensor
    indices: torch.Tensor


def embed_batches(features: Features | None, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Flat vectors (N, F) of ``x`` (N, ...): ``features`` applied ``batch_size`` items at a time, or the pixels.

    The embedding runs in the caller's grad mode (wrap in ``torch.no_grad()`` to save memory); outputs are
    detached and moved to ``x``'s device.
    """
    if batch_size < 1:
        raise DiffsightError(f"batch_size must be at least 1, got {batch_size}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ShapeError(f"expected a non-empty batch shaped (N, ...), got {tuple(x.shape)}")
    if features is None:
        return x.reshape(x.shape[0], -1)  # (N, *event) -> (N, D)
    out = []
    for chunk in x.split(batch_size):
        h = features(chunk)
        if not isinstance(h, torch.Tensor) or h.shape[0] != chunk.shape[0]:
            raise ShapeError("features must return a tensor with one row per input image")
        out.append(h.detach().reshape(chunk.shape[0], -1).to(x.device))  # (b, F)
    return torch.cat(out)


def _check_pair(queries: torch.Tensor, train: torch.Tensor, k: int, query_chunk: int, train_chunk: int) -> None:
    if queries.ndim != 2 or train.ndim != 2:
        raise ShapeError(
            f"queries and train must be flat (Q, D) and (N, D); got {tuple(queries.shape)} and {tuple(train.shape)}"
        )
    if queries.shape[1] != train.shape[1]:
        raise ShapeError(f"queries have {queries.shape[1]} values per item but train has {train.shape[1]}")
    if not 1 <= k <= train.shape[0]:
        raise DiffsightError(f"k must lie in [1, {train.shape[0]}] (the training set size), got {k}")
    if query_chunk < 1 or train_chunk < 1:
        raise DiffsightError(
            f"chunk sizes must be at least 1, got query_chunk={query_chunk}, train_chunk={train_chunk}"
        )
    if not (torch.isfinite(queries).all() and torch.isfinite(train).all()):
        raise DiffsightError("queries or training data hold NaN or infinite values; the sampler diverged?")


def _merge(
    best_d: torch.Tensor, best_i: torch.Tensor, d: torch.Tensor, i: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the k smallest of the running best (lower indices) and a new block, ties to the lower index."""
    cand_d = torch.cat([best_d, d], dim=1)  # (q, k + t)
    cand_i = torch.cat([best_i, i], dim=1)  # (q, k + t)
    # A stable sort keeps earlier columns first among equal distances; columns are in ascending index order.
    order = torch.sort(cand_d, dim=1, stable=True).indices[:, :k]
    return cand_d.gather(1, order), cand_i.gather(1, order)


def nearest_neighbours(
    queries: torch.Tensor,
    train: torch.Tensor,
    k: int,
    *,
    query_chunk: int = 1024,
    train_chunk: int = 8192,
    margin: int = 16,
) -> Neighbours:
    """Exact k nearest rows of ``train`` (N, D) for every row of ``queries`` (Q, D), by Euclidean distance.

    Works block by block: at most ``query_chunk x train_chunk`` float64 squared distances are held at once.
    ``margin`` extra candidates are re-ranked by distances recomputed directly from the pairs, in float64.
    """
    _check_pair(queries, train, k, query_chunk, train_chunk)
    n = train.shape[0]
    keep = min(n, k + max(0, int(margin)))
    train_sq = torch.cat([t.double().square().sum(1) for t in train.split(train_chunk)])  # (N,)
    all_d, all_i = [], []
    for q in queries.split(query_chunk):
        q64 = q.double()  # (q, D)
        q_sq = q64.square().sum(1, keepdim=True)  # (q, 1)
        best_d = torch.full((q.shape[0], 0), torch.inf, dtype=torch.float64, device=q.device)
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64, device=q.device)
        for start in range(0, n, train_chunk):
            block = train[start : start + train_chunk].double()  # (t, D)
            d2 = (q_sq - 2.0 * q64 @ block.T + train_sq[start : start + block.shape[0]]).clamp_min(0)  # (q, t)
            idx = torch.arange(start, start + block.shape[0], device=q.device).expand(q.shape[0], -1)  # (q, t)
            best_d, best_i = _merge(best_d, best_i, d2, idx, keep)
        # Exact distances of the candidates, then the k nearest (the expansion may swap near-equal ones).
        picked = train[best_i.reshape(-1)].double().reshape(q.shape[0], keep, -1)  # (q, keep, D)
        exact = (picked - q64.unsqueeze(1)).square().sum(-1).sqrt()  # (q, keep)
        by_index = torch.sort(best_i, dim=1).indices  # order by index, then stably by distance
        exact, best_i = exact.gather(1, by_index), best_i.gather(1, by_index)
        order = torch.sort(exact, dim=1, stable=True).indices[:, :k]
        all_d.append(exact.gather(1, order))
        all_i.append(best_i.gather(1, order))
    return Neighbours(distances=torch.cat(all_d), indices=torch.cat(all_i))


def _grid(grid: int | tuple[int, int]) -> tuple[int, int]:
    rows, cols = (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))
    if rows < 1 or cols < 1:
        raise DiffsightError(f"grid must be a positive int or (rows, cols), got {grid!r}")
    return rows, cols


def tile(images: torch.Tensor, grid: int | tuple[int, int] = 2) -> torch.Tensor:
    """Cut images (B, C, H, W) into a grid of non-overlapping tiles: (B, rows*cols, C*(H/rows)*(W/cols)).

    ``grid`` is ``rows = cols`` (2: four quarters) or ``(rows, cols)`` (``(2, 1)``: top and bottom halves).
    Tiles are numbered row by row (tile 0 top-left). H and W must be divisible by rows and cols.
    """
    if images.ndim != 4:
        raise ShapeError(f"tiling needs images shaped (B, C, H, W), got {tuple(images.shape)}")
    rows, cols = _grid(grid)
    b, c, h, w = images.shape
    if h % rows or w % cols:
        raise DiffsightError(f"a {rows}x{cols} grid must divide the image size {h}x{w}; pick divisors such as 2")
    th, tw = h // rows, w // cols
    x = images.reshape(b, c, rows, th, cols, tw)  # (B, C, rows, th, cols, tw)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, th, tw)
    return x.reshape(b, rows * cols, c * th * tw)  # (B, T, C*th*tw)


def tiled_neighbours(
    queries: torch.Tensor,
    train: torch.Tensor,
    k: int,
    *,
    grid: int | tuple[int, int] = 2,
    query_chunk: int = 1024,
    train_chunk: int = 8192,
) -> list[Neighbours]:
    """k nearest training tiles for every tile position: one :class:`Neighbours` (Q, k) per tile, row by row.

    Tile t of each query image (Q, C, H, W) is compared with tile t of every training image (N, C, H, W) only, so
    index ``j`` in tile t's result is training image ``j``.
    """
    if queries.ndim != 4 or train.ndim != 4 or queries.shape[1:] != train.shape[1:]:
        raise ShapeError(
            f"tiled search needs images of one shape (Q, C, H, W) and (N, C, H, W); got {tuple(queries.shape)} "
            f"and {tuple(train.shape)}"
        )
    q_tiles, t_tiles = tile(queries, grid), tile(train, grid)  # (Q, T, P), (N, T, P)
    return [
        nearest_neighbours(
            q_tiles[:, t].contiguous(),
            t_tiles[:, t].contiguous(),
            k,
            query_chunk=query_chunk,
            train_chunk=train_chunk,
        )
        for t in range(q_tiles.shape[1])
    ]
