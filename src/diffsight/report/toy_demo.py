"""The 2-D toy demo: forward noising and reverse sampling of toy data, drawn in one PNG (``diffsight demo``).

What the figure shows (columns ordered by noise level, the same sigma in both rows of a column):

- top row, the forward process ``x_sigma = x0 + sigma * eps`` (Karras et al. 2022, EDM, eq. 1) applied to
  ``n`` points of a toy dataset (:mod:`diffsight.data.toy2d`), one ``eps`` per point for all levels;
- bottom row, the reverse process: a registry sampler (:func:`diffsight.sampling.sample`) run on the Karras
  schedule from ``x = sigma_max * z``, its state captured through the sampler ``callback`` at the steps whose
  sigma is nearest to the top row's. With an exact denoiser and an accurate sampler the two rows hold the
  same distribution column by column: the reverse process retraces the forward marginals;
- right column, top: the exact density ``p(x; sigma)`` at one level with the direction of the denoiser's pull
  ``D(x, sigma) - x`` (the score times sigma^2); bottom: the whole paths of a few samples.

The denoiser is exact, so nothing is learned: for ``eight_gaussians`` it is the Gaussian-mixture oracle of
the very distribution sampled (:func:`~diffsight.data.toy2d.eight_gaussians_mixture`); for the other datasets
it is the empirical oracle of the ``n`` points drawn (:class:`~diffsight.oracles.EmpiricalOracle`), which
reproduces training points: a picture of memorization. Points are coloured by their angle around the origin:
the clean point's in the top row, the final sample's in the bottom row, so a colour shows where a point ends.

Randomness: one ``torch.Generator`` seeded with ``seed`` draws, in order, the initial state, the data, the
forward noise and any noise of a stochastic sampler.
"""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from diffsight.data.toy2d import TOY2D, eight_gaussians_mixture, make_toy2d
from diffsight.errors import DiffsightError, unknown_name
from diffsight.oracles.empirical import EmpiricalOracle
from diffsight.oracles.mixture import GaussianMixtureOracle
from diffsight.sampling.records import StepRecord
from diffsight.sampling.registry import get_sampler, sample
from diffsight.sampling.schedules import karras_sigmas

__all__ = ["ToyDemoConfig", "ToyDemoResult", "run_toy_demo"]

_TARGET_SIGMAS = (0.15, 0.4, 1.0, 2.7)  # noise levels of the columns after sigma = 0 (data scale is 1)
_WINDOW = 3.5  # every scatter panel shows [-_WINDOW, _WINDOW]^2
_N_PATHS = 48  # samples whose path is drawn
_PATH_SIGMA = 4.0  # paths start at the first state with sigma below this (higher ones lie far outside the window)
_QUIVER_GRID = 17
_DENSITY_GRID = 160
_MAX_N = 20_000  # more points do not make a clearer figure; the empirical denoiser costs n^2 per evaluation


