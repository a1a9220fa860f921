"""Anomaly detection with bits/dim: does the shipped `digits` model tell unseen digits from inputs that are not
digits? (issue 5)

In-distribution: the 180 digits that `configs/digits.toml` holds out of training (never seen by the model).
Out-of-distribution, all on the digits' 8x8 grid with their 17 grey levels:

- ``shapes``: diffsight's procedural shapes rendered at 16x16, averaged to 8x8 and to grey;
- ``noise``: uniform noise in [-1, 1];
- ``inverted``: the held-out digits with black and white swapped;
- ``rotated``: the held-out digits turned by 90 degrees (a hard case: a turned 1 is a dash, a turned 0 a 0).

Every input is quantised to the 17 levels and dequantised with uniform noise, so bits/dim is the discrete
bits/dim of the same 17-level grid for all sets. Scores: the diffusion model's NLL from the information-theoretic
estimator (unconditional, through the null class), against two baselines fitted on the training split: a
per-pixel Gaussian and a PCA Gaussian (probabilistic PCA, Tipping & Bishop 1999, scikit-learn's
``PCA.score_samples``). The headline is the AUROC of bits/dim (higher = more anomalous) per OOD set against the
held-out digits. Goal: >= 0.95 for shapes, noise and inverted; rotated is reported.

Usage::

    .venv/bin/python benchmarks/anomaly.py            # ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/anomaly.py --quick    # smoke run (32 images per set, 16 log-SNR points)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import diffsight  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffsight.data.shapes import make_shapes
from diffsight.explain.likelihood import score_inputs
from diffsight.metrics.model_eval import heldout_data_of, training_data_of
from diffsight.models import load_model
from diffsight.sampling.dequantize import bits_per_dim, uniform_dequantize

LEVELS = 17  # sklearn digits: 0..16, scaled to [-1, 1]
GOAL = 0.95
HARD = ("rotated",)


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Snap [-1, 1] images to the digits' 17 levels (k / 8 - 1)."""
    return (torch.round((x.clamp(-1, 1) + 1) * 8) / 8 - 1).to(torch.float32)


def ood_sets(held: torch.Tensor, n: int, seed: int) -> dict[str, torch.Tensor]:
    """(n, 1, 8, 8) inputs per out-of-distribution set, quantised to the 17 levels."""
    g = torch.Generator().manual_seed(seed)
    shapes = make_shapes(n, resolution=16, seed=seed + 1).samples  # (n, 3, 16, 16)
    grey = F.avg_pool2d(shapes.mean(1, keepdim=True), 2)  # (n, 1, 8, 8)
    base = held[:n]
    return {
        "shapes": quantise(grey),
        "noise": quantise(torch.rand((n, 1, 8, 8), generator=g) * 2 - 1),
        "inverted": quantise(-base),
        "rotated": quantise(torch.rot90(base, 1, dims=(2, 3))),
    }


def auroc(inlier: np.ndarray, outlier: np.ndarray) -> float:
    """P(score of an outlier > score of an inlier), ties counted half (the Mann-Whitney form of the AUROC)."""
    a, b = np.asarray(inlier)[:, None], np.asarray(outlier)[None, :]
    return float((b > a).mean() + 0.5 * (b == a).mean())


