"""Peer parity: diffsight's samplers on a diffusers UNet reproduce diffusers' own scheduler loops.

The reference is the plain diffusers loop ``for t in sched.timesteps: x = sched.step(unet(x, t).sample, t,
x).prev_sample`` on a small, randomly initialised ``UNet2DModel``. The diffsight side is
``from_diffusers(unet, sched.config)`` (a denoiser in sigma coordinates ``x = x_t / sqrt(abar_t)``) driven by
``sample_ddim`` / ``sample_ddpm`` / ``sample_dpmpp_2m`` / ``sample_dpmpp_3m`` on the scheduler's own noise
levels. Both start from the same unit-variance noise x_T; ours is scaled to ``x_T * sqrt(1 + sigma_0^2)``
(because x_T = sqrt(abar) x). Both end at abar = 1, so the final samples are compared directly, in float32, by
relative error ``|ours - ref| / |ref|`` <= 1e-4.

Negative controls show that the tolerance has teeth: a wrong initial scaling, a wrong timestep spacing, other
ancestral noise or a skipped lower-order rule each miss by orders of magnitude more than 1e-4.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel

from diffsight.errors import DiffsightError, ScheduleError, UnknownNameError
from diffsight.models import DiscreteVPDenoiser, from_diffusers
from diffsight.sampling import replay_noise, sample_ddim, sample_ddpm, sample_dpmpp_2m, sample_dpmpp_3m

TOL = 1e-4  # the bound on the relative error of the final sample
FAR = 1e-2  # a deliberately wrong mapping must miss by at least this much (100x the tolerance)
SHAPE = (2, 3, 8, 8)  # batch 2 of 3-channel 8x8 images


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def _unet() -> UNet2DModel:
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the global RNG of other tests
        torch.manual_seed(0)
        unet = UNet2DModel(
            sample_size=8,
            in_channels=3,
            out_channels=3,
            block_out_channels=(8, 16),
            layers_per_block=1,
            norm_num_groups=4,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        )
    return unet.eval().requires_grad_(False)


def _x_T() -> torch.Tensor:
    """The shared initial noise, unit variance (diffusers' x_T), float32."""
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(1234))


def _rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).norm() / ref.norm())


