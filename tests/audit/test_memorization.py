"""The memorization audit on known answers: oracles that copy and cannot copy, planted copies, an overfit model.

Controls (shared/research/xai.md, sec. 17, check 6): the empirical oracle's samples are training images, so
every one must be flagged; a Gaussian fitted to the data cannot copy, so (almost) none may be; the shipped
digits model and the 180 digits it never saw must pass; a tiny UNet trained on 16 digits until it memorizes
must fail.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from diffsight.audit.memorization import MemorizationAudit, choose_threshold, control_samples, relative_distance
from diffsight.audit.neighbours import nearest_neighbours, tile, tiled_neighbours
from diffsight.errors import DiffsightError
from diffsight.metrics.classifier_io import shipped_classifier
from diffsight.metrics.model_eval import heldout_data_of, training_data_of
from diffsight.models import load_model
from diffsight.sampling import generate_samples
from diffsight.training import train
from diffsight.training.config import config_from_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force(queries: torch.Tensor, train_set: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairwise differences at once, sorted by (distance, index): the unchunked reference."""
    d = (queries.double()[:, None, :] - train_set.double()[None, :, :]).square().sum(-1).sqrt()  # (Q, N)
    order = torch.sort(d, dim=1, stable=True).indices[:, :k]
    return d.gather(1, order), order


def test_chunked_search_returns_the_unchunked_neighbours_ties_included() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(100, 12, generator=g)
    train_set = torch.cat([base, base[:40], base[::7]])  # exact duplicates: ties must go to the lower index
    queries = torch.cat([torch.randn(30, 12, generator=g), base[:9] + 1e-7])
    ref_d, ref_i = brute_force(queries, train_set, 9)
    for q_chunk, t_chunk in [(5, 13), (1, 1), (64, 7), (10_000, 10_000)]:
        nb = nearest_neighbours(queries, train_set, 9, query_chunk=q_chunk, train_chunk=t_chunk)
        assert torch.equal(nb.indices, ref_i), (q_chunk, t_chunk)
        torch.testing.assert_close(nb.distances, ref_d, rtol=1e-12, atol=1e-12)
    with pytest.raises(DiffsightError, match="k must lie"):
        nearest_neighbours(queries, train_set, train_set.shape[0] + 1)


def test_tiles_are_cut_row_by_row_and_searched_per_position() -> None:
    image = torch.arange(2 * 4 * 6, dtype=torch.float64).reshape(1, 2, 4, 6)  # (1, C=2, H=4, W=6)
    quarters = tile(image, 2)  # (1, 4, 2*2*3)
    assert quarters.shape == (1, 4, 12)
    assert quarters[0, 1].tolist() == image[0, :, :2, 3:].reshape(-1).tolist()  # top right
    halves = tile(image, (2, 1))  # top and bottom
    assert halves[0, 1].tolist() == image[0, :, 2:, :].reshape(-1).tolist()
    g = torch.Generator().manual_seed(1)
    train_set, queries = torch.randn(50, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    per_tile = tiled_neighbours(queries, train_set, 3, grid=2, train_chunk=8)
    ref_d, ref_i = brute_force(tile(queries, 2)[:, 3], tile(train_set, 2)[:, 3], 3)
    assert torch.equal(per_tile[3].indices, ref_i)
    torch.testing.assert_close(per_tile[3].distances, ref_d)


def test_relative_distance_and_threshold_choice_have_known_answers() -> None:
    d = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.0, 4.0, 8.0]], dtype=torch.float64)
    # l = d1 / (alpha * mean of n=3): 1 / (0.5 * 2) = 1; all at 0 -> 1 / alpha; exact copy -> 0.
    assert relative_distance(d, 3, 0.5).tolist() == [1.0, 2.0, 0.0]
    separated = choose_threshold(torch.tensor([0.0, 0.01]), torch.tensor([1.2, 1.5]), prefer=1 / 3)
    assert separated == (1 / 3, 1.0)  # delta already separates the controls: kept
    threshold, balanced = choose_threshold(torch.tensor([0.5, 0.6, 0.7]), torch.tensor([0.2, 0.9, 1.0]), prefer=1 / 3)
    assert threshold == pytest.approx(0.8) and balanced == pytest.approx(0.5 * (1 + 2 / 3))


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    model = load_model("digits")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        samples = generate_samples(
            model.denoiser,
            model.event_shape,
            200,
            steps=20,
            sampler="dpmpp_2m",
            labels=torch.arange(200) % 10,
            generator=g,
        )
    return {"train": training_data_of(model).samples, "heldout": heldout_data_of(model).samples, "model": samples}


