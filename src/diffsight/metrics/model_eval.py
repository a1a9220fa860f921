"""Evaluate a trained model end to end: sample it, then score the samples against its own training data.

The real data is reloaded from what the model folder records (and checked against its fingerprint), split in
two seeded halves: the *reference* half that samples are compared with, and the *floor* half, whose score at the
same n is the best a perfect generator could reach. Conditional models are sampled with the floor half's labels,
so class histograms compare like with like and accuracy is measured against the requested class.

Features come from the shipped classifier of the dataset (digits, shapes). For other data there is no trained
feature network, so FD and precision/recall run on pixels (average-pooled to at most 16x16), and the report
says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from diffsight.data import TrainingData, load_data
from diffsight.errors import DiffsightError
from diffsight.metrics.classifier_io import shipped_classifier, shipped_names
from diffsight.metrics.frechet import frechet_distance
from diffsight.metrics.precision_recall import precision_recall
from diffsight.metrics.quality import embed, evaluate_samples, format_quality
from diffsight.models.folder import LoadedModel
from diffsight.sampling.generate import generate_samples

__all__ = ["card_metrics", "evaluate_model", "format_model_eval", "heldout_data_of", "training_data_of"]


def _data_config(model: LoadedModel) -> dict[str, Any]:
    config = ((model.info.get("training") or {}).get("config") or {}).get("data")
    if not config:
        raise DiffsightError(f"{model.path}: diffsight.json does not record its training data; cannot evaluate")
    return dict(config)


def _load_from(config: dict[str, Any], options: dict[str, Any]) -> TrainingData:
    return load_data(
        config["name"],
        resolution=config.get("resolution"),
        channels=config.get("channels"),
        n=config.get("n"),
        seed=config.get("seed", 0),
        options=options,
    )


def heldout_data_of(model: LoadedModel) -> TrainingData:
    """The items of the model's dataset that its config held out of training (``options.holdout``)."""
    config = _data_config(model)
    options = dict(config.get("options") or {})
    if "holdout" not in options:
        raise DiffsightError(
            f"{model.name} was trained on all of {config['name']!r}: no held-out data (train with "
            "options = { holdout = 0.1 } in [data] to keep some out)"
        )
    return _load_from(config, {**options, "split": "heldout"})


def training_data_of(model: LoadedModel) -> TrainingData:
    """Reload the data a model was trained on (from ``diffsight.json``) and check its fingerprint."""
    config = _data_config(model)
    data = _load_from(config, dict(config.get("options") or {}))
    expected = (model.info.get("data") or {}).get("fingerprint")
    if expected and data.fingerprint() != expected:
        raise DiffsightError(
            f"the data at {config['name']!r} is not the data {model.name!r} was trained on (fingerprint differs)"
        )
    return data


def _halves(data: TrainingData, seed: int) -> tuple[TrainingData, TrainingData]:
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    half = len(data) // 2
    return data.subset(order[:half]), data.subset(order[half:])


def _pixel_features(images: torch.Tensor) -> torch.Tensor:
    side = min(16, images.shape[-1])
    pooled = torch.nn.functional.adaptive_avg_pool2d(images.float(), side) if images.ndim == 4 else images.float()
    return pooled.reshape(images.shape[0], -1).double()  # (N, C*side*side) or (N, D)


