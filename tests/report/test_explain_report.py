"""The explanation report: one offline HTML file, its Traces beside it, a narrative computed from the numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from browser import external_references, open_offline, requires_chromium
from diffsight.explain.run import explain_run
from diffsight.models import load_model
from diffsight.report.explain_report import write_explanation_report
from diffsight.trace import load_trace, replay


@pytest.fixture(scope="module")
def shapes_report(tmp_path_factory: pytest.TempPathFactory):
    model = load_model("shapes")
    runs = [explain_run(model, seed=s, steps=10, k=6, branch_steps=4) for s in (1, 2)]
    out = tmp_path_factory.mktemp("report") / "report.html"
    return write_explanation_report(runs, out), runs


def test_the_report_is_one_offline_file_with_its_traces_beside_it(shapes_report) -> None:
    result, runs = shapes_report
    page = result.path.read_text()
    assert external_references(page) == []
    assert "<script" not in page  # nothing runs: the page is static
    assert len(result.traces) == 2
    for run, file in zip(runs, result.traces, strict=True):
        assert file.parent == result.path.parent and file.name == f"report.{run.trace.id}.trace.safetensors"
        assert run.trace.id in page and file.name in page
        loaded = load_trace(file)
        assert loaded.hash == run.trace.hash and replay(loaded).bit_exact
    assert page.count("data:image/png;base64,") >= 2 * (3 * 10 + 2)  # filmstrip rows, final, attribution


def test_the_narrative_states_when_shape_and_colour_were_decided(shapes_report) -> None:
    result, runs = shapes_report
    page = result.path.read_text()
    for run in runs:
        decided = run.explanations["commitment"].values["decided_step"]
        first = run.narrative[0]
        assert first.startswith("Decided")
        for factor in ("shape", "colour"):
            step = int(decided[factor])
            if step >= 0:
                assert re.search(rf"{factor} \([a-z-]+\) by step {step}\b", first), first
            else:
                assert factor in first.split("still open")[1]
        assert first.replace("&", "&amp;") in page or first in page.replace("&gt;", ">")


def test_the_report_follows_the_numbers(shapes_report, tmp_path: Path) -> None:
    """Negative control: change the Trace's commitment numbers and the narrative in the page changes."""
    from dataclasses import replace

    from diffsight.explain.explanation import Explanation
    from diffsight.explain.narrative import narrate

    _, runs = shapes_report
    run = runs[0]
    c = run.explanations["commitment"]
    moved = {
        f: (int(run.trace.step_index[-1]) if int(s) != int(run.trace.step_index[-1]) else 0)
        for f, s in c.values["decided_step"].items()
    }
    other = Explanation(c.method, {**c.values, "decided_step": moved, "decided_sigma": {}}, c.params, c.diagnostics)
    found = {**run.explanations, "commitment": other}
    changed = replace(run, explanations=found, narrative=narrate(found, num_steps=run.trace.num_steps))
    page = write_explanation_report([changed], tmp_path / "r.html").path.read_text()
    assert run.narrative[0] not in page and changed.narrative[0].split(":")[1][:30] in page


def test_a_guided_conditional_run_gets_a_guidance_section(tmp_path: Path) -> None:
    model = load_model("digits")
    run = explain_run(model, seed=0, label=3, guidance=2.0, steps=8, k=4, branch_steps=3)
    assert set(run.explanations) >= {"filmstrip", "commitment", "probes", "guidance", "attribution"}
    assert "digit" in run.narrative[0]
    page = write_explanation_report([run], tmp_path / "digits.html").path.read_text()
    assert "Guidance map" in page and "Where in time the condition acts" in page
    assert torch.isfinite(torch.as_tensor(run.explanations["guidance"].values["magnitude"])).all()


@requires_chromium
def test_the_report_opens_in_headless_chromium_without_any_request(shapes_report, tmp_path: Path) -> None:
    result, runs = shapes_report
    shown = open_offline(result.path, screenshot=tmp_path / "report.png", window_size=(1100, 2400))
    assert shown.requests == [], shown.requests
    assert "Decided" in shown.dom and runs[0].trace.id in shown.dom
    assert shown.dom.count("<svg") >= 8 and shown.screenshot is not None and shown.screenshot.stat().st_size > 20_000
