"""Image reconstruction with a diffusion prior against classical baselines (issue 7): PSNR, SSIM, cost.

For each shipped image model (digits 8x8, shapes 16x16) and each task, held-out images are measured with the
task's operator and noise model (seeded), reconstructed by the diffusion solver (the mean of K posterior
samples) and by the classical baseline of :mod:`diffsight.tasks.baselines`, and scored against the truth:

| task | operator (noise std in [-1, 1] units) | baseline |
|---|---|---|
| inpaint | central square hidden (a quarter of the pixels), 0.01 | biharmonic inpainting |
| denoise | identity, 0.2 | total variation (Chambolle) |
| superres | 2x2 average pooling, 0.01 | bicubic |
| deblur | Gaussian blur std 1 px (circular), 0.01 | Tikhonov inverse filter |
| mri | k-space columns, 2.5x acceleration, 20% centre, 0.01 | zero-filled inverse FFT |
| ct | Radon, side/2 angles over 180 degrees, 0.01 | filtered back-projection |

Plus the sparse-view CT demo: scikit-image's Shepp-Logan phantom at 32x32 from 8 views, with a Gaussian prior
fitted to 3,000 procedural ellipse phantoms (:mod:`diffsight.tasks.phantoms`), against filtered
back-projection; and the empirical coverage of split-conformal 90% intervals (digits inpainting, calibrated on
one half of the images, tested on the other).

Seconds per image = wall time of the solver call / (images x samples): each posterior sample counts as one
image. NFE = batched network evaluations per sample (DPS adds one backward pass per step).

Usage::

    .venv/bin/python benchmarks/reconstruction.py            # ~5-10 minutes on 2 shared cores
    .venv/bin/python benchmarks/reconstruction.py --quick    # smoke run (digits, 4 images, few steps)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import diffsight  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffsight.data.shapes import make_shapes
from diffsight.errors import DiffsightError
from diffsight.metrics.model_eval import heldout_data_of
from diffsight.models import load_model
from diffsight.tasks.baselines import baseline_reconstruction, psnr, ssim
from diffsight.tasks.conformal import calibrate_intervals, coverage_report
from diffsight.tasks.operators import (
    BlurOperator,
    DownsampleOperator,
    FourierOperator,
    IdentityOperator,
    LinearOperator,
    MaskOperator,
    cartesian_kspace_mask,
)
from diffsight.tasks.phantoms import gaussian_prior, random_ellipse_phantoms, shepp_logan
from diffsight.tasks.posterior import reconstruct
from diffsight.tasks.radon import RadonOperator, sparse_view_angles


def operators(event: tuple[int, int, int]) -> dict[str, LinearOperator]:
    c, h, w = event
    mask = torch.ones(h, w)
    mask[h // 4 : h - h // 4, w // 4 : w - w // 4] = 0
    kmask = cartesian_kspace_mask(
        h, w, acceleration=2.5, center_fraction=0.2, generator=torch.Generator().manual_seed(1)
    )
    return {
        "inpaint": MaskOperator(mask, event, 0.01),
        "denoise": IdentityOperator(event, 0.2),
        "superres": DownsampleOperator(2, event, 0.01),
        "deblur": BlurOperator(1.0, event, 0.01),
        "mri": FourierOperator(kmask, event, 0.01),
        "ct": RadonOperator(sparse_view_angles(max(4, h // 2)), event, 0.01),
    }


METHODS = {
    "inpaint": ("repaint", "projection", "dps"),
    "denoise": ("denoise", "projection"),
    "superres": ("projection", "dps"),
    "deblur": ("projection", "dps"),
    "mri": ("projection", "dps"),
    "ct": ("projection", "dps"),
}


def unseen_images(loaded: Any, n: int) -> torch.Tensor:
    """The model's held-out images; for shapes (trained on all of its data), fresh images from another seed."""
    try:
        return heldout_data_of(loaded).samples[:n]
    except DiffsightError:
        return make_shapes(n, resolution=loaded.event_shape[-1], seed=10_007).samples