@dataclass(frozen=True)
class ToyDemoConfig:
    """What ``diffsight demo`` draws; each field is one CLI flag.

    Attributes:
        out: the PNG to write (parent folders are created; written atomically).
        seed: seeds the one generator of the run (initial state, data, forward noise, sampler noise).
        n: points noised and samples drawn.
        steps: sampler steps on the Karras schedule.
        sampler: a registry name (:data:`diffsight.sampling.SAMPLERS`).
        sigma_max: the schedule's first noise level; the initial state is ``sigma_max * z``.
        sigma_min: the schedule's last non-zero noise level.
        dataset: a :data:`~diffsight.data.toy2d.TOY2D` name.
    """

    out: Path
    seed: int = 0
    n: int = 2000
    steps: int = 20
    sampler: str = "heun"
    sigma_max: float = 40.0
    sigma_min: float = 0.002
    dataset: str = "eight_gaussians"

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n <= _MAX_N:
            raise DiffsightError(f"n (the number of points) must be an integer in [1, {_MAX_N}], got {self.n!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise DiffsightError(f"steps must be an integer >= 1, got {self.steps!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise DiffsightError(f"seed must be a non-negative integer, got {self.seed!r}")
        get_sampler(self.sampler)  # raises, listing the sampler names
        if self.dataset not in TOY2D:
            raise unknown_name("toy dataset", str(self.dataset), list(TOY2D))
        if not (math.isfinite(self.sigma_min) and self.sigma_min > 0):
            raise DiffsightError(f"sigma_min must be a positive number, got {self.sigma_min}")
        if not (math.isfinite(self.sigma_max) and self.sigma_max > self.sigma_min):
            raise DiffsightError(
                f"sigma_max must be a finite number above sigma_min={self.sigma_min}, got {self.sigma_max}"
            )
        out = Path(self.out)
        if out.suffix.lower() != ".png":
            raise DiffsightError(f"out must name a .png file, got {str(out)!r}")
        if out.is_dir():
            raise DiffsightError(f"out {str(out)!r} is a folder; give a file name such as {str(out / 'demo.png')!r}")
        object.__setattr__(self, "out", out)


@dataclass(frozen=True)
class ToyDemoResult:
    """What the demo wrote and measured.

    Attributes:
        path: the PNG written.
        summary: one line for a human.
        nfe: denoiser evaluations the sampler spent.
        nearest_train_distance: mean distance of the final samples to the nearest of the ``n`` data points.
        mode_distance: (eight_gaussians) mean distance of the final samples to the nearest mixture mean;
            exact draws give ``std * sqrt(pi / 2)``, :attr:`mode_distance_exact`.
        mode_distance_exact: (eight_gaussians) that reference value.
        start_agreement: (eight_gaussians) fraction of samples that end in the component with the highest
            responsibility for their initial state ``sigma_max * z``: how much the starting noise decides.
        commit_sigma: (eight_gaussians) median over samples of the noise level from which the highest-
            responsibility component of the sampler's state stays the one the sample ends in.
    """

    path: Path
    summary: str
    nfe: int
    nearest_train_distance: float
    mode_distance: float | None = None
    mode_distance_exact: float | None = None
    start_agreement: float | None = None
    commit_sigma: float | None = None


# --- the run --------------------------------------------------------------------------------------------------


def _steps(k: int) -> str:
    return f"{k} step" if k == 1 else f"{k} steps"


def _column_steps(sigmas: list[float]) -> list[int]:
    """Step indices whose sigma is nearest (in log) to each target level, distinct, ascending in sigma."""
    free = list(range(len(sigmas) - 1))  # states entering each step: sigma > 0
    chosen: list[int] = []
    for target in _TARGET_SIGMAS:
        if not free:
            break
        best = min(free, key=lambda i: abs(math.log(sigmas[i] / target)))
        free.remove(best)
        chosen.append(best)
    return sorted(chosen, key=lambda i: sigmas[i])


def run_toy_demo(config: ToyDemoConfig) -> ToyDemoResult:
    """Noise toy data, sample it back with an exact denoiser, draw both in one PNG and measure the samples."""
    g = torch.Generator().manual_seed(config.seed)
    sigmas = karras_sigmas(config.steps, sigma_min=config.sigma_min, sigma_max=config.sigma_max)
    s_list = sigmas.tolist()
    x_init = config.sigma_max * torch.randn((config.n, 2), generator=g)  # (n, 2)
    x0 = make_toy2d(config.dataset, config.n, generator=g)  # (n, 2)
    eps = torch.randn((config.n, 2), generator=g)  # (n, 2)

    mixture = eight_gaussians_mixture() if config.dataset == "eight_gaussians" else None
    empirical = EmpiricalOracle(x0, chunk_size=2048)  # memory ~ 2048 * n per block of queries
    denoiser: GaussianMixtureOracle | EmpiricalOracle = mixture if mixture is not None else empirical

    columns = _column_steps(s_list)
    captured: dict[int, torch.Tensor] = {}
    paths: list[torch.Tensor] = []  # (n_paths, 2) per step with sigma <= _PATH_SIGMA, then the output
    path_sigmas: list[float] = []
    leaders: list[torch.Tensor] = []  # (n,) highest-responsibility component of the state, per step
    nfe = 0

    def callback(r: StepRecord) -> None:
        nonlocal nfe
        nfe += r.nfe
        x = r.x.detach()
        if r.index in columns:
            captured[r.index] = x.clone()
        if r.sigma <= _PATH_SIGMA:
            path_sigmas.append(r.sigma)
            paths.append(x[:_N_PATHS].clone())
        if mixture is not None:
            leaders.append(mixture.responsibilities(x, r.sigma).argmax(1))

    with torch.no_grad():
        final = sample(config.sampler, denoiser, x_init, sigmas, generator=g, callback=callback).detach()
        paths.append(final[:_N_PATHS].clone())
        path_sigmas.append(0.0)
        result = _measure(config, final, empirical, mixture, leaders, s_list, nfe)
        fig = _draw(config, x0, eps, final, captured, columns, s_list, paths, path_sigmas[0], denoiser, nfe)
    path = _save_png(fig, config.out)
    return ToyDemoResult(path=path, **result)


def _measure(
    config: ToyDemoConfig,
    final: torch.Tensor,
    empirical: EmpiricalOracle,
    mixture: GaussianMixtureOracle | None,
    leaders: list[torch.Tensor],
    s_list: list[float],
    nfe: int,
) -> dict:
    head = f"{config.dataset}, {config.sampler}, {_steps(config.steps)} ({nfe} NFE)"
    train_dist = float(empirical.nearest(final)[0].mean())
    if mixture is None:
        summary = (
            f"{head}: the final samples lie {train_dist:.3g} on average from the nearest of the {config.n} "
            "data points (the empirical denoiser reproduces its training points)"
        )
        return {"summary": summary, "nfe": nfe, "nearest_train_distance": train_dist}
    means = torch.stack([c.mean for c in mixture.components]).to(final.dtype)  # (K, 2)
    d_modes, final_mode = torch.cdist(final, means).min(1)  # (n,), (n,)
    std = math.sqrt(float(mixture.components[0].cov[0, 0]))
    exact = std * math.sqrt(math.pi / 2)  # mean of a Rayleigh(std) distance
    lead = torch.stack(leaders)  # (steps, n)
    agrees = lead == final_mode  # (steps, n)
    # first step from which the leader stays the final mode: count the trailing run of agreement
    trailing = torch.flip(torch.cumprod(torch.flip(agrees, [0]).to(torch.int64), 0), [0]).sum(0)  # (n,)
    commit_index = lead.shape[0] - trailing  # (n,) == steps when even the last state disagreed
    commit_sigma = float(torch.tensor(s_list, dtype=torch.float64)[commit_index].median())
    start = float(agrees[0].double().mean())
    summary = (
        f"{head}: mean distance to the nearest mode {float(d_modes.mean()):.3f} (exact draws: {exact:.3f}); "
        f"{start:.0%} end in the mode their starting noise favoured; median sigma by which the mode is settled: "
        f"{commit_sigma:.2g}"
    )
    return {
        "summary": summary,
        "nfe": nfe,
        "nearest_train_distance": train_dist,
        "mode_distance": float(d_modes.mean()),
        "mode_distance_exact": exact,
        "start_agreement": start,
        "commit_sigma": commit_sigma,
    }


# --- the figure -----------------------------------------------------------------------------------------------


def _angle_colour(x: torch.Tensor) -> torch.Tensor:
    """Angle of each point around the origin, mapped to [0, 1) for a cyclic colour map."""
    return (torch.atan2(x[:, 1], x[:, 0]) / (2 * math.pi)) % 1.0


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _scatter(ax: Axes, x: torch.Tensor, colour: torch.Tensor, n: int) -> None:
    size = 4.0 if n <= 1000 else 2.0
    xy = _np(x)
    ax.scatter(
        xy[:, 0], xy[:, 1], c=_np(colour), cmap="hsv", vmin=0, vmax=1, s=size, alpha=0.7, linewidths=0, rasterized=True
    )


def _style(ax: Axes) -> None:
    ax.set_xlim(-_WINDOW, _WINDOW)
    ax.set_ylim(-_WINDOW, _WINDOW)
    ax.set_aspect("equal")
    ax.set_xticks([-3, 0, 3])
    ax.set_yticks([-3, 0, 3])
    ax.tick_params(labelsize=7, length=2)
    ax.grid(True, linewidth=0.3, alpha=0.5)


def _draw(
    config: ToyDemoConfig,
    x0: torch.Tensor,
    eps: torch.Tensor,
    final: torch.Tensor,
    captured: dict[int, torch.Tensor],
    columns: list[int],
    s_list: list[float],
    paths: list[torch.Tensor],
    path_start: float,
    denoiser: GaussianMixtureOracle | EmpiricalOracle,
    nfe: int,
) -> Figure:
    n_cols = len(columns) + 2
    fig = Figure(figsize=(2.5 * n_cols, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, n_cols, sharex=True, sharey=True)
    data_colour = _angle_colour(x0)
    final_colour = _angle_colour(final)

    # 1. column 0: the data and the sampler's output, sigma = 0
    _scatter(axes[0, 0], x0, data_colour, config.n)
    axes[0, 0].set_title("σ = 0 (data)", fontsize=9)
    _scatter(axes[1, 0], final, final_colour, config.n)
    axes[1, 0].set_title(f"σ = 0 (output, step {config.steps})", fontsize=9)

    # 2. the same sigma in both rows: forward x0 + sigma eps above, the sampler's state below
    for col, i in enumerate(columns, start=1):
        sigma = s_list[i]
        _scatter(axes[0, col], x0 + sigma * eps, data_colour, config.n)
        axes[0, col].set_title(f"σ = {sigma:.3g}", fontsize=9)
        _scatter(axes[1, col], captured[i], final_colour, config.n)
        axes[1, col].set_title(f"σ = {sigma:.3g} (step {i}/{config.steps})", fontsize=9)

    # 3. right column: density and denoiser pull at the middle level, then whole paths
    mid_sigma = s_list[columns[1] if len(columns) > 1 else columns[0]]  # nearest 0.4: the modes still show
    _field(axes[0, -1], denoiser, mid_sigma)
    axes[0, -1].set_title(f"p(x; σ={mid_sigma:.3g}), pull D(x) − x", fontsize=9)
    _paths(axes[1, -1], paths, final_colour[: paths[0].shape[0]])
    axes[1, -1].set_title(f"paths of {paths[0].shape[0]} samples from σ = {path_start:.3g}", fontsize=9)

    for ax in axes.flat:
        _style(ax)
    axes[0, 0].set_ylabel("forward: x₀ + σ·ε", fontsize=10)
    axes[1, 0].set_ylabel(f"reverse: {config.sampler} sampler", fontsize=10)
    kind = "exact Gaussian-mixture" if isinstance(denoiser, GaussianMixtureOracle) else "empirical (training-set)"
    what = f"{config.dataset}: {config.sampler}, {_steps(config.steps)} ({nfe} NFE)"
    how = f"Karras σ from {config.sigma_max:g} to {config.sigma_min:g}, {kind} denoiser"
    how += f", n = {config.n}, seed {config.seed}"
    fig.suptitle(f"{what}, {how}" if n_cols >= 6 else f"{what}\n{how}", fontsize=11)  # narrow figure: two lines
    return fig


def _field(ax: Axes, denoiser: GaussianMixtureOracle | EmpiricalOracle, sigma: float) -> None:
    """Shade p(x; sigma) and draw unit arrows along D(x, sigma) - x on a grid."""
    lin = torch.linspace(-_WINDOW, _WINDOW, _DENSITY_GRID)
    gx, gy = torch.meshgrid(lin, lin, indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)  # (G^2, 2)
    logp = torch.cat([denoiser.log_prob(chunk, sigma) for chunk in grid.split(4096)])  # (G^2,)
    density = logp.exp().reshape(_DENSITY_GRID, _DENSITY_GRID)
    ax.imshow(
        _np(density),
        extent=(-_WINDOW, _WINDOW, -_WINDOW, _WINDOW),
        origin="lower",
        cmap="Blues",
        interpolation="bilinear",
        vmin=0,
        vmax=1.3 * float(density.max()),
    )
    lin = torch.linspace(-_WINDOW + 0.3, _WINDOW - 0.3, _QUIVER_GRID)
    qx, qy = torch.meshgrid(lin, lin, indexing="xy")
    q = torch.stack([qx.flatten(), qy.flatten()], 1)  # (Q^2, 2)
    pull = denoiser(q, torch.full((q.shape[0],), sigma)) - q  # (Q^2, 2)
    pull = _np(pull / pull.norm(dim=1, keepdim=True).clamp_min(1e-12))
    qn = _np(q)
    ax.quiver(
        qn[:, 0],
        qn[:, 1],
        pull[:, 0],
        pull[:, 1],
        color="0.15",
        angles="xy",
        scale_units="xy",
        scale=1 / 0.28,
        width=0.006,
        headwidth=3.5,
    )


def _paths(ax: Axes, paths: list[torch.Tensor], colour: torch.Tensor) -> None:
    """Each sample's states across the steps as a line, its final point as a dot."""
    stacked = _np(torch.stack(paths, 1))  # (n_paths, steps + 1, 2)
    hues = _np(colour)
    lines = LineCollection(list(stacked), cmap="hsv", linewidths=0.6, alpha=0.6)
    lines.set_array(hues)
    lines.set_clim(0, 1)
    ax.add_collection(lines)
    ax.scatter(stacked[:, -1, 0], stacked[:, -1, 1], c=hues, cmap="hsv", vmin=0, vmax=1, s=8, linewidths=0)


def _save_png(fig: Figure, out: Path) -> Path:
    """Write the figure atomically: a temporary file in the same folder, then os.replace."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode 0o666 & ~umask, like open()
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=130)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
