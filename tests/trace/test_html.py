"""The Trace and Explanation HTML cards: self-contained, escaped, and offline in a real browser.

Known answers: the SVG plotter puts y = x on the plot's diagonal and breaks a line at a NaN; the cards'
image count follows from the trace (finals + one per strip column). Negative controls: the same markup built
without escaping carries a live ``<script>`` (the parser check would catch a card that forgot to escape), and
the browser harness itself is shown to catch requests in ``tests/test_browser_harness.py``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from browser import external_references, open_offline, requires_chromium
from diffsight.explain.explanation import Explanation
from diffsight.explain.filmstrip import Filmstrip
from diffsight.explain.html import explanation_html
from diffsight.models import load_model
from diffsight.oracles import GaussianMixtureOracle
from diffsight.sampling import karras_sigmas
from diffsight.trace import record_trace
from diffsight.trace.html import line_plot_svg, pick_rows, trace_html

EVIL = '<script>alert("x")</script><img src="http://evil.example/p.png">'
VOID = {"img", "br", "meta", "hr", "input", "link", "circle", "line", "rect", "polyline", "path"}


class _TagCheck(HTMLParser):
    """Counts tags and checks that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


def check(fragment: str) -> dict[str, int]:
    parser = _TagCheck()
    parser.feed(fragment)
    parser.close()
    assert not parser.errors, parser.errors
    assert not parser.stack, f"unclosed: {parser.stack}"
    return parser.counts


def page(*fragments: str) -> str:
    body = "".join(fragments)
    return f'<!doctype html><html><head><meta charset="utf-8"><title>cards</title></head><body>{body}</body></html>'


@pytest.fixture(scope="module")
def image_trace():
    return record_trace(load_model("shapes"), seed=3, n=5, steps=14)


@pytest.fixture(scope="module")
def evil_vector_trace():
    means = torch.tensor([[2.0, 0.0, 1.0], [-2.0, 0.5, -1.0]])
    oracle = GaussianMixtureOracle(torch.tensor([0.5, 0.5]), means, 0.3)
    return record_trace(
        oracle, seed=1, n=3, sigmas=karras_sigmas(6, 0.01, 20.0), event_shape=(3,), model_id=EVIL, sampler="euler"
    )


def test_trace_card_is_self_contained(image_trace) -> None:
    html = trace_html(image_trace)
    counts = check(html)
    assert html.startswith('<div class="diffsight-card">')
    assert image_trace.id in html
    assert "http" not in html and external_references(html) == []
    # 14 recorded steps -> 10 strip columns, plus one grid of the 5 finals.
    assert len(pick_rows(14)) == 10
    assert counts["img"] == 1 + 10
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', html))
    for text in ("shapes", "dpmpp_2m", "NFE", ">14<", ">3<"):  # model, sampler, NFE row, steps, seed
        assert text in html
    assert image_trace._repr_html_() == html


def test_vector_trace_renders_without_images_and_escapes_the_model_name(evil_vector_trace) -> None:
    html = trace_html(evil_vector_trace)
    counts = check(html)
    assert "img" not in counts and counts.get("script", 0) == 0
    assert counts["svg"] == 1 and counts["polyline"] == 3  # x0_hat of sample 0, one line per coordinate
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert external_references(html) == []  # the <img src="http://..."> in the name is text
    # Negative control: the same row written without escaping is caught by this very check.
    naive = f"<table><tr><th>model</th><td>{EVIL}</td></tr></table>"
    assert check(naive).get("script") == 1 and external_references(naive) == ["http://evil.example/p.png"]


def test_line_plot_known_geometry() -> None:
    """y = x over x = 0..4 lands on the plot's diagonal; a NaN splits the line in two."""
    svg = line_plot_svg({"y": [0, 1, 2, 3, 4]}, [0, 1, 2, 3, 4], width=200, height=100)
    (points,) = re.findall(r'<polyline points="([^"]*)"', svg)
    xy = [tuple(map(float, p.split(","))) for p in points.split()]
    (x0, y0), (x4, y4) = xy[0], xy[-1]
    rect = re.search(r'<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)"', svg)
    left, top, w, h = (float(v) for v in rect.groups())
    assert (x0, y0) == (left, top + h) and (x4, y4) == (left + w, top)
    for (a, b), (c, d) in zip(xy, xy[1:], strict=False):  # equal steps along the diagonal
        assert abs((c - a) - w / 4) < 0.11 and abs((b - d) - h / 4) < 0.11
    broken = line_plot_svg({"y": [0, 1, float("nan"), 3, 4]})
    assert broken.count("<polyline") == 2
    assert "no finite values" in line_plot_svg({"y": [float("nan")] * 3})


def test_explanation_card_renders_each_kind_of_value(image_trace) -> None:
    film = Filmstrip(image_trace).explain()
    html = explanation_html(film)
    counts = check(html)
    assert film.trace_id in html and "http" not in html
    # x and x0_hat strips (10 columns each), the final image, the change heat maps (10): 31 images;
    # x0_change and distance_to_final: 2 curves.
    assert counts["img"] == 31 and counts["svg"] == 2
    m = 6
    expl = Explanation(
        method="made-up <b>method</b>",
        values={
            "step": torch.arange(m) * 3,
            "sigma": torch.logspace(1, -2, m, dtype=torch.float64),
            "agreement": {"shape": torch.linspace(0.2, 1, m), "colour": torch.linspace(0.5, 1, m)},
            "value_shares": {"shape": torch.full((m, 3), 1 / 3)},
            "distance": torch.rand(m, 16, generator=torch.Generator().manual_seed(0)),
            "saliency": torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1)) * 5,
            "maps": torch.rand(m, 8, 8, generator=torch.Generator().manual_seed(2)),
            "decided_step": {"shape": 9, "colour": -1},
            "final_value": {"shape": "<triangle>"},
            "score": 0.25,
        },
        params={"note": "<script>bad()</script>"},
        diagnostics={"nfe": 1234, "seconds": 0.5},
        summary="shape decided at step 9 <i>really</i>",
    )
    html = explanation_html(expl)
    counts = check(html)
    assert counts.get("script", 0) == 0 and counts.get("b", 0) == 0 and counts.get("i", 0) == 0
    assert "&lt;triangle&gt;" in html and "&lt;script&gt;bad()&lt;/script&gt;" in html and "1234" in html
    # SVGs: agreement (one, two lines), value_shares: shape (three lines), distance (mean/min/max).
    assert counts["svg"] == 3 and counts["polyline"] == 2 + 3 + 3
    assert counts["img"] == 1 + m  # the (3, 16, 16) image; the (6, 8, 8) maps strip
    assert expl._repr_html_() == html


@requires_chromium
def test_cards_open_offline_in_chromium(image_trace, evil_vector_trace, tmp_path: Path) -> None:
    film = Filmstrip(image_trace).explain()
    doc = page(trace_html(image_trace), trace_html(evil_vector_trace), explanation_html(film))
    path = tmp_path / "cards.html"
    path.write_text(doc, encoding="utf-8")
    assert external_references(doc) == []
    result = open_offline(path)
    assert result.requests == [], result.requests
    assert image_trace.id in result.dom and evil_vector_trace.id in result.dom
    assert "<script" not in result.dom  # the model name stayed text
    assert len(re.findall(r"<img ", result.dom)) == 11 + 31
