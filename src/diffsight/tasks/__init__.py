"""Inverse problems and gap filling with a diffusion prior (layer 4).

Images: measurement operators (mask, blur, downsample, MRI k-space, CT Radon), solvers that wrap any denoiser and
sampler (RePaint, exact denoising, DPS, DDRM-like projection), posterior uncertainty and split-conformal intervals,
and medical-format loading. Tables and time series live in the ``tables`` and ``series`` sub-packages.
"""

from __future__ import annotations

from diffsight.tasks.baselines import baseline_reconstruction, psnr, ssim
from diffsight.tasks.conformal import ConformalCalibration, CoverageReport, calibrate_intervals, coverage_report
from diffsight.tasks.denoise import denoise_posterior
from diffsight.tasks.dps import dps
from diffsight.tasks.medical_io import load_dicom, load_medical_image, load_nifti
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
from diffsight.tasks.posterior import SOLVERS, Reconstruction, reconstruct
from diffsight.tasks.projection import ProjectedDenoiser, projection_solve
from diffsight.tasks.radon import RadonOperator, filtered_back_projection, sparse_view_angles
from diffsight.tasks.repaint import repaint

__all__ = [
    "SOLVERS",
    "BlurOperator",
    "ConformalCalibration",
    "CoverageReport",
    "DownsampleOperator",
    "FourierOperator",
    "IdentityOperator",
    "LinearOperator",
    "MaskOperator",
    "ProjectedDenoiser",
    "RadonOperator",
    "Reconstruction",
    "baseline_reconstruction",
    "calibrate_intervals",
    "cartesian_kspace_mask",
    "coverage_report",
    "denoise_posterior",
    "dps",
    "filtered_back_projection",
    "gaussian_prior",
    "load_dicom",
    "load_medical_image",
    "load_nifti",
    "projection_solve",
    "psnr",
    "random_ellipse_phantoms",
    "reconstruct",
    "repaint",
    "shepp_logan",
    "sparse_view_angles",
    "ssim",
]
