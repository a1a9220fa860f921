"""Training-data attribution for denoisers: TRAK, D-TRAK and Journey-TRAK scores, and an exact LDS harness.

TRAK (Park et al. 2023, "TRAK: Attributing Model Behavior at Scale", eq. 16 with one checkpoint and Q = I) scores
training example i for a target z by

    tau_i(z) = phi_i^T (Phi^T Phi + lambda I)^-1 phi(z),     phi = P^T grad_theta (.)   (P: k-dim Gaussian JL map)

Here, as in Journey-TRAK (Georgiev et al. 2023, arXiv 2312.06205) and D-TRAK (Zheng et al. 2024, arXiv
2311.00500), phi_i is the gradient of example i's denoising loss summed over a fixed set of noise levels with
fixed (seeded) noise draws,

    L_i = sum_j w_j mean_r ||D(y_i + sigma_j n_ijr, sigma_j) - y_i||^2,

and phi(z) the gradient of a model output function of the target: ``"loss"`` (the same denoising loss of z) or
``"output_norm"`` (D-TRAK's mean ||eps_hat||^2, eps_hat = (x_sigma - D(x_sigma, sigma)) / sigma, which attributes
better in their experiments). Each noise level's gradient can be scaled to unit norm before the sum
(``normalize=True``): the "dominating norm" fix of ReTrac (Xie et al. 2024, arXiv 2401.09031), which stops the
levels with the largest gradients from making the same examples influential for every target.

Sign: tau_i approximates ``grad f^T H^-1 grad L_i``, the *decrease* of the target's output f caused by training on
example i (influence functions with H ~ Phi^T Phi; Koh & Liang 2017). For f = loss a large positive score means
"this example made the target more likely". The per-step variant (Journey-TRAK) scores the denoiser's estimate
x0_hat at each recorded step of a Trace with f evaluated at that step's sigma only.

:func:`linear_datamodeling_score` is the ground truth: on :class:`~diffsight.oracles.linear.LinearDenoiser`
retraining without any subset is exact, so the LDS (Park et al. 2023, sec. 2.2: the Spearman correlation over
random subsets S between the additive prediction ``-sum_{i in S} tau_i`` and the retrained ``f(theta_S)``) is
measured, not estimated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from diffsight.errors import DiffsightError, ShapeError, unknown_name
from diffsight.oracles.linear import LinearDenoiser
from diffsight.training.distributed import gather_rows, share

__all__ = ["LDSResult", "TrainingAttribution", "linear_datamodeling_score", "spearman"]

OUTPUTS = ("loss", "output_norm")
KERNELS = ("fisher", "empirical")
_PROJECTION_CACHE_BYTES = 1 << 30  # the JL matrix is kept in memory up to 1 GiB; a larger one is regenerated per use


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors (average ranks for ties)."""
    from scipy.stats import spearmanr

    a_np, b_np = a.detach().double().cpu().numpy(), b.detach().double().cpu().numpy()
    if a_np.shape != b_np.shape or a_np.ndim != 1:
        raise ShapeError(f"spearman needs two 1-D tensors of one length, got {a_np.shape} and {b_np.shape}")
    value = spearmanr(a_np, b_np).statistic
    return float(value) if math.isfinite(value) else 0.0


