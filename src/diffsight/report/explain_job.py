"""What ``diffsight explain`` and ``diffsight demo`` do: record (or load) Traces, explain them, write the report."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from diffsight.errors import DiffsightError
from diffsight.explain.run import ExplainedRun, explain_run, explain_trace
from diffsight.models.folder import load_model
from diffsight.report.explain_report import ReportResult, write_explanation_report
from diffsight.trace.io import load_trace
from diffsight.trace.run import model_of_trace, replay
from diffsight.training.distributed import gather_items, is_main_process, share

__all__ = ["ExplainJob", "DEMO_SEEDS", "is_trace_file", "run_demo", "run_explain_job"]

DEMO_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class ExplainJob:
    """The settings of one ``diffsight explain`` call."""

    source: str  # a model (shipped name or folder) or a saved Trace file
    out: Path
    seeds: Sequence[int] = (0,)
    label: int | None = None
    steps: int = 20
    sampler: str = "dpmpp_2m"
    guidance: float = 1.0
    k: int = 16
    branch_steps: int | None = None
    attribution: bool = True
    likelihood: bool = True
    title: str | None = None


def is_trace_file(source: str) -> bool:
    return source.endswith(".safetensors") and Path(source).is_file()


def run_explain_job(
    job: ExplainJob, progress: Callable[[str], None] | None = None
) -> tuple[ReportResult | None, list[ExplainedRun]]:
    """Explain a saved Trace (after checking that it replays) or fresh samples of a model; write the report.

    Under torchrun / accelerate launch the seeds are shared between the processes and the explained runs gathered;
    only the main process writes the report (the others return ``None`` for it, with every run).
    """
    say = progress or (lambda _line: None)
    if job.k < 2:
        raise DiffsightError(f"--k must be at least 2 continuations, got {job.k}")
    runs: list[ExplainedRun] = []
    torch.manual_seed(0)  # nothing below should draw from the global generator; this pins it if something does
    if is_trace_file(job.source):
        trace = load_trace(job.source)
        model = model_of_trace(trace)
        with torch.no_grad():
            check = replay(trace, model=model)
        say(f"trace {trace.id}: replay {'bit-exact' if check.bit_exact else f'differs by {check.max_abs_diff:.3g}'}")
        runs.append(
            explain_trace(
                trace,
                model,
                k=job.k,
                branch_steps=job.branch_steps,
                attribution=job.attribution,
                likelihood=job.likelihood,
                progress=say,
            )
        )
        name = trace.meta["model"].get("name")
    else:
        model = load_model(job.source)
        name = model.name
        for seed in job.seeds[share(len(job.seeds))]:
            runs.append(
                explain_run(
                    model,
                    seed=seed,
                    label=job.label,
                    steps=job.steps,
                    sampler=job.sampler,
                    guidance=job.guidance,
                    k=job.k,
                    branch_steps=job.branch_steps,
                    attribution=job.attribution,
                    likelihood=job.likelihood,
                    progress=say,
                )
            )
        runs = gather_items(runs)  # every process's share, in seed order
    if not is_main_process():
        return None, runs
    title = job.title or f"diffsight: how {name} formed its samples"
    return write_explanation_report(runs, job.out, title=title), runs


def run_demo(
    out_dir: Path,
    *,
    seeds: Sequence[int] = DEMO_SEEDS,
    k: int = 32,
    branch_steps: int = 12,
    steps: int = 20,
    progress: Callable[[str], None] | None = None,
) -> tuple[ReportResult, list[ExplainedRun], float]:
    """The main job: explain a few samples of the shipped ``shapes`` model into ``<out_dir>/report.html``."""
    start = time.perf_counter()
    job = ExplainJob(
        source="shapes",
        out=Path(out_dir) / "report.html",
        seeds=tuple(seeds),
        steps=steps,
        k=k,
        branch_steps=branch_steps,
        title="diffsight demo: when did the shapes model decide shape, colour, size, position and background?",
    )
    result, runs = run_explain_job(job, progress)
    if result is None:
        raise DiffsightError("the demo writes one report: run it as one process, not under torchrun")
    return result, runs, time.perf_counter() - start
