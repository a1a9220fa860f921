"""The public API is what we mean it to be (STYLE.md, principle 13)."""

from __future__ import annotations

import importlib

import pytest

import diffsight

PACKAGES = [
    "diffsight",
    "diffsight.models",
    "diffsight.sampling",
    "diffsight.oracles",
    "diffsight.data",
    "diffsight.metrics",
    "diffsight.training",
    "diffsight.trace",
    "diffsight.explain",
    "diffsight.audit",
    "diffsight.serve",
    "diffsight.tasks",
    "diffsight.tasks.tables",
    "diffsight.tasks.series",
]


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
        "LoadedModel",
        "GaussianMixtureOracle",
        "GaussianOracle",
        "ScheduleError",
        "ShapeError",
        "StepRecord",
        "Trace",
        "UnknownNameError",
        "__version__",
        "from_diffusers",
        "generate_samples",
        "get_sampler",
        "karras_sigmas",
        "load_data",
        "load_model",
        "load_trace",
        "record_trace",
        "replay",
        "sample",
        "save_trace",
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


LAYERS = {
    "errors": 0,
    "atomic": 0,
    "_version": 0,
    "models": 1,
    "oracles": 1,
    "data": 1,
    "zoo": 1,
    "sampling": 2,
    "trace": 3,
    "training": 3,
    "metrics": 3,
    "explain": 4,
    "tasks": 4,
    "audit": 4,
    "report": 5,
    "cli": 6,
    "serve": 6,
    "__main__": 7,
    "__init__": 7,
}


def test_lower_layers_never_import_higher_ones() -> None:
    """DESIGN.md, "Layers": e.g. sampling/ never imports training/, training/ never imports report/ or cli/."""
    import ast
    from pathlib import Path

    src = Path(diffsight.__file__).parent
    violations = []
    for path in src.rglob("*.py"):
        layer = path.relative_to(src).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "diffsight" and len(parts) > 1:
                    target = parts[1]
                    if LAYERS.get(target, 0) > LAYERS[layer]:
                        violations.append(f"{path.relative_to(src)} imports {name}")
    assert not violations, violations
