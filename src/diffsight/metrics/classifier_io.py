"""Save, load and ship :class:`FactorClassifier` weights: ``model.safetensors`` + ``config.json`` in one folder.

``config.json`` holds ``{"format", "config", "report"}``: the constructor arguments (so the network can be
rebuilt without pickled code) and the training report (validation accuracies, seed, data fingerprint).
Weights are safetensors only; nothing here calls ``torch.load``. Both files are written atomically: a temp file
in the same folder, flushed and fsynced, then ``os.replace``d over the target.

The shipped classifiers live in ``diffsight/zoo/classifiers/<name>/`` and are rebuilt by
``scripts/train_classifiers.py`` (fixed seeds).
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from diffsight.atomic import write_bytes_atomic
from diffsight.errors import DiffsightError, unknown_name
from diffsight.metrics.classifier import FactorClassifier

__all__ = ["WEIGHTS_NAME", "CONFIG_NAME", "load_classifier", "save_classifier", "shipped_classifier", "shipped_names"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_FORMAT = "diffsight.factor_classifier/1"


def save_classifier(model: FactorClassifier, directory: str | Path, report: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed); returns the folder.

    ``report`` defaults to ``model.report``; it must be JSON-serialisable.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    meta = {"format": _FORMAT, "config": model.config, "report": model.report if report is None else report}
    try:
        text = json.dumps(meta, indent=2) + "\n"
    except TypeError as err:
        raise DiffsightError(f"the classifier report must be JSON-serialisable: {err}") from err
    write_bytes_atomic(folder / WEIGHTS_NAME, save_safetensors(state, metadata={"format": _FORMAT}))
    write_bytes_atomic(folder / CONFIG_NAME, text.encode())
    return folder


def _read_folder(folder: Path | Any) -> tuple[dict[str, Any], bytes]:
    """(config.json as dict, weights bytes) from a path or an importlib.resources Traversable."""
    if not folder.is_dir():
        raise DiffsightError(f"no classifier folder at {folder}; expected {CONFIG_NAME} and {WEIGHTS_NAME} there")
    config_file, weights_file = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for file in (config_file, weights_file):
        if not file.is_file():
            raise DiffsightError(f"classifier folder {folder} lacks {file.name}; save it with save_classifier()")
    try:
        meta = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DiffsightError(f"{config_file} is not valid JSON ({err}); re-save the classifier") from err
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT or not isinstance(meta.get("config"), dict):
        raise DiffsightError(f"{config_file} is not a diffsight classifier config (format {_FORMAT!r} expected)")
    return meta, weights_file.read_bytes()


def _build(meta: dict[str, Any], weights: bytes, where: str) -> FactorClassifier:
    try:
        model = FactorClassifier(**meta["config"])
    except TypeError as err:
        raise DiffsightError(f"{where}: config.json does not describe a FactorClassifier ({err})") from err
    try:
        state = load_safetensors(weights)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise DiffsightError(f"{where}: {WEIGHTS_NAME} is corrupted or not a safetensors file ({err})") from err
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        wrong = sorted(n for n in set(expected) & set(found) if expected[n] != found[n])
        raise DiffsightError(
            f"{where}: the weights do not match config.json (missing {missing}, unexpected {extra}, "
            f"wrong shape {wrong}); the two files come from different classifiers"
        )
    model.load_state_dict(state)
    model.report = dict(meta.get("report") or {})
    return model.eval()


def load_classifier(directory: str | Path) -> FactorClassifier:
    """Rebuild a classifier saved by :func:`save_classifier` (eval mode, on the CPU, report in ``model.report``)."""
    folder = Path(directory)
    meta, weights = _read_folder(folder)
    return _build(meta, weights, str(folder))


def _zoo() -> Any:
    return importlib.resources.files("diffsight") / "zoo" / "classifiers"


def shipped_names() -> list[str]:
    """Names of the classifiers shipped inside the package (``digits``, ``shapes``)."""
    zoo = _zoo()
    if not zoo.is_dir():
        return []
    return sorted(entry.name for entry in zoo.iterdir() if entry.is_dir() and (entry / CONFIG_NAME).is_file())


def shipped_classifier(name: str) -> FactorClassifier:
    """The classifier shipped for built-in data ``name`` (see ``scripts/train_classifiers.py``), in eval mode."""
    known = shipped_names()
    if name not in known:
        raise unknown_name("shipped classifier", name, known)
    folder = _zoo() / name
    meta, weights = _read_folder(folder)
    return _build(meta, weights, f"shipped classifier {name!r}")
