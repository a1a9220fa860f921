"""Request bodies of the HTTP API (pydantic models, strict): the first line of defence against bad input.

Strict mode: a number sent as a string, a float sent for an integer, or a field the API does not know is
rejected with 422 and a message naming the field. What depends on the model (is it served, is the class in
range, does the sampler exist) is checked by the endpoints with the same status.
The API is described in docs/serve.md; the limits here are the ones it lists.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_BATCH",
    "MAX_SCORE_IMAGES",
    "MAX_STEPS",
    "TRACE_ID_PATTERN",
    "ExplainRequest",
    "GenerateRequest",
    "ScoreRequest",
]

MAX_STEPS = 1000
MAX_BATCH = 16
MAX_SCORE_IMAGES = 16
MAX_SEED = 2**63 - 1
TRACE_ID_PATTERN = r"^[0-9a-f]{16}$"
"""A trace id: the first 16 hex digits of the Trace's content hash; nothing else names a stored file."""

_STRICT = ConfigDict(strict=True, extra="forbid")

ModelName = Annotated[str, Field(min_length=1, max_length=200, description="a served model's name (GET /v1/models)")]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="seeds the initial noise and every draw")]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS, description="sampler steps")]
SamplerName = Annotated[str, Field(min_length=1, max_length=32, description="a sampler's registry name")]
Label = Annotated[int, Field(ge=0, le=1_000_000, description="class index (conditional models)")]
Guidance = Annotated[float, Field(ge=0.0, le=20.0, allow_inf_nan=False, description="classifier-free guidance")]
Batch = Annotated[int, Field(ge=1, le=MAX_BATCH, description="samples generated together")]


class GenerateRequest(BaseModel):
    """POST /v1/generate and /v1/generate/stream."""

    model_config = _STRICT

    model: ModelName
    seed: Seed = 0
    steps: Steps = 20
    sampler: SamplerName = "dpmpp_2m"
    label: Label | None = None
    guidance: Guidance = 1.0
    n: Batch = 1


class ExplainRequest(BaseModel):
    """POST /v1/explain: a stored trace (``trace_id``) or the generate body (``model`` and its options)."""

    model_config = _STRICT

    trace_id: Annotated[str, Field(pattern=TRACE_ID_PATTERN, description="16 lowercase hex digits")] | None = None
    model: ModelName | None = None
    seed: Seed = 0
    steps: Steps = 20
    sampler: SamplerName = "dpmpp_2m"
    label: Label | None = None
    guidance: Guidance = 1.0
    n: Batch = 1
    k: Annotated[int, Field(ge=2, le=64, description="fresh-noise continuations per branching step")] = 16
    branch_steps: Annotated[int, Field(ge=1, le=64, description="steps to branch from")] | None = None
    attribution: bool = True
    sample: Annotated[int, Field(ge=0, le=MAX_BATCH - 1, description="which sample of the batch")] = 0

    @model_validator(mode="after")
    def _one_source(self) -> ExplainRequest:
        if (self.trace_id is None) == (self.model is None):
            raise ValueError("send either trace_id (a stored trace) or model (and the generate options), not both")
        return self

    def generate_request(self) -> GenerateRequest:
        """The generate body inside this request (when it names a model)."""
        return GenerateRequest(
            model=str(self.model),
            seed=self.seed,
            steps=self.steps,
            sampler=self.sampler,
            label=self.label,
            guidance=self.guidance,
            n=self.n,
        )


class ScoreRequest(BaseModel):
    """POST /v1/score: how unusual each image is for the model (bits/dim and a per-pixel map)."""

    model_config = _STRICT

    model: ModelName
    images: Annotated[
        list[Annotated[str, Field(min_length=1)]],
        Field(min_length=1, max_length=MAX_SCORE_IMAGES, description="PNG/JPEG as data URIs or bare base64"),
    ]
    label: Label | None = None
    points: Annotated[int, Field(ge=8, le=256, description="log-SNR points per image")] = 64
    seed: Seed = 0
