"""The README.md model card: built from diffsight.json content, it names the data, the model and its metrics."""

from __future__ import annotations

from diffsight.models.card import model_card

FINGERPRINT = "0123456789abcdef" * 4


def _info(**overrides) -> dict:
    """Shaped like ``Trainer.model_info`` for a conditional EDM UNet on digits."""
    info = {
        "name": "digits-edm",
        "description": "A diffusion model of digits, trained by diffsight.",
        "kind": "edm",
        "network": "unet",
        "parameters": 703907,
        "event_shape": [1, 8, 8],
        "conditioning": {"num_classes": 10, "null_class": 10, "class_names": list("0123456789"), "label_dropout": 0.1},
        "factors": {},
        "data": {
            "name": "digits",
            "n": 1797,
            "shape": [1, 8, 8],
            "classes": list("0123456789"),
            "factors": {},
            "fingerprint": FINGERPRINT,
            "source": "scikit-learn load_digits",
        },
        "sampling": {"sampler": "dpmpp_2m", "steps": 20, "schedule": "karras", "rho": 7.0},
        "training": {
            "command": "diffsight train configs/digits.toml",
            "steps": 2000,
            "batch_size": 128,
            "images_seen": 256000,
            "wall_time_s": 612.3,
            "machine": "2-core CPU",
            "processes": 1,
            "final_loss": 0.0876543,
            "config": {"lr": 0.0002, "ema": 0.999},
        },
        "metrics": {
            "fid_features": 3.14159,
            "precision_recall": {"precision": 0.8123, "recall": 0.7},
            "per_class": {"accuracy": {"0": 0.95, "1": 0.9}, "n": 100},
            "nearest_neighbour_l2": [0.1, 0.2],
        },
        "edm": {"sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0, "c_noise_scale": 250.0},
    }
    info.update(overrides)
    return info


def _section(card: str, title: str) -> list[str]:
    """The lines of one ``## title`` section (without the heading and blank lines)."""
    lines = card.splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return [line for line in lines[start:end] if line.strip()]


def test_sections_in_order():
    card = model_card(_info())
    lines = card.splitlines()
    assert lines[0] == "# digits-edm"
    assert lines[2] == "A diffusion model of digits, trained by diffsight."
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## Model", "## Training data", "## Training", "## Metrics", "## Intended use", "## Limits"]
    assert card.endswith("\n")


def test_model_section_edm_conditional():
    model = _section(model_card(_info()), "Model")
    assert model[0] == "- Network: unet (703907 parameters), sample shape (1, 8, 8)"
    assert model[1] == (
        "- EDM preconditioning (Karras et al. 2022): sigma_data 0.5, sigma in [0.002, 80], "
        "UNet timestep = 250 * ln(sigma) / 4"
    )
    assert model[2].startswith("- Class-conditional: 10 classes, null class 10")
    assert "from_pretrained(<this folder>/unet)" in model[3]


def test_model_section_vp_unconditional():
    info = _info(kind="vp", conditioning=None, vp={"scheduler_config": {}, "clip_x0": 1.0})
    del info["edm"]
    model = _section(model_card(info), "Model")
    assert any("Discrete VP (DDPM)" in line and "scheduler_config.json" in line for line in model)
    assert "- Unconditional" in model
    assert not any("EDM" in line or "Class-conditional" in line for line in model)


def test_training_data_names_the_fingerprint():
    data = _section(model_card(_info()), "Training data")
    assert data[0] == "- digits: 1797 samples of shape (1, 8, 8)"
    assert data[1] == f"- Fingerprint (SHA-256 of the exact tensors): `{FINGERPRINT}`"
    assert data[2] == "- Source: scikit-learn load_digits"
    assert len(data) == 3  # no factors line when there are none
    with_factors = _info()
    with_factors["data"] = {**with_factors["data"], "factors": {"shape": ["circle", "square"]}}
    assert '- Factors: `{"shape": ["circle", "square"]}`' in _section(model_card(with_factors), "Training data")


def test_training_lists_known_keys_formatted():
    training = _section(model_card(_info()), "Training")
    assert training == [
        "- command: diffsight train configs/digits.toml",
        "- steps: 2000",
        "- batch size: 128",
        "- images seen: 256000",
        "- wall time s: 612.3",
        "- machine: 2-core CPU",
        "- final loss: 0.08765",
        '- config: `{"lr": 0.0002, "ema": 0.999}`',
    ]


def test_metrics_flat_nested_and_lists():
    metrics = _section(model_card(_info()), "Metrics")
    assert metrics == [
        "- **fid_features**: 3.142",
        "- **precision_recall**: precision 0.8123, recall 0.7",
        "- **per_class**:",
        "  - **accuracy**: 0 0.95, 1 0.9",
        "  - **n**: 100",
        "- **nearest_neighbour_l2**: `[0.1, 0.2]`",
    ]


def test_metrics_not_measured_yet():
    assert _section(model_card(_info(metrics={})), "Metrics") == [
        "- not measured yet (run `diffsight eval <folder> --json`)"
    ]


def test_defaults_and_overrides_of_free_text():
    info = _info()
    del info["description"]
    card = model_card(info)
    assert card.splitlines()[2] == "A diffusion model trained with diffsight."
    assert _section(card, "Intended use")[0].startswith("Research and teaching")
    assert _section(card, "Limits")[0].startswith("Trained on a small dataset")
    custom = model_card(_info(intended_use="Demo only.", limits="Digits only."))
    assert _section(custom, "Intended use") == ["Demo only."]
    assert _section(custom, "Limits") == ["Digits only."]


def test_minimal_info_still_gives_a_card():
    card = model_card({})
    assert card.startswith("# model\n")
    assert "- Unconditional" in card
    assert "- Fingerprint (SHA-256 of the exact tensors): `None`" in card
    assert "not measured yet" in card
