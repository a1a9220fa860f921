"""Score generated samples against real data, offline, with honest floors (shared/research/core_perf.md, 8).

One call gathers what tells a good generator from a bad one on small data, each number beside the value that
real data itself reaches:

- FD (Fréchet distance, Heusel et al. 2017) in the features of a classifier trained on the same domain, and
  the real-vs-real floor: FD of a held-out real set at the *same n* (FD is biased upwards at small n, so a
  number without its floor says little);
- improved precision (fidelity) and recall (coverage), Kynkäänniemi et al. 2019, k = 3, with their floor;
- per factor: the histogram of the classifier's decisions on the samples, the reference histogram from ground
  truth, their total variation, how confident the classifier is, and, for conditional models, the accuracy of
  the classifier against the requested labels.

Classifier confidence alone is no quality metric: uniform noise can score a mean top probability near 0.9
(core_perf.md, table 8.2), so confidence is reported only next to FD and precision/recall.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diffsight.data.dataset import TrainingData
from diffsight.errors import DiffsightError, ShapeError
from diffsight.metrics.classifier import FactorClassifier
from diffsight.metrics.frechet import frechet_distance
from diffsight.metrics.histograms import histogram, total_variation
from diffsight.metrics.precision_recall import precision_recall

__all__ = ["embed", "evaluate_samples", "format_quality"]


def embed(
    classifier: FactorClassifier, images: torch.Tensor, batch_size: int = 512
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(features (N, F) float64, factor -> probabilities (N, K)) of images (N, C, r, r), in batches, no grad."""
    if images.shape[0] == 0:
        raise DiffsightError("no images to embed")
    device = next(classifier.parameters()).device
    features: list[torch.Tensor] = []
    probs: dict[str, list[torch.Tensor]] = {name: [] for name in classifier.factors}
    with torch.no_grad():
        for chunk in images.split(batch_size):
            h = classifier.features(chunk.to(device=device, dtype=torch.float32))  # (b, F)
            features.append(h.cpu().double())
            for name, logits in classifier.logits_from_features(h).items():
                probs[name].append(logits.softmax(-1).cpu().double())  # (b, K)
    return torch.cat(features), {name: torch.cat(p) for name, p in probs.items()}


def _check_images(images: torch.Tensor, classifier: FactorClassifier, what: str) -> None:
    if images.ndim != 4 or tuple(images.shape[1:]) != classifier.input_shape:
        raise ShapeError(
            f"{what} must be images shaped (N, {', '.join(map(str, classifier.input_shape))}) to fit the classifier, "
            f"got {tuple(images.shape)}"
        )
    if not torch.isfinite(images).all():
        raise DiffsightError(f"{what} hold NaN or infinite values; the sampler diverged or the data is broken")


def _factor_report(
    name: str,
    probs: torch.Tensor,
    reference_hist: np.ndarray,
    classifier: FactorClassifier,
    requested: torch.Tensor | None,
    confident_at: float,
) -> dict[str, Any]:
    top, decided = probs.max(dim=1)  # (n,), (n,)
    hist = histogram(decided, probs.shape[1])
    out: dict[str, Any] = {
        "values": classifier.config["factor_values"].get(name, [str(i) for i in range(probs.shape[1])]),
        "histogram": hist.round(6).tolist(),
        "reference_histogram": reference_hist.round(6).tolist(),
        "tv": total_variation(hist, reference_hist),
        "confident_share": float((top >= confident_at).double().mean()),
        "mean_top_probability": float(top.mean()),
    }
    if requested is not None:
        out["accuracy"] = float((decided == requested.cpu()).double().mean())
    val = classifier.report.get("val_accuracy", {}).get(name)
    if val is not None:
        out["classifier_val_accuracy"] = float(val)
    return out


