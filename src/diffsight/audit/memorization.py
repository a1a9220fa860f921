"""Memorization audit: is a generated sample a copy of a training image? (Carlini et al. 2023, sec. 5.1).

The relative-distance test of Carlini et al., "Extracting Training Data from Diffusion Models" (USENIX Security
2023, eq. 1) compares a sample's nearest training image with its typical neighbours:

    l(x) = d(x, y_1) / (alpha * mean_{i <= n} d(x, y_i)),     x is a copy when l(x) < delta

with alpha = 0.5, n = 50 and delta = 1/3 (Carlini et al., CIFAR-10), where y_1..y_n are the n training images
nearest to x (y_1 included in the mean) and d is the Euclidean distance. delta matters: with delta = 1 (nearest
closer than half the mean) 11% of the 180 digits the shipped model never saw are "copies", against none at 1/3.
The ratio asks whether the nearest neighbour is *much* closer than the others, so a bland image close to many
training images is not a copy, and a copy of one image is one however far the data is spread.

The test runs in pixels, in a feature space when given (``features``, e.g. the shipped classifier's
``FactorClassifier.features``) and on tiles: the image is cut into a grid of tiles, each tile position is
searched on its own, and the sample's tiled ratio is the *smallest* per-tile ratio, so one copied tile (part of a
training image pasted into a new one) flags it (the per-patch distance of Carlini et al. sec. 4.2 and the
split-image retrieval of Somepalli et al., CVPR 2023). Taking the largest per-tile ratio instead would flag only
images copied everywhere, which the whole-image test already catches. Tiles must hold enough pixels to make a
match meaningful: on 8x8 digits, 4x4 quarters of never-seen digits match a training quarter exactly 1-2% of the
time, so the default grid is top and bottom halves, ``(2, 1)``.

Thresholds are calibrated on known answers (shared/research/xai.md, sec. 17, check 6): the empirical oracle
memorizes by construction (positive control) and a Gaussian fitted to the data cannot copy (negative control).
:meth:`MemorizationAudit.calibrate` stores the chosen thresholds, both controls' flag rates, alpha, n and the
data fingerprint as a JSON-ready dict that travels with every audit result.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffsight.audit.neighbours import embed_batches, nearest_neighbours, tiled_neighbours
from diffsight.errors import DiffsightError, ShapeError
from diffsight.oracles import EmpiricalOracle, GaussianOracle
from diffsight.sampling.generate import generate_samples
from diffsight.sampling.schedules import karras_sigmas

__all__ = [
    "MemorizationAudit",
    "MemorizationResult",
    "RatioTest",
    "choose_threshold",
    "control_samples",
    "data_fingerprint",
    "relative_distance",
]

Features = Callable[[torch.Tensor], torch.Tensor]
VERDICTS = ("copy", "partial copy", "novel")


def data_fingerprint(train: torch.Tensor) -> str:
    """SHA-256 of the training tensor's shape and float32 values (equals ``TrainingData.fingerprint()`` for data
    without labels or factors)."""
    digest = hashlib.sha256()
    digest.update(str(tuple(train.shape)).encode())
    digest.update(np.ascontiguousarray(train.detach().cpu().numpy(), dtype=np.float32).tobytes())
    return digest.hexdigest()


def relative_distance(distances: torch.Tensor, n: int, alpha: float = 0.5) -> torch.Tensor:
    """Carlini et al.'s l = d_1 / (alpha * mean(d_1..d_n)) per row of ascending distances (Q, >= n).

    When the n nearest are all at distance 0 (e.g. a blank tile shared by many training images) the nearest is
    not special, so l is 1 / alpha (as for n equidistant neighbours), not 0/0.
    """
    if distances.ndim != 2 or distances.shape[1] < n or n < 1:
        raise ShapeError(f"need ascending distances shaped (Q, >= {n}), got {tuple(distances.shape)}")
    mean = distances[:, :n].mean(1)  # (Q,)
    ratio = torch.where(mean > 0, distances[:, 0] / mean.clamp_min(torch.finfo(mean.dtype).tiny), 1.0)
    return ratio / alpha


def choose_threshold(positive: torch.Tensor, negative: torch.Tensor, *, prefer: float = 1 / 3) -> tuple[float, float]:
    """(threshold, balanced accuracy) of the rule ``ratio < threshold`` that best separates two controls.

    Positives (copies) should fall below, negatives above. ``prefer`` (the paper's delta) is kept when it reaches
    the best balanced accuracy ``(TPR + TNR) / 2``; otherwise, as balanced accuracy is constant between
    consecutive observed ratios, the midpoint of the best gap nearest ``prefer`` is taken.
    """
    pos, neg = positive.double().reshape(-1), negative.double().reshape(-1)
    if pos.numel() == 0 or neg.numel() == 0:
        raise DiffsightError("calibration needs at least one positive and one negative control sample")
    values = torch.unique(torch.cat([pos, neg]))  # sorted
    low, high = values[:1] - 1e-9, values[-1:] + 1e-9
    candidates = torch.cat([low, (values[1:] + values[:-1]) / 2, high])  # (M + 1,)
    tpr = (pos.unsqueeze(0) < candidates.unsqueeze(1)).double().mean(1)  # (M + 1,)
    tnr = (neg.unsqueeze(0) >= candidates.unsqueeze(1)).double().mean(1)  # (M + 1,)
    balanced = (tpr + tnr) / 2
    best = balanced.max()
    at_prefer = 0.5 * (float((pos < prefer).double().mean()) + float((neg >= prefer).double().mean()))
    if at_prefer >= float(best) - 1e-12:
        return float(prefer), at_prefer
    tied = torch.nonzero(balanced >= best - 1e-12).reshape(-1)
    pick = tied[torch.argmin((candidates[tied] - prefer).abs())]
    return float(candidates[pick]), float(best)


@dataclass(frozen=True)
class RatioTest:
    """One relative-distance test over Q samples.

    Attributes:
        name: ``"pixels"``, ``"features"`` or ``"tiles"``.
        ratio: (Q,) Carlini's l = d_1 / (alpha * mean of the n nearest) (tiles: the smallest per-tile l).
        threshold: a sample is flagged when its ratio is below this.
        flagged: (Q,) bool.
        nearest: (Q, show) indices of the nearest training images (tiles: at the tile that decided).
        nearest_distance: (Q, show) their Euclidean distances (tiles: between those tiles).
        tile: (Q,) the tile (row by row) with the smallest ratio, for the tiled test; None otherwise.
    """

    name: str
    ratio: torch.Tensor
    threshold: float
    flagged: torch.Tensor
    nearest: torch.Tensor
    nearest_distance: torch.Tensor
    tile: torch.Tensor | None = None

    @property
    def share_flagged(self) -> float:
        return float(self.flagged.double().mean())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "threshold": self.threshold,
            "share_flagged": self.share_flagged,
            "ratio": [round(float(r), 6) for r in self.ratio],
            "flagged": [bool(f) for f in self.flagged],
            "nearest": self.nearest.tolist(),
            "nearest_distance": [[round(float(d), 6) for d in row] for row in self.nearest_distance],
        }
        if self.tile is not None:
            out["tile"] = self.tile.tolist()
        return out


@dataclass(frozen=True)
class MemorizationResult:
    """The audit of Q samples: every test, one verdict per sample, and the settings that produced them.

    Attributes:
        tests: test name -> :class:`RatioTest` (``pixels`` always; ``features`` and ``tiles`` when enabled).
        verdicts: per sample, ``"copy"`` (a whole-image test flags it), ``"partial copy"`` (only the tiled test
            does) or ``"novel"``.
        settings: alpha, delta, n, grid, show, the thresholds, the data fingerprint and size, and the calibration
            (None if uncalibrated).
    """

    tests: dict[str, RatioTest]
    verdicts: tuple[str, ...]
    settings: dict[str, Any]

    @property
    def copies(self) -> torch.Tensor:
        """(Q,) bool: flagged by a whole-image test (pixels or features)."""
        return torch.tensor([v == "copy" for v in self.verdicts], dtype=torch.bool)

    @property
    def flagged(self) -> torch.Tensor:
        """(Q,) bool: flagged by any test, tiles included."""
        return torch.tensor([v != "novel" for v in self.verdicts], dtype=torch.bool)

    @property
    def share_copies(self) -> float:
        return float(self.copies.double().mean())

    @property
    def share_flagged(self) -> float:
        return float(self.flagged.double().mean())

    @property
    def nearest(self) -> torch.Tensor:
        """(Q, show) indices of each sample's nearest training images in pixels (the ones to show)."""
        return self.tests["pixels"].nearest

    def summary(self) -> str:
        q = len(self.verdicts)
        copies, partial = self.verdicts.count("copy"), self.verdicts.count("partial copy")
        state = "calibrated" if self.settings.get("calibration") else "uncalibrated (delta)"
        return (
            f"{copies} of {q} samples ({100 * copies / q:.1f}%) are copies of training images and {partial} "
            f"partial copies (relative distance, n={self.settings['n']}, {state} thresholds)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "relative distance (Carlini et al. 2023)",
            "n_samples": len(self.verdicts),
            "share_copies": self.share_copies,
            "share_flagged": self.share_flagged,
            "verdicts": list(self.verdicts),
            "tests": {name: test.to_json() for name, test in self.tests.items()},
            "settings": self.settings,
            "summary": self.summary(),
        }


def control_samples(
    train: torch.Tensor,
    n: int,
    *,
    sampler: str = "heun",
    steps: int = 20,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) control samples, each (n, *event), drawn with diffsight's samplers.

    Positive: the empirical oracle of ``train`` (its samples land on training images). Negative: the Gaussian
    with the data's mean and covariance (it never copies). Both use the same Karras schedule and sampler.
    """
    if n < 1:
        raise DiffsightError(f"n must be at least 1, got {n}")
    event = tuple(train.shape[1:])
    flat = train.reshape(train.shape[0], -1).double()  # (N, D)
    sigmas = karras_sigmas(steps, sigma_min, sigma_max)
    gaussian = GaussianOracle(flat.mean(0).reshape(event), torch.cov(flat.T).reshape(flat.shape[1], -1))
    memorizer = EmpiricalOracle(train.float())
    positive = generate_samples(memorizer, event, n, sampler=sampler, sigmas=sigmas.float(), generator=generator)
    negative = generate_samples(gaussian, event, n, sampler=sampler, sigmas=sigmas.float(), generator=generator)
    return positive, negative


class MemorizationAudit:
    """Relative-distance memorization tests of generated samples against a training set.

    Args:
        train: the training images (N, C, H, W) (or vectors (N, D); the tiled test then is off).
        features: a callable embedding a batch of images into (B, F), e.g. ``classifier.features``; adds the
            feature-space test. The training set is embedded once, here.
        alpha: the scale of the mean distance in l (Carlini et al.: 0.5).
        delta: the uncalibrated threshold on l (Carlini et al.: 1/3).
        n: the number of nearest training images averaged (Carlini et al.: 50); at most N.
        grid: the tiled test's grid, ``(rows, cols)`` or one int for both (2: four quarters); the default
            ``(2, 1)`` cuts top and bottom halves; None turns the tiled test off.
        show: nearest training images kept per sample (to display).
        query_chunk, train_chunk: block sizes of the nearest-neighbour search (memory bound).
        batch_size: images per ``features`` call.
        calibration: a dict from :meth:`calibrate` (e.g. read back from JSON): its thresholds are used after its
            fingerprint, n, alpha and grid are checked against this audit's.
    """

    def __init__(
        self,
        train: torch.Tensor,
        *,
        features: Features | None = None,
        alpha: float = 0.5,
        delta: float = 1 / 3,
        n: int = 50,
        grid: int | tuple[int, int] | None = (2, 1),
        show: int = 5,
        query_chunk: int = 1024,
        train_chunk: int = 8192,
        batch_size: int = 1024,
        calibration: dict[str, Any] | None = None,
    ) -> None:
        if train.ndim < 2 or train.shape[0] < 2:
            raise ShapeError(f"train must be shaped (N, ...) with N >= 2, got {tuple(train.shape)}")
        if not 1 <= n <= train.shape[0]:
            raise DiffsightError(
                f"n={n} must lie in [1, {train.shape[0]}]: the training set has {train.shape[0]} items"
            )
        if not 0 < alpha < 1:
            raise DiffsightError(f"alpha must lie in (0, 1), got {alpha}")
        if not delta > 0:
            raise DiffsightError(f"delta must be positive, got {delta}")
        if grid is not None and train.ndim != 4:
            raise DiffsightError("the tiled test needs images (N, C, H, W); pass grid=None to turn it off")
        self.train = train
        self.features = features
        self.alpha, self.delta, self.n = float(alpha), float(delta), int(n)
        self.grid = None if grid is None else ((grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1])))
        self.show = int(max(1, min(show, n)))
        self.query_chunk, self.train_chunk, self.batch_size = int(query_chunk), int(train_chunk), int(batch_size)
        self.fingerprint = data_fingerprint(train)
        self.train_features = None if features is None else embed_batches(features, train, self.batch_size)
        self.thresholds = {name: self.delta for name in self.test_names}
        self.calibration: dict[str, Any] | None = None
        if calibration is not None:
            self.use_calibration(calibration)

    @property
    def test_names(self) -> tuple[str, ...]:
        return (
            ("pixels",)
            + (("features",) if self.features is not None else ())
            + (("tiles",) if self.grid is not None else ())
        )

    def _check(self, samples: torch.Tensor) -> None:
        if samples.ndim != self.train.ndim or samples.shape[1:] != self.train.shape[1:] or samples.shape[0] == 0:
            raise ShapeError(
                f"samples must be shaped (Q, {', '.join(map(str, self.train.shape[1:]))}) like the training set, "
                f"got {tuple(samples.shape)}"
            )

    def ratios(self, samples: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]]:
        """Test name -> (ratio (Q,), nearest (Q, show), distances (Q, show), tile (Q,) or None), no thresholds."""
        self._check(samples)
        k = max(self.n, self.show)
        chunks = {"query_chunk": self.query_chunk, "train_chunk": self.train_chunk}
        out: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]] = {}
        flat_q, flat_t = samples.reshape(samples.shape[0], -1), self.train.reshape(self.train.shape[0], -1)
        nb = nearest_neighbours(flat_q.to(flat_t.device), flat_t, k, **chunks)
        out["pixels"] = (
            relative_distance(nb.distances, self.n, self.alpha),
            nb.indices[:, : self.show],
            nb.distances[:, : self.show],
            None,
        )
        if self.features is not None and self.train_features is not None:
            feats = embed_batches(self.features, samples, self.batch_size).to(self.train_features.device)
            nb = nearest_neighbours(feats, self.train_features, k, **chunks)
            out["features"] = (
                relative_distance(nb.distances, self.n, self.alpha),
                nb.indices[:, : self.show],
                nb.distances[:, : self.show],
                None,
            )
        if self.grid is not None:
            per_tile = tiled_neighbours(samples.to(self.train.device), self.train, k, grid=self.grid, **chunks)
            ratios = torch.stack([relative_distance(t.distances, self.n, self.alpha) for t in per_tile], 1)  # (Q, T)
            best, which = ratios.min(1)  # (Q,), (Q,)
            idx = torch.stack([t.indices[:, : self.show] for t in per_tile], 1)  # (Q, T, show)
            dist = torch.stack([t.distances[:, : self.show] for t in per_tile], 1)  # (Q, T, show)
            pick = which.reshape(-1, 1, 1).expand(-1, 1, self.show)  # (Q, 1, show)
            out["tiles"] = (best, idx.gather(1, pick).squeeze(1), dist.gather(1, pick).squeeze(1), which)
        return out

    def audit(self, samples: torch.Tensor) -> MemorizationResult:
        """Run every test on samples (Q, *event) and give each sample a verdict."""
        tests = {
            name: RatioTest(
                name=name,
                ratio=ratio,
                threshold=self.thresholds[name],
                flagged=ratio < self.thresholds[name],
                nearest=nearest,
                nearest_distance=distance,
                tile=tile,
            )
            for name, (ratio, nearest, distance, tile) in self.ratios(samples).items()
        }
        whole = torch.zeros(samples.shape[0], dtype=torch.bool)
        for name in ("pixels", "features"):
            if name in tests:
                whole |= tests[name].flagged.cpu()
        part = tests["tiles"].flagged.cpu() if "tiles" in tests else torch.zeros_like(whole)
        verdicts = tuple(
            "copy" if w else "partial copy" if p else "novel"
            for w, p in zip(whole.tolist(), part.tolist(), strict=True)
        )
        return MemorizationResult(tests=tests, verdicts=verdicts, settings=self.settings())

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings of this audit, with its calibration."""
        return {
            "alpha": self.alpha,
            "delta": self.delta,
            "n": self.n,
            "grid": None if self.grid is None else list(self.grid),
            "show": self.show,
            "tests": list(self.test_names),
            "thresholds": dict(self.thresholds),
            "n_train": int(self.train.shape[0]),
            "data_fingerprint": self.fingerprint,
            "calibration": self.calibration,
        }

    def calibrate(
        self,
        positive: torch.Tensor,
        negative: torch.Tensor,
        *,
        method: str = "balanced",
        sources: Sequence[str] = ("positive control", "negative control"),
    ) -> dict[str, Any]:
        """Set every test's threshold from a positive (copying) and a negative (novel) control; returns the record.

        ``method="balanced"`` keeps delta if it separates the controls best, else picks the threshold that
        maximises their balanced accuracy (see :func:`choose_threshold`); ``method="delta"`` keeps delta and only
        measures the controls. The
        record (thresholds, each control's flag rate per test, balanced accuracy, alpha, n, grid, data
        fingerprint, sources) is stored in ``self.calibration`` and in every later result's settings.
        """
        if method not in ("balanced", "delta"):
            raise DiffsightError(f"method must be 'balanced' or 'delta', got {method!r}")
        pos, neg = self.ratios(positive), self.ratios(negative)
        tests: dict[str, Any] = {}
        for name in self.test_names:
            p, q = pos[name][0].cpu(), neg[name][0].cpu()
            threshold, balanced = choose_threshold(p, q, prefer=self.delta)
            if method == "delta":
                threshold = self.delta
                balanced = 0.5 * (float((p < threshold).double().mean()) + float((q >= threshold).double().mean()))
            tests[name] = {
                "threshold": threshold,
                "positive_flag_rate": float((p < threshold).double().mean()),
                "negative_flag_rate": float((q < threshold).double().mean()),
                "balanced_accuracy": balanced,
                "positive_ratio_max": float(p.max()),
                "negative_ratio_min": float(q.min()),
            }
        record = {
            "method": method,
            "alpha": self.alpha,
            "delta": self.delta,
            "n": self.n,
            "grid": None if self.grid is None else list(self.grid),
            "data_fingerprint": self.fingerprint,
            "n_positive": int(positive.shape[0]),
            "n_negative": int(negative.shape[0]),
            "positive": str(sources[0]),
            "negative": str(sources[1]),
            "tests": tests,
        }
        self.use_calibration(record)
        return record

    def calibrate_with_oracles(
        self,
        n_samples: int = 200,
        *,
        sampler: str = "heun",
        steps: int = 20,
        method: str = "balanced",
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Calibrate on the empirical oracle of the training set (positive) and its Gaussian fit (negative)."""
        positive, negative = control_samples(self.train, n_samples, sampler=sampler, steps=steps, generator=generator)
        where = f"{sampler}, {steps} steps, {n_samples} samples"
        return self.calibrate(
            positive,
            negative,
            method=method,
            sources=(f"empirical oracle of the training set ({where})", f"Gaussian fit of the training set ({where})"),
        )

    def use_calibration(self, record: dict[str, Any]) -> None:
        """Adopt a stored calibration after checking it was made for this data and these settings."""
        grid = None if self.grid is None else list(self.grid)
        expected = {"data_fingerprint": self.fingerprint, "n": self.n, "alpha": self.alpha, "grid": grid}
        for key, value in expected.items():
            if record.get(key) != value:
                raise DiffsightError(
                    f"the calibration was made with {key}={record.get(key)!r}, this audit has {value!r}; "
                    "recalibrate on this training set and these settings"
                )
        missing = [name for name in self.test_names if name not in record.get("tests", {})]
        if missing:
            raise DiffsightError(f"the calibration has no threshold for test(s) {missing}; recalibrate")
        thresholds = {name: float(record["tests"][name]["threshold"]) for name in self.test_names}
        if not all(math.isfinite(t) for t in thresholds.values()):
            raise DiffsightError("the calibration holds a non-finite threshold; recalibrate")
        self.thresholds = thresholds
        self.calibration = dict(record)
