"""Model folders (DESIGN.md, "Artifacts"): round trips, the diffusers layout, atomic writes, and refusals.

The round trips compare the loaded denoiser with an ``EDMPrecond`` built the same way from the saved network,
bit for bit. The plain-diffusers case reuses the peer-parity setup of ``test_diffusers_parity``: a folder written
by ``DDPMPipeline.save_pretrained`` around that module's random UNet, loaded by ``load_model``, sampled by our DDIM,
must reproduce that module's cached reference (diffusers' own ``DDIMScheduler`` loop) within its tolerance.
"""

from __future__ import annotations

import functools
import json
import types
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors.torch import load_file
from test_diffusers_parity import SHAPE, TOL, _ddim_ref, _rel, _start, _unet, _x_T

from diffsight._version import __version__
from diffsight.errors import DiffsightError
from diffsight.models import DiscreteVPDenoiser, EDMPrecond, from_diffusers
from diffsight.models import folder as folder_mod
from diffsight.models.folder import (
    FORMAT_VERSION,
    LoadedModel,
    load_model,
    resolve_model_path,
    save_model_folder,
    shipped_models,
    vp_scheduler_config,
)
from diffsight.models.mlp import SigmaMLP
from diffsight.models.unet import UNetEDMBackbone, build_unet, unet_config
from diffsight.sampling import sample_ddim
from diffsight.sampling.generate import generate_samples

CLASSES = 3
FINGERPRINT = "f" * 8 + "0123456789abcdef" * 3 + "e" * 8  # 64 hex digits, like TrainingData.fingerprint()
# deliberately not the EDMPrecond defaults, so that a loader that ignored diffsight.json would be caught
EDM = {"sigma_data": 0.6, "sigma_min": 0.01, "sigma_max": 40.0, "c_noise_scale": 100.0}


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def _tiny_unet(num_classes: int = CLASSES, seed: int = 0) -> UNet2DModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = build_unet(unet_config("tiny", in_channels=1, resolution=8, num_classes=num_classes))
    return unet.eval().requires_grad_(False)


