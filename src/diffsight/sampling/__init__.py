"""Schedules, samplers and guidance: the sampling engine (DESIGN.md, contracts 2 and 3)."""

from diffsight.models.denoiser import Denoiser
from diffsight.sampling.dequantize import bin_width, bits_per_dim, to_levels, uniform_dequantize
from diffsight.sampling.generate import generate_samples
from diffsight.sampling.guidance import ClassifierFreeGuidance
from diffsight.sampling.info_likelihood import (
    InfoLikelihood,
    PointwiseInformation,
    info_nll,
    knowing_logsnr,
    pointwise_information,
)
from diffsight.sampling.logsnr_sampling import LogSNRProposal, data_spectrum, denoiser_logsnr_range
from diffsight.sampling.ode_likelihood import LikelihoodResult, ode_log_likelihood
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
    "InfoLikelihood",
    "LikelihoodResult",
    "LogSNRProposal",
    "PointwiseInformation",
    "bin_width",
    "bits_per_dim",
    "data_spectrum",
    "denoiser_logsnr_range",
    "info_nll",
    "knowing_logsnr",
    "ode_log_likelihood",
    "pointwise_information",
    "to_levels",
    "uniform_dequantize",
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