def _start(x_T: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """x_T in diffsight's coordinates: x = x_t / sqrt(abar) = x_t * sqrt(1 + sigma^2)."""
    return x_T * float((1 + sigmas[0].double() ** 2).sqrt())


def _diffusers_loop(sched, x_T: torch.Tensor, generator=None, noises=None, **step_kwargs) -> torch.Tensor:
    """diffusers' plain sampling loop; ``noises[i]`` is passed as ``variance_noise`` to step i (DDIM, eta > 0)."""
    unet = _unet()
    x = x_T.clone()
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            out = unet(x, t).sample
            kwargs = dict(step_kwargs)
            if noises is not None:
                kwargs["variance_noise"] = noises[i]
            elif generator is not None:
                kwargs["generator"] = generator
            x = sched.step(out, t, x, **kwargs).prev_sample
    return x


# --- references (cached: each diffusers run is shared by the parity test and its negative controls) ----------


@functools.cache
def _ddim_ref(
    prediction_type: str,
    clip: bool,
    spacing: str,
    n: int,
    steps_offset: int = 0,
    beta_schedule: str = "linear",
    clipped_eps: bool = True,
) -> torch.Tensor:
    sched = _ddim(prediction_type, clip, spacing, steps_offset, beta_schedule)
    sched.set_timesteps(n)
    return _diffusers_loop(sched, _x_T(), use_clipped_model_output=clipped_eps)


def _ddim(prediction_type="epsilon", clip=False, spacing="leading", steps_offset=0, beta_schedule="linear"):
    kw = {"beta_start": 0.00085, "beta_end": 0.012} if beta_schedule == "scaled_linear" else {}
    return DDIMScheduler(
        prediction_type=prediction_type,
        clip_sample=clip,
        timestep_spacing=spacing,
        steps_offset=steps_offset,
        beta_schedule=beta_schedule,
        **kw,
    )


@functools.cache
def _ddpm_ref(prediction_type: str, clip: bool, n: int, seed: int) -> torch.Tensor:
    sched = DDPMScheduler(prediction_type=prediction_type, clip_sample=clip)
    sched.set_timesteps(n)
    return _diffusers_loop(sched, _x_T(), generator=torch.Generator().manual_seed(seed))


@functools.cache
def _dpm_ref(prediction_type: str, order: int, n: int) -> torch.Tensor:
    sched = DPMSolverMultistepScheduler(prediction_type=prediction_type, solver_order=order)
    sched.set_timesteps(n)
    return _diffusers_loop(sched, _x_T())


def _ddim_ours(prediction_type, clip, spacing, n, steps_offset=0, beta_schedule="linear", sigmas=None, scale=True):
    sched = _ddim(prediction_type, clip, spacing, steps_offset, beta_schedule)
    den = from_diffusers(_unet(), sched.config)
    if sigmas is None:
        sigmas = den.schedule.sigmas(n, spacing=sched.config.timestep_spacing, steps_offset=sched.config.steps_offset)
    x = _start(_x_T(), sigmas) if scale else _x_T()
    with torch.no_grad():
        return sample_ddim(den, x, sigmas)


def _dpm_setup(prediction_type: str, order: int, n: int):
    sched = DPMSolverMultistepScheduler(prediction_type=prediction_type, solver_order=order)
    sched.set_timesteps(n)
    den = from_diffusers(_unet(), sched.config)
    sigmas = torch.cat([den.schedule.train_sigmas[sched.timesteps], torch.zeros(1, dtype=torch.float64)])
    return sched, den, sigmas


# --- DDIM (eta = 0) --------------------------------------------------------------------------------------------

DDIM_CASES = [
    # (prediction_type, clip_sample, timestep_spacing, steps, steps_offset)
    *[
        (p, c, s, 10, 0)
        for p in ("epsilon", "v_prediction", "sample")
        for c in (True, False)
        for s in ("leading", "trailing")
    ],
    ("epsilon", True, "leading", 25, 0),
    ("v_prediction", False, "trailing", 25, 0),
    ("epsilon", False, "leading", 10, 1),  # Stable Diffusion style steps_offset=1
]


@pytest.mark.parametrize(("prediction_type", "clip", "spacing", "n", "offset"), DDIM_CASES)
def test_ddim_matches_diffusers(prediction_type, clip, spacing, n, offset):
    ref = _ddim_ref(prediction_type, clip, spacing, n, offset)
    ours = _ddim_ours(prediction_type, clip, spacing, n, offset)
    assert torch.isfinite(ref).all() and ref.norm() > 0
    assert _rel(ours, ref) <= TOL


@pytest.mark.parametrize("beta_schedule", ["scaled_linear", "squaredcos_cap_v2"])
def test_ddim_matches_diffusers_other_beta_schedules(beta_schedule):
    ref = _ddim_ref("epsilon", False, "leading", 10, 0, beta_schedule)
    ours = _ddim_ours("epsilon", False, "leading", 10, 0, beta_schedule)
    assert _rel(ours, ref) <= TOL


def test_ddim_clip_sample_follows_clipped_model_output():
    """Our adapter clamps x0 and the sampler derives the direction from the clamped x0: that is diffusers'
    DDIM with ``use_clipped_model_output=True`` (matched above). diffusers' default (False) keeps the raw eps for
    the direction, which a denoiser returning only x0 cannot express; on a random UNet that differs a lot."""
    ours = _ddim_ours("epsilon", True, "leading", 10)
    assert _rel(ours, _ddim_ref("epsilon", True, "leading", 10)) <= TOL
    assert _rel(ours, _ddim_ref("epsilon", True, "leading", 10, clipped_eps=False)) > FAR


def test_ddim_stochastic_eta_matches_diffusers_with_replayed_noise():
    """DDIM(eta) draws one noise per step; handing diffusers' draws to our sampler via replay_noise matches."""
    n, eta = 10, 0.6
    sched = _ddim("epsilon", False, "leading")
    sched.set_timesteps(n)
    g = torch.Generator().manual_seed(7)
    noises = [torch.randn(SHAPE, generator=g) for _ in range(n)]
    ref = _diffusers_loop(sched, _x_T(), noises=noises, eta=eta)
    den = from_diffusers(_unet(), sched.config)
    sigmas = den.schedule.sigmas(n)
    # our sampler draws at steps with sigma_next > 0, i.e. all but the last, where diffusers' std is 0 anyway
    with torch.no_grad():
        ours = sample_ddim(
            den, _start(_x_T(), sigmas), sigmas, eta=eta, noise=replay_noise({i: (noises[i],) for i in range(n - 1)})
        )
    assert _rel(ours, ref) <= TOL
    assert _rel(ours, _ddim_ref("epsilon", False, "leading", n)) > FAR  # the noise really entered


def test_ddim_wrong_initial_scaling_misses():
    """Forgetting x = x_T * sqrt(1 + sigma_0^2) must fail the tolerance by far."""
    ref = _ddim_ref("epsilon", False, "leading", 10)
    assert _rel(_ddim_ours("epsilon", False, "leading", 10, scale=False), ref) > FAR


def test_ddim_wrong_timestep_spacing_misses():
    """Sampling a leading-spaced reference on trailing sigmas must fail the tolerance by far."""
    ref = _ddim_ref("epsilon", False, "leading", 10)
    den = from_diffusers(_unet(), _ddim().config)
    wrong = den.schedule.sigmas(10, spacing="trailing")
    assert _rel(_ddim_ours("epsilon", False, "leading", 10, sigmas=wrong), ref) > FAR


# --- DDPM ancestral --------------------------------------------------------------------------------------------

DDPM_STEPS = 20


def _ddpm_ours(prediction_type: str, clip: bool, seed: int) -> torch.Tensor:
    sched = DDPMScheduler(prediction_type=prediction_type, clip_sample=clip)
    den = from_diffusers(_unet(), sched.config)
    sigmas = den.schedule.sigmas(
        DDPM_STEPS, spacing=sched.config.timestep_spacing, steps_offset=sched.config.steps_offset
    )
    # the initial noise comes from its own generator; the per-step noise from a generator seeded like diffusers'
    with torch.no_grad():
        return sample_ddpm(den, _start(_x_T(), sigmas), sigmas, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("prediction_type", "clip"),
    [("epsilon", True), ("epsilon", False), ("v_prediction", True), ("sample", False)],
)
def test_ddpm_matches_diffusers(prediction_type, clip):
    ref = _ddpm_ref(prediction_type, clip, DDPM_STEPS, seed=5)
    assert _rel(_ddpm_ours(prediction_type, clip, seed=5), ref) <= TOL


def test_ddpm_other_step_noise_misses():
    """The per-step noise matters: another seed for it must fail the tolerance by far."""
    ref = _ddpm_ref("epsilon", True, DDPM_STEPS, seed=5)
    assert _rel(_ddpm_ours("epsilon", True, seed=6), ref) > FAR


# --- DPM-Solver++ (2M, 3M) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction_type", "n"), [("epsilon", 10), ("epsilon", 25), ("v_prediction", 10), ("sample", 10)]
)
def test_dpmpp_2m_matches_diffusers(prediction_type, n):
    sched, den, sigmas = _dpm_setup(prediction_type, 2, n)
    torch.testing.assert_close(sigmas.float(), sched.sigmas, rtol=1e-5, atol=0)  # theirs: float32 cumprod
    with torch.no_grad():
        ours = sample_dpmpp_2m(den, _start(_x_T(), sigmas), sigmas)
    assert _rel(ours, _dpm_ref(prediction_type, 2, n)) <= TOL