def _mlp(num_classes: int = 0, seed: int = 0) -> SigmaMLP:
    """A SigmaMLP whose zero-initialised output layer is randomised (else F = 0 and any weights would 'match')."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SigmaMLP(2, hidden=16, depth=2, emb_dim=8, num_classes=num_classes)
        with torch.no_grad():
            net.out[-1].weight.normal_(0, 0.5)
            net.out[-1].bias.normal_(0, 0.5)
    return net.eval().requires_grad_(False)


def _info(kind: str = "edm", network: str = "unet", *, num_classes: int = CLASSES, name: str = "tiny-model") -> dict:
    """A diffsight.json payload shaped like ``Trainer.model_info``."""
    event_shape = [1, 8, 8] if network == "unet" else [2]
    info = {
        "name": name,
        "description": "A test model.",
        "kind": kind,
        "network": network,
        "parameters": 1234,
        "event_shape": event_shape,
        "conditioning": None
        if num_classes == 0
        else {
            "num_classes": num_classes,
            "null_class": num_classes,
            "class_names": [f"class{i}" for i in range(num_classes)],
            "label_dropout": 0.1,
        },
        "factors": {},
        "data": {
            "name": "digits",
            "n": 1797,
            "shape": event_shape,
            "classes": [],
            "factors": {},
            "fingerprint": FINGERPRINT,
            "source": "scikit-learn",
        },
        "sampling": {"sampler": "dpmpp_2m", "steps": 20, "schedule": "karras", "rho": 7.0},
        "training": {"command": "diffsight train", "steps": 10, "batch_size": 8, "final_loss": 0.123456},
        "metrics": {"fid_features": 12.3456, "precision_recall": {"precision": 0.81, "recall": 0.72}},
    }
    if kind == "edm":
        info["edm"] = dict(EDM)
    else:
        info["vp"] = {"scheduler_config": vp_scheduler_config(), "clip_x0": 1.0}
    return info


def _edm_ref(network: torch.nn.Module, network_kind: str = "unet") -> EDMPrecond:
    backbone = network if network_kind == "mlp" else UNetEDMBackbone(network, c_noise_scale=EDM["c_noise_scale"])
    return EDMPrecond(backbone, sigma_data=EDM["sigma_data"], sigma_min=EDM["sigma_min"], sigma_max=EDM["sigma_max"])


def _img(batch: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


SIGMAS4 = torch.tensor([0.01, 0.3, 2.0, 40.0])


# --- round trips --------------------------------------------------------------------------------------------------


def test_edm_unet_round_trip(tmp_path):
    unet = _tiny_unet()
    info = _info()
    path = save_model_folder(tmp_path / "model", unet, info)
    assert path == tmp_path / "model"
    model = load_model(path)
    assert isinstance(model, LoadedModel) and isinstance(model.denoiser, EDMPrecond)
    assert model.kind == "edm" and model.event_shape == (1, 8, 8) and model.path == path
    assert model.name == "tiny-model"
    assert model.num_classes == CLASSES and model.null_class == CLASSES
    assert model.class_names == ("class0", "class1", "class2")
    assert (model.sigma_min, model.sigma_max) == (EDM["sigma_min"], EDM["sigma_max"])
    assert model.denoiser.sigma_data == EDM["sigma_data"]
    assert model.denoiser.backbone.c_noise_scale == EDM["c_noise_scale"]
    assert model.info == {
        "format": "diffsight-model",
        "format_version": FORMAT_VERSION,
        "diffsight_version": __version__,
        **info,
    }
    assert not model.network.training and not any(p.requires_grad for p in model.network.parameters())

    ref = _edm_ref(unet)
    x = _img()
    with torch.no_grad():
        for cond in (torch.tensor([0, 1, 2, 3]), None):
            ours = model.denoiser(x, SIGMAS4, cond)
            torch.testing.assert_close(ours, ref(x, SIGMAS4, cond), rtol=0, atol=0)
        # the loaded sigma_data / c_noise_scale matter: defaults give other outputs
        default = EDMPrecond(UNetEDMBackbone(unet))(x, SIGMAS4, None)
        assert (model.denoiser(x, SIGMAS4, None) - default).abs().max() > 1e-3


def test_saved_unet_loads_in_diffusers(tmp_path):
    unet = _tiny_unet()
    path = save_model_folder(tmp_path / "model", unet, _info())
    assert (path / "unet" / "config.json").is_file()
    assert (path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(path.rglob("*.bin"))
    theirs = UNet2DModel.from_pretrained(str(path / "unet")).eval()
    assert theirs.config.num_class_embeds == CLASSES + 1
    x, t, y = _img(), torch.tensor([5.0, 50.0, 500.0, 900.0]), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        torch.testing.assert_close(theirs(x, t, class_labels=y).sample, unet(x, t, class_labels=y).sample)


@pytest.mark.parametrize("num_classes", [0, CLASSES])
def test_mlp_round_trip(tmp_path, num_classes):
    net = _mlp(num_classes)
    info = _info(network="mlp", num_classes=num_classes)
    path = save_model_folder(tmp_path / "mlp-model", net, info)
    assert (path / "mlp" / "model.safetensors").is_file()
    assert json.loads((path / "mlp" / "config.json").read_text()) == net.config
    assert not (path / "unet").exists() and not (path / "scheduler").exists()
    assert set(load_file(str(path / "mlp" / "model.safetensors"))) == set(net.state_dict())

    model = load_model(path)
    assert isinstance(model.network, SigmaMLP) and model.event_shape == (2,)
    assert model.num_classes == num_classes
    ref = _edm_ref(net, "mlp")
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    conds = [None] if num_classes == 0 else [None, torch.tensor([0, 1, 2, 0])]
    with torch.no_grad():
        for cond in conds:
            torch.testing.assert_close(model.denoiser(x, SIGMAS4, cond), ref(x, SIGMAS4, cond), rtol=0, atol=0)
        other = _edm_ref(_mlp(num_classes, seed=1), "mlp")(x, SIGMAS4, None)
        assert (model.denoiser(x, SIGMAS4, None) - other).abs().max() > 1e-3  # weights really came from disk


def test_card_and_info_are_written(tmp_path):
    path = save_model_folder(tmp_path / "model", _tiny_unet(), _info())
    info = json.loads((path / "diffsight.json").read_text())
    assert info["format"] == "diffsight-model" and info["format_version"] == FORMAT_VERSION
    assert info["data"]["fingerprint"] == FINGERPRINT
    card = (path / "README.md").read_text()
    assert card.startswith("# tiny-model")
    assert FINGERPRINT in card
    assert "fid_features" in card and "12.35" in card
    assert "precision 0.81" in card and "recall 0.72" in card
    assert "sigma_data 0.6" in card


# --- atomic writes ------------------------------------------------------------------------------------------------


def test_write_leaves_no_temporary_folders(tmp_path):
    save_model_folder(tmp_path / "model", _tiny_unet(), _info())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_overwrite_replaces_the_folder(tmp_path):
    target = tmp_path / "model"
    save_model_folder(target, _tiny_unet(), _info(name="first"))
    (target / "stale.txt").write_text("from the first write")
    save_model_folder(target, _tiny_unet(seed=1), _info(name="second"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert not (target / "stale.txt").exists()  # replaced as a whole, not merged
    model = load_model(target)
    assert model.name == "second"
    x = _img()
    with torch.no_grad():
        torch.testing.assert_close(
            model.denoiser(x, SIGMAS4, None), _edm_ref(_tiny_unet(seed=1))(x, SIGMAS4, None), rtol=0, atol=0
        )


def test_creates_missing_parents(tmp_path):
    path = save_model_folder(tmp_path / "a" / "b" / "model", _mlp(), _info(network="mlp", num_classes=0))
    assert (path / "diffsight.json").is_file()


class _Exploding(torch.nn.Module):
    def save_pretrained(self, *args, **kwargs):
        raise RuntimeError("disk full")


@pytest.mark.parametrize("failure", ["network", "info"])
def test_failed_write_keeps_the_old_folder(tmp_path, failure):
    target = tmp_path / "model"
    save_model_folder(target, _tiny_unet(), _info(name="old"))
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    if failure == "network":
        with pytest.raises(RuntimeError, match="disk full"):
            save_model_folder(target, _Exploding(), _info(name="new"))
    else:  # weights written, then diffsight.json cannot be serialised
        bad = _info(name="new")
        bad["metrics"] = {"loss": torch.tensor(1.0)}
        with pytest.raises(TypeError):
            save_model_folder(target, _tiny_unet(seed=1), bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # temp folder removed
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert load_model(target).name == "old"


# --- VP folders -------------------------------------------------------------------------------------------------


def test_vp_folder_is_a_ddpm_pipeline(tmp_path):
    unet = _tiny_unet(num_classes=0)
    path = save_model_folder(tmp_path / "vp", unet, _info(kind="vp", num_classes=0))
    assert (path / "model_index.json").is_file()
    assert (path / "scheduler" / "scheduler_config.json").is_file()
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline"
    assert index["unet"] == ["diffusers", "UNet2DModel"] and index["scheduler"] == ["diffusers", "DDPMScheduler"]

    pipe = DDPMPipeline.from_pretrained(str(path))
    assert isinstance(pipe.scheduler, DDPMScheduler)
    for key, value in vp_scheduler_config().items():
        if not key.startswith("_"):
            assert pipe.scheduler.config[key] == value, key
    x, t = _img(), torch.tensor([1.0, 10.0, 100.0, 999.0])
    with torch.no_grad():
        torch.testing.assert_close(pipe.unet(x, t).sample, unet(x, t).sample)
    images = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert images.images.shape == (1, 8, 8, 1)


def test_vp_folder_loads_as_discrete_vp_denoiser(tmp_path):
    unet = _tiny_unet(num_classes=0)
    path = save_model_folder(tmp_path / "vp", unet, _info(kind="vp", num_classes=0))
    model = load_model(path)
    assert model.kind == "vp" and isinstance(model.denoiser, DiscreteVPDenoiser)
    assert model.denoiser.clip_x0 == 1.0 and model.denoiser.prediction_type == "eps"
    assert model.info["format_version"] == FORMAT_VERSION  # read from diffsight.json, not inferred
    ref = from_diffusers(unet, vp_scheduler_config())
    x = _img()
    sigmas = torch.tensor([0.05, 0.5, 5.0, 50.0])
    with torch.no_grad():
        torch.testing.assert_close(model.denoiser(x, sigmas), ref(x, sigmas), rtol=0, atol=0)
    assert (model.sigma_min, model.sigma_max) == (ref.sigma_min, ref.sigma_max)


def test_vp_scheduler_config_defaults_are_diffusers():
    cfg = vp_scheduler_config()
    default = DDPMScheduler().config
    for key, value in cfg.items():
        if not key.startswith("_"):
            assert default[key] == value, key
    assert vp_scheduler_config(prediction_type="v_prediction", num_train_timesteps=500)["prediction_type"] == (
        "v_prediction"
    )
    sched = DDPMScheduler.from_config(vp_scheduler_config(beta_schedule="squaredcos_cap_v2"))
    assert sched.config.beta_schedule == "squaredcos_cap_v2"
    assert vp_scheduler_config() == vp_scheduler_config()  # a fresh dict every call
    a = vp_scheduler_config()
    a["beta_end"] = 1.0
    assert vp_scheduler_config()["beta_end"] == 0.02


# --- plain diffusers folders (DDPMPipeline.save_pretrained) -------------------------------------------------------


@functools.cache
def _plain_folder(root: str) -> Path:
    path = Path(root) / "pipeline"
    DDPMPipeline(_unet(), DDPMScheduler()).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory) -> Path:
    return _plain_folder(str(tmp_path_factory.mktemp("plain")))


def test_plain_diffusers_folder_loads(plain_folder):
    assert not (plain_folder / "diffsight.json").exists()
    model = load_model(plain_folder)
    assert model.kind == "vp" and isinstance(model.denoiser, DiscreteVPDenoiser)
    assert model.event_shape == SHAPE[1:]
    assert model.num_classes == 0 and model.null_class is None
    assert model.name == "pipeline"
    assert model.denoiser.clip_x0 == 1.0  # DDPMScheduler's clip_sample=True, range 1
    assert "plain diffusers" in model.info["source"]
    samples = generate_samples(
        model.denoiser, model.event_shape, 4, steps=5, generator=torch.Generator().manual_seed(0)
    )
    assert samples.shape == (4, *SHAPE[1:])
    assert torch.isfinite(samples).all()


def test_plain_folder_ddim_matches_diffusers(plain_folder):
    """Our DDIM on the loaded folder reproduces diffusers' DDIMScheduler loop on the original UNet (clip_sample,
    use_clipped_model_output=True, leading spacing, 10 steps), the reference of test_diffusers_parity."""
    den = load_model(plain_folder).denoiser
    sigmas = den.schedule.sigmas(10)
    with torch.no_grad():
        ours = sample_ddim(den, _start(_x_T(), sigmas), sigmas)
        ref = _ddim_ref("epsilon", True, "leading", 10)
        assert _rel(ours, ref) <= TOL
        # generate_samples draws the same x_T from the same seed; it scales by sigma_0, not sqrt(1 + sigma_0^2)
        via_generate = generate_samples(
            den, SHAPE[1:], SHAPE[0], sampler="ddim", sigmas=sigmas, generator=torch.Generator().manual_seed(1234)
        )
        assert _rel(via_generate, ref) <= 10 * TOL  # measured 2.5e-4; another seed misses by ~1


def test_plain_folder_ddim_scheduler_config_also_loads(tmp_path):
    """A pipeline saved with a DDIMScheduler is read the same way (its config carries the same betas)."""
    path = tmp_path / "ddim-pipeline"
    DDPMPipeline(_unet(), DDIMScheduler(clip_sample=False)).save_pretrained(str(path))
    model = load_model(path)
    assert model.denoiser.clip_x0 is None
    sigmas = model.denoiser.schedule.sigmas(10)
    with torch.no_grad():
        ours = sample_ddim(model.denoiser, _start(_x_T(), sigmas), sigmas)
    assert _rel(ours, _ddim_ref("epsilon", False, "leading", 10)) <= TOL


def test_plain_folder_keeps_clip_sample_range(tmp_path):
    path = tmp_path / "pipeline"
    DDPMPipeline(_unet(), DDPMScheduler(clip_sample_range=2.0)).save_pretrained(str(path))
    assert load_model(path).denoiser.clip_x0 == from_diffusers(_unet(), DDPMScheduler(clip_sample_range=2.0)).clip_x0


# --- names, shipped models and refusals ---------------------------------------------------------------------------


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch):
    """Two shipped models (real folders) in place of the package's zoo."""
    zoo = {}
    for name in ("digits", "shapes"):
        zoo[name] = save_model_folder(tmp_path / "zoo" / name, _mlp(), _info(network="mlp", num_classes=0, name=name))
    monkeypatch.setattr(folder_mod, "shipped_models", lambda: dict(zoo))
    return zoo


