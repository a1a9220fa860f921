"""Latent diffusion: the autoencoder trains and round-trips, the latent model samples decoded images, its Trace holds
latents and decoded estimates, explainers run through the decoder, maps come back at image size, and the model
folder saves and loads (safetensors only).

One tiny run (an 8/16-channel AutoencoderKL, 40 steps; a tiny UNet on 4x8x8 latents, 10 steps) is shared by the
module; nothing here is meant to make good images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diffsight.data import load_data
from diffsight.errors import DiffsightError, ShapeError
from diffsight.explain.attribution import GradientAttribution
from diffsight.explain.commitment import Commitment
from diffsight.explain.filmstrip import Filmstrip
from diffsight.explain.latent import DecodedTarget, upsample_map, upsample_maps
from diffsight.models import LatentModel, load_model
from diffsight.models.latent import autoencoder_config, build_autoencoder, encode_images
from diffsight.sampling import generate_samples
from diffsight.trace import load_trace, record_trace, save_trace
from diffsight.trace.latent import decoded_view, is_latent_trace
from diffsight.training import train
from diffsight.training.autoencoder import AutoencoderSettings, autoencoder_settings, latent_statistics
from diffsight.training.config import config_from_dict, load_config
from diffsight.training.latent import prepare_autoencoder

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # the shared tiny run: ~10 s

ROOT = Path(__file__).resolve().parents[2]
VAE = {"preset": "tiny", "steps": 40, "batch_size": 16, "lr": 3e-3}
RAW = {
    "name": "tiny-latent",
    "data": {"name": "shapes", "n": 96, "resolution": 16},
    "model": {"preset": "tiny", "conditional": False, "sigma_data": 1.0, "latent": VAE},
    "train": {"steps": 10, "batch_size": 16, "warmup_steps": 1, "sample_every": 0, "checkpoint_every": 100},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    result = train(config_from_dict(RAW), tmp_path_factory.mktemp("latent") / "run", progress=False)
    return result.model_dir


@pytest.fixture(scope="module")
def model(run: Path) -> LatentModel:
    loaded = load_model(run)
    assert isinstance(loaded, LatentModel)
    return loaded


def _images() -> torch.Tensor:
    return load_data("shapes", resolution=16, n=96, seed=0).samples


def test_autoencoder_trains_and_round_trips(model: LatentModel) -> None:
    stamp = model.info["latent"]["autoencoder"]
    assert stamp["final_loss"] < 0.5 * stamp["first_loss"]  # the loss fell
    images = _images()
    with torch.no_grad():
        rmse = float((model.decode(model.encode(images)) - images).pow(2).mean().sqrt())
    assert rmse == pytest.approx(stamp["reconstruction_rmse"], rel=1e-4)
    # negative control: the same architecture untrained (scaling 1, no shift) reconstructs far worse
    config = autoencoder_config("tiny", in_channels=3, resolution=16)
    torch.manual_seed(0)
    untrained = build_autoencoder(config).eval()
    with torch.no_grad():
        z = untrained.encode(images).latent_dist.mean
        raw = float((untrained.decode(z).sample - images).pow(2).mean().sqrt())
    assert rmse < 0.6 * raw, (rmse, raw)


def test_latents_are_scaled_to_unit_variance(model: LatentModel) -> None:
    with torch.no_grad():
        z = model.encode(_images())  # (N, 4, 8, 8)
    assert z.shape == (96, *model.latent_shape) == (96, 4, 8, 8)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(z.std()) == pytest.approx(1.0, abs=1e-3)
    mean, std = latent_statistics(model.vae, _images())
    assert model.scaling_factor == pytest.approx(1.0 / std, rel=1e-5)
    assert model.shift_factor == pytest.approx(mean, abs=1e-6)


def test_latent_model_samples_decoded_images(model: LatentModel) -> None:
    assert model.is_latent and model.image_shape == (3, 16, 16) and model.factor == 2
    with torch.no_grad():
        latents = generate_samples(
            model.denoiser, model.event_shape, 3, steps=4, generator=torch.Generator().manual_seed(0)
        )
        images = model.decode(latents)
    assert latents.shape == (3, 4, 8, 8) and images.shape == (3, 3, 16, 16)
    assert torch.isfinite(images).all()
    with pytest.raises(ShapeError, match="latents shaped"):
        model.decode(images)


def test_trace_holds_latents_and_decoded_estimates(model: LatentModel, tmp_path: Path) -> None:
    with torch.no_grad():
        trace = record_trace(model, seed=3, n=2, steps=5, sampler="euler")
    assert trace.x0_hat.shape == (5, 2, 4, 8, 8) and trace.final.shape == (2, 4, 8, 8)
    assert is_latent_trace(trace) and trace.meta["latent"]["image_shape"] == [3, 16, 16]
    decoded = trace.tensors["decoded.x0_hat"]
    assert decoded.shape == (5, 2, 3, 16, 16)
    with torch.no_grad():
        again = model.decode(trace.x0_hat[2])
    torch.testing.assert_close(decoded[2], again, rtol=1e-5, atol=1e-5)
    view = decoded_view(trace, model)
    assert view.id == trace.id and view.event_shape == (3, 16, 16) and view.x.shape == (5, 2, 3, 16, 16)
    path = tmp_path / "run.trace.safetensors"
    save_trace(trace, path)
    loaded = load_trace(path)
    assert torch.equal(loaded.tensors["decoded.final"], trace.tensors["decoded.final"])
    plain = record_trace(model.denoiser, seed=3, n=2, steps=5, sampler="euler", event_shape=(4, 8, 8))
    with pytest.raises(DiffsightError, match="latent model"):
        decoded_view(plain)  # a trace without decoded estimates says what to do


def test_explainers_run_through_the_decoder(model: LatentModel) -> None:
    with torch.no_grad():
        trace = record_trace(model, seed=5, n=1, steps=6, sampler="euler")
    film = Filmstrip(decoded_view(trace, model)).explain()
    assert film.values["x0_hat"].shape == (6, 3, 16, 16) and film.values["change"].shape == (6, 16, 16)
    assert film.trace_id == trace.id
    torch.testing.assert_close(film.values["final"], trace.tensors["decoded.final"][0])
    commit = Commitment(trace, model, steps=2, k=3, bootstrap=0, tol=10.0, decode=model.decode).explain()
    assert commit.params["decoded"] is True
    assert commit.values["agreement"]["pixels"][-1] == 1.0  # from the last step every continuation ends there
    # the pixel distance is measured between decoded images (C, H, W), not latents
    assert commit.values["distance"].shape == (2, 3)


def test_attribution_maps_upsample_to_image_size_preserving_the_sum(model: LatentModel) -> None:
    with torch.no_grad():
        trace = record_trace(model, seed=5, n=1, steps=4, sampler="euler")
    region = torch.zeros(3, 16, 16)
    region[0, :8, :8] = 1.0  # the red channel of the top-left quarter

    def red(images: torch.Tensor) -> torch.Tensor:
        return (images * region).flatten(1).sum(1)

    target = DecodedTarget(red, model.decode)
    e = GradientAttribution(
        trace, model.denoiser, step=2, target=target, method="integrated_gradients", n_steps=8
    ).explain()
    assert e.values["map"].shape == (8, 8)  # the latent grid
    up = upsample_maps(e, (16, 16), preserve="sum")
    assert up.values["map"].shape == (16, 16) and torch.equal(up.values["latent_map"], e.values["map"])
    assert float(up.values["map"].sum()) == pytest.approx(float(e.values["map"].sum()), rel=1e-5)
    assert "latent grid" in up.summary and "sum-preserving" in up.diagnostics["upsampling"]
    # negative control: repeating an additive map (mean-preserving) multiplies its sum by f^2 = 4
    wrong = upsample_map(e.values["map"], (16, 16), preserve="mean")
    assert float(wrong.sum()) == pytest.approx(4 * float(e.values["map"].sum()), rel=1e-5)


def test_upsample_map_known_answers() -> None:
    cells = torch.arange(6.0).reshape(1, 2, 3)  # (S, h, w)
    mean = upsample_map(cells, (4, 6), preserve="mean")
    assert mean.shape == (1, 4, 6) and torch.equal(mean[0, :2, :2], torch.zeros(2, 2))
    assert torch.equal(mean[0, 2:, 4:], torch.full((2, 2), 5.0))
    assert float(mean.mean()) == float(cells.mean()) and float(mean.max()) == float(cells.max())
    total = upsample_map(cells, (4, 6), preserve="sum")
    assert float(total.sum()) == float(cells.sum()) and float(total[0, 3, 5]) == 5.0 / 4
    with pytest.raises(ShapeError, match="multiple"):
        upsample_map(cells, (5, 6), preserve="sum")
    with pytest.raises(DiffsightError, match="preserve"):
        upsample_map(cells, (4, 6), preserve="bilinear")


def test_model_folder_saves_and_loads_safetensors_only(run: Path, model: LatentModel) -> None:
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert "vae/diffusion_pytorch_model.safetensors" in files and "unet/diffusion_pytorch_model.safetensors" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    config = json.loads((run / "vae" / "config.json").read_text())
    assert config["_class_name"] == "AutoencoderKL"
    assert config["scaling_factor"] == pytest.approx(model.scaling_factor)
    info = json.loads((run / "diffsight.json").read_text())
    assert info["event_shape"] == [4, 8, 8] and info["data"]["name"] == "shapes"
    assert info["latent"]["autoencoder"]["folder"] == "vae" and info["latent"]["downsampling_factor"] == 2
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(run / "vae"), use_safetensors=True)  # a plain diffusers folder
    again = load_model(run)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(again.decode(z), model.decode(z))
        direct = vae.decode(z / vae.config.scaling_factor + vae.config.shift_factor).sample
    torch.testing.assert_close(direct, model.decode(z))
    assert again.weights_sha256() == model.weights_sha256()
    (run / "vae" / "diffusion_pytorch_model.safetensors").rename(run / "vae" / "weights.moved")
    try:
        with pytest.raises(DiffsightError, match="safetensors"):
            load_model(run)
    finally:
        (run / "vae" / "weights.moved").rename(run / "vae" / "diffusion_pytorch_model.safetensors")


def test_a_resumed_run_reuses_its_autoencoder(run: Path) -> None:
    images = load_data("shapes", resolution=16, n=96, seed=0)
    vae, stamp = prepare_autoencoder(images, autoencoder_settings(VAE), run.parent / "vae", write=False)
    assert stamp["settings"] == AutoencoderSettings(**VAE).to_dict()
    z = images.samples[:2]
    with torch.no_grad():
        expected = load_model(run).encode(z)
        torch.testing.assert_close(encode_images(vae, z), expected)


def test_configs_and_bad_latent_tables() -> None:
    cfg = load_config(ROOT / "configs" / "shapes-latent.toml")
    assert cfg.model.latent and cfg.model.sigma_data == 1.0
    assert autoencoder_settings(cfg.model.latent).preset == "small"
    with pytest.raises(DiffsightError, match=r"unknown key\(s\) \['stepz'\] in \[model\] latent"):
        config_from_dict({**RAW, "model": {**RAW["model"], "latent": {"stepz": 3}}})
    with pytest.raises(DiffsightError, match="kl_weight"):
        autoencoder_settings({"kl_weight": -1.0})


def test_cli_sample_writes_decoded_images(run: Path, tmp_path: Path) -> None:
    import numpy as np

    from diffsight.cli.main import sample

    out = tmp_path / "samples.npy"
    sample(model=str(run), n=3, steps=3, sampler="euler", seed=0, class_=None, guidance=1.0, out=out)
    images = np.load(out)
    assert images.shape == (3, 3, 16, 16) and images.min() >= -1.0 and images.max() <= 1.0


def test_explain_trace_and_report_of_a_latent_model(model: LatentModel, tmp_path: Path) -> None:
    from diffsight.explain import explain_trace
    from diffsight.report.explain_report import write_explanation_report

    with torch.no_grad():
        trace = record_trace(model, seed=2, n=1, steps=5, sampler="euler")
    run = explain_trace(trace, model, k=2, branch_steps=2, attribution=False)
    # probes: the shipped shapes classifier reads the decoded 3x16x16 images; no likelihood for latent models
    assert set(run.explanations) == {"filmstrip", "spectral", "probes", "commitment"}
    assert all(e.trace_id == trace.id for e in run.explanations.values())
    assert run.explanations["commitment"].params["decoded"] is True
    result = write_explanation_report([run], tmp_path / "report.html")
    assert "the final sample" in result.path.read_text()


def test_class_conditional_latent_model_guidance_map_is_upsampled(tmp_path: Path) -> None:
    from diffsight.explain import explain_trace

    raw = {
        "name": "tiny-latent-digits",
        "data": {"name": "digits"},
        "model": {"preset": "tiny", "sigma_data": 1.0, "latent": {**VAE, "steps": 20}},
        "train": {"steps": 4, "batch_size": 16, "warmup_steps": 1, "sample_every": 0, "checkpoint_every": 100},
    }
    digits = load_model(train(config_from_dict(raw), tmp_path / "run", progress=False).model_dir)
    assert isinstance(digits, LatentModel) and digits.num_classes == 10
    assert digits.event_shape == (4, 4, 4) and digits.image_shape == (1, 8, 8)
    with torch.no_grad():
        trace = record_trace(digits, seed=0, n=1, steps=4, sampler="euler", labels=3, guidance=2.0)
    run = explain_trace(trace, digits, k=2, branch_steps=2, attribution=False)
    guidance = run.explanations["guidance"]
    assert guidance.values["map"].shape == (4, 8, 8) and guidance.values["latent_map"].shape == (4, 4, 4)
    # intensive map: the mean and the maximum of every step's map are kept exactly
    torch.testing.assert_close(guidance.values["map"].mean((1, 2)), guidance.values["latent_map"].mean((1, 2)))
    assert torch.equal(guidance.values["map"].amax((1, 2)), guidance.values["latent_map"].amax((1, 2)))
    assert "probes" in run.explanations  # the shipped digits classifier reads the decoded 1x8x8 images
