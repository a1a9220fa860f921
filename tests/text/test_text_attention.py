"""Text conditioning on a tiny random Stable-Diffusion-layout folder built in the test (no download)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from diffsight.errors import DiffsightError, UnknownNameError  # noqa: E402
from diffsight.explain.cross_attention import CrossAttentionRecorder, cross_attention_layers, word_maps  # noqa: E402
from diffsight.explain.text_conditioning import (  # noqa: E402
    intervention_scores,
    model_sigmas,
    prompt_interventions,
    text_to_image,
    word_information,
)
from diffsight.models.text2img import TextToImageModel, load_text_to_image  # noqa: E402
from diffsight.sampling import ClassifierFreeGuidance, get_sampler  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a red cat sitting on the mat"


@pytest.fixture(scope="module")
def model(tiny_sd_folder: Path) -> TextToImageModel:
    return load_text_to_image(tiny_sd_folder)


def test_loader_reads_the_folder_and_maps_words_to_tokens(model: TextToImageModel, tmp_path: Path) -> None:
    assert model.latent_shape == (4, 8, 8) and model.vae_scale_factor == 2
    assert model.denoiser.prediction_type == "eps" and model.denoiser.schedule.num_train_timesteps == 1000
    tokens = model.tokenize("a reddish cat on the mat")
    assert tokens.tokens[0] == "<|startoftext|>" and len(tokens.ids) == model.max_length
    assert tokens.spans[0] == (1,)
    assert len(tokens.spans[1]) == 6  # "reddish" is not in the vocabulary: six sub-tokens
    assert tokens.spans[2] == (8,)
    assert tokens.spans[-1] == ()  # "mat" is cut off by the 12-token limit
    assert model.encode([PROMPT, ""]).shape == (2, model.max_length, 16)
    with pytest.raises(DiffsightError, match="lacks"):
        load_text_to_image(tmp_path)


def test_recording_keeps_the_networks_output_and_restores_the_processors(model: TextToImageModel) -> None:
    unet = model.unet
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    emb = model.encode([PROMPT, ""])
    t = torch.tensor([500.0, 500.0])
    before = {n: m.processor for n, m in cross_attention_layers(unet).items()}
    plain = unet(z, t, encoder_hidden_states=emb).sample
    recorder = CrossAttentionRecorder(unet, rows=1)
    with recorder.attached():
        recorded = unet(z, t, encoder_hidden_states=emb).sample
    torch.testing.assert_close(recorded, plain, rtol=0, atol=0)  # the fused output is the one returned
    assert {n: m.processor for n, m in cross_attention_layers(unet).items()} == before
    maps = recorder.result()
    assert len(maps.records) == len(before) == 4
    assert {r.maps.shape[0] for r in maps.records} == {1}  # only the first (conditional) row
    assert {tuple(r.maps.shape[-2:]) for r in maps.records} == {(8, 8), (4, 4)}


def test_attention_mass_over_all_tokens_is_one(model: TextToImageModel) -> None:
    sample = text_to_image(model, PROMPT, steps=4, guidance=3.0, record_attention=True)
    att = sample.attention
    assert att is not None and float(att.mass().max()) < 1e-5
    per_step = att.step_maps()  # (S, 1, T, 8, 8)
    torch.testing.assert_close(per_step.sum(2), torch.ones_like(per_step.sum(2)), atol=1e-5, rtol=0)
    # negative control: without BOS and padding the real tokens alone do not carry the whole mass
    real = [p for span in sample.tokens.spans for p in span]
    assert float((per_step[:, :, real].sum(2) - 1).abs().max()) > 1e-2


def _daam_accumulator(unet: torch.nn.Module, rows: int, half: str) -> dict[str, torch.Tensor]:
    """DAAM's own procedure, independently: explicit attention probabilities summed over every call."""
    from diffusers.models.attention_processor import AttnProcessor

    sums: dict[str, torch.Tensor] = {}
    for name, attn in cross_attention_layers(unet).items():
        attn.set_processor(AttnProcessor())
        original = attn.get_attention_scores

        def scores(query, key, mask=None, *, _name=name, _attn=attn, _orig=original):  # type: ignore[no-untyped-def]
            probs = _orig(query, key, mask)  # (batch*heads, N, T), batch-major
            heads = _attn.heads
            batch = probs.shape[0] // heads
            probs = probs.reshape(batch, heads, *probs.shape[1:]).mean(1)  # (batch, N, T)
            part = probs[:rows] if half == "cond" else probs[batch - rows :]
            sums[_name] = sums.get(_name, 0) + part.detach()
            return _orig(query, key, mask)

        attn.get_attention_scores = scores
    return sums