@pytest.mark.parametrize("spec", ["no-such-model", "missing/folder"])
def test_unknown_name_or_missing_path_lists_shipped_models(tmp_path, fake_zoo, spec):
    with pytest.raises(DiffsightError, match="digits, shapes") as err:
        load_model(spec if "/" not in spec else tmp_path / spec)
    assert "no model called" in str(err.value)


def test_error_without_shipped_models_says_none_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_mod, "shipped_models", lambda: {})
    with pytest.raises(DiffsightError, match=r"\(none installed\)"):
        load_model(tmp_path / "nothing-here")


def test_real_error_lists_the_real_shipped_models(tmp_path):
    names = sorted(shipped_models())
    with pytest.raises(DiffsightError) as err:
        resolve_model_path(tmp_path / "nothing-here")
    assert (", ".join(names) or "(none installed)") in str(err.value)


def test_a_file_is_not_a_model_folder(tmp_path, fake_zoo):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(DiffsightError, match="digits, shapes"):
        resolve_model_path(path)


def test_shipped_name_resolves_and_loads(fake_zoo):
    assert resolve_model_path("shapes") == fake_zoo["shapes"]
    assert load_model("shapes").name == "shapes"


def test_shipped_models_lists_folders_with_diffsight_json(tmp_path, monkeypatch):
    root = tmp_path / "pkg"
    monkeypatch.setattr(folder_mod, "resources", types.SimpleNamespace(files=lambda package: root))
    assert shipped_models() == {}  # no zoo/models folder at all
    for name, complete in [("b-model", True), ("a-model", True), ("half-written", False)]:
        (root / "zoo" / "models" / name).mkdir(parents=True)
        if complete:
            (root / "zoo" / "models" / name / "diffsight.json").write_text("{}")
    (root / "zoo" / "models" / "README.md").write_text("not a model")
    found = shipped_models()
    assert list(found) == ["a-model", "b-model"]
    assert found["a-model"] == root / "zoo" / "models" / "a-model"