@pytest.mark.parametrize(
    ("prediction_type", "n"), [("epsilon", 10), ("epsilon", 20), ("v_prediction", 10), ("sample", 10)]
)
def test_dpmpp_3m_matches_diffusers(prediction_type, n):
    sched, den, sigmas = _dpm_setup(prediction_type, 3, n)
    with torch.no_grad():
        ours = sample_dpmpp_3m(den, _start(_x_T(), sigmas), sigmas)
    assert _rel(ours, _dpm_ref(prediction_type, 3, n)) <= TOL


def test_dpmpp_3m_needs_lower_order_final_below_15_steps():
    """With 10 steps diffusers drops to order 2 before the final step; skipping that rule must be visible.
    (x0-prediction: on a random eps-predicting UNet the final sample is dominated by the first steps.)"""
    _, den, sigmas = _dpm_setup("sample", 3, 10)
    with torch.no_grad():
        ours = sample_dpmpp_3m(den, _start(_x_T(), sigmas), sigmas, lower_order_final=False)
    assert _rel(ours, _dpm_ref("sample", 3, 10)) > FAR


def test_dpmpp_wrong_order_misses():
    """2M against diffusers' 3M reference must fail the tolerance by far (the solvers really differ)."""
    _, den, sigmas = _dpm_setup("sample", 3, 10)
    with torch.no_grad():
        ours = sample_dpmpp_2m(den, _start(_x_T(), sigmas), sigmas)
    assert _rel(ours, _dpm_ref("sample", 3, 10)) > FAR


