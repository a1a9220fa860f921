"""Request bodies of the HTTP API (pydantic models, strict): the first line of defence against bad input.

Strict mode: a number sent as a string, a float sent for an integer, or a field the API does not know is
rejected with 422 and a message naming the field. What depends on the model (is it served, is the class in
range, does the sampler exist) is checked by the endpoints with the same status.
The API is described in docs/serve.md; the limits here are the ones it lists.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_BATCH",
    "MAX_IMPUTE_COLUMNS",
    "MAX_IMPUTE_ROWS",
    "MAX_IMPUTE_STEPS",
    "MAX_RECONSTRUCT_SAMPLES",
    "MAX_SCORE_IMAGES",
    "MAX_STEPS",
    "TRACE_ID_PATTERN",
    "ExplainRequest",
    "GenerateRequest",
    "ImputeRequest",
    "ReconstructRequest",
    "ScoreRequest",
    "SeriesScoreRequest",
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


# --- reconstruction and imputation ------------------------------------------------------------------------------

MAX_RECONSTRUCT_SAMPLES = 32
MAX_SOLVER_STEPS = 500
MAX_ARRAY_SIDE = 256
MAX_IMPUTE_ROWS = 5000
MAX_IMPUTE_COLUMNS = 100
MAX_IMPUTE_STEPS = 2000

Pixel = Annotated[float, Field(ge=-10.0, le=10.0, allow_inf_nan=False)]
Row = Annotated[list[Pixel], Field(min_length=1, max_length=MAX_ARRAY_SIDE)]
Plane = Annotated[list[Row], Field(min_length=1, max_length=MAX_ARRAY_SIDE)]
ImageArray = Annotated[
    list[Plane], Field(min_length=1, max_length=4, description="(C, H, W) floats in the model's data scale [-1, 1]")
]
MaskArray = Annotated[list[Row], Field(min_length=1, max_length=MAX_ARRAY_SIDE, description="(H, W), nonzero = known")]
EncodedImage = Annotated[str, Field(min_length=1, description="PNG/JPEG as a data URI or bare base64")]

TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "mask": ("inpaint",),
    "factor": ("superres",),
    "blur": ("deblur",),
    "angles": ("ct",),
    "acceleration": ("mri",),
}
"""Task options and the tasks that use them; sending one to another task is a 422 (it would be ignored)."""


class ReconstructRequest(BaseModel):
    """POST /v1/reconstruct: an image inverse problem solved with a served model as the prior."""

    model_config = _STRICT

    model: ModelName
    task: Literal["inpaint", "denoise", "superres", "deblur", "ct", "mri"]
    image: EncodedImage | None = None
    array: ImageArray | None = None
    mask: EncodedImage | MaskArray | None = None
    simulate: bool = False
    noise_sigma: (
        Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False, description="measurement noise std (data units)")]
        | None
    ) = None
    factor: Annotated[int, Field(ge=2, le=8, description="superres: downsampling factor")] = 2
    blur: Annotated[float, Field(gt=0.0, le=8.0, allow_inf_nan=False, description="deblur: blur std (pixels)")] = 1.0
    angles: Annotated[int, Field(ge=1, le=180, description="ct: projection angles over 180 degrees")] | None = None
    acceleration: Annotated[
        float, Field(ge=1.1, le=16.0, allow_inf_nan=False, description="mri: k-space undersampling factor")
    ] = 2.5
    method: Literal["denoise", "repaint", "projection", "dps"] | None = None
    samples: Annotated[int, Field(ge=1, le=MAX_RECONSTRUCT_SAMPLES, description="posterior samples K")] = 8
    steps: Annotated[int, Field(ge=1, le=MAX_SOLVER_STEPS, description="solver steps (default per solver)")] | None = (
        None
    )
    seed: Seed = 0
    intervals: bool = False
    coverage: Annotated[
        float, Field(ge=0.5, le=0.95, allow_inf_nan=False, description="stated per-pixel coverage of the intervals")
    ] = 0.9

    @model_validator(mode="after")
    def _consistent(self) -> ReconstructRequest:
        if (self.image is None) == (self.array is None):
            raise ValueError("send the image either as image (base64 PNG/JPEG) or as array (nested lists), not both")
        for name, tasks in TASK_FIELDS.items():
            if name in self.model_fields_set and self.task not in tasks:
                raise ValueError(f"{name} is an option of the {' and '.join(tasks)} task, not of {self.task}: drop it")
        if self.task in ("ct", "mri") and not self.simulate:
            raise ValueError(
                f"the {self.task} task takes a clean image with simulate true over HTTP (its measurements are not "
                "images); use `diffsight reconstruct` for a measured .npy"
            )
        if self.intervals and self.samples < 2:
            raise ValueError("intervals need samples >= 2 (the spread is taken over the samples)")
        return self


class ImputeRequest(BaseModel):
    """POST /v1/impute: fill the empty cells of a CSV table with a model trained on its observed cells."""

    model_config = _STRICT

    csv: Annotated[str, Field(min_length=1, description="the table: a header row, then rows; empty cells = missing")]
    categorical: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]],
        Field(max_length=MAX_IMPUTE_COLUMNS, description="numeric columns to treat as categories"),
    ] = []
    samples: Annotated[int, Field(ge=2, le=200, description="draws per row K")] = 50
    intervals: bool = False
    coverage: Annotated[float, Field(ge=0.5, le=0.99, allow_inf_nan=False, description="stated coverage")] = 0.9
    steps: Annotated[int, Field(ge=1, le=MAX_IMPUTE_STEPS, description="training steps")] = 500
    seed: Seed = 0


MAX_SERIES_ROWS = 2000
MAX_SERIES_COLUMNS = 20
MAX_SERIES_STEPS = 2000

SeriesRow = Annotated[
    list[Annotated[float, Field(allow_inf_nan=False)] | None],
    Field(min_length=1, max_length=MAX_SERIES_COLUMNS, description="one time step: K values, null = missing"),
]


class SeriesScoreRequest(BaseModel):
    """POST /v1/series/score: one anomaly score per window of a (multivariate) series."""

    model_config = _STRICT

    csv: Annotated[str, Field(min_length=1, description="one row per time step, one column per variable")] | None = None
    values: Annotated[list[SeriesRow], Field(min_length=1, description="rows of K values (T x K)")] | None = None
    time_column: Annotated[str, Field(min_length=1, max_length=200, description="csv: the time column")] | None = None
    train_rows: Annotated[int, Field(ge=8, le=MAX_SERIES_ROWS, description="train on the first rows only")] | None = (
        None
    )
    window: Annotated[int, Field(ge=8, le=96, description="window length L in time steps")] = 48
    period: Annotated[int, Field(ge=2, le=1000, description="seasonal period (default: guessed)")] | None = None
    steps: Annotated[int, Field(ge=1, le=MAX_SERIES_STEPS, description="training steps")] = 300
    samples: Annotated[int, Field(ge=2, le=64, description="forecast samples per window")] = 16
    threshold: Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False, description="flag z above it")] = 3.0
    seed: Seed = 0

    @model_validator(mode="after")
    def _one_source(self) -> SeriesScoreRequest:
        if (self.csv is None) == (self.values is None):
            raise ValueError("send the series either as csv (text) or as values (rows of numbers), not both")
        if self.time_column is not None and self.csv is None:
            raise ValueError("time_column names a column of csv; values have no time column: drop it")
        return self