def test_real_shipped_models_are_folders():
    for name, path in shipped_models().items():
        assert path.name == name and (path / "diffsight.json").is_file()


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail loudly if anything tries torch.load (a pickled .bin must never be read)."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)
    return calls


def _bin_only_unet(folder: Path) -> None:
    _tiny_unet(num_classes=0).save_config(str(folder))
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")


@pytest.mark.parametrize("layout", ["diffsight", "plain"])
def test_bin_weights_are_refused(tmp_path, no_unpickling, layout):
    path = tmp_path / "model"
    (path / "unet").mkdir(parents=True)
    _bin_only_unet(path / "unet")
    if layout == "diffsight":
        (path / "diffsight.json").write_text(json.dumps(_info(num_classes=0)))
    else:
        (path / "scheduler").mkdir()
        (path / "scheduler" / "scheduler_config.json").write_text(json.dumps(vp_scheduler_config()))
    with pytest.raises(DiffsightError, match="safetensors") as err:
        load_model(path)
    assert ".bin" in str(err.value)
    assert no_unpickling == []


def test_unet_folder_without_config_is_refused(tmp_path):
    path = save_model_folder(tmp_path / "model", _tiny_unet(), _info())
    (path / "unet" / "config.json").unlink()
    with pytest.raises(DiffsightError, match="no config.json"):
        load_model(path)


