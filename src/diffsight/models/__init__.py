"""Networks and the denoiser contract: preconditioning and adapters that make any network a denoiser."""

from diffsight.models.denoiser import Denoiser
from diffsight.models.discrete import DiscreteVPDenoiser, UNetBackbone, from_diffusers
from diffsight.models.folder import LoadedModel, load_model, save_model_folder, shipped_models
from diffsight.models.latent import AUTOENCODER_PRESETS, LatentModel, build_autoencoder
from diffsight.models.mlp import SigmaMLP
from diffsight.models.parametrization import convert, eps_to_x0, score_to_x0, v_to_x0, x0_to_eps, x0_to_score, x0_to_v
from diffsight.models.precond import EDMPrecond, edm_coefficients
from diffsight.models.text2img import TextToImageModel, load_text_to_image
from diffsight.models.unet import UNET_PRESETS, UNetEDMBackbone, build_unet, unet_config
from diffsight.models.vp_schedule import DiscreteVPSchedule

__all__ = [
    "AUTOENCODER_PRESETS",
    "Denoiser",
    "DiscreteVPDenoiser",
    "DiscreteVPSchedule",
    "EDMPrecond",
    "LatentModel",
    "LoadedModel",
    "SigmaMLP",
    "TextToImageModel",
    "UNET_PRESETS",
    "UNetBackbone",
    "UNetEDMBackbone",
    "build_autoencoder",
    "build_unet",
    "convert",
    "edm_coefficients",
    "eps_to_x0",
    "from_diffusers",
    "load_text_to_image",
    "load_model",
    "save_model_folder",
    "shipped_models",
    "score_to_x0",
    "unet_config",
    "v_to_x0",
    "x0_to_eps",
    "x0_to_score",
    "x0_to_v",
]
