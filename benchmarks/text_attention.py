"""Cost of recording per-step cross-attention maps on a text-to-image UNet, against plain sampling.

A random UNet2DConditionModel (channels 32/64/64, 3 cross-attention levels, 32x32 latents, 16 tokens) with a
tiny CLIP text encoder, sampled with DPM-Solver++(2M) for 10 steps at guidance 7.5, batch 1. Rows:

- plain: no recording (the fused scaled-dot-product attention processors diffusers installs);
- record all: our recorder on every cross-attention layer at every step (fused output + recomputed softmax);
- record 3 steps: the recorder hooked on 3 of the 10 steps (the others cost nothing extra);
- explicit attention: diffusers' non-fused ``AttnProcessor`` on the cross-attention layers, as DAAM needs.

Ratios are against "plain", measured in the same process (median of repeats). Run:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text_attention.py``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _model(root: Path):  # type: ignore[no-untyped-def]
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from diffsight.models.discrete import DiscreteVPDenoiser, from_diffusers
    from diffsight.models.text2img import TextToImageModel, TextUNetBackbone

    torch.manual_seed(0)
    words = ["a", "red", "cat", "on", "the", "mat"]
    letters = sorted(set("".join(words)))
    vocab = {c: i for i, c in enumerate([*letters, *(c + "</w>" for c in letters)])}
    merges = []
    for w in words:  # each word one token: merge its letters left to right
        parts = [*w[:-1], w[-1] + "</w>"]
        while len(parts) > 1:
            merges.append(f"{parts[0]} {parts[1]}")
            vocab.setdefault(parts[0] + parts[1], len(vocab))
            parts = [parts[0] + parts[1], *parts[2:]]
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(root, local_files_only=True, model_max_length=16)
    n = len(vocab)
    text = CLIPTextModel(
        CLIPTextConfig(vocab_size=n, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, max_position_embeddings=16, bos_token_id=n - 2, eos_token_id=n - 1,
                       pad_token_id=n - 1)
    ).eval()  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=32, block_out_channels=(32, 64, 64), layers_per_block=1, cross_attention_dim=32,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4,
        norm_num_groups=8,
    ).eval()  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
    ).eval()
    config = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}
    adapter = from_diffusers(unet, config)
    return TextToImageModel(
        denoiser=DiscreteVPDenoiser(TextUNetBackbone(unet), adapter.schedule, "eps"),
        unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler_config=config,
        latent_shape=(4, 32, 32), vae_scale_factor=2, scaling_factor=0.18215, shift_factor=0.0, path=root,
    )  # fmt: skip


def main(repeats: int = 5) -> None:
    from diffusers.models.attention_processor import AttnProcessor

    from diffsight.explain.cross_attention import cross_attention_layers
    from diffsight.explain.text_conditioning import text_to_image

    with tempfile.TemporaryDirectory() as tmp:
        model = _model(Path(tmp))
    prompt = "a red cat on the mat"

    layers = cross_attention_layers(model.unet)
    fused = {name: attn.processor for name, attn in layers.items()}
    variants = {
        "plain (fused attention)": ({}, fused),
        "record all steps, all layers": ({"record_attention": True}, fused),
        "record 3 of 10 steps": ({"record_attention": True, "attention_steps": [0, 4, 9]}, fused),
        "explicit attention (DAAM's way), no recording": ({}, {name: AttnProcessor() for name in layers}),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(repeats + 1):  # variants interleaved, so that load on a shared box hits all alike
        for name, (kwargs, processors) in variants.items():
            for layer, attn in layers.items():
                attn.processor = processors[layer]
            start = time.perf_counter()
            with torch.inference_mode():
                text_to_image(model, prompt, steps=10, guidance=7.5, **kwargs)  # type: ignore[arg-type]
            if round_:  # round 0 is the warm-up
                times[name].append(time.perf_counter() - start)
    rows = [(name, statistics.median(ts)) for name, ts in times.items()]
    base = rows[0][1]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, 10 steps DPM-Solver++(2M), CFG batch 2")
    print(f"{'variant':50s} {'s / image':>10s} {'ratio':>7s}")
    for name, seconds in rows:
        print(f"{name:50s} {seconds:10.3f} {seconds / base:7.2f}")


if __name__ == "__main__":
    main()