def test_per_step_maps_sum_to_the_daam_all_steps_accumulation(tiny_sd_folder: Path) -> None:
    model = load_text_to_image(tiny_sd_folder)  # its own copy: this test swaps processors
    sums = _daam_accumulator(model.unet, rows=1, half="cond")
    sample = text_to_image(model, PROMPT, steps=5, guidance=4.0, sampler="dpmpp_2m", record_attention=True)
    att = sample.attention
    assert att is not None and att.steps == tuple(range(5))
    for layer in att.layers:
        ours = att.layer_maps(layer).sum(0)  # (1, T, h, w): our per-step maps, summed over steps
        theirs = sums[layer].transpose(1, 2).reshape(ours.shape)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(att.all_steps_sum(), att.step_maps().sum(0), atol=1e-5, rtol=0)
    # negative control: the unconditional half accumulates a different map
    model2 = load_text_to_image(tiny_sd_folder)
    wrong = _daam_accumulator(model2.unet, rows=1, half="null")
    text_to_image(model2, PROMPT, steps=5, guidance=4.0, sampler="dpmpp_2m")
    layer = att.layers[0]
    assert float((att.layer_maps(layer).sum(0) - wrong[layer].transpose(1, 2).reshape(1, -1, 8, 8)).abs().max()) > 1e-3


def test_sampling_uses_our_sampler_with_guidance_in_one_batch(model: TextToImageModel) -> None:
    calls: list[int] = []
    handle = model.unet.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        guided = text_to_image(model, PROMPT, steps=4, guidance=5.0, sampler="ddim")
        plain = text_to_image(model, PROMPT, steps=4, guidance=1.0, sampler="ddim")
    finally:
        handle.remove()
    assert calls == [2] * 4 + [1] * 4  # both guidance branches share each network call
    assert guided.images.shape == (1, 3, 16, 16) and torch.isfinite(guided.images).all()
    assert float((guided.images - plain.images).abs().max()) > 1e-3
    # the same run by hand: our DDIM on the adapter, the empty prompt as the null condition
    sigmas = model_sigmas(model, 4)
    x = guided.initial * math.sqrt(1 + float(sigmas[0]) ** 2)
    cfg = ClassifierFreeGuidance(model.denoiser, 5.0, model.encode("")[0])
    z = get_sampler("ddim")(cfg, x, sigmas, cond=model.encode(PROMPT))
    torch.testing.assert_close(z, guided.latents, atol=1e-5, rtol=0)


def test_steps_and_layers_can_be_restricted(model: TextToImageModel) -> None:
    sample = text_to_image(
        model, PROMPT, steps=4, record_attention=True, attention_steps=[0, 2], attention_layers=["up_blocks"]
    )
    att = sample.attention
    assert att is not None and att.steps == (0, 2)
    assert all(layer.startswith("up_blocks") for layer in att.layers) and len(att.layers) == 2
    assert sample.step_word_maps().shape == (2, 7, 8, 8)  # 2 steps, 7 words
    with pytest.raises(UnknownNameError):
        CrossAttentionRecorder(model.unet, layers=["side_blocks"])
    tokens = torch.arange(4.0).reshape(4, 1, 1).expand(4, 2, 2)  # token k's map is k everywhere
    assert word_maps(tokens, [(1, 2), ()]).tolist() == [[[1.5, 1.5], [1.5, 1.5]], [[0.0, 0.0], [0.0, 0.0]]]


