"""A local diffusers text-to-image folder (Stable Diffusion layout) as a denoiser over latents.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models", sec. 3-4):
an autoencoder maps an image to latents ``z = s * E(x)`` (``s`` = the VAE's ``scaling_factor``), a UNet is trained
on the discrete VP schedule over ``z`` with the prompt's text-encoder states as cross-attention context
(their eq. 3, ``tau_theta(y)``), and ``D(z_hat / s)`` decodes. Here the UNet goes through the same discrete-VP
adapter as any diffusers network (:mod:`diffsight.models.discrete`), so every diffsight sampler and
:class:`~diffsight.sampling.ClassifierFreeGuidance` run on it unchanged; ``cond`` is the prompt embeddings
``(B, L, D)`` (L = the tokenizer's ``model_max_length``, 77 for CLIP).

The folder layout read (diffusers' ``save_pretrained`` of a pipeline; nothing is ever downloaded)::

    FOLDER/unet/config.json + diffusion_pytorch_model.safetensors      UNet2DConditionModel
    FOLDER/vae/config.json + diffusion_pytorch_model.safetensors       AutoencoderKL
    FOLDER/text_encoder/config.json + model.safetensors                 CLIPTextModel (transformers)
    FOLDER/tokenizer/vocab.json + merges.txt (or tokenizer.json)        CLIPTokenizer (transformers)
    FOLDER/scheduler/scheduler_config.json                              betas and prediction type

diffusers and transformers are imported inside the functions: ``import diffsight.models`` stays light, and a
missing ``transformers`` says to install the ``text`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffsight.errors import DiffsightError
from diffsight.models.discrete import DiscreteVPDenoiser, from_diffusers

__all__ = ["PromptTokens", "TextToImageModel", "TextUNetBackbone", "load_text_to_image"]

_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


class TextUNetBackbone(nn.Module):
    """Call a diffusers ``UNet2DConditionModel`` as a backbone ``F(z_t, t, cond)``: cond = prompt embeddings."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        if cond is None:
            raise DiffsightError("a text-conditioned UNet needs prompt embeddings: pass cond=model.encode(prompts)")
        return self.unet(x, t, encoder_hidden_states=cond.to(x.dtype)).sample


@dataclass(frozen=True)
class PromptTokens:
    """A prompt as the text encoder sees it.

    Attributes:
        prompt: the text.
        ids: (L,) token ids, BOS first, padded to the tokenizer's length.
        tokens: (L,) the token strings (``<|startoftext|>``, sub-words ending in ``</w>``, padding).
        words: the whitespace-separated words of the prompt.
        spans: for each word, the positions of its sub-tokens in ``ids`` (empty when truncated away).
    """

    prompt: str
    ids: torch.Tensor
    tokens: tuple[str, ...]
    words: tuple[str, ...]
    spans: tuple[tuple[int, ...], ...]

    def word_index(self, word: str) -> int:
        """Position of ``word`` among :attr:`words` (first occurrence, case-insensitive)."""
        lowered = [w.lower() for w in self.words]
        if word.lower() not in lowered:
            raise DiffsightError(f"the prompt has no word {word!r}; its words are {list(self.words)}")
        return lowered.index(word.lower())