def evaluate_model(
    model: LoadedModel,
    *,
    n: int | None = None,
    steps: int = 20,
    sampler: str = "dpmpp_2m",
    seed: int = 0,
    guidance: float = 1.0,
    unconditional: bool = False,
    batch_size: int = 256,
    data: TrainingData | None = None,
    reference_steps: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Sample ``model`` and score the samples; returns a JSON-ready report.

    Args:
        n: number of samples (default: the floor half's size, at most 2000).
        steps, sampler, seed, guidance: how to sample (Karras schedule over the model's sigma range).
        unconditional: sample a conditional model through its null class instead of the floor labels.
        data: the training data, when the caller has it already (else reloaded from the model folder).
        reference_steps: > 0 adds ``solver_check``: the FD of Heun at this many steps from the same noise, and
            how far the FD above is from it (is the fast sampler converged?).
        progress: receives one line per phase.
    """
    say = progress or (lambda _line: None)
    data = data if data is not None else training_data_of(model)
    reference, floor = _halves(data, seed=1234)
    n = min(len(floor), 2000) if n is None else n
    if n < 4:
        raise DiffsightError(f"n must be at least 4, got {n}")
    labels = None
    if model.num_classes > 0 and not unconditional:
        if floor.labels is None:
            raise DiffsightError("a conditional model needs labelled data to evaluate against")
        reps = (n + len(floor) - 1) // len(floor)
        labels = floor.labels.repeat(reps)[:n]

    def draw(sampler: str, steps: int) -> torch.Tensor:
        say(f"sampling {n} from {model.name} ({sampler}, {steps} steps)")
        with torch.no_grad():
            return generate_samples(
                model.denoiser,
                model.event_shape,
                n,
                steps=steps,
                sampler=sampler,
                generator=torch.Generator().manual_seed(seed),
                labels=labels,
                guidance=guidance,
                null_class=model.null_class,
                batch_size=batch_size,
            )

    start = time.perf_counter()
    samples = draw(sampler, steps)
    sample_seconds = time.perf_counter() - start
    setting = {
        "sampler": sampler,
        "steps": steps,
        "seed": seed,
        "guidance": guidance,
        "conditioning": "class (floor labels)" if labels is not None else "none",
        "sampling_seconds": round(sample_seconds, 2),
    }
    dataset = str(data.name)
    if dataset in shipped_names() and data.is_image:
        say(f"scoring with the shipped {dataset} classifier")
        classifier = shipped_classifier(dataset)
        requested = None
        if labels is not None and len(classifier.factors) == 1:
            requested = {classifier.factors[0]: labels}
        report = evaluate_samples(samples, reference, classifier, floor=floor, requested=requested)
        report["features"] = f"shipped {dataset} classifier"
        ref_feats = embed(classifier, reference.samples)[0]

        def features(images: torch.Tensor) -> torch.Tensor:
            return embed(classifier, images)[0]
    else:
        say("no shipped classifier for this data: scoring on pixels")
        feats, ref_feats = _pixel_features(samples), _pixel_features(reference.samples)
        floor_feats = _pixel_features(floor.samples[:n])
        report = {"n": n, "n_reference": len(reference), "reference": dataset, "k": 3}
        report["fd"] = frechet_distance(feats, ref_feats)
        report["precision"], report["recall"] = precision_recall(ref_feats, feats, k=3)
        report["fd_floor"] = frechet_distance(floor_feats, ref_feats)
        report["n_floor"] = int(floor_feats.shape[0])
        report["precision_floor"], report["recall_floor"] = precision_recall(ref_feats, floor_feats, k=3)
        report["factors"] = {}
        report["notes"] = ["pixel features: FD values are not comparable with classifier-feature FDs"]
        report["features"] = "pixels"
        report["confident_at"] = 0.9
        features = _pixel_features
    report["sampling"] = setting
    if reference_steps:
        fd_reference = frechet_distance(features(draw("heun", reference_steps)), ref_feats)
        report["solver_check"] = {
            "fd": report["fd"],
            "fd_reference": fd_reference,
            "reference": f"heun, {reference_steps} steps, same noise",
            "relative_difference": abs(report["fd"] - fd_reference) / max(fd_reference, 1e-12),
        }
    return report


def format_model_eval(report: dict[str, Any]) -> str:
    """:func:`format_quality` plus the solver check, when there is one."""
    text = format_quality(report)
    if "solver_check" in report:
        check = report["solver_check"]
        text += (
            f"\n  solver check: FD {check['fd']:.3g} vs {check['fd_reference']:.3g} ({check['reference']}): "
            f"{100 * check['relative_difference']:.1f}% apart"
        )
    return text


def card_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an :func:`evaluate_model` report, for ``diffsight.json`` and the model card."""
    out: dict[str, Any] = {k: round(report[k], 4) for k in ("fd", "fd_floor", "precision", "recall") if k in report}
    out.update(n=report["n"], features=report.get("features"))
    out.update({k: report["sampling"][k] for k in ("sampler", "steps", "guidance", "seed")})
    for name, fac in report.get("factors", {}).items():
        out[f"{name}_tv"] = round(fac["tv"], 4)
        out[f"{name}_confident_share"] = round(fac["confident_share"], 4)
        if "accuracy" in fac:
            out[f"{name}_accuracy"] = round(fac["accuracy"], 4)
    if "solver_check" in report:
        out["fd_heun_reference"] = round(report["solver_check"]["fd_reference"], 4)
        out["solver_relative_difference"] = round(report["solver_check"]["relative_difference"], 4)
    return out