def test_interventions_replay_the_same_noise(model: TextToImageModel) -> None:
    base = text_to_image(model, PROMPT, steps=4, guidance=3.0, sampler="ddpm", record_attention=True)
    assert [len(base.noise[i]) for i in range(4)] == [1, 1, 1, 0]  # DDPM draws noise, except on its last step
    same = prompt_interventions(model, base, drop=[], swaps={"cat": "cat"}, batch_size=1)[0]
    assert torch.equal(same.images, base.images)  # unchanged prompt, same noise: the very same image
    assert same.change == 0.0
    edits = prompt_interventions(model, base, drop=["cat", "red"], swaps={"cat": "cat", "red": "blue"})
    assert [(e.kind, e.word) for e in edits] == [("drop", "cat"), ("drop", "red"), ("swap", "cat"), ("swap", "red")]
    assert edits[2].change < 1e-4  # batched with other edits: equal up to float round-off
    assert edits[0].change > 1e-2 and edits[3].change > 1e-2
    assert edits[0].prompt == "a red sitting on the mat" and edits[3].prompt == "a blue cat sitting on the mat"
    for e in (edits[0], edits[1], edits[3]):
        assert -1 <= e.spearman <= 1 and 0 <= e.auroc <= 1 and e.delta.shape == (16, 16)
    # negative control: fresh noise (another seed) changes the image although the prompt is the same
    other = text_to_image(model, PROMPT, steps=4, guidance=3.0, sampler="ddpm", seed=1)
    assert float((other.images - base.images).abs().max()) > 1e-2


def test_intervention_scores_known_answers() -> None:
    delta = torch.zeros(8, 8)
    delta[2:4, 2:4] = 1.0
    rho, auroc = intervention_scores(delta + 0.01 * torch.arange(64.0).reshape(8, 8), delta)
    assert auroc == 1.0 and rho > 0.4
    rho, auroc = intervention_scores(-delta, delta)
    assert auroc == 0.0 and rho < 0
    assert all(v != v for v in intervention_scores(torch.rand(8, 8), torch.zeros(8, 8)))  # no change: NaN


def test_word_information_map_sums_to_the_value(model: TextToImageModel) -> None:
    sample = text_to_image(model, PROMPT, steps=3, guidance=2.0)
    info = word_information(model, sample, words=["cat", "mat"], points=4, batch_size=16)
    assert [w.word for w in info] == ["cat", "mat"]
    for w in info:
        assert w.pixel_map.shape == (8, 8) and w.stderr >= 0
        assert abs(float(w.pixel_map.sum()) - w.value) < 1e-3 * max(1.0, abs(w.value))


def test_missing_transformers_names_the_extra(
    tiny_sd_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(DiffsightError, match=r"diffsight\[text\]"):
        load_text_to_image(tiny_sd_folder)
    (tmp_path / "m").mkdir()
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (tmp_path / "m" / part).mkdir()
    (tmp_path / "m" / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"")
    with pytest.raises(DiffsightError, match="safetensors weights only"):
        load_text_to_image(tmp_path / "m")


@pytest.mark.slow
def test_our_ddim_with_guidance_matches_the_diffusers_pipeline(model: TextToImageModel) -> None:
    """Known answer: diffusers' own StableDiffusionPipeline (DDIM, eta 0, same latents) on the same networks."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        set_alpha_to_one=True, steps_offset=1,  # our sigma arrays end in 0 (alpha = 1)
    )  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    ours = text_to_image(model, PROMPT, steps=5, guidance=6.0, sampler="ddim")
    theirs = pipe(
        PROMPT, num_inference_steps=5, guidance_scale=6.0, latents=ours.initial.clone(), output_type="latent"
    ).images
    assert float((theirs - ours.latents).abs().max()) < 1e-5 * float(theirs.abs().max()) + 1e-4
    # negative control: another guidance scale is far off
    other = text_to_image(model, PROMPT, steps=5, guidance=3.0, sampler="ddim")
    assert float((theirs - other.latents).abs().max()) > 1e-2