def run_model(name: str, n: int, k: int, steps: int | None, quick: bool) -> list[dict[str, Any]]:
    loaded = load_model(name)
    truth = unseen_images(loaded, n)
    rows = []
    for task, op in operators(loaded.event_shape).items():
        y = op.measure(truth, generator=torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        base = baseline_reconstruction(op, y).clamp(-1, 1)
        base_s = (time.perf_counter() - t0) / n
        methods = METHODS[task][:1] if quick else METHODS[task]
        for method in methods:
            options = {} if steps is None else {"steps": steps}
            with torch.no_grad():
                rec = reconstruct(
                    loaded.denoiser,
                    op,
                    y,
                    method=method,
                    samples=k,
                    generator=torch.Generator().manual_seed(1),
                    **options,
                )
            est = rec.mean.clamp(-1, 1)
            row = {
                "model": name,
                "task": task,
                "method": method,
                "psnr": psnr(est, truth),
                "ssim": ssim(est, truth),
                "baseline_psnr": psnr(base, truth),
                "baseline_ssim": ssim(base, truth),
                "s_per_image": rec.seconds / (n * k),
                "baseline_s_per_image": base_s,
                "nfe": rec.nfe,
            }
            rows.append(row)
            print(fmt(row), flush=True)
    return rows


def ct_demo(size: int, n_train: int, views: int, k: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    prior = gaussian_prior(random_ellipse_phantoms(n_train, size, seed=0))
    fit_s = time.perf_counter() - t0
    truth = shepp_logan(size).double()
    op = RadonOperator(sparse_view_angles(views), (1, size, size), noise_sigma=0.05)
    y = op.measure(truth, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    fbp = baseline_reconstruction(op, y).clamp(0, 1).double()
    fbp_s = time.perf_counter() - t0
    rec = reconstruct(
        prior, op, y, method="projection", samples=k, generator=torch.Generator().manual_seed(1), steps=20
    )
    est = rec.mean.clamp(0, 1)
    return {
        "model": f"Gaussian prior ({n_train} ellipse phantoms, fit {fit_s:.0f} s)",
        "task": f"CT Shepp-Logan {size}x{size}, {views} views",
        "method": "projection",
        "psnr": psnr(est, truth, data_range=1),
        "ssim": ssim(est, truth, data_range=1),
        "baseline_psnr": psnr(fbp, truth, data_range=1),
        "baseline_ssim": ssim(fbp, truth, data_range=1),
        "s_per_image": rec.seconds / k,
        "baseline_s_per_image": fbp_s,
        "nfe": rec.nfe,
    }


def coverage(n: int, k: int, steps: int | None) -> dict[str, Any]:
    loaded = load_model("digits")
    truth = heldout_data_of(loaded).samples[: 2 * n]
    op = operators(loaded.event_shape)["inpaint"]
    y = op.measure(truth, generator=torch.Generator().manual_seed(2))
    options = {} if steps is None else {"steps": steps}
    with torch.no_grad():
        rec = reconstruct(
            loaded.denoiser, op, y, method="repaint", samples=k, generator=torch.Generator().manual_seed(3), **options
        )
    observed = []
    hidden = (op.mask < 0.5).expand(2 * n, -1, -1, -1)
    for split in range(20):
        perm = torch.randperm(2 * n, generator=torch.Generator().manual_seed(split))
        cal, test = perm[:n], perm[n:]
        c = calibrate_intervals(rec.mean[cal], rec.std[cal], truth[cal], alpha=0.1)
        report = coverage_report(c, rec.mean[test], rec.std[test], truth[test])
        lo, hi = c.intervals(rec.mean[test], rec.std[test])
        inside = (truth[test] >= lo) & (truth[test] <= hi)
        observed.append((report.empirical, float(inside[hidden[test]].float().mean()), report.mean_width))
    m = [sum(v[i] for v in observed) / len(observed) for i in range(3)]
    return {
        "stated": 0.9,
        "observed_all_pixels": m[0],
        "observed_hidden_pixels": m[1],
        "mean_width": m[2],
        "splits": 20,
    }


def fmt(row: dict[str, Any]) -> str:
    return (
        f"| {row['model']} | {row['task']} | {row['method']} | {row['psnr']:.2f} / {row['ssim']:.3f} | "
        f"{row['baseline_psnr']:.2f} / {row['baseline_ssim']:.3f} | {row['s_per_image'] * 1000:.1f} | "
        f"{row['baseline_s_per_image'] * 1000:.1f} | {row['nfe']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: digits only, 4 images, 6 steps")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--models", default="digits,shapes", help="comma-separated shipped image models")
    parser.add_argument("--no-extras", action="store_true", help="skip the CT demo and the coverage run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, k, steps = (4, 2, 6) if args.quick else (32, 4, None)
    print("| model | task | method | PSNR dB / SSIM | baseline PSNR / SSIM | ms per image | baseline ms | NFE |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name in args.models.split(",") if not args.quick else ["digits"]:
        rows += run_model(name, 16 if name.startswith("shapes") else n, k, steps, args.quick)
    if args.no_extras:
        return
    ct = ct_demo(16, 500, 4, 2) if args.quick else ct_demo(32, 3000, 8, 4)
    rows.append(ct)
    print(fmt(ct))
    cov = coverage(10, 2, steps) if args.quick else coverage(32, 4, steps)
    print(
        f"\nsplit-conformal intervals, digits inpainting, {cov['splits']} random splits: stated 90%, observed "
        f"{cov['observed_all_pixels']:.1%} of all pixels ({cov['observed_hidden_pixels']:.1%} of the hidden ones), "
        f"mean width {cov['mean_width']:.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "coverage": cov}, indent=2))


if __name__ == "__main__":
    main()
