"""The narrative is computed from the numbers: change the numbers and the sentences change with them."""

from __future__ import annotations

import torch

from diffsight.explain.explanation import Explanation
from diffsight.explain.narrative import decided_order, narrate


def commitment(decided: dict[str, int]) -> Explanation:
    steps = torch.tensor([0, 3, 6, 9, 12, 15, 19])
    sigma = torch.tensor([80.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.01], dtype=torch.float64)
    sig = {f: (float(sigma[steps.tolist().index(s)]) if s >= 0 else float("nan")) for f, s in decided.items()}
    return Explanation(
        method="commitment",
        values={
            "step": steps,
            "sigma": sigma,
            "decided_step": decided,
            "decided_sigma": sig,
            "final_value": {f: f"{f}-value" for f in decided},
        },
        params={"k": 16, "threshold": 0.9},
    )


def test_decisions_are_listed_earliest_first_with_their_sigma() -> None:
    c = commitment({"shape": 9, "colour": 3, "size": -1, "background": 0})
    assert [f for f, _, _ in decided_order(c)] == ["background", "colour", "shape"]
    (line,) = narrate({"commitment": c}, num_steps=20)
    assert line.startswith("Decided (agreement of 16 fresh-noise continuations >= 0.9): background")
    assert "colour (colour-value) by step 3, sigma 30" in line and "shape (shape-value) by step 9, sigma 3" in line
    assert "background (background-value) by step 0 of 20" in line
    assert line.endswith("still open at the last step examined: size.")


def test_other_numbers_give_other_sentences() -> None:
    a = narrate({"commitment": commitment({"shape": 9, "colour": 3})}, num_steps=20)
    b = narrate({"commitment": commitment({"shape": 3, "colour": 12})}, num_steps=20)
    assert a != b and b[0].index("shape") < b[0].index("colour") and a[0].index("colour") < a[0].index("shape")


def test_summaries_of_the_other_explainers_follow_in_order() -> None:
    def one(method: str, summary: str, **diag: float) -> Explanation:
        return Explanation(method=method, values={}, summary=summary, diagnostics=dict(diag))

    lines = narrate(
        {
            "attribution": one("attribution", "IG of shape at step 9", completeness_error=0.003),
            "spectral": one("spectral", "coarse-to-fine"),
            "commitment": commitment({"digit": 6}),
        },
        num_steps=20,
    )
    assert lines[0].startswith("Decided") and lines[1] == "coarse-to-fine."
    assert lines[2] == "IG of shape at step 9 (completeness error 0.003)."
