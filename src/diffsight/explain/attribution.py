"""Gradient attribution: which pixels of the noisy state x_s drive a scalar target of the output.

A scalar ``F(x)`` is attributed to the state x at one recorded step s of a Trace, with sigma_s and the
condition held fixed (xai.md, section 12, "pixels of x_t"):

- ``through="x0_hat"``:  ``F(x) = target(D(x, sigma_s, cond))``, the denoiser's estimate at that step;
- ``through="sampler"``: ``F(x) = target(final sample)``, the trace's sampler run from step s to the end with
  the same schedule, options and condition (samplers are differentiable, DESIGN.md contract 3). A stochastic
  sampler replays the noise the trace recorded, and multistep solvers get the recorded x0_hat of the steps
  before s as their history (constants: they depend on x_{s-1}, not on x_s). ``diagnostics["final_mismatch"]``
  says how closely F's path reproduces the recorded final sample. From the first steps (high sigma) the final
  sample is a rough function of x (the path from the baseline crosses into other modes), so IG needs many
  nodes there; the completeness error says when it has not converged.

If the trace used classifier-free guidance, F uses the same guided denoiser.

Targets (:class:`ProbeTarget`, :class:`RegionTarget`, or any callable ``(N, *event) -> (N,)``):
a probe logit (a factor head of a classifier: "why does this become a circle"), or the sum of the output
over a region ("which input pixels form this output region", the diffusers-interpret target, xai.md 5).

Methods (through captum, pytorch/captum):

- ``"saliency"``: ``|dF/dx|`` (Simonyan et al. 2014); ``map`` is the max over channels.
- ``"integrated_gradients"``: ``IG_i = (x_i - b_i) * int_0^1 dF/dx_i(b + a (x - b)) da`` (Sundararajan et al.
  2017, eq. 1) by Gauss-Legendre quadrature with ``n_steps`` nodes; ``map`` is the sum over channels.
  Completeness (their Proposition 1), ``sum_i IG_i = F(x) - F(b)``, is reported as
  ``diagnostics["completeness_error"]`` (absolute) and ``["completeness_relative"]`` (over |F(x) - F(b)|).

Baselines b (for IG): ``"zeros"``, the all-zero state. In the EDM convention (x = x0 + sigma n, data in
[-1, 1]) that is the mean grey image without noise: at small sigma it lies far from where real states live
(a state holds noise of norm ~ sigma sqrt(d)), so the straight path from it is off-manifold (xai.md 12).
``"blur"``, a Gaussian blur of x_s (``blur_sigma`` pixels): it keeps the coarse layout and removes the fine
detail (at high sigma mostly noise), so the attribution shows where fine structure drives the target
(Sturmfels, Lundberg & Lee 2020, "Visualizing the impact of feature attribution baselines", Distill). A tensor
shaped like one sample is used as given.

``values`` (shapes for one sample of event shape (C, H, W); other event shapes keep their own shape):

- ``attribution`` (C, H, W) the attribution of every element of x_s (IG signed, saliency >= 0);
- ``map``         (H, W)    per pixel: sum over channels (IG) or max over channels (saliency);
- ``target_value`` float    F(x_s);
- ``step`` (1,) long, ``sigma`` (1,) float64: the sampler step attributed and its noise level, as 1-element
  tensors like every explainer's time axis.

The model-parameter randomisation test (Adebayo et al. 2018, "Sanity checks for saliency maps"; xai.md 17,
check 7) is :func:`randomisation_check`: a map that barely changes when the denoiser's weights are
re-initialised does not explain the model.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from diffsight.errors import DiffsightError, ShapeError
from diffsight.explain.explanation import Explanation
from diffsight.models.denoiser import Denoiser
from diffsight.models.folder import LoadedModel
from diffsight.sampling.registry import get_sampler
from diffsight.trace.record import Trace
from diffsight.trace.run import guided_denoiser

__all__ = [
    "GradientAttribution",
    "ProbeTarget",
    "RandomisationCheck",
    "RegionTarget",
    "Target",
    "blur",
    "randomisation_check",
    "randomised_copy",
    "spearman",
]

METHODS = ("saliency", "integrated_gradients")
THROUGH = ("x0_hat", "sampler")
_HISTORY = {"dpmpp_2m": 1, "dpmpp_3m": 2}  # multistep samplers: how many earlier x0_hat they restart from


class Target(Protocol):
    """A scalar per sample of a batch of outputs: ``(N, *event) -> (N,)``; ``name`` labels it in summaries."""

    name: str

    def __call__(self, out: torch.Tensor) -> torch.Tensor: ...


class ProbeTarget:
    """The logit of ``value`` of a probe: ``classifier(out)[factor][:, value]``.

    Args:
        classifier: a :class:`~diffsight.metrics.classifier.FactorClassifier` (returns factor -> logits), or any
            callable returning logits (N, K) (then ``factor`` is None).
        factor: the head to read (``"shape"``, ``"digit"``, ...).
        value: the class index, or its name in ``classifier.config["factor_values"][factor]``.

    The output is passed as it is (no clamping to [-1, 1], which would cut the gradient).
    """

    def __init__(self, classifier: Callable[[torch.Tensor], Any], factor: str | None, value: int | str) -> None:
        if isinstance(classifier, nn.Module):
            classifier.eval()
        names: Sequence[str] = ()
        config = getattr(classifier, "config", None)
        if isinstance(config, dict) and factor is not None:
            heads = config.get("heads") or {}
            if factor not in heads:
                raise DiffsightError(f"the classifier has no head {factor!r}; its heads are {sorted(heads)}")
            names = (config.get("factor_values") or {}).get(factor) or ()
        if isinstance(value, str):
            if value not in names:
                raise DiffsightError(f"{value!r} is not a value of {factor!r}; use an index or one of {list(names)}")
            value = list(names).index(value)
        self.classifier = classifier
        self.factor = factor
        self.value = int(value)
        label = names[self.value] if 0 <= self.value < len(names) else str(self.value)
        self.name = f"{factor}={label} logit" if factor is not None else f"logit {label}"

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        device = out.device
        param = next(iter(getattr(self.classifier, "parameters", lambda: iter(()))()), None)
        if param is not None and param.device != device:
            out = out.to(param.device)  # differentiable: gradients flow back to the model's device
        logits = self.classifier(out)
        if isinstance(logits, dict):
            if self.factor is None:
                raise DiffsightError(f"the classifier returns heads {sorted(logits)}: pass factor=")
            logits = logits[self.factor]
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ShapeError("the probe must return logits shaped (N, K)")
        if not 0 <= self.value < logits.shape[1]:
            raise DiffsightError(f"value {self.value} is outside the probe's {logits.shape[1]} classes")
        return logits[:, self.value].to(device)


class RegionTarget:
    """The sum of the output over a region: ``sum_{c, i, j} out[c, i, j] * mask[i, j]``.

    Args:
        mask: bool (H, W) for images (all channels count), or any bool tensor shaped like the trailing
            dimensions of the event.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool:
            raise DiffsightError(f"mask must be a bool tensor, got {mask.dtype}")
        if not bool(mask.any()):
            raise DiffsightError("mask selects no pixel: the region is empty")
        self.mask = mask
        self.name = f"sum over a {int(mask.sum())}-pixel region"

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        m = self.mask.to(out.device)
        if tuple(out.shape[out.ndim - m.ndim :]) != tuple(m.shape) or out.ndim <= m.ndim:
            raise ShapeError(f"mask of shape {tuple(m.shape)} does not fit outputs of shape {tuple(out.shape)}")
        return (out * m.to(out.dtype)).reshape(out.shape[0], -1).sum(1)  # (N, *event) -> (N,)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (std ``sigma`` pixels, replicate padding) of images x (C, H, W) or (B, C, H, W)."""
    if sigma <= 0:
        raise DiffsightError(f"blur_sigma must be positive, got {sigma}")
    if x.ndim not in (3, 4):
        raise ShapeError(f"blur needs images (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    batch = x if x.ndim == 4 else x[None]  # (B, C, H, W)
    c = batch.shape[1]
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype).to(x.device)  # (K,)
    rows = kernel.reshape(1, 1, -1, 1).expand(c, 1, -1, 1)  # (C, 1, K, 1)
    cols = kernel.reshape(1, 1, 1, -1).expand(c, 1, 1, -1)  # (C, 1, 1, K)
    out = nn.functional.pad(batch, (0, 0, radius, radius), mode="replicate")
    out = nn.functional.conv2d(out, rows, groups=c)
    out = nn.functional.pad(out, (radius, radius, 0, 0), mode="replicate")
    out = nn.functional.conv2d(out, cols, groups=c)
    return out if x.ndim == 4 else out[0]