def evaluate_samples(
    samples: torch.Tensor,
    reference: TrainingData,
    classifier: FactorClassifier,
    *,
    floor: TrainingData | None = None,
    requested: dict[str, torch.Tensor] | None = None,
    k: int = 3,
    batch_size: int = 512,
    confident_at: float = 0.9,
) -> dict[str, Any]:
    """Quality report of samples (n, C, r, r) in [-1, 1] against real ``reference`` data, JSON-ready.

    Args:
        samples: generated images, shaped like the classifier's input.
        reference: real data (its ``factors`` give the reference histograms).
        classifier: feature network and factor reader, e.g. ``shipped_classifier("digits")``.
        floor: other real data, disjoint from ``reference`` (a held-out split): its FD and precision/recall against
            ``reference`` at the same n are the best a perfect generator could expect. If it holds more than n
            images, its first n are used; if fewer, all of them, and ``notes`` says so.
        requested: factor -> labels (n,) the samples were conditioned on; adds that factor's ``accuracy``.
        k: neighbourhood size of precision/recall.
        batch_size: images per classifier call.
        confident_at: top probability from which a decision counts as confident.

    Returns:
        ``{"n", "n_reference", "reference", "k", "fd", "precision", "recall", ["fd_floor", "n_floor",
        "precision_floor", "recall_floor"], "factors": {name: {"values", "histogram", "reference_histogram", "tv",
        "confident_share", "mean_top_probability", ["accuracy"], ["classifier_val_accuracy"]}}, "notes": [...]}``.
    """
    _check_images(samples, classifier, "samples")
    _check_images(reference.samples, classifier, f"reference data {reference.name!r}")
    n = int(samples.shape[0])
    if n <= k or len(reference) <= k:
        raise DiffsightError(f"need more than k={k} samples and reference images, got {n} and {len(reference)}")
    if not 0.0 < confident_at <= 1.0:
        raise DiffsightError(f"confident_at must lie in (0, 1], got {confident_at}")
    requested = dict(requested or {})
    for name, labels in requested.items():
        if name not in classifier.config["heads"]:
            raise DiffsightError(f"requested factor {name!r} has no head; the classifier reads {classifier.factors}")
        if tuple(labels.shape) != (n,):
            raise ShapeError(f"requested[{name!r}] must hold one label per sample, shape ({n},), got {labels.shape}")

    notes: list[str] = []
    feats, probs = embed(classifier, samples, batch_size)
    ref_feats, ref_probs = embed(classifier, reference.samples, batch_size)
    report: dict[str, Any] = {"n": n, "n_reference": len(reference), "reference": reference.name, "k": k}
    report["fd"] = frechet_distance(feats, ref_feats)
    report["precision"], report["recall"] = precision_recall(ref_feats, feats, k=k)
    if n < feats.shape[1]:
        notes.append(f"n={n} is below the feature dimension {feats.shape[1]}: FD is dominated by estimation bias")

    if floor is not None:
        _check_images(floor.samples, classifier, f"floor data {floor.name!r}")
        if len(floor) < n:
            notes.append(
                f"the floor set holds only {len(floor)} images, fewer than n={n}; the floor uses all {len(floor)}"
            )
        floor_feats, _ = embed(classifier, floor.samples[:n], batch_size)
        report["fd_floor"] = frechet_distance(floor_feats, ref_feats)
        report["n_floor"] = int(floor_feats.shape[0])
        report["precision_floor"], report["recall_floor"] = precision_recall(ref_feats, floor_feats, k=k)

    report["factors"] = {}
    for name in classifier.factors:
        n_values = classifier.config["heads"][name]
        truth = reference.factors.get(name)
        if truth is not None and len(reference.factor_values.get(name, ())) == n_values:
            ref_hist = histogram(truth, n_values)
        else:
            notes.append(
                f"reference {reference.name!r} has no ground truth for {name!r}: its histogram is the classifier's"
            )
            ref_hist = histogram(ref_probs[name].argmax(1), n_values)
        report["factors"][name] = _factor_report(
            name, probs[name], ref_hist, classifier, requested.get(name), confident_at
        )
    report["confident_at"] = confident_at
    report["notes"] = notes
    return report


def format_quality(report: dict[str, Any]) -> str:
    """A short human summary of :func:`evaluate_samples`' report; every FD beside its real-vs-real floor."""
    lines = [f"{report['n']} samples against {report['reference']!r} (n={report['n_reference']})"]
    if "fd_floor" in report:
        floor = f"real-vs-real floor at n={report['n_floor']}: {report['fd_floor']:.3g}"
        pr_floor = f" (real-vs-real: {report['precision_floor']:.2f} / {report['recall_floor']:.2f})"
    else:
        floor, pr_floor = "no real-vs-real floor: pass floor=<held-out real data>; FD compares only at equal n", ""
    lines.append(f"  FD {report['fd']:.3g} ({floor})")
    lines.append(f"  precision {report['precision']:.2f}, recall {report['recall']:.2f}, k={report['k']}{pr_floor}")
    for name, fac in report["factors"].items():
        gaps = np.abs(np.asarray(fac["histogram"]) - np.asarray(fac["reference_histogram"]))
        worst = int(gaps.argmax())
        text = (
            f"  {name}: TV {fac['tv']:.3f} to reference (largest gap {fac['values'][worst]!r}: "
            f"{fac['histogram'][worst]:.2f} vs {fac['reference_histogram'][worst]:.2f}), "
            f"{100 * fac['confident_share']:.0f}% confident (p >= {report['confident_at']:g}), "
            f"mean top p {fac['mean_top_probability']:.2f}"
        )
        if "accuracy" in fac:
            ceiling = fac.get("classifier_val_accuracy")
            text += f", accuracy vs requested {fac['accuracy']:.3f}"
            text += f" (classifier on real: {ceiling:.3f})" if ceiling is not None else ""
        lines.append(text)
    lines += [f"  note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)