# --- timesteps and noise levels (no network) -------------------------------------------------------------------


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("steps_offset", [0, 1])
def test_timesteps_match_diffusers(spacing, steps_offset):
    """Our integer timesteps equal diffusers' for every step count where diffusers gives N valid timesteps
    (its trailing rule yields N+1, ending in -1, for some N > 60; leading with offset 1 overflows at N = T)."""
    den = from_diffusers(_unet(), DDPMScheduler().config)
    checked = 0
    for n in range(1, 1001):
        sched = DDIMScheduler(timestep_spacing=spacing, steps_offset=steps_offset)
        sched.set_timesteps(n)
        ref = sched.timesteps
        if ref.numel() != n or ref.min() < 0 or ref.max() > 999:
            continue
        assert torch.equal(den.schedule.timesteps(n, spacing=spacing, steps_offset=steps_offset), ref), n
        checked += 1
    assert checked > 800


def test_leading_offset_overflow_is_rejected():
    den = from_diffusers(_unet(), DDPMScheduler().config)
    with pytest.raises(ScheduleError, match="steps_offset"):
        den.schedule.timesteps(1000, spacing="leading", steps_offset=1)


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_train_sigmas_match_diffusers(beta_schedule):
    sched = _ddim(beta_schedule=beta_schedule)
    den = from_diffusers(_unet(), sched.config)
    torch.testing.assert_close(den.schedule.betas, sched.betas.double(), rtol=1e-6, atol=1e-9)
    # diffusers' cumprod is float32 (1.3e-5 off at t = 999 for cosine, where abar ~ 2e-9); ours is float64
    torch.testing.assert_close(den.schedule.alphas_cumprod, sched.alphas_cumprod.double(), rtol=5e-5, atol=0)


# --- from_diffusers config handling ----------------------------------------------------------------------------


def test_from_diffusers_reads_trained_betas():
    betas = np.linspace(2e-4, 0.03, 200) ** 1.1
    sched = DDPMScheduler(num_train_timesteps=200, trained_betas=betas.tolist(), beta_schedule="linear")
    den = from_diffusers(_unet(), sched.config)
    assert den.schedule.num_train_timesteps == 200
    torch.testing.assert_close(den.schedule.betas, torch.as_tensor(betas, dtype=torch.float64))
    torch.testing.assert_close(den.schedule.alphas_cumprod, sched.alphas_cumprod.double(), rtol=1e-5, atol=0)


def test_from_diffusers_reads_cosine_betas():
    sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    den = from_diffusers(_unet(), sched.config)
    torch.testing.assert_close(den.schedule.betas, sched.betas.double(), rtol=1e-6, atol=1e-9)
    assert den.schedule.betas.max() == pytest.approx(0.999)  # the cap of Nichol & Dhariwal, sec. 3.2


@pytest.mark.parametrize("source", ["scheduler", "config", "dict"])
def test_from_diffusers_accepts_scheduler_config_or_dict(source):
    sched = DDPMScheduler(prediction_type="v_prediction", clip_sample=True, clip_sample_range=2.0)
    arg = {"scheduler": sched, "config": sched.config, "dict": dict(sched.config)}[source]
    den = from_diffusers(_unet(), arg)
    assert isinstance(den, DiscreteVPDenoiser)
    assert den.prediction_type == "v"
    assert den.clip_x0 == 2.0


@pytest.mark.parametrize(
    ("prediction_type", "canonical"), [("epsilon", "eps"), ("v_prediction", "v"), ("sample", "x0")]
)
def test_from_diffusers_prediction_types(prediction_type, canonical):
    den = from_diffusers(_unet(), {"prediction_type": prediction_type, "clip_sample": False})
    assert den.prediction_type == canonical
    assert den.clip_x0 is None


def test_from_diffusers_defaults_follow_diffusers():
    """A bare dict means diffusers' DDPM defaults: linear betas 1e-4..0.02 over 1000 steps, epsilon."""
    den = from_diffusers(_unet(), {})
    torch.testing.assert_close(den.schedule.betas, DDPMScheduler().betas.double(), rtol=1e-6, atol=1e-9)
    assert den.prediction_type == "eps"


@pytest.mark.parametrize(
    ("option", "message"),
    [("rescale_betas_zero_snr", "rescale_betas_zero_snr"), ("thresholding", "thresholding")],
)
def test_from_diffusers_rejects_unsupported_options(option, message):
    sched = DDIMScheduler(**{option: True})
    with pytest.raises(DiffsightError, match=message):
        from_diffusers(_unet(), sched.config)


def test_from_diffusers_rejects_unknown_prediction_type():
    with pytest.raises(UnknownNameError, match="flow_prediction"):
        from_diffusers(_unet(), {"prediction_type": "flow_prediction"})