class _Counted:
    """A denoiser that counts the samples it evaluates (NFE summed over the batch rows)."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.count = 0
        for attr in ("sigma_min", "sigma_max"):
            if hasattr(denoiser, attr):
                setattr(self, attr, getattr(denoiser, attr))

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        self.count += int(x.shape[0])
        return self.denoiser(x, sigma, cond)


def _work_place(denoiser: Denoiser) -> tuple[torch.device, torch.dtype]:
    param = next(iter(getattr(denoiser, "parameters", lambda: iter(()))()), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype


class GradientAttribution:
    """Attribute a scalar target to the state x_s at one recorded step of a Trace (saliency or IG, via captum).

    ``diagnostics``: ``nfe`` (network evaluations counted per sample row, all of them: about ``n_steps`` times
    ``nfe_target``, the evaluations one F(x) costs; classifier-free guidance counts both branches),
    ``completeness_error`` / ``completeness_relative`` / ``baseline_value`` (IG only, else None),
    ``final_mismatch`` (through the sampler), ``seconds``.

    Args:
        trace: the run to explain.
        denoiser: the (unguided) denoiser the trace was recorded with, or its :class:`LoadedModel`.
        step: the sampler step whose state x_s is attributed; it must be one of ``trace.step_index``.
        target: a :class:`ProbeTarget`, a :class:`RegionTarget` or any ``(N, *event) -> (N,)`` callable.
        method: ``"integrated_gradients"`` or ``"saliency"``.
        through: ``"x0_hat"`` (the denoiser's estimate at step s) or ``"sampler"`` (the final sample).
        sample: which sample of the trace's batch.
        n_steps: quadrature nodes of IG.
        baseline: ``"zeros"``, ``"blur"`` or a tensor shaped like one sample (see the module docstring).
        internal_batch_size: how many IG path points go through F at once (None: all ``n_steps``).
        blur_sigma: the blur baseline's Gaussian std in pixels.
    """

    method = "attribution"

    def __init__(
        self,
        trace: Trace,
        denoiser: Denoiser | LoadedModel,
        *,
        step: int,
        target: Target | Callable[[torch.Tensor], torch.Tensor],
        method: str = "integrated_gradients",
        through: str = "x0_hat",
        sample: int = 0,
        n_steps: int = 32,
        baseline: str | torch.Tensor = "zeros",
        internal_batch_size: int | None = None,
        blur_sigma: float = 1.5,
    ) -> None:
        if method not in METHODS:
            raise DiffsightError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
        if through not in THROUGH:
            raise DiffsightError(f"through must be one of {', '.join(THROUGH)}, got {through!r}")
        if not 0 <= sample < trace.batch_size:
            raise DiffsightError(f"sample must lie in 0..{trace.batch_size - 1}, got {sample}")
        if step not in trace.step_index:
            raise DiffsightError(
                f"step {step} was not recorded in trace {trace.id}; recorded steps: {trace.step_index} "
                "(record with stride=1 to attribute any step)"
            )
        if n_steps < 1:
            raise DiffsightError(f"n_steps must be at least 1, got {n_steps}")
        if isinstance(baseline, str) and baseline not in ("zeros", "blur"):
            raise DiffsightError(f"baseline must be 'zeros', 'blur' or a tensor, got {baseline!r}")
        if isinstance(baseline, str) and baseline == "blur" and not trace.is_image:
            raise DiffsightError("the blur baseline needs image traces (C, H, W); use 'zeros' or pass a tensor")
        if isinstance(baseline, torch.Tensor) and tuple(baseline.shape) != trace.event_shape:
            raise ShapeError(f"a baseline tensor must be shaped like one sample {trace.event_shape}")
        self.trace = trace
        self.denoiser: Denoiser = denoiser.denoiser if isinstance(denoiser, LoadedModel) else denoiser
        self.step = int(step)
        self.row = trace.step_index.index(self.step)
        self.target = target
        self.attr_method = method
        self.through = through
        self.sample = sample
        self.n_steps = int(n_steps)
        self.baseline = baseline
        self.internal_batch_size = internal_batch_size
        self.blur_sigma = float(blur_sigma)
        if through == "sampler":
            self._history_rows()  # fail early when the multistep history was not recorded

    # -- the function F -------------------------------------------------------------------------------------
    def _cond(self) -> torch.Tensor | None:
        t = self.trace
        labels = t.labels
        if labels is not None:
            return labels[self.sample : self.sample + 1]
        if t.meta.get("model", {}).get("num_classes", 0) > 0:  # unconditional run of a conditional model
            return torch.tensor([int(t.meta["null_class"])], dtype=torch.long)
        return None

    def _history_rows(self) -> list[int]:
        """Rows of the trace holding x0_hat of the steps just before ``step`` (what a multistep sampler needs)."""
        keep = min(_HISTORY.get(self.trace.meta["sampler"], 0), self.step)
        wanted = list(range(self.step - keep, self.step))
        index = self.trace.step_index
        missing = [s for s in wanted if s not in index]
        if missing:
            raise DiffsightError(
                f"{self.trace.meta['sampler']} restarts from the x0_hat of steps {wanted}, but steps {missing} "
                "were not recorded: record the trace with stride=1 to attribute through the sampler"
            )
        return [index.index(s) for s in wanted]

    def _output_fn(
        self, denoiser: Denoiser, device: torch.device, dtype: torch.dtype
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """x (N, *event) at step s -> the output F reads (x0_hat at step s, or the final sample), (N, *event)."""
        t = self.trace
        guided = guided_denoiser(denoiser, float(t.meta.get("guidance", 1.0)), t.meta.get("null_class"))
        cond1 = self._cond()
        cond1 = None if cond1 is None else cond1.to(device)
        sigma = float(t.tensors["sigma"][self.row])

        def conds(n: int) -> torch.Tensor | None:
            return None if cond1 is None else cond1.expand(n)

        if self.through == "x0_hat":

            def x0_hat(x: torch.Tensor) -> torch.Tensor:
                return guided(x, x.new_full((x.shape[0],), sigma), conds(x.shape[0]))

            return x0_hat

        name = t.meta["sampler"]
        run = get_sampler(name)
        options = dict(t.meta.get("sampler_options") or {})
        history = [t.x0_hat[r, self.sample].to(device, dtype) for r in self._history_rows()]  # each (*event)
        recorded = t.noise()
        sample = self.sample

        def replayed(step: int, k: int, like: torch.Tensor) -> torch.Tensor:
            try:
                z = recorded[step][k][sample]  # (*event)
            except (KeyError, IndexError) as err:
                raise DiffsightError(
                    f"trace {t.id} holds no noise for step {step}, draw {k}: it cannot be replayed"
                ) from err
            return z.to(like.device, like.dtype).expand_as(like)

        def final(x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            extra: dict[str, Any] = {}
            if name in _HISTORY:
                extra["x0_history"] = [h.expand_as(x) for h in history]
            return run(guided, x, t.sigmas, cond=conds(n), start=self.step, noise=replayed, **options, **extra)

        return final

    def _baseline(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.baseline, torch.Tensor):
            return self.baseline.to(x.device, x.dtype)
        if self.baseline == "blur":
            return blur(x, self.blur_sigma)
        return torch.zeros_like(x)

    # -- the verb ---------------------------------------------------------------------------------------------
    def explain(self) -> Explanation:
        return self._explain(self.denoiser)

    def _explain(self, denoiser: Denoiser) -> Explanation:
        from captum.attr import IntegratedGradients, Saliency

        t = self.trace
        start = time.perf_counter()
        device, dtype = _work_place(denoiser)
        counted = _Counted(denoiser)
        output = self._output_fn(counted, device, dtype)
        target = self.target

        def forward(x: torch.Tensor) -> torch.Tensor:
            value = target(output(x))
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != (x.shape[0],):
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ShapeError(f"the target must return one number per sample, shape ({x.shape[0]},); got {got}")
            return value

        x = t.x[self.row, self.sample].to(device, dtype)  # (*event)
        base = self._baseline(x)  # (*event)
        with torch.no_grad():
            out_x = output(x[None])  # (1, *event)
            nfe_target = counted.count
            f_x = float(target(out_x)[0])
            f_b = float(forward(base[None])[0]) if self.attr_method == "integrated_gradients" else math.nan
        diagnostics: dict[str, Any] = {"nfe_target": nfe_target}
        if self.through == "sampler":
            diagnostics["final_mismatch"] = float((out_x[0].float().cpu() - t.final[self.sample]).abs().max())
        inputs = x[None].clone().requires_grad_(True)  # (1, *event)
        if self.attr_method == "integrated_gradients":
            attr, delta = IntegratedGradients(forward).attribute(
                inputs,
                baselines=base[None],
                n_steps=self.n_steps,
                method="gausslegendre",
                internal_batch_size=self.internal_batch_size,
                return_convergence_delta=True,
            )
            error = abs(float(delta.reshape(-1)[0]))
            span = abs(f_x - f_b)
            diagnostics.update(
                completeness_error=error,
                completeness_relative=error / span if span > 0 else (0.0 if error == 0 else math.inf),
                baseline_value=f_b,
            )
        else:
            attr = Saliency(forward).attribute(inputs, abs=True)
            diagnostics.update(completeness_error=None, completeness_relative=None, baseline_value=None)
        attribution = attr[0].detach().float().cpu()  # (*event)
        if t.is_image:
            amap = attribution.sum(0) if self.attr_method == "integrated_gradients" else attribution.max(0).values
        else:
            amap = attribution.clone()
        diagnostics.update(nfe=counted.count, seconds=round(time.perf_counter() - start, 4))
        return Explanation(
            method=self.method,
            values={
                "step": torch.tensor([self.step], dtype=torch.long),
                "sigma": t.tensors["sigma"][self.row : self.row + 1].clone(),
                "attribution": attribution,
                "map": amap,
                "target_value": f_x,
            },
            params={
                "step": self.step,
                "target": getattr(target, "name", type(target).__name__),
                "method": self.attr_method,
                "through": self.through,
                "sample": self.sample,
                "n_steps": self.n_steps,
                "baseline": self.baseline if isinstance(self.baseline, str) else "tensor",
                "blur_sigma": self.blur_sigma,
                "internal_batch_size": self.internal_batch_size,
            },
            diagnostics=diagnostics,
            summary=self._summary(amap, f_x, diagnostics),
            trace_id=t.id,
        )

    def _summary(self, amap: torch.Tensor, f_x: float, diagnostics: dict[str, Any]) -> str:
        t = self.trace
        label = "integrated gradients" if self.attr_method == "integrated_gradients" else "saliency"
        name = getattr(self.target, "name", "the target")
        sigma = float(t.tensors["sigma"][self.row])
        size = amap.abs().reshape(-1)
        order = size.sort(descending=True).values
        total = float(order.sum())
        text = (
            f"{label} of {name} (through {self.through}) at step {self.step} of {t.num_steps} "
            f"(sigma {sigma:.3g}): F = {f_x:.3g}"
        )
        if total > 0:
            half = int((order.cumsum(0) < 0.5 * total).sum()) + 1
            where = divmod(int(size.argmax()), amap.shape[-1]) if amap.ndim == 2 else (int(size.argmax()),)
            text += f"; half of |attribution| lies in {half} of {size.numel()} pixels, the strongest at {where}"
        relative = diagnostics.get("completeness_relative")
        if relative is not None:
            text += f"; completeness error {100 * relative:.2g}%"
            if not relative <= 0.05:
                text += " (over 5%: raise n_steps, or use a baseline nearer x such as 'blur')"
        return text

    def randomisation_check(self, *, seed: int = 0, threshold: float = 0.5) -> RandomisationCheck:
        """This attribution's map with the trained and with re-initialised denoiser weights, compared by rank
        correlation (see :func:`randomisation_check`)."""
        return randomisation_check(
            lambda d: self._explain(d).values["map"], self.denoiser, seed=seed, threshold=threshold
        )


# --- the model-parameter randomisation test ---------------------------------------------------------------


def randomised_copy(denoiser: Denoiser | LoadedModel, *, seed: int = 0) -> nn.Module:
    """A deep copy of ``denoiser`` with every network weight re-initialised (seeded, the global RNG untouched).

    Layers with ``reset_parameters`` (convolutions, linear layers, norms, embeddings: everything a diffusers
    UNet or diffsight's MLP is built from) get their own default initialisation, which is how
    ``UNet2DModel.from_config`` initialises a fresh network; any other parameter is redrawn from a normal
    distribution with the original's standard deviation. Preconditioning and buffers are kept.
    """
    module = denoiser.denoiser if isinstance(denoiser, LoadedModel) else denoiser
    if not isinstance(module, nn.Module) or not any(True for _ in module.parameters()):
        raise DiffsightError(
            "the randomisation check needs a denoiser with trainable weights (an nn.Module with parameters); "
            "closed-form oracles have none"
        )
    clone = copy.deepcopy(module)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for layer in clone.modules():
            own = list(layer.parameters(recurse=False))
            if not own:
                continue
            reset = getattr(layer, "reset_parameters", None)
            if callable(reset):
                reset()
            else:
                for p in own:
                    noise = torch.randn(p.shape, dtype=p.dtype).to(p.device)
                    p.copy_(noise * (p.std() if p.numel() > 1 else p.abs().clamp_min(1e-3)))
    return clone


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of a 1-D tensor, ties sharing their mean rank (float64)."""
    from scipy.stats import rankdata

    return torch.from_numpy(rankdata(values.detach().double().cpu().numpy())).double()


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two equally sized tensors (flattened); NaN when one is constant."""
    if a.numel() != b.numel():
        raise ShapeError(f"cannot correlate maps of {a.numel()} and {b.numel()} elements")
    ra, rb = _ranks(a.reshape(-1)), _ranks(b.reshape(-1))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom > 0 else math.nan


@dataclass(frozen=True, eq=False)
class RandomisationCheck:
    """The outcome of the model-parameter randomisation test.

    Attributes:
        rho: Spearman rank correlation between the map of the trained model and the map of the re-initialised
            one (of |map| when ``absolute``).
        threshold: |rho| at or above which the map is flagged.
        flagged: True when the map barely depends on the weights (|rho| >= threshold, or rho undefined): it does
            not explain the model.
        trained_map, randomised_map: the two maps compared.
    """

    rho: float
    threshold: float
    flagged: bool
    absolute: bool
    seed: int
    trained_map: torch.Tensor
    randomised_map: torch.Tensor

    @property
    def summary(self) -> str:
        verdict = (
            "FLAGGED: the map hardly depends on the weights, so it does not explain the model"
            if self.flagged
            else "passed: the map changes when the weights are randomised"
        )
        return f"rank correlation with a re-initialised model {self.rho:.2f} (threshold {self.threshold}): {verdict}"


def randomisation_check(
    make_map: Callable[[Denoiser], torch.Tensor],
    denoiser: Denoiser | LoadedModel,
    *,
    seed: int = 0,
    threshold: float = 0.5,
    absolute: bool = True,
) -> RandomisationCheck:
    """Model-parameter randomisation test (Adebayo et al. 2018, sec. 3.1; xai.md 17, check 7).

    ``make_map(d)`` computes a map for denoiser ``d``; it is called with the trained denoiser and with
    :func:`randomised_copy` of it, and the two maps are compared by Spearman rank correlation (of their absolute
    values when ``absolute``, Adebayo et al.'s stricter variant, since the sign of a gradient map is not what
    the eye reads). A faithful explanation of the model must change: ``|rho| < threshold`` passes. A map that
    ignores the model (an edge detector, the input itself) keeps rho near 1 and is flagged.
    """
    module = denoiser.denoiser if isinstance(denoiser, LoadedModel) else denoiser
    trained = make_map(module).detach().float().cpu()
    randomised = make_map(randomised_copy(module, seed=seed)).detach().float().cpu()  # type: ignore[arg-type]
    a, b = (trained.abs(), randomised.abs()) if absolute else (trained, randomised)
    rho = spearman(a, b)
    flagged = not (abs(rho) < threshold)  # NaN (a constant map) is flagged too
    return RandomisationCheck(
        rho=rho,
        threshold=threshold,
        flagged=flagged,
        absolute=absolute,
        seed=seed,
        trained_map=trained,
        randomised_map=randomised,
    )
