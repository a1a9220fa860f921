"""A tiny random Stable-Diffusion-layout folder, built from configs here (no download): the test model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

WORDS = ["a", "red", "blue", "cat", "dog", "on", "the", "mat", "sitting", "photo", "of", "green"]
MAX_LENGTH = 12


def _write_tokenizer(folder: Path) -> int:
    """A byte-level BPE vocabulary in which every word above is one token, and other words split into letters."""
    letters = sorted(set("".join(WORDS)))
    vocab: dict[str, int] = {}
    for c in letters:
        vocab[c] = len(vocab)
    for c in letters:
        vocab[c + "</w>"] = len(vocab)
    merges: list[str] = []
    for word in WORDS:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            merge = f"{parts[0]} {parts[1]}"
            if merge not in merges:
                merges.append(merge)
            joined = parts[0] + parts[1]
            vocab.setdefault(joined, len(vocab))
            parts = [joined, *parts[2:]]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": MAX_LENGTH, "tokenizer_class": "CLIPTokenizer"})
    )
    return len(vocab)


def build_tiny_folder(root: Path, *, prediction_type: str = "epsilon") -> Path:
    """Save a tiny random UNet2DConditionModel, CLIPTextModel, CLIPTokenizer and AutoencoderKL as diffusers does."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    vocab_size = _write_tokenizer(root / "tokenizer")
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=MAX_LENGTH,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )
    text.save_pretrained(root / "text_encoder")
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    with torch.no_grad():  # random weights large enough that the prompt visibly changes the output
        for p in unet.parameters():
            p.add_(0.2 * torch.randn_like(p))
    unet.save_pretrained(root / "unet")
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    vae.save_pretrained(root / "vae")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(
            {
                "_class_name": "DDIMScheduler",
                "beta_schedule": "scaled_linear",
                "beta_start": 0.00085,
                "beta_end": 0.012,
                "num_train_timesteps": 1000,
                "clip_sample": False,
                "set_alpha_to_one": False,
                "steps_offset": 1,
                "prediction_type": prediction_type,
            }
        )
    )
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return root


@pytest.fixture(scope="session")
def tiny_sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return build_tiny_folder(tmp_path_factory.mktemp("tiny-sd") / "model")
