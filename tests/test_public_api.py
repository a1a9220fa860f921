"""The public API is what we mean it to be (STYLE.md, principle 13)."""

from __future__ import annotations

import importlib

import pytest

import diffsight

PACKAGES = ["diffsight", "diffsight.models", "diffsight.sampling", "diffsight.oracles"]


@pytest.mark.parametrize("module_name", PACKAGES)
def test_all_names_exist_and_are_unique(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name} is in __all__ but missing"


def test_top_level_exports() -> None:
    assert set(diffsight.__all__) == {
        "SAMPLERS",
        "ClassifierFreeGuidance",
        "Denoiser",
        "DiffsightError",
        "DiscreteVPDenoiser",
        "DiscreteVPSchedule",
        "EDMPrecond",
        "EmpiricalOracle",
        "GaussianMixtureOracle",
        "GaussianOracle",
        "ScheduleError",
        "ShapeError",
        "StepRecord",
        "UnknownNameError",
        "__version__",
        "from_diffusers",
        "get_sampler",
        "karras_sigmas",
        "sample",
    }


def test_sampler_registry() -> None:
    assert sorted(diffsight.SAMPLERS) == ["ddim", "ddpm", "dpmpp_2m", "dpmpp_3m", "euler", "heun", "pc"]


def test_import_does_not_load_diffusers() -> None:
    """diffusers takes seconds to import; the engine must not pull it in."""
    import subprocess
    import sys

    code = "import sys, diffsight, diffsight.sampling, diffsight.models; print('diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