NAMES = {"unet": "UNet", "mlp": "MLP"}


@pytest.mark.parametrize("network", ["unet", "mlp"])
def test_corrupted_weights_give_a_clear_error(tmp_path, network):
    net = _tiny_unet() if network == "unet" else _mlp()
    path = save_model_folder(tmp_path / "model", net, _info(network=network))
    weights = next((path / network).glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(DiffsightError, match=f"cannot load the {NAMES[network]}"):
        load_model(path)


def test_empty_folder_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DiffsightError, match="not a model folder"):
        load_model(tmp_path / "empty")


def test_corrupted_diffsight_json_gives_a_clear_error(tmp_path):
    path = save_model_folder(tmp_path / "model", _tiny_unet(), _info())
    text = (path / "diffsight.json").read_text()
    (path / "diffsight.json").write_text(text[: len(text) // 2])  # truncated mid-object
    with pytest.raises(DiffsightError, match="cannot read it as JSON") as err:
        load_model(path)
    assert "diffsight.json" in str(err.value)


@pytest.mark.parametrize("content", ["[]", "null", "3"])
def test_non_object_diffsight_json_gives_a_clear_error(tmp_path, content):
    path = save_model_folder(tmp_path / "model", _tiny_unet(), _info())
    (path / "diffsight.json").write_text(content)
    with pytest.raises(DiffsightError):
        load_model(path)


def test_newer_format_is_refused(tmp_path):
    path = save_model_folder(tmp_path / "model", _tiny_unet(), _info())
    info = json.loads((path / "diffsight.json").read_text())
    info["format_version"] = FORMAT_VERSION + 1
    (path / "diffsight.json").write_text(json.dumps(info))
    with pytest.raises(DiffsightError, match="newer diffsight"):
        load_model(path)
    info["format_version"] = FORMAT_VERSION  # the same folder at the supported version loads
    (path / "diffsight.json").write_text(json.dumps(info))
    assert load_model(path).kind == "edm"


def test_unknown_kind_is_refused(tmp_path):
    path = save_model_folder(tmp_path / "model", _tiny_unet(), _info())
    info = json.loads((path / "diffsight.json").read_text())
    info["kind"] = "flow"
    (path / "diffsight.json").write_text(json.dumps(info))
    with pytest.raises(DiffsightError, match="unknown model kind 'flow'"):
        load_model(path)