@pytest.fixture(scope="module")
def audit(digits: dict[str, torch.Tensor]) -> tuple[MemorizationAudit, dict, torch.Tensor, torch.Tensor]:
    """The audit of the shipped model's training split, in pixels, classifier features and halves, calibrated."""
    classifier = shipped_classifier("digits").eval()
    with torch.no_grad():
        memo = MemorizationAudit(digits["train"], features=classifier.features, query_chunk=128, train_chunk=500)
        positive, negative = control_samples(
            digits["train"], 200, sampler="heun", steps=20, generator=torch.Generator().manual_seed(0)
        )
        record = memo.calibrate(positive, negative)
    return memo, record, positive, negative


def test_controls_the_empirical_oracle_is_always_flagged_and_the_gaussian_fit_never(audit) -> None:
    memo, record, positive, negative = audit
    print("\ncalibration:", json.dumps(record["tests"], indent=1))
    for name in ("pixels", "features", "tiles"):
        assert record["tests"][name]["positive_flag_rate"] >= 0.99, name
        assert record["tests"][name]["negative_flag_rate"] <= 0.01, name
    with torch.no_grad():
        pos, neg = memo.audit(positive), memo.audit(negative)
    assert pos.share_copies >= 0.99 and neg.share_flagged <= 0.01
    assert json.loads(json.dumps(pos.to_json()))["settings"]["calibration"] == record
    # The record travels with the data it was made on, and refuses other data.
    assert MemorizationAudit(memo.train, calibration=record, grid=(2, 1)).thresholds["pixels"] == pytest.approx(
        record["tests"]["pixels"]["threshold"]
    )
    with pytest.raises(DiffsightError, match="recalibrate"):
        MemorizationAudit(memo.train[1:], calibration=record)


def test_the_shipped_model_and_never_seen_digits_are_not_copies(audit, digits) -> None:
    memo = audit[0]
    with torch.no_grad():
        model, heldout = memo.audit(digits["model"]), memo.audit(digits["heldout"])
    print(f"\nshipped model: {model.summary()}; per test {[(k, t.share_flagged) for k, t in model.tests.items()]}")
    print(f"held-out digits: {heldout.summary()}; per test {[(k, t.share_flagged) for k, t in heldout.tests.items()]}")
    assert model.share_flagged <= 0.02
    assert heldout.share_flagged <= 0.02


def test_a_planted_copy_is_found_and_a_half_copy_is_caught_by_tiles(audit, digits) -> None:
    memo = audit[0]
    train_set, fresh = digits["train"], digits["model"][:20].clone()
    planted = fresh.clone()
    planted[3] = train_set[321]  # an exact copy
    planted[7, :, :4] = train_set[654, :, :4]  # top half of a training image over a new digit's bottom half
    with torch.no_grad():
        result = memo.audit(planted)
    assert result.verdicts[3] == "copy" and int(result.nearest[3, 0]) == 321
    tiles = result.tests["tiles"]
    assert bool(tiles.flagged[7]) and int(tiles.tile[7]) == 0 and int(tiles.nearest[7, 0]) == 654
    assert result.verdicts[7] in ("copy", "partial copy")
    print(f"\nhalf copy: pixels l = {float(result.tests['pixels'].ratio[7]):.3f}, verdict {result.verdicts[7]!r}")
    others = [i for i in range(20) if i not in (3, 7)]
    assert all(result.verdicts[i] == "novel" for i in others)


@pytest.mark.slow  # about 70 s of training on one thread: 500 steps (19 s) memorize too little (3% flagged)
def test_a_model_trained_to_overfit_16_digits_is_flagged(audit, digits, tmp_path_factory) -> None:
    memo = audit[0]
    folder: Path = tmp_path_factory.mktemp("overfit")
    np.savez(folder / "digits16.npz", x=digits["train"][:16].numpy())  # floats in [-1, 1], kept as given
    config = config_from_dict(
        {
            "name": "overfit16",
            "data": {"name": str(folder / "digits16.npz")},
            "model": {"preset": "tiny", "sigma_data": 0.75},
            "train": {
                "steps": 1500,
                "batch_size": 16,
                "lr": 2e-3,
                "warmup_steps": 20,
                "ema_decay": 0.0,
                "sample_every": 0,
                "checkpoint_every": 1500,
                "log_every": 100,
            },
        }
    )
    start = time.perf_counter()
    model = load_model(train(config, folder / "run", progress=False).model_dir)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        samples = generate_samples(
            model.denoiser, model.event_shape, 64, steps=20, sampler="heun", generator=torch.Generator().manual_seed(2)
        )
        result = memo.audit(samples)
    print(f"\noverfit model (trained in {seconds:.1f} s): {result.summary()}")
    assert result.share_copies >= 0.5
    assert bool((result.nearest[result.copies, 0] < 16).all())  # the copies are of its own 16 digits