@dataclass(frozen=True, eq=False)
class TextToImageModel:
    """A loaded text-to-image folder. ``denoiser`` is ``D(z, sigma, cond)`` over latents (no guidance).

    Attributes:
        denoiser: the UNet behind the discrete-VP adapter; ``cond`` = :meth:`encode` output.
        unet, vae, text_encoder, tokenizer: the loaded components (eval mode).
        scheduler_config: the dict of ``scheduler/scheduler_config.json``.
        latent_shape: (C, h, w) of one latent at the default size.
        vae_scale_factor: pixels per latent cell along each side (2 ** (levels - 1)).
        scaling_factor, shift_factor: ``z = scaling * (E(x) - shift)``.
        path: the folder.
    """

    denoiser: DiscreteVPDenoiser
    unet: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    tokenizer: Any
    scheduler_config: dict[str, Any]
    latent_shape: tuple[int, int, int]
    vae_scale_factor: int
    scaling_factor: float
    shift_factor: float
    path: Path

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def max_length(self) -> int:
        return int(self.tokenizer.model_max_length)

    def latent_shape_for(self, height: int | None = None, width: int | None = None) -> tuple[int, int, int]:
        """(C, h, w) latents for an image of ``height`` x ``width`` pixels (default: the UNet's sample size)."""
        c, h, w = self.latent_shape
        f = self.vae_scale_factor
        height = h * f if height is None else height
        width = w * f if width is None else width
        if height % f or width % f or height < f or width < f:
            raise DiffsightError(f"height and width must be positive multiples of {f} (the VAE's scale factor)")
        return (c, height // f, width // f)

    def tokenize(self, prompt: str) -> PromptTokens:
        """Token ids of ``prompt`` and which tokens belong to which word (words are tokenized one by one)."""
        if not isinstance(prompt, str):
            raise DiffsightError(f"a prompt must be a string, got {type(prompt).__name__}")
        enc = self.tokenizer(prompt, padding="max_length", max_length=self.max_length, truncation=True)
        ids = list(enc["input_ids"])
        words = tuple(prompt.split())
        spans: list[tuple[int, ...]] = []
        pos = 1  # after BOS
        for word in words:
            sub = list(self.tokenizer(word, add_special_tokens=False)["input_ids"])
            span = tuple(p for p in range(pos, pos + len(sub)) if p < self.max_length - 1)
            if span and ids[span[0] : span[-1] + 1] != sub[: len(span)]:
                raise DiffsightError(
                    f"could not align the word {word!r} with the prompt's tokens; the tokenizer splits words "
                    "differently in context than alone (a CLIP tokenizer does not)"
                )
            spans.append(span)
            pos += len(sub)
        tokens = tuple(self.tokenizer.convert_ids_to_tokens(ids))
        return PromptTokens(prompt, torch.tensor(ids), tokens, words, tuple(spans))

    def encode(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """Prompt embeddings (B, L, D): the text encoder's last hidden states, the UNet's cross-attention context.

        The empty prompt ``""`` gives the unconditional embedding used by classifier-free guidance.
        """
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = torch.stack([self.tokenize(p).ids for p in texts]).to(self.device)  # (B, L)
        return self.text_encoder(ids)[0].to(self.dtype)  # (B, L, D)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] from latents (B, C, h, w) in the UNet's scale."""
        z = latents.to(self.device, self.dtype) / self.scaling_factor + self.shift_factor
        return self.vae.decode(z).sample.clamp(-1, 1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, h, w) of images (B, 3, H, W) in [-1, 1]: the mean of the VAE's posterior, scaled."""
        posterior = self.vae.encode(images.to(self.device, self.dtype)).latent_dist
        return (posterior.mean - self.shift_factor) * self.scaling_factor


def _require_text_extra() -> None:
    try:
        import transformers  # noqa: F401
    except ImportError as err:
        raise DiffsightError(
            "text-to-image models need the 'transformers' package: pip install 'diffsight[text]'"
        ) from err


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise DiffsightError(f"no such folder: {folder}. Pass a local diffusers text-to-image folder")
    missing = [p for p in _PARTS if not (folder / p).is_dir()]
    if missing:
        raise DiffsightError(
            f"{folder} is not a diffusers text-to-image folder: it lacks {', '.join(p + '/' for p in missing)}. "
            "Save a pipeline with StableDiffusionPipeline.save_pretrained(folder) or download one with "
            "`hf download <repo> --local-dir FOLDER` beforehand"
        )
    for part, weights in (
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
    ):
        if not any((folder / part).glob(f"{weights}*.safetensors")):
            raise DiffsightError(
                f"{folder / part} has no {weights}.safetensors: diffsight loads safetensors weights only "
                "(convert .bin files with the safetensors package first)"
            )


def load_text_to_image(
    folder: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> TextToImageModel:
    """Load a local diffusers text-to-image folder (never downloads: ``local_files_only=True``).

    Args:
        folder: the pipeline folder (see the module docstring for its layout).
        device: where the networks run (``"cuda"`` for a GPU).
        dtype: ``torch.float16`` halves memory on a GPU; sampling state stays in this dtype too.
    """
    root = Path(folder)
    _check_folder(root)
    _require_text_extra()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    config_file = root / "scheduler" / "scheduler_config.json"
    if not config_file.is_file():
        raise DiffsightError(f"{config_file} is missing: it holds the betas the UNet was trained with")
    scheduler_config = json.loads(config_file.read_text())
    local = {"local_files_only": True, "use_safetensors": True}
    unet = UNet2DConditionModel.from_pretrained(root / "unet", torch_dtype=dtype, **local).to(device).eval()
    vae = AutoencoderKL.from_pretrained(root / "vae", torch_dtype=dtype, **local).to(device).eval()
    text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder", **local).to(device).eval()
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    adapter = from_diffusers(unet, scheduler_config)
    denoiser = DiscreteVPDenoiser(
        TextUNetBackbone(unet), adapter.schedule, adapter.prediction_type, clip_x0=adapter.clip_x0
    )
    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    shift = getattr(vae.config, "shift_factor", None)
    return TextToImageModel(
        denoiser=denoiser,
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler_config=scheduler_config,
        latent_shape=(int(unet.config.in_channels), int(h), int(w)),
        vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1),
        scaling_factor=float(getattr(vae.config, "scaling_factor", 1.0) or 1.0),
        shift_factor=float(shift or 0.0),
        path=root,
    )
