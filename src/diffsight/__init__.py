"""diffsight: train, sample and explain diffusion models.

The engine speaks four contracts (docs/concepts.md): a denoiser ``D(x, sigma, cond) -> x0_hat``, schedules
that return descending sigmas, samplers that are pure functions reporting each step, and oracles with
closed-form answers to check everything against.
"""

from diffsight._version import __version__
from diffsight.data import load_data
from diffsight.errors import DiffsightError, ScheduleError, ShapeError, UnknownNameError
from diffsight.models import (
    Denoiser,
    DiscreteVPDenoiser,
    DiscreteVPSchedule,
    EDMPrecond,
    LoadedModel,
    from_diffusers,
    load_model,
)
from diffsight.oracles import EmpiricalOracle, GaussianMixtureOracle, GaussianOracle
from diffsight.sampling import (
    SAMPLERS,
    ClassifierFreeGuidance,
    StepRecord,
    generate_samples,
    get_sampler,
    karras_sigmas,
    sample,
)
from diffsight.trace import Trace, load_trace, record_trace, replay, save_trace

__all__ = [
    "SAMPLERS",
    "ClassifierFreeGuidance",
    "Denoiser",
    "DiffsightError",
    "DiscreteVPDenoiser",
    "DiscreteVPSchedule",
    "EDMPrecond",
    "EmpiricalOracle",
    "LoadedModel",
    "GaussianMixtureOracle",
    "GaussianOracle",
    "ScheduleError",
    "ShapeError",
    "StepRecord",
    "Trace",
    "UnknownNameError",
    "__version__",
    "from_diffusers",
    "generate_samples",
    "get_sampler",
    "karras_sigmas",
    "load_data",
    "load_model",
    "load_trace",
    "record_trace",
    "replay",
    "sample",
    "save_trace",
]
