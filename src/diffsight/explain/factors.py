"""Factor readers: map a batch of clean samples to categorical probabilities of named factors.

A reader answers "which shape / colour / digit / mixture component is this sample?" for the explainers that
ask *when* a factor is decided: :class:`~diffsight.explain.commitment.Commitment` reads the finals of branched
continuations (the U-turn / cloning protocol, xai.md 8b) and :class:`~diffsight.explain.probes.ProbeCurves`
reads x0_hat along the trajectory (xai.md 8e).

The contract (:class:`FactorReader`) is small: ``name``, ``factors`` (factor -> value names) and
``reader(x) -> {factor: (B, V) probabilities}`` for ``x`` of shape ``(B, *event)``. Readers run without
gradients and return float32 CPU tensors.

- :class:`ClassifierReader` wraps a :class:`~diffsight.metrics.classifier.FactorClassifier` (the shipped
  ``shapes`` and ``digits`` probes); :func:`reader_for_model` picks the shipped one that matches a model's
  training data.
- :class:`ComponentReader` reads a :class:`~diffsight.oracles.GaussianMixtureOracle`'s component
  responsibilities at (near) zero noise: the known-answer reader of the mixture checks (xai.md 17, check 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from diffsight.errors import DiffsightError, ShapeError
from diffsight.metrics.classifier import FactorClassifier
from diffsight.metrics.classifier_io import shipped_classifier, shipped_names
from diffsight.oracles.mixture import GaussianMixtureOracle

if TYPE_CHECKING:
    from diffsight.models.folder import LoadedModel

__all__ = ["ClassifierReader", "ComponentReader", "FactorReader", "read_in_batches", "reader_for_model"]


@runtime_checkable
class FactorReader(Protocol):
    """Maps clean samples ``(B, *event)`` to ``{factor: (B, V) probabilities}``.

    Attributes:
        name: what reads (for params and reports), e.g. ``"classifier:shapes"``.
        factors: factor name -> the names of its V values, in column order of the probabilities.
    """

    name: str
    factors: dict[str, list[str]]

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


def read_in_batches(reader: FactorReader, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """``reader(x)`` over chunks of ``batch_size`` rows, concatenated: factor -> (B, V)."""
    if batch_size < 1:
        raise DiffsightError(f"batch_size must be at least 1, got {batch_size}")
    parts: dict[str, list[torch.Tensor]] = {f: [] for f in reader.factors}
    for chunk in torch.split(x, batch_size):
        probs = reader(chunk)
        missing = [f for f in reader.factors if f not in probs]
        if missing:
            raise DiffsightError(f"reader {reader.name} returned no probabilities for the factors {missing}")
        for f in reader.factors:
            p = probs[f]
            if p.shape != (chunk.shape[0], len(reader.factors[f])):
                raise ShapeError(
                    f"reader {reader.name}: factor {f!r} gave shape {tuple(p.shape)}, expected "
                    f"({chunk.shape[0]}, {len(reader.factors[f])})"
                )
            parts[f].append(p.detach().to("cpu", torch.float32))
    return {f: torch.cat(ps) for f, ps in parts.items()}


class ClassifierReader:
    """A :class:`FactorClassifier` as a reader: inputs clamped to [-1, 1], softmax per head.

    For the shipped ``shapes`` classifier the factors are shape, colour, size, position and background; for
    ``digits`` the single factor ``"digit"``. Value names come from the classifier's ``factor_values`` (or are
    the indices as strings when it has none).
    """

    def __init__(self, classifier: FactorClassifier, *, name: str = "classifier") -> None:
        if not isinstance(classifier, FactorClassifier):
            raise DiffsightError(f"ClassifierReader wraps a FactorClassifier, got {type(classifier).__name__}")
        self.classifier = classifier.eval()
        self.name = name
        named = classifier.config.get("factor_values") or {}
        self.factors: dict[str, list[str]] = {
            f: list(named.get(f) or [str(i) for i in range(k)]) for f, k in classifier.config["heads"].items()
        }

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        param = next(self.classifier.parameters())
        with torch.no_grad():
            probs = self.classifier.probabilities(x.detach().to(param.device, param.dtype).clamp(-1.0, 1.0))
        return {f: p.to("cpu", torch.float32) for f, p in probs.items()}

    def __repr__(self) -> str:
        return f"<ClassifierReader {self.name}: {', '.join(self.factors)}>"


def reader_for_model(model: LoadedModel) -> ClassifierReader | None:
    """The shipped classifier for the data ``model`` was trained on (``info["data"]["name"]``), or None.

    None when the training data has no shipped classifier (the user's own data) or when the classifier reads
    another image shape than the model makes.
    """
    data = model.info.get("data") or {}
    name = data.get("name") if isinstance(data, dict) else None
    if not name or name not in shipped_names():
        return None
    classifier = shipped_classifier(str(name))
    if tuple(classifier.input_shape) != tuple(model.event_shape):
        return None
    return ClassifierReader(classifier, name=f"classifier:{name}")


class ComponentReader:
    """Mixture-component responsibilities ``r_k(x, sigma)`` of a Gaussian-mixture oracle as one factor.

    At ``sigma = 0`` (the default) this is the Bayes classifier of which component a clean sample came from;
    for two well-separated components it is the sign of the projection on ``mu_1 - mu_0``.

    Args:
        oracle: the mixture.
        factor: the factor's name (default ``"component"``).
        value_names: one name per component (default ``"0"``, ``"1"``, ...).
        sigma: the noise level at which responsibilities are read.
    """

    def __init__(
        self,
        oracle: GaussianMixtureOracle,
        *,
        factor: str = "component",
        value_names: Sequence[str] | None = None,
        sigma: float = 0.0,
    ) -> None:
        k = len(oracle.components)
        names = [str(v) for v in value_names] if value_names is not None else [str(i) for i in range(k)]
        if len(names) != k:
            raise DiffsightError(f"value_names must name each of the {k} components, got {len(names)}")
        if sigma < 0:
            raise DiffsightError(f"sigma must be non-negative, got {sigma}")
        self.oracle = oracle
        self.sigma = float(sigma)
        self.name = f"mixture-components(sigma={self.sigma:g})"
        self.factors = {factor: names}
        self._factor = factor

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            r = self.oracle.responsibilities(x.detach().to(torch.float64), self.sigma)  # (B, K)
        return {self._factor: r.to("cpu", torch.float32)}

    def __repr__(self) -> str:
        return f"<ComponentReader {self.name}>"
