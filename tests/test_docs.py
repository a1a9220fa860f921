"""Every Python code block in the README and docs/ runs (STYLE.md, principle 14)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
BLOCK = re.compile(r"^(<!-- file: \S+ -->\n)?```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for doc in DOCS:
        for i, match in enumerate(BLOCK.finditer(doc.read_text())):
            if match.group(1):  # a block that is a file: tests/test_tutorial.py runs it in its sequence
                continue
            found.append((str(doc.relative_to(ROOT)), i, match.group(2)))
    return found


@pytest.mark.parametrize(
    ("doc", "index", "code"), _blocks(), ids=lambda v: str(v) if not isinstance(v, str) or "\n" not in v else ""
)
def test_code_block_runs(doc: str, index: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "block.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")


def test_docs_have_code() -> None:
    assert any(doc == "docs/concepts.md" for doc, _, _ in _blocks())


def test_the_report_page_quotes_its_real_example() -> None:
    """docs/reading-an-explanation-report.md quotes the narrative of docs/examples/shapes-report.html verbatim,
    and the example's Traces lie beside it and load."""
    import html as html_lib

    from diffsight.trace import load_trace

    page = (ROOT / "docs" / "reading-an-explanation-report.md").read_text()
    quoted = re.search(r"<!-- narrative: begin -->\n> (.*?)\n<!-- narrative: end -->", page, re.DOTALL)
    assert quoted is not None
    report = html_lib.unescape((ROOT / "docs" / "examples" / "shapes-report.html").read_text())
    assert quoted.group(1) in report
    traces = sorted((ROOT / "docs" / "examples").glob("shapes-report.*.trace.safetensors"))
    assert len(traces) == 2 and all(load_trace(t).id in report for t in traces)
