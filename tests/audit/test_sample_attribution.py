"""The audit's training-data attribution on the shipped digits UNet (a training subset keeps it quick)."""

from __future__ import annotations

import json

import pytest
import torch

from diffsight.audit.sample_attribution import attribute_samples, last_block_parameters
from diffsight.errors import DiffsightError
from diffsight.metrics.model_eval import training_data_of
from diffsight.models import load_model
from diffsight.report.audit_job import _attribution_section

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    model = load_model("digits")
    return model, training_data_of(model).subset(torch.arange(96))


def test_last_block_of_the_digits_unet(digits) -> None:
    model, _ = digits
    prefixes = last_block_parameters(model.denoiser)
    assert prefixes == ["backbone.unet.up_blocks.1.", "backbone.unet.conv_norm_out.", "backbone.unet.conv_out."]
    assert last_block_parameters(torch.nn.Linear(2, 2)) is None


@pytest.mark.slow
def test_training_images_are_attributed_to_themselves(digits) -> None:
    model, train = digits
    picks = [3, 17, 25, 40, 52, 64, 71, 90]
    samples = train.samples[picks]  # a generated sample that copies a training image
    lines: list[str] = []
    found = attribute_samples(
        model, train, samples, list(range(8)), labels=train.labels[picks], trace_seed=1, steps=8, progress=lines.append
    )
    assert found.top.shape == (8, 5) and found.scores.shape == (8, 5)
    assert found.pixel_nearest.tolist() == picks
    print(f"ranked first: {found.top1_is_pixel_nearest:.2f}; top {found.top.tolist()}; {found.seconds:.1f} s")
    assert found.top1_is_pixel_nearest >= 0.75  # measured 0.88 on 16 of 128 digits (last-block gradients)
    step = found.per_step
    assert step is not None and len(step["steps"]) == 8 and step["final_top_ranks"][-1] == 1
    summary = json.loads(json.dumps(found.to_json()))
    assert summary["params"]["parameters"] == last_block_parameters(model.denoiser)
    assert "x0_hat" not in summary["per_step"] and len(summary["samples"]) == 8
    assert any("featurising 96 training images" in line for line in lines)
    page = _attribution_section(found, samples, train.samples, 4)
    assert "<h2>Training-data attribution</h2>" in page and page.count("<img") >= 8 * 3 + 8


def test_refusals(digits) -> None:
    model, train = digits
    with pytest.raises(DiffsightError, match="indices must lie"):
        attribute_samples(model, train, train.samples[:2], [5], labels=train.labels[:2])
    with pytest.raises(DiffsightError, match="labels"):
        attribute_samples(model, train, train.samples[:2], [0])
