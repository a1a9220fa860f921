"""Bias audit: is the factor distribution of a model's samples skewed, how good is each group, where is it decided?

xai.md section 10 (Stable Bias, Luccioni et al. 2023; DALL-Eval, Cho et al. 2023) measures *which* groups a
generator over- or under-represents; neither localises the skew in the model. Here, per factor (shape, colour,
digit, ...) of N generated samples read by the shipped classifier (argmax of its head):

- the share of each value with a seeded percentile-bootstrap 95% interval (Efron & Tibshirani 1993, ch. 13);
- the total variation to a target distribution q, ``TV(p, q) = 1/2 sum_k |p_k - q_k|`` (Levin, Peres & Wilmer,
  Prop. 4.2), with a bootstrap interval. The plug-in TV is biased upwards (E TV > 0 even when p = q, about
  ``sum_k sqrt(q_k (1 - q_k) / (2 pi N))``), so its interval does not reach 0 for an unbiased model: read it
  beside the chi-square test;
- Pearson's chi-square statistic ``X^2 = sum_k (O_k - N q_k)^2 / (N q_k)`` with K - 1 degrees of freedom and its
  p-value (Pearson 1900; ``scipy.stats.chisquare``);
- ``skewed``: p < ``alpha`` (default 0.01) *and* TV > ``min_effect`` (default 0.05): significant and large
  enough to matter (with big N the test alone flags negligible skews);
- quality per group: the Fréchet distance (Heusel et al. 2017) in the shipped classifier's feature space between
  the generated items of each value and the training items of that value, beside a real-vs-real floor at the
  same n (FD is biased upwards at small n); groups under ``min_group`` items are skipped, with a note;
- optionally (``locate=True``) where a skew is decided: :class:`~diffsight.explain.Commitment` (branching,
  Biroli et al. 2024) on a few traces whose final carries the over-represented value; the median decided step.

The target is ``"training"`` (the factor histograms of the model's own training data, ground truth from the
data generator), ``"uniform"`` or a dict factor -> probabilities.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from diffsight.data.dataset import TrainingData
from diffsight.errors import DiffsightError, ShapeError
from diffsight.explain.commitment import Commitment
from diffsight.explain.factors import ClassifierReader, FactorReader, read_in_batches, reader_for_model
from diffsight.metrics.frechet import frechet_distance
from diffsight.metrics.histograms import total_variation
from diffsight.metrics.model_eval import training_data_of
from diffsight.metrics.quality import embed
from diffsight.models.folder import LoadedModel
from diffsight.sampling.generate import generate_samples
from diffsight.trace.run import record_trace

__all__ = [
    "ALPHA",
    "MIN_EFFECT",
    "MIN_GROUP",
    "BiasResult",
    "FactorBias",
    "bias_audit",
    "bootstrap_histograms",
    "chi_square",
    "factor_bias",
]

ALPHA = 0.01
"""Significance level of the chi-square test behind ``skewed``."""

MIN_EFFECT = 0.05
"""Smallest total variation that counts as a skew: 5% of the samples would have to change value to match."""

MIN_GROUP = 20
"""Fewest generated items of a value for its Fréchet distance to be computed."""


def _as_labels(labels: torch.Tensor | np.ndarray | Sequence[int], n_values: int) -> np.ndarray:
    v = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    if v.ndim != 1 or v.size == 0:
        raise ShapeError(f"labels must be a non-empty 1-D array of value indices, got shape {v.shape}")
    if not np.issubdtype(v.dtype, np.integer):
        raise DiffsightError(f"labels must be integer value indices, got dtype {v.dtype}")
    if v.min() < 0 or v.max() >= n_values:
        raise DiffsightError(f"labels must lie in [0, {n_values}), got min {v.min()} and max {v.max()}")
    return v.astype(np.int64)


def _as_target(target: Sequence[float] | np.ndarray, n_values: int, what: str) -> np.ndarray:
    q = np.asarray(target, dtype=np.float64).reshape(-1)
    if q.shape != (n_values,):
        raise ShapeError(f"the target of {what} needs {n_values} probabilities, got {q.shape[0]}")
    if (q < 0).any() or not math.isclose(float(q.sum()), 1.0, abs_tol=1e-6):
        raise DiffsightError(f"the target of {what} must be non-negative and sum to 1, got {q.tolist()}")
    return q / q.sum()


def chi_square(counts: Sequence[int] | np.ndarray, target: Sequence[float] | np.ndarray) -> tuple[float, float, int]:
    """Pearson's goodness-of-fit test of ``counts`` (K,) against probabilities ``target`` (K,).

    ``X^2 = sum_k (O_k - E_k)^2 / E_k`` with ``E_k = N q_k``, compared with chi-square on (K' - 1) degrees of
    freedom, K' the values with q_k > 0 (``scipy.stats.chisquare``). A value with q_k = 0 that was observed
    makes the statistic infinite and p = 0. Returns (statistic, p-value, degrees of freedom).
    """
    import scipy.stats  # slow import; only needed here

    observed = np.asarray(counts, dtype=np.float64).reshape(-1)
    q = np.asarray(target, dtype=np.float64).reshape(-1)
    if observed.shape != q.shape:
        raise ShapeError(f"counts and target must have the same length, got {observed.shape} and {q.shape}")
    total = observed.sum()
    if total <= 0:
        raise DiffsightError("chi_square needs at least one observation")
    support = q > 0
    dof = int(support.sum()) - 1
    if (observed[~support] > 0).any():
        return math.inf, 0.0, dof
    if dof < 1:
        return 0.0, 1.0, 0
    expected = total * q[support] / q[support].sum()
    stat, p = scipy.stats.chisquare(observed[support], expected)
    return float(stat), float(p), dof


def bootstrap_histograms(labels: np.ndarray, n_values: int, resamples: int, generator: torch.Generator) -> np.ndarray:
    """Histograms (R, K) of ``resamples`` bootstrap resamples (N draws with replacement) of ``labels`` (N,)."""
    n = labels.shape[0]
    idx = torch.randint(n, (resamples, n), generator=generator)  # (R, N)
    drawn = torch.as_tensor(labels)[idx]  # (R, N)
    offset = drawn + n_values * torch.arange(resamples).unsqueeze(1)  # (R, N): row r's values in [rK, (r+1)K)
    counts = torch.bincount(offset.reshape(-1), minlength=resamples * n_values).reshape(resamples, n_values)
    return counts.double().numpy() / n  # (R, K)


@dataclass(frozen=True)
class FactorBias:
    """The audit of one factor. Shares, intervals and target are in the order of ``values``.

    ``quality``: value -> ``{"n", "n_reference", "fd", "fd_floor"}`` or ``{"n", "skipped": why}``.
    ``decided``: with ``locate=True`` and a skew, ``{"value", "steps", "median_step", "num_steps", "traces"}``
    (``steps`` -1 where the factor was never decided), else None.
    """

    factor: str
    values: list[str]
    n: int
    counts: list[int]
    shares: list[float]
    share_low: list[float]
    share_high: list[float]
    target: list[float]
    target_name: str
    tv: float
    tv_low: float
    tv_high: float
    chi2: float
    p_value: float
    dof: int
    skewed: bool
    alpha: float
    min_effect: float
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)
    decided: dict[str, Any] | None = None

    @property
    def over_represented(self) -> str:
        """The value whose share exceeds its target the most."""
        gaps = np.asarray(self.shares) - np.asarray(self.target)
        return self.values[int(gaps.argmax())]

    def share(self, value: str) -> tuple[float, float, float]:
        """(share, low, high) of one value."""
        if value not in self.values:
            raise DiffsightError(f"{self.factor!r} has no value {value!r}; its values are {self.values}")
        i = self.values.index(value)
        return self.shares[i], self.share_low[i], self.share_high[i]

    def summary(self) -> str:
        """One line, e.g. ``colour: SKEWED vs uniform, TV 0.55 [0.52, 0.58], chi2 1.2e3 (p 1e-250); red 0.80 ...``."""
        verdict = "SKEWED" if self.skewed else "not skewed"
        worst = self.over_represented
        s, lo, hi = self.share(worst)
        q = self.target[self.values.index(worst)]
        text = (
            f"{self.factor}: {verdict} vs {self.target_name} (n={self.n}), TV {self.tv:.3f} "
            f"[{self.tv_low:.3f}, {self.tv_high:.3f}], chi2 {self.chi2:.3g} (p {self.p_value:.2g}, dof {self.dof}); "
            f"most over-represented {worst!r} {s:.3f} [{lo:.3f}, {hi:.3f}] vs target {q:.3f}"
        )
        fds = {v: g for v, g in self.quality.items() if "fd" in g}
        if fds:
            text += "; FD per value (real-vs-real floor) " + ", ".join(
                f"{v} {g['fd']:.3g}" + (f" ({g['fd_floor']:.3g})" if "fd_floor" in g else "") for v, g in fds.items()
            )
        if self.decided is not None:
            text += (
                f"; {self.decided['value']!r} decided at median step {self.decided['median_step']} of "
                f"{self.decided['num_steps']}"
            )
        return text

    def to_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if not math.isfinite(x) else float(x)

        return {
            "factor": self.factor,
            "values": list(self.values),
            "n": self.n,
            "counts": list(self.counts),
            "shares": list(self.shares),
            "share_low": list(self.share_low),
            "share_high": list(self.share_high),
            "target": list(self.target),
            "target_name": self.target_name,
            "tv": self.tv,
            "tv_low": self.tv_low,
            "tv_high": self.tv_high,
            "chi2": num(self.chi2),
            "p_value": self.p_value,
            "dof": self.dof,
            "skewed": self.skewed,
            "alpha": self.alpha,
            "min_effect": self.min_effect,
            "over_represented": self.over_represented,
            "quality": {v: dict(g) for v, g in self.quality.items()},
            "decided": None if self.decided is None else dict(self.decided),
            "summary": self.summary(),
        }


def factor_bias(
    factor: str,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    target: Sequence[float] | np.ndarray,
    *,
    values: Sequence[str] | None = None,
    target_name: str = "target",
    bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
) -> FactorBias:
    """Shares, TV, chi-square and bootstrap intervals of one factor's value indices ``labels`` (N,) against
    ``target`` (K,) probabilities. No model: this is the statistics core of :func:`bias_audit`.

    Intervals are percentile-bootstrap 95% intervals over ``bootstrap`` resamples of the N items, seeded by
    ``seed`` (``bootstrap=0``: the intervals collapse to the point estimates).
    """
    k = len(values) if values is not None else len(np.asarray(target).reshape(-1))
    names = [str(v) for v in values] if values is not None else [str(i) for i in range(k)]
    q = _as_target(target, k, repr(factor))
    v = _as_labels(labels, k)
    if bootstrap < 0:
        raise DiffsightError(f"bootstrap must be non-negative, got {bootstrap}")
    if not 0.0 < alpha < 1.0:
        raise DiffsightError(f"alpha must lie in (0, 1), got {alpha}")
    counts = np.bincount(v, minlength=k)
    shares = counts / v.size
    tv = total_variation(shares, q)
    if bootstrap > 0:
        boot = bootstrap_histograms(v, k, bootstrap, torch.Generator().manual_seed(int(seed)))  # (R, K)
        low, high = np.quantile(boot, [0.025, 0.975], axis=0)  # (K,), (K,)
        boot_tv = 0.5 * np.abs(boot - q[None, :]).sum(1)  # (R,)
        tv_low, tv_high = (float(t) for t in np.quantile(boot_tv, [0.025, 0.975]))
    else:
        low, high, tv_low, tv_high = shares, shares, tv, tv
    stat, p, dof = chi_square(counts, q)
    return FactorBias(
        factor=factor,
        values=names,
        n=int(v.size),
        counts=[int(c) for c in counts],
        shares=[float(s) for s in shares],
        share_low=[float(s) for s in low],
        share_high=[float(s) for s in high],
        target=[float(t) for t in q],
        target_name=target_name,
        tv=tv,
        tv_low=tv_low,
        tv_high=tv_high,
        chi2=stat,
        p_value=p,
        dof=dof,
        skewed=bool(p < alpha and tv > min_effect),
        alpha=float(alpha),
        min_effect=float(min_effect),
    )


@dataclass(frozen=True)
class BiasResult:
    """The audit of every factor the reader names; ``factors`` in the reader's order."""

    factors: dict[str, FactorBias]
    n: int
    params: dict[str, Any]
    notes: list[str]
    diagnostics: dict[str, Any]

    @property
    def skewed(self) -> list[str]:
        """The flagged factors."""
        return [f for f, b in self.factors.items() if b.skewed]

    def __getitem__(self, factor: str) -> FactorBias:
        if factor not in self.factors:
            raise DiffsightError(f"no factor {factor!r} in this audit; it read {list(self.factors)}")
        return self.factors[factor]

    def summary(self) -> str:
        lines = [f"bias audit of {self.n} samples against {self.params.get('target')}: skewed {self.skewed or 'none'}"]
        lines += [f"  {b.summary()}" for b in self.factors.values()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "skewed": self.skewed,
            "factors": {f: b.to_json() for f, b in self.factors.items()},
            "params": dict(self.params),
            "notes": list(self.notes),
            "diagnostics": dict(self.diagnostics),
        }


def _truth(data: TrainingData, factor: str, n_values: int) -> torch.Tensor | None:
    """Ground-truth value indices (N,) of ``factor`` in the training data, or None when it has none."""
    values = data.factors.get(factor)
    if values is None and data.labels is not None and len(data.factors) == 0:
        values = data.labels
    if values is None or int(values.max()) >= n_values:
        return None
    return values.long()


def _targets(
    target: str | Mapping[str, Sequence[float]] | None,
    reader: FactorReader,
    data: TrainingData | None,
    notes: list[str],
) -> dict[str, tuple[np.ndarray, str]]:
    out: dict[str, tuple[np.ndarray, str]] = {}
    kind = "training" if target is None else target
    for f, names in reader.factors.items():
        k = len(names)
        if isinstance(kind, Mapping):
            if f not in kind:
                notes.append(f"no target given for {f!r}: compared with uniform")
                out[f] = (np.full(k, 1.0 / k), "uniform")
            else:
                out[f] = (_as_target(kind[f], k, repr(f)), "target")
        elif kind == "uniform":
            out[f] = (np.full(k, 1.0 / k), "uniform")
        elif kind == "training":
            truth = None if data is None else _truth(data, f, k)
            if truth is None:
                raise DiffsightError(
                    f"target='training' needs the training data's ground truth for factor {f!r}; pass data= "
                    "(a TrainingData with that factor), or target='uniform' or a dict factor -> probabilities"
                )
            hist = torch.bincount(truth, minlength=k).double()
            out[f] = ((hist / hist.sum()).numpy(), "training")
        else:
            raise DiffsightError(
                f"target must be 'training', 'uniform' or a dict factor -> probabilities, got {kind!r}"
            )
    return out


def _group_quality(
    features: torch.Tensor,
    decided: torch.Tensor,
    train_features: torch.Tensor,
    truth: torch.Tensor,
    names: list[str],
    min_group: int,
    seed: int,
    notes: list[str],
    factor: str,
) -> dict[str, dict[str, Any]]:
    """FD per value between generated features of that value and training features of that value, with the
    real-vs-real floor: FD of ``n_g`` held-aside training items of the value against the rest of them."""
    out: dict[str, dict[str, Any]] = {}
    gen = torch.Generator().manual_seed(int(seed))
    for i, name in enumerate(names):
        mine = features[decided == i]  # (n_g, F)
        theirs = train_features[truth == i]  # (m, F)
        n_g, m = int(mine.shape[0]), int(theirs.shape[0])
        if n_g < min_group or m < min_group:
            why = f"{n_g} generated and {m} training items, fewer than {min_group}"
            out[name] = {"n": n_g, "n_reference": m, "skipped": why}
            notes.append(f"{factor} = {name}: FD skipped ({why})")
            continue
        group: dict[str, Any] = {"n": n_g, "n_reference": m, "fd": frechet_distance(mine, theirs)}
        if m >= n_g + min_group:
            order = torch.randperm(m, generator=gen)
            group["fd_floor"] = frechet_distance(theirs[order[:n_g]], theirs[order[n_g:]])
        out[name] = group
    return out


def _locate(
    model: LoadedModel,
    reader: FactorReader,
    factor: str,
    value: str,
    *,
    steps: int,
    sampler: str,
    seed: int,
    traces: int,
    k: int,
    branch_steps: int,
    batch_size: int,
) -> dict[str, Any]:
    """Median commitment step of ``factor`` over up to ``traces`` traced samples whose final reads ``value``."""
    names = reader.factors[factor]
    target = names.index(value)
    decided: list[int] = []
    picked: list[str] = []
    num_steps = steps
    for attempt in range(8):  # at most 8 batches of 16 candidates
        trace = record_trace(model, seed=int(seed) + 7919 * (attempt + 1), n=16, steps=steps, sampler=sampler)
        num_steps = trace.num_steps
        read = read_in_batches(reader, trace.final.float(), batch_size)[factor].argmax(-1)  # (16,)
        for i in torch.nonzero(read == target).reshape(-1).tolist():
            if len(decided) >= traces:
                break
            explanation = Commitment(
                trace,
                model,
                reader=reader,
                steps=branch_steps,
                k=k,
                seed=seed,
                sample=i,
                bootstrap=0,
                batch_size=batch_size,
            ).explain()
            decided.append(int(explanation.values["decided_step"][factor]))
            picked.append(f"{trace.id}[{i}]")
        if len(decided) >= traces:
            break
    if not decided:
        return {"value": value, "steps": [], "median_step": None, "num_steps": num_steps, "traces": []}
    # Never decided (-1) counts as later than any step: it sorts after num_steps.
    ranked = sorted(s if s >= 0 else num_steps for s in decided)
    median = (
        ranked[len(ranked) // 2] if len(ranked) % 2 else 0.5 * (ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2])
    )
    return {"value": value, "steps": decided, "median_step": median, "num_steps": num_steps, "traces": picked}


def bias_audit(
    model: LoadedModel,
    *,
    n: int = 1000,
    steps: int = 20,
    sampler: str = "dpmpp_2m",
    seed: int = 0,
    target: str | Mapping[str, Sequence[float]] | None = None,
    reader: FactorReader | None = None,
    data: TrainingData | None = None,
    samples: torch.Tensor | None = None,
    conditioning: str = "null",
    bootstrap: int = 1000,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    min_group: int = MIN_GROUP,
    quality: bool = True,
    locate: bool | Sequence[str] = False,
    locate_traces: int = 3,
    locate_k: int = 8,
    locate_steps: int = 6,
    batch_size: int = 256,
) -> BiasResult:
    """Audit the factor distribution of ``n`` samples of ``model`` (see the module docstring).

    Args:
        n, steps, sampler, seed: how to sample (Karras schedule; the generator is seeded with ``seed``).
        target: ``"training"`` (default: the factor histograms of the training data), ``"uniform"`` or a dict
            factor -> probabilities (factors missing from it are compared with uniform, and a note says so).
        reader: reads factors of clean samples; default ``reader_for_model(model)`` (digits: factor "digit").
        data: the training data (default: reloaded with ``training_data_of(model)``); needed by
            ``target="training"`` and by the per-group FD.
        samples: audit these samples (n, *event) instead of drawing new ones (``n``, ``steps``... ignored).
        conditioning: for class-conditional models, ``"null"`` (default: sample through the null class, the
            model's own unconditional distribution, which is what a bias audit asks about) or ``"cycle"`` (labels
            0, 1, ..., K-1, 0, ... : the class histogram is then imposed, so only the other factors are audited
            meaningfully). Ignored for unconditional models.
        bootstrap: resamples for the 95% intervals (seeded with ``seed``).
        alpha, min_effect: ``skewed`` = chi-square p < alpha and TV > min_effect.
        min_group: fewest generated (and training) items of a value to compute its FD.
        quality: compute FD per value (needs a :class:`ClassifierReader` for the feature space, and ``data``).
        locate: for every skewed factor (or only the skewed ones among the factors named), run
            :class:`~diffsight.explain.Commitment` (``locate_k`` continuations from ``locate_steps`` steps) on
            ``locate_traces`` samples of the over-represented value and report the median decided step.
        batch_size: rows per network call.
    """
    began = time.perf_counter()
    notes: list[str] = []
    reader = reader if reader is not None else reader_for_model(model)
    if reader is None:
        raise DiffsightError(
            f"{model.name} has no shipped factor reader (its data has no shipped classifier): pass reader= "
            "(a diffsight.explain.FactorReader)"
        )
    if conditioning not in ("null", "cycle"):
        raise DiffsightError(f"conditioning must be 'null' or 'cycle', got {conditioning!r}")
    if data is None and (quality or target in (None, "training")):
        try:
            data = training_data_of(model)
        except DiffsightError as err:
            if target in (None, "training"):
                raise
            notes.append(f"no training data ({err}); per-group quality skipped")
    sample_seconds = 0.0
    labels = None
    if samples is None:
        if n < 2:
            raise DiffsightError(f"n must be at least 2, got {n}")
        if model.num_classes > 0 and conditioning == "cycle":
            labels = torch.arange(n) % model.num_classes
            notes.append("samples conditioned on cycled class labels: the class histogram is imposed, not audited")
        start = time.perf_counter()
        with torch.no_grad():
            samples = generate_samples(
                model.denoiser,
                model.event_shape,
                n,
                steps=steps,
                sampler=sampler,
                generator=torch.Generator().manual_seed(int(seed)),
                labels=labels,
                null_class=model.null_class,
                batch_size=batch_size,
            )
        sample_seconds = time.perf_counter() - start
    samples = samples.detach().float().cpu()
    if tuple(samples.shape[1:]) != tuple(model.event_shape):
        raise ShapeError(f"samples must be shaped (n, {tuple(model.event_shape)}), got {tuple(samples.shape)}")
    n = int(samples.shape[0])
    targets = _targets(target, reader, data, notes)
    probs = read_in_batches(reader, samples, batch_size)  # factor -> (n, V)

    do_quality = quality and data is not None and isinstance(reader, ClassifierReader)
    if quality and data is not None and not isinstance(reader, ClassifierReader):
        notes.append(f"reader {reader.name} has no feature space: per-group FD skipped")
    if do_quality and isinstance(reader, ClassifierReader) and data is not None:  # (narrows the types)
        features, _ = embed(reader.classifier, samples.clamp(-1.0, 1.0), batch_size)  # (n, F)
        train_features, _ = embed(reader.classifier, data.samples, batch_size)  # (N, F)

    result: dict[str, FactorBias] = {}
    for f, names in reader.factors.items():
        decided = probs[f].argmax(-1)  # (n,)
        q, q_name = targets[f]
        bias = factor_bias(
            f,
            decided,
            q,
            values=names,
            target_name=q_name,
            bootstrap=bootstrap,
            seed=seed,
            alpha=alpha,
            min_effect=min_effect,
        )
        group: dict[str, dict[str, Any]] = {}
        if do_quality:
            truth = _truth(data, f, len(names))  # type: ignore[arg-type]
            if truth is None:
                notes.append(f"the training data has no ground truth for {f!r}: per-group FD skipped")
            else:
                group = _group_quality(features, decided, train_features, truth, names, min_group, seed, notes, f)
        where = None
        wanted = locate is True or (not isinstance(locate, bool) and f in locate)
        if wanted and bias.skewed:
            where = _locate(
                model,
                reader,
                f,
                bias.over_represented,
                steps=steps,
                sampler=sampler,
                seed=seed,
                traces=locate_traces,
                k=locate_k,
                branch_steps=locate_steps,
                batch_size=batch_size,
            )
        result[f] = FactorBias(**{**bias.__dict__, "quality": group, "decided": where})
    params = {
        "model": model.name,
        "n": n,
        "steps": steps,
        "sampler": sampler,
        "seed": seed,
        "target": target if isinstance(target, str) or target is None else "custom",
        "reader": reader.name,
        "conditioning": conditioning if model.num_classes > 0 else "unconditional model",
        "bootstrap": bootstrap,
        "alpha": alpha,
        "min_effect": min_effect,
        "min_group": min_group,
        "locate": locate if isinstance(locate, bool) else list(locate),
    }
    if params["target"] is None:
        params["target"] = "training"
    diagnostics = {
        "sampling_seconds": round(sample_seconds, 3),
        "seconds": round(time.perf_counter() - began, 3),
        "sampled": sample_seconds > 0.0,
    }
    return BiasResult(factors=result, n=n, params=params, notes=notes, diagnostics=diagnostics)