class _Projector:
    """A seeded Gaussian Johnson-Lindenstrauss map R^P -> R^k, entries N(0, 1/k), generated in row chunks.

    Chunk c of ``chunk`` parameter rows is drawn from a generator seeded with ``seed + c``, so the map is the same
    whatever the batch; when P * k is small it is cached.
    """

    def __init__(self, num_params: int, dim: int, seed: int, chunk: int = 1 << 16) -> None:
        if dim < 1:
            raise DiffsightError(f"projection_dim must be a positive integer or None, got {dim}")
        self.num_params, self.dim, self.seed, self.chunk = num_params, dim, seed, chunk
        self._cache: list[torch.Tensor] | None = None

    def _blocks(self, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
        if self._cache is not None and self._cache[0].dtype == dtype and self._cache[0].device == device:
            return self._cache
        blocks = []
        for c, start in enumerate(range(0, self.num_params, self.chunk)):
            rows = min(self.chunk, self.num_params - start)
            gen = torch.Generator().manual_seed(self.seed + c)
            block = torch.randn((rows, self.dim), generator=gen, dtype=torch.float64) / math.sqrt(self.dim)
            blocks.append(block.to(device, dtype))
        if self.num_params * self.dim * blocks[0].element_size() <= _PROJECTION_CACHE_BYTES:
            self._cache = blocks
        return blocks

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """(B, P) -> (B, k)."""
        out = torch.zeros((g.shape[0], self.dim), dtype=g.dtype, device=g.device)
        start = 0
        for block in self._blocks(g.dtype, g.device):
            out += g[:, start : start + block.shape[0]] @ block
            start += block.shape[0]
        return out


class TrainingAttribution:
    """TRAK-family attribution of targets to the examples of a denoiser's training set.

    Args:
        denoiser: any Denoiser that is an ``nn.Module`` (an EDM-preconditioned UNet, a
            :class:`~diffsight.oracles.linear.LinearDenoiser`, ...); gradients are taken with respect to its
            parameters that require grad. Keep it small: one backward pass per example, level and draw batch.
        train: the training examples (N, *event), in the model's data scale.
        sigmas: the noise levels of the featurisation and of the target's output function; defaults to the grid
            of a LinearDenoiser, else 8 log-spaced levels in [max(sigma_min, 0.01), min(sigma_max, 10)].
        labels: conditions of the training examples (N,), passed to the denoiser as ``cond``.
        draws: noise draws R per example and level.
        train_noise: fixed standard-normal draws (N, J, R, *event) for the training losses; by default drawn from
            ``seed``. For a LinearDenoiser the draws it was fitted on are used, so the gradients are exact.
        weights: per-level loss weights w_j (J,), default 1.
        output: the target's model output function f: ``"loss"`` or ``"output_norm"`` (D-TRAK).
        normalize: scale each level's gradient to unit norm before summing (ReTrac / D-TRAK).
        projection_dim: k of the random projection, or None to keep the full gradient (small models only).
        damping: lambda relative to the mean eigenvalue of the kernel K (``lambda = damping * tr(K) / k``).
        kernel: the curvature that replaces TRAK's Phi^T Phi: ``"fisher"`` (default; a sampled Gauss-Newton
            Hessian, one extra gradient per example and probe, see :meth:`featurize`) or ``"empirical"``
            (Phi^T Phi of the loss gradients themselves, as in TRAK's and D-TRAK's code).
        fisher_draws: independent probes per example for the ``"fisher"`` kernel.
        seed: seeds the projection and all noise draws.
        batch_size: training examples per vmapped gradient batch (bounds memory at batch_size x P).
        parameters: attribute through the parameters whose names start with one of these prefixes only (e.g. a
            UNet's last up block and output layer: the backward pass stops there, so featurising costs a fraction
            of the full gradient); default: every parameter that requires grad, or all of them when the model
            is frozen for inference.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        train: torch.Tensor,
        *,
        sigmas: torch.Tensor | list[float] | None = None,
        labels: torch.Tensor | None = None,
        draws: int = 4,
        train_noise: torch.Tensor | None = None,
        weights: torch.Tensor | list[float] | None = None,
        output: str = "loss",
        normalize: bool = True,
        projection_dim: int | None = None,
        damping: float = 1e-3,
        kernel: str = "fisher",
        fisher_draws: int = 1,
        seed: int = 0,
        batch_size: int = 64,
        parameters: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(denoiser, nn.Module):
            raise DiffsightError("TrainingAttribution needs an nn.Module denoiser (its parameters are differentiated)")
        if output not in OUTPUTS:
            raise unknown_name("model output function", output, OUTPUTS)
        self.denoiser = denoiser
        named = dict(denoiser.named_parameters())
        if parameters is not None:
            prefixes = tuple(parameters)
            self.params = {k: v.detach() for k, v in named.items() if k.startswith(prefixes)}
            if not self.params:
                raise DiffsightError(
                    f"no parameter name starts with any of {list(prefixes)}; names start with e.g. "
                    f"{sorted({'.'.join(k.split('.')[:3]) for k in named})[:8]}"
                )
        else:
            self.params = {k: v.detach() for k, v in named.items() if v.requires_grad}
            if not self.params:  # a model loaded for inference (all frozen): attribute through every parameter
                self.params = {k: v.detach() for k, v in named.items()}
        if not self.params:
            raise DiffsightError("the denoiser has no parameters: nothing to attribute through")
        ref = next(iter(self.params.values()))
        self.dtype, self.device = ref.dtype, ref.device
        self.train = torch.as_tensor(train).to(self.device, self.dtype)
        if self.train.ndim < 2:
            raise ShapeError(f"train must be shaped (N, *event), got {tuple(self.train.shape)}")
        self.event_shape = tuple(self.train.shape[1:])
        self.labels = None if labels is None else torch.as_tensor(labels, device=self.device).reshape(-1)
        if self.labels is not None and self.labels.numel() != self.train.shape[0]:
            raise ShapeError(f"labels must hold one entry per training example ({self.train.shape[0]})")
        if sigmas is None:
            if isinstance(denoiser, LinearDenoiser):
                sigmas = denoiser.sigmas
            else:
                lo = max(float(getattr(denoiser, "sigma_min", 0.0)), 0.01)
                hi = min(float(getattr(denoiser, "sigma_max", 10.0)), 10.0)
                sigmas = torch.logspace(math.log10(lo), math.log10(hi), 8, dtype=torch.float64)
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
        if self.sigmas.numel() < 1 or torch.any(self.sigmas <= 0):
            raise DiffsightError(f"sigmas must be positive, got {self.sigmas.tolist()}")
        j = self.sigmas.numel()
        self.weights = torch.ones(j, dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
        if self.weights.numel() != j:
            raise ShapeError(f"weights must hold one value per sigma ({j}), got {self.weights.numel()}")
        if (
            train_noise is None
            and isinstance(denoiser, LinearDenoiser)
            and torch.equal(self.sigmas, denoiser.sigmas.cpu())
            and torch.equal(self.train.double().reshape(self.train.shape[0], -1), denoiser.data.double())
        ):
            train_noise = denoiser.noise
        self.seed, self.draws = int(seed), int(draws)
        if train_noise is None:
            gen = torch.Generator().manual_seed(self.seed)
            train_noise = torch.randn((self.train.shape[0], j, self.draws, *self.event_shape), generator=gen)
        n = self.train.shape[0]
        self.train_noise = torch.as_tensor(train_noise).to(self.device, self.dtype).reshape(n, j, -1, *self.event_shape)
        self.output, self.normalize = output, bool(normalize)
        self.num_params = sum(p.numel() for p in self.params.values())
        self.projector = None if projection_dim is None else _Projector(self.num_params, int(projection_dim), seed)
        self.damping, self.batch_size = float(damping), int(batch_size)
        if kernel not in KERNELS:
            raise unknown_name("attribution kernel", kernel, KERNELS)
        if fisher_draws < 1:
            raise DiffsightError(f"fisher_draws must be >= 1, got {fisher_draws}")
        self.kernel, self.fisher_draws = kernel, int(fisher_draws)
        self.features: torch.Tensor | None = None  # (N, k) = Phi (Phi^T Phi + lambda I)^-1, set by featurize()
        self.train_grads: torch.Tensor | None = None  # (N, k) = Phi

    # -- per-example gradients --------------------------------------------------------------------------------
    def _value(
        self,
        params: dict[str, torch.Tensor],
        x0: torch.Tensor,
        noise: torch.Tensor,
        sigma: torch.Tensor,
        cond: Any,
        kind: str,
        module: nn.Module | None = None,
        probe: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """f for one example x0 (*event) at one level, averaged over the draws ``noise`` (R, *event).

        ``kind`` is ``"loss"`` (mean_r ||D - x0||^2), ``"output_norm"`` (mean ||eps_hat||^2) or ``"probe"``
        (sqrt(2 / R) sum_r <D(x_r), v_r> with v = ``probe``: its gradient J^T v is a sample whose outer product has
        the expectation of the loss's Gauss-Newton Hessian (2 / R) sum_r J_r^T J_r).
        """
        r = noise.shape[0]
        xs = x0[None] + sigma * noise  # (R, *event)
        c = None if cond is None else cond.expand(r)
        out = functional_call(self.denoiser if module is None else module, params, (xs, sigma.expand(r), c))
        if kind == "loss":
            return (out - x0[None]).square().sum() / r
        if kind == "probe":
            return math.sqrt(2.0 / r) * (out * probe).sum()
        eps = (xs - out) / sigma  # (R, *event)
        return eps.square().mean()

    def _grads(
        self,
        x0: torch.Tensor,
        noise: torch.Tensor,
        cond: torch.Tensor | None,
        kind: str,
        sigmas: torch.Tensor,
        weights: torch.Tensor,
        probe: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Summed per-level gradients for a batch: x0 (B, *event), noise (B, J, R, *event) -> (B, P).

        Loss and output gradients are normalised per level when ``normalize`` is set; probe gradients (the
        curvature sample) are weighted by sqrt(w_j) and never normalised.
        """
        total = torch.zeros((x0.shape[0], self.num_params), dtype=self.dtype, device=self.device)
        for j in range(sigmas.numel()):
            sigma = torch.as_tensor(float(sigmas[j]), dtype=self.dtype, device=self.device)
            pj = None if probe is None else probe[:, j]

            def one(x: torch.Tensor, nz: torch.Tensor, c: Any, v: Any, sigma: torch.Tensor = sigma) -> Any:
                return grad(self._value)(self.params, x, nz, sigma, c, kind, None, v)

            flat = self._batched(one, x0, noise[:, j], cond, pj)
            if kind == "probe":
                flat = flat * math.sqrt(float(weights[j]))
            else:
                flat = flat * float(weights[j])
                if self.normalize:
                    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)
            total += flat
        return total

    def _batched(self, one: Any, x0: torch.Tensor, noise: torch.Tensor, cond: Any, probe: Any) -> torch.Tensor:
        """Flattened per-example gradients (B, P) of ``one`` over a batch, vmapped where the module allows.

        Class labels are not vmapped: networks validate them with data-dependent Python (``int(labels.max())``),
        which vmap refuses. Examples are grouped by label instead and each group is vmapped with its label fixed.
        """
        out = torch.empty((x0.shape[0], self.num_params), dtype=self.dtype, device=self.device)
        groups = [(torch.arange(x0.shape[0], device=self.device), None)]
        if cond is not None:
            groups = [((cond == c).nonzero().reshape(-1), c) for c in torch.unique(cond)]
        for rows, c in groups:
            pv = None if probe is None else probe[rows]
            try:
                g = vmap(one, in_dims=(0, 0, None, None if pv is None else 0))(x0[rows], noise[rows], c, pv)
                out[rows] = torch.cat([g[k].reshape(rows.numel(), -1) for k in self.params], 1)  # (b, P)
            except (RuntimeError, NotImplementedError):  # a module vmap cannot batch: one example at a time
                for i, b in enumerate(rows.tolist()):
                    gb = one(x0[b], noise[b], c, None if pv is None else pv[i])
                    out[b] = torch.cat([gb[k].reshape(-1) for k in self.params])
        return out

    def _project(self, g: torch.Tensor) -> torch.Tensor:
        g = g if self.projector is None else self.projector(g)
        return g.double()

    # -- TRAK -------------------------------------------------------------------------------------------------
    def featurize(self, progress: Callable[[int, int], None] | None = None) -> TrainingAttribution:
        """Compute Phi (projected per-example training-loss gradients), the curvature kernel, and
        ``Phi (K + lambda I)^-1`` for scoring.

        With ``kernel="fisher"`` K = sum_i psi_i psi_i^T / S, psi the projected probe gradients (S = ``fisher_draws``
        independent probes per example): an unbiased estimate of the projected Gauss-Newton Hessian P^T H P of the
        training loss (the "true Fisher" of Kunstner et al. 2019). With ``kernel="empirical"`` K = Phi^T Phi, the
        empirical Fisher of TRAK/D-TRAK's code. ``progress(done, total)`` is told after every batch.
        """
        rows, probes = [], []
        n = self.train.shape[0]
        mine = share(n)  # under torchrun / accelerate launch each process featurises its slice; gathered below
        for start in range(mine.start, mine.stop, self.batch_size):
            sl = slice(start, min(mine.stop, start + self.batch_size))
            cond = None if self.labels is None else self.labels[sl]
            x0, noise = self.train[sl], self.train_noise[sl]
            rows.append(self._project(self._grads(x0, noise, cond, "loss", self.sigmas, self.weights)))
            if self.kernel == "fisher":
                for s in range(self.fisher_draws):
                    v = self._probe_noise(sl, s, noise.shape[1:])  # (B, J, R, *event)
                    psi = self._grads(x0, noise, cond, "probe", self.sigmas, self.weights, probe=v)
                    probes.append(self._project(psi) / math.sqrt(self.fisher_draws))
            if progress is not None:
                progress(sl.stop, n)
        phi = gather_rows(torch.cat(rows)).to(self.device)  # (N, k), examples in order
        psi = gather_rows(torch.cat(probes)).to(self.device) if probes else phi  # (N * S, k), any order
        kernel = psi.T @ psi  # (k, k)
        lam = self.damping * float(kernel.diagonal().mean())
        kernel = kernel + lam * torch.eye(kernel.shape[0], dtype=kernel.dtype, device=kernel.device)
        self.train_grads = phi
        self.features = torch.linalg.solve(kernel, phi.T).T  # (N, k)
        return self

    def _probe_noise(self, rows: slice, draw: int, shape: torch.Size) -> torch.Tensor:
        """Standard-normal probes (B, *shape) of the Fisher kernel, seeded per example and draw, so a share of the
        training set gets the same probes on any process."""
        probes = []
        for i in range(rows.start, rows.stop):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + 2 + 7_919 * (i * self.fisher_draws + draw))
            probes.append(torch.randn(shape, generator=gen))
        return torch.stack(probes).to(self.device, self.dtype)

    def _target_noise(self, num: int, levels: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed + 1)  # the same draws at every call: f is deterministic
        noise = torch.randn((1, levels, max(self.draws, 1), *self.event_shape), generator=gen)
        return noise.expand(num, *noise.shape[1:]).to(self.device, self.dtype)

    def _targets(self, target: torch.Tensor) -> tuple[torch.Tensor, bool]:
        t = torch.as_tensor(target).to(self.device, self.dtype)
        if tuple(t.shape) == self.event_shape:
            return t[None], True
        if tuple(t.shape[1:]) != self.event_shape:
            raise ShapeError(
                f"target must be shaped {self.event_shape} or (B, *{self.event_shape}), got {tuple(t.shape)}"
            )
        return t, False

    def _cond(self, cond: Any, num: int) -> torch.Tensor | None:
        if cond is None:
            return None
        c = torch.as_tensor(cond, device=self.device).reshape(-1)
        return c.expand(num) if c.numel() == 1 else c

    def target_gradient(
        self, target: torch.Tensor, *, cond: Any = None, sigmas: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Projected gradient of the output function for each target, (B, k) (or (k,) for one target)."""
        t, single = self._targets(target)
        levels = self.sigmas if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
        weights = self.weights if sigmas is None else torch.ones(levels.numel(), dtype=torch.float64)
        g = self._grads(
            t,
            self._target_noise(t.shape[0], levels.numel()),
            self._cond(cond, t.shape[0]),
            self.output,
            levels,
            weights,
        )
        phi = self._project(g)
        return phi[0] if single else phi

    def scores(self, target: torch.Tensor, *, cond: Any = None, sigmas: torch.Tensor | None = None) -> torch.Tensor:
        """TRAK scores tau (N,) for one target (*event), or (B, N) for a batch; call :meth:`featurize` first."""
        if self.features is None:
            raise DiffsightError("call featurize() before scores(): the training features are not computed yet")
        phi = self.target_gradient(target, cond=cond, sigmas=sigmas)
        return self.features @ phi if phi.ndim == 1 else phi @ self.features.T

    def top(self, target: torch.Tensor, k: int = 10, *, cond: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, indices) of the k training examples with the highest score for one target."""
        tau = self.scores(target, cond=cond)
        if tau.ndim != 1:
            raise ShapeError("top() takes one target; use scores() for a batch")
        return torch.topk(tau, min(k, tau.numel()))

    def step_scores(self, trace: Any, sample: int = 0) -> torch.Tensor:
        """Journey-TRAK: scores (S, N) of x0_hat at each recorded step of ``trace``, f taken at that step's sigma.

        The denoiser must accept each recorded sigma (a LinearDenoiser: inside its grid).
        """
        x0 = trace.x0_hat[:, sample]  # (S, *event)
        labels = trace.labels
        cond = None if labels is None else labels.reshape(-1)[sample if labels.numel() > 1 else 0]
        sig = trace.tensors["sigma"].double()  # (S,)
        return torch.stack([self.scores(x0[s], cond=cond, sigmas=sig[s : s + 1]) for s in range(sig.numel())])

    # -- the output function itself (for ground truth) --------------------------------------------------------
    def output_value(
        self,
        target: torch.Tensor,
        *,
        params: dict[str, torch.Tensor] | None = None,
        model: nn.Module | None = None,
        cond: Any = None,
    ) -> torch.Tensor:
        """f of each target (B,) (or a scalar) under ``params`` of ``model`` (default: the attributed model)."""
        t, single = self._targets(target)
        module = self.denoiser if model is None else model
        p = params if params is not None else {k: v.detach() for k, v in module.named_parameters()}
        noise = self._target_noise(t.shape[0], self.sigmas.numel())
        conds = self._cond(cond, t.shape[0])
        vals = torch.zeros(t.shape[0], dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for j in range(self.sigmas.numel()):
                sigma = torch.as_tensor(float(self.sigmas[j]), dtype=self.dtype, device=self.device)
                for b in range(t.shape[0]):
                    c = None if conds is None else conds[b]
                    v = self._value(p, t[b], noise[b, j], sigma, c, self.output, module)
                    vals[b] += float(self.weights[j]) * v.double()
        return vals[0] if single else vals


@dataclass(frozen=True)
class LDSResult:
    """Linear datamodeling score over random subsets, exact retraining (Park et al. 2023, eq. 5)."""

    lds: float  # mean Spearman correlation over targets
    per_target: torch.Tensor  # (T,)
    num_subsets: int
    fraction: float
    predicted: torch.Tensor  # (T, M): -sum_{i in S_m} tau_i
    actual: torch.Tensor  # (T, M): f(target; theta_{S_m})


def linear_datamodeling_score(
    attribution: TrainingAttribution,
    targets: torch.Tensor,
    *,
    model: LinearDenoiser | None = None,
    num_subsets: int = 100,
    fraction: float = 0.5,
    generator: torch.Generator | None = None,
    scores: torch.Tensor | None = None,
) -> LDSResult:
    """Exact LDS on a LinearDenoiser: retrain on M random subsets, compare f(theta_S) with -sum_{i in S} tau_i.

    Args:
        attribution: a featurised TrainingAttribution; its output function and draws define f.
        targets: (T, *event) images to attribute.
        model: the ground-truth LinearDenoiser (default: ``attribution.denoiser``). Passing a different one scores
            with the attribution's model but measures retraining of ``model`` (a negative control).
        num_subsets: M, each keeping ``round(fraction * N)`` examples drawn without replacement.
        scores: precomputed (T, N) scores, else ``attribution.scores(targets)``.
    """
    truth = attribution.denoiser if model is None else model
    if not isinstance(truth, LinearDenoiser):
        raise DiffsightError("the exact LDS needs a LinearDenoiser (retraining other models is not closed-form)")
    n = truth.num_train
    if not 0 < fraction < 1 or num_subsets < 3:
        raise DiffsightError(f"need 0 < fraction < 1 and num_subsets >= 3, got {fraction}, {num_subsets}")
    size = max(1, round(fraction * n))
    keep = torch.zeros((num_subsets, n), dtype=torch.bool)
    for m in range(num_subsets):
        keep[m, torch.randperm(n, generator=generator)[:size]] = True
    weight, bias = truth.solve(keep)  # (M, J, d, d), (M, J, d)
    t = torch.as_tensor(targets)
    tau = attribution.scores(t) if scores is None else torch.as_tensor(scores)
    tau = tau.reshape(t.shape[0], n).double().cpu()
    predicted = -(keep.double() @ tau.T).T  # (T, M)
    actual = torch.stack(
        [
            attribution.output_value(t, model=truth, params={"weight": weight[m], "bias": bias[m]}).cpu()
            for m in range(num_subsets)
        ],
        1,
    )  # (T, M)
    per = torch.tensor([spearman(predicted[i], actual[i]) for i in range(t.shape[0])], dtype=torch.float64)
    return LDSResult(float(per.mean()), per, num_subsets, fraction, predicted, actual)
