"""Schedules, samplers and guidance: the sampling engine (DESIGN.md, contracts 2 and 3)."""

from diffsight.models.denoiser import Denoiser
from diffsight.sampling.generate import generate_samples
from diffsight.sampling.guidance import ClassifierFreeGuidance
from diffsight.sampling.records import Callback, NoiseFn, StepRecord, generator_noise, randn_like, replay_noise
from diffsight.sampling.registry import DETERMINISTIC_SAMPLERS, SAMPLERS, get_sampler, sample
from diffsight.sampling.samplers import (
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_dpmpp_3m,
    sample_euler,
    sample_heun,
    sample_pc,
)
from diffsight.sampling.schedules import (
    DiscreteVPSchedule,
    betas_cosine,
    betas_linear,
    betas_scaled_linear,
    check_sigmas,
    karras_sigmas,
    loglinear_snr_sigmas,
    make_betas,
    ve_geometric_sigmas,
)

__all__ = [
    "generate_samples",
    "DETERMINISTIC_SAMPLERS",
    "SAMPLERS",
    "Callback",
    "ClassifierFreeGuidance",
    "Denoiser",
    "DiscreteVPSchedule",
    "NoiseFn",
    "StepRecord",
    "betas_cosine",
    "betas_linear",
    "betas_scaled_linear",
    "check_sigmas",
    "generator_noise",
    "get_sampler",
    "karras_sigmas",
    "loglinear_snr_sigmas",
    "make_betas",
    "randn_like",
    "replay_noise",
    "sample",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_dpmpp_3m",
    "sample_euler",
    "sample_heun",
    "sample_pc",
    "ve_geometric_sigmas",
]
