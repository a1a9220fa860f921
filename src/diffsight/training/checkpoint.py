"""Training checkpoints: written atomically, verified on load, never unpickled.

A checkpoint is a folder ``<run>/checkpoints/step-XXXXXXXX/`` holding safetensors files (weights, EMA weights,
optimizer moments, RNG state) and ``state.json`` (step, optimizer hyper-parameters, config, data fingerprint).
``manifest.json`` lists the SHA-256 and size of every file. Everything is written into a temporary folder,
fsynced, then renamed into place, so a crash (even SIGKILL) leaves either the complete checkpoint or none;
:func:`load_checkpoint` re-hashes every file and refuses a truncated or altered one with a message that names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffsight.atomic import fsync_dir
from diffsight.errors import DiffsightError

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]

_PREFIX = "step-"


class CheckpointError(DiffsightError):
    """A checkpoint is missing, incomplete or corrupted."""


@dataclass
class Checkpoint:
    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # a torch optimizer state_dict
    rng: dict[str, torch.Tensor]  # generator name -> ByteTensor state
    meta: dict[str, Any]  # config, fingerprint, anything JSON


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors keyed ``state/<param>/<name>``, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{index}/{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split("/", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entry in rest.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(root: str | Path, checkpoint: Checkpoint, *, keep: int = 2) -> Path:
    """Write ``checkpoint`` under ``root`` atomically and keep only the newest ``keep`` checkpoints."""
    from safetensors.torch import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{_PREFIX}{checkpoint.step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
    try:
        opt_tensors, opt_rest = _flatten_optimizer(checkpoint.optimizer)
        files = {
            "model.safetensors": checkpoint.model,
            "ema.safetensors": checkpoint.ema,
            "optimizer.safetensors": opt_tensors,
            "rng.safetensors": checkpoint.rng,
        }
        for name, tensors in files.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / name))
        state = {"step": checkpoint.step, "optimizer": opt_rest, "meta": checkpoint.meta}
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        names = [*files, "state.json"]
        for name in names:
            _fsync_file(tmp / name)
        manifest = {name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size} for name in names}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _fsync_file(tmp / "manifest.json")
        fsync_dir(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoint folders under ``root``, oldest first (temporary folders of interrupted writes are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and p.name[len(_PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]))


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint folder; raise :class:`CheckpointError` naming what is wrong."""
    from safetensors.torch import load_file

    path = Path(path)
    hint = f"delete {path} to resume from an earlier checkpoint, or start again without --resume"
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete (no manifest.json); {hint}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        raise CheckpointError(f"checkpoint {path}: manifest.json is corrupted; {hint}") from None
    for name, entry in manifest.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is missing {name}; {hint}")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise CheckpointError(
                f"checkpoint {path}: {name} is truncated or altered ({size} bytes, expected {entry['bytes']}); {hint}"
            )
        if _sha256(file) != entry["sha256"]:
            raise CheckpointError(f"checkpoint {path}: {name} is corrupted (SHA-256 mismatch); {hint}")
    try:
        state = json.loads((path / "state.json").read_text())
        tensors = {name: load_file(str(path / name)) for name in manifest if name.endswith(".safetensors")}
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); {hint}") from None
    return Checkpoint(
        step=int(state["step"]),
        model=tensors["model.safetensors"],
        ema=tensors["ema.safetensors"],
        optimizer=_unflatten_optimizer(tensors["optimizer.safetensors"], state["optimizer"]),
        rng=tensors["rng.safetensors"],
        meta=state["meta"],
    )
