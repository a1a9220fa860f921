"""The Trace: recorded by any sampler, replayed bit for bit, saved and loaded by path or URL, identified by hash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.models import load_model
from diffsight.oracles import GaussianMixtureOracle
from diffsight.sampling import SAMPLERS, karras_sigmas
from diffsight.trace import (
    TraceBudgetError,
    load_trace,
    model_of_trace,
    record_trace,
    recorded_steps,
    replay,
    save_trace,
)


@pytest.fixture(scope="module")
def shapes():
    return load_model("shapes")


@pytest.fixture(scope="module")
def digits():
    return load_model("digits")


def mixture() -> GaussianMixtureOracle:
    means = torch.tensor([[2.0, 0.0, 1.0], [-2.0, 0.5, -1.0]])
    return GaussianMixtureOracle(torch.tensor([0.5, 0.5]), means, 0.3)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_is_recorded_and_replayed_bit_for_bit(sampler: str) -> None:
    oracle = mixture()
    sigmas = karras_sigmas(8, 0.01, 20.0)
    trace = record_trace(oracle, seed=5, n=4, sigmas=sigmas, sampler=sampler, event_shape=(3,), model_id="mixture")
    assert trace.x.shape == (8, 4, 3) and trace.x0_hat.shape == (8, 4, 3) and trace.final.shape == (4, 3)
    assert trace.step_index == list(range(8))
    assert torch.equal(trace.x[0], trace.tensors["x_init"])  # the first state is the initial noise
    result = replay(trace, denoiser=oracle)
    assert result.bit_exact and result.max_abs_diff == 0.0
    stochastic = bool(trace.noise())
    assert stochastic == (sampler in ("ddpm", "pc"))
    if stochastic:  # a negative control: other noise gives another sample
        other = dict(trace.tensors)
        for name in [k for k in other if k.startswith("noise.")]:
            other[name] = torch.randn_like(other[name])
        meta = {k: v for k, v in trace.meta.items() if k != "hash"}
        changed = type(trace)(meta=meta, tensors=other)
        assert not replay(changed, denoiser=oracle).bit_exact


def test_a_run_is_reproducible_and_its_hash_identifies_it(shapes) -> None:
    a = record_trace(shapes, seed=3, steps=6)
    b = record_trace(shapes, seed=3, steps=6)
    c = record_trace(shapes, seed=4, steps=6)
    assert a.hash == b.hash and a.id == a.hash[:16] and len(a.hash) == 64
    assert a.hash != c.hash
    assert a.meta["model"]["source"] == "shipped" and a.meta["model"]["sha256"] == shapes.weights_sha256()
    assert a.meta["nfe"] == 6 and a.meta["sampler"] == "dpmpp_2m"
    assert replay(a).bit_exact  # the model is found from the trace alone


def test_stride_dtype_and_memory_budget(shapes) -> None:
    assert recorded_steps(10, 3) == [0, 3, 6, 9] and recorded_steps(10, 4) == [0, 4, 8, 9]
    trace = record_trace(shapes, seed=1, steps=10, stride=4, dtype=torch.float16)
    assert trace.step_index == [0, 4, 8, 9] and trace.x0_hat.dtype == torch.float16
    assert trace.final.dtype == torch.float32  # the sample itself is kept at full precision
    assert replay(trace).bit_exact  # the stride thins what is shown, not what replays
    full = record_trace(shapes, seed=1, steps=10)
    assert torch.equal(trace.final, full.final)
    with pytest.raises(TraceBudgetError, match=r"use stride=\d+"):
        record_trace(shapes, seed=1, n=8, steps=10, memory_budget=200_000)
    with pytest.raises(DiffsightError, match="stride must be at least 1"):
        record_trace(shapes, seed=1, steps=4, stride=0)


def test_guided_conditional_trace_replays(digits) -> None:
    trace = record_trace(digits, seed=2, n=3, labels=7, guidance=2.0, sampler="ddpm", steps=6)
    assert trace.meta["labels"] == [7, 7, 7] and trace.meta["class_names"] == ["7", "7", "7"]
    assert trace.meta["guidance"] == 2.0 and trace.meta["nfe"] == 6
    assert replay(trace).bit_exact
    null = record_trace(digits, seed=2, labels=digits.null_class, steps=4)
    assert null.meta["class_names"] == ["(none)"] and replay(null).bit_exact
    unconditional = record_trace(digits, seed=2, steps=4)
    assert unconditional.meta["labels"] is None and replay(unconditional).bit_exact
    with pytest.raises(DiffsightError, match="class labels must lie"):
        record_trace(digits, seed=2, labels=12, steps=4)
    with pytest.raises(DiffsightError, match="guidance needs a class"):
        record_trace(digits, seed=2, guidance=2.0, steps=4)


def test_save_and_load_by_path_and_url(shapes, tmp_path: Path) -> None:
    trace = record_trace(shapes, seed=9, steps=5, sampler="ddpm")
    path = tmp_path / "runs" / "a.trace.safetensors"
    save_trace(trace, path)
    assert json.loads((tmp_path / "runs" / "a.trace.json").read_text())["hash"] == trace.hash
    loaded = load_trace(path)
    assert loaded.hash == trace.hash and all(torch.equal(loaded.tensors[k], v) for k, v in trace.tensors.items())
    assert replay(loaded).bit_exact
    url = f"memory://traces/{trace.id}.trace.safetensors"
    save_trace(trace, url)
    assert load_trace(url).hash == trace.hash
    with pytest.raises(DiffsightError, match="no trace at"):
        load_trace("memory://traces/missing.trace.safetensors")


def test_damaged_or_foreign_files_are_refused(shapes, tmp_path: Path) -> None:
    trace = record_trace(shapes, seed=9, steps=4)
    path = tmp_path / "t.trace.safetensors"
    save_trace(trace, path)
    data = bytearray(path.read_bytes())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(DiffsightError, match="damaged|truncated"):
        load_trace(truncated)
    flipped = tmp_path / "flipped.safetensors"
    data[-5] ^= 0xFF  # one byte of the last tensor
    flipped.write_bytes(bytes(data))
    with pytest.raises(DiffsightError, match="content hash mismatch"):
        load_trace(flipped)
    from safetensors.torch import save_file

    foreign = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(DiffsightError, match="not a diffsight trace"):
        load_trace(foreign)
    with pytest.raises(DiffsightError, match="no trace at"):
        load_trace(tmp_path / "nothing.safetensors")


def test_replay_refuses_other_weights(shapes, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    shutil.copytree(shapes.path, folder)
    mine = load_model(folder)
    trace = record_trace(mine, seed=0, steps=3)
    assert trace.meta["model"]["source"] == str(folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights))
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + 0.01
    save_file(tensors, str(weights))
    with pytest.raises(DiffsightError, match="recorded with weights"):
        model_of_trace(trace)
    in_memory = record_trace(mixture(), seed=0, sigmas=karras_sigmas(3, 0.01, 20.0), event_shape=(3,))
    with pytest.raises(DiffsightError, match="pass denoiser= to replay"):
        replay(in_memory)
