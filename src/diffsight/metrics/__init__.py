"""Quality metrics that need no download (shared/research/core_perf.md, section 8).

Features come from a small :class:`FactorClassifier` trained on the same domain and shipped with the package
(``shipped_classifier("digits")``, ``shipped_classifier("shapes")``); on them: Fréchet distance, improved
precision/recall, factor histograms and total variation, all gathered by :func:`evaluate_samples`.
"""

from diffsight.metrics.classifier import FactorClassifier
from diffsight.metrics.classifier_io import load_classifier, save_classifier, shipped_classifier, shipped_names
from diffsight.metrics.classifier_training import split_indices, train_classifier
from diffsight.metrics.frechet import frechet_distance, gaussian_statistics
from diffsight.metrics.histograms import histogram, total_variation
from diffsight.metrics.precision_recall import knn_radii, manifold_coverage, precision_recall
from diffsight.metrics.quality import embed, evaluate_samples, format_quality

__all__ = [
    "FactorClassifier",
    "embed",
    "evaluate_samples",
    "format_quality",
    "frechet_distance",
    "gaussian_statistics",
    "histogram",
    "knn_radii",
    "load_classifier",
    "manifold_coverage",
    "precision_recall",
    "save_classifier",
    "shipped_classifier",
    "shipped_names",
    "split_indices",
    "total_variation",
    "train_classifier",
]