def gaussian_baselines(train: torch.Tensor, components: int) -> dict[str, object]:
    """Per-pixel Gaussian and PCA-Gaussian log-densities (nats), fitted on the training split."""
    from sklearn.decomposition import PCA

    flat = train.reshape(len(train), -1).double().numpy()  # (N, 64)
    mean, var = flat.mean(0), flat.var(0) + 1e-3  # a floor: some border pixels are always 0

    def pixel(x: np.ndarray) -> np.ndarray:
        return -0.5 * (((x - mean) ** 2) / var + np.log(2 * math.pi * var)).sum(1)

    pca = PCA(n_components=components, random_state=0).fit(flat)
    return {"pixel Gaussian": pixel, "PCA Gaussian": pca.score_samples}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="32 images per set, 16 log-SNR points")
    ap.add_argument("--points", type=int, default=None, help="log-SNR points per image (default 64; 16 quick)")
    ap.add_argument("--components", type=int, default=16, help="PCA components of the PCA-Gaussian baseline")
    ap.add_argument("--model", default="digits", help="a digits model folder (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = ap.parse_args(argv)
    points = args.points or (16 if args.quick else 64)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    model = load_model(args.model)
    held = heldout_data_of(model).samples  # (180, 1, 8, 8), never trained on
    train = training_data_of(model).samples
    n = 32 if args.quick else len(held)
    sets = {"held-out digits": quantise(held[:n]), **ood_sets(held, n, args.seed)}
    print(f"diffsight anomaly benchmark: digits model, {n} images per set, {points} log-SNR points per image")
    dims = 64
    g = torch.Generator().manual_seed(args.seed)
    deq = {name: uniform_dequantize(x, levels=LEVELS, generator=g) for name, x in sets.items()}
    baselines = gaussian_baselines(train, args.components)
    bpd: dict[str, dict[str, np.ndarray]] = {"diffusion": {}}
    cost: dict[str, float] = {}
    for name, x in deq.items():
        t0 = time.perf_counter()
        result = score_inputs(model, x, points=points, seed=args.seed, levels=LEVELS, dequantize=False)
        cost[name] = time.perf_counter() - t0
        bpd["diffusion"][name] = result.bits_per_dim.numpy()
        nfe = result.nfe_per_image
        print(
            f"  {name:16s} diffusion bits/dim {bpd['diffusion'][name].mean():6.3f} +- "
            f"{bpd['diffusion'][name].std():.3f} (sd over images; mean SE per image "
            f"{result.bits_per_dim_stderr.mean():.3f}); {nfe} NFE per image, {cost[name]:.1f} s"
        )
    for label, fn in baselines.items():
        bpd[label] = {}
        for name, x in deq.items():
            nll = -torch.as_tensor(fn(x.reshape(len(x), -1).double().numpy()))
            bpd[label][name] = bits_per_dim(nll, dims, levels=LEVELS).numpy()
    print("\nAUROC of bits/dim, each set against the held-out digits (goal >= 0.95; rotated reported):")
    header = f"  {'set':10s}" + "".join(f" | {m:>15s}" for m in bpd)
    print(header)
    table: dict[str, dict[str, float]] = {}
    ok = True
    for name in ("shapes", "noise", "inverted", "rotated"):
        table[name] = {m: auroc(bpd[m]["held-out digits"], bpd[m][name]) for m in bpd}
        flag = "" if name in HARD else ("  ok" if table[name]["diffusion"] >= GOAL else "  BELOW GOAL")
        ok &= name in HARD or table[name]["diffusion"] >= GOAL
        print(f"  {name:10s}" + "".join(f" | {table[name][m]:15.3f}" for m in bpd) + flag)
    print("\nmean bits/dim per set:")
    for m in bpd:
        print(f"  {m:15s} " + ", ".join(f"{s} {v.mean():.3f}" for s, v in bpd[m].items()))
    total = time.perf_counter() - started
    images = sum(len(x) for x in sets.values())
    print(
        f"\ncost: {sum(cost.values()):.1f} s for {images} images ({sum(cost.values()) / images * 1000:.1f} ms "
        f"per image, {nfe} network evaluations each, batched across images and noise levels); wall {total:.0f} s"
    )
    print("goal met" if ok else "goal NOT met")
    if args.json is not None:
        report = {
            "benchmark": "anomaly",
            "points": points,
            "n_per_set": n,
            "auroc": table,
            "mean_bits_per_dim": {m: {s: float(v.mean()) for s, v in d.items()} for m, d in bpd.items()},
            "seconds": cost,
            "nfe_per_image": nfe,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
