"""Trace and explainer benchmark: what recording a run costs, and what branching costs.

What it measures (``make bench`` runs it with the defaults):

1. **Recording overhead.** ``record_trace(model, stride=1, dtype=float32)`` (every step's x and x0_hat copied
   to the CPU, the noise kept, the content hash and the weights' SHA-256 computed) against plain sampling,
   ``generate_samples`` with the same model, sampler, schedule, seed and labels, in the same process. Cases:
   the shipped ``shapes`` model (3x16x16) at n = 16 and n = 64 and the shipped ``digits`` model (1x8x8,
   class-conditional) at n = 64, DPM-Solver++ 2M, 20 steps. The two arms are interleaved, their order
   alternating per repetition, after a warm-up of each; both run under ``torch.inference_mode()``. Reported:
   per-case medians, the median of the paired ratios trace / plain, and all pairs pooled (geometric mean with
   a ~95% interval), the headline figure. Goal: <= 1.10. The two arms' final samples are compared: equal
   finals show that both did the same work.
2. **Branching cost** of :class:`diffsight.explain.commitment.Commitment`: K = 16 continuations from 8
   recorded steps of a 20-step ``shapes`` trace (ancestral ``ddpm`` continuations, pixel agreement, no
   bootstrap). Reported: network evaluations per sample (``diagnostics["nfe"]``) against the count the
   schedule implies (sum over the chosen steps s of K (20 - s)), batched network calls, seconds, and seconds
   per 1000 sample-evaluations beside plain sampling's rate at n = 64 measured in part 1.

Usage::

    .venv/bin/python benchmarks/tracing.py                  # full run, ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/tracing.py --quick          # smoke run: n 4, 5 steps, 1 repetition
    .venv/bin/python benchmarks/tracing.py --json out.json  # also write every figure as JSON
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import diffsight
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import diffsight

from diffsight.models import load_model
from diffsight.models.folder import LoadedModel
from diffsight.sampling import generate_samples
from diffsight.trace import record_trace
from sampling import choose_threads, cpu_model, load_average, pooled_ratio  # the sampling benchmark's helpers

RATIO_GOAL = 1.10  # trace / plain wall time, from the issue


@dataclass
class Case:
    model: str
    n: int
    steps: int
    sampler: str = "dpmpp_2m"
    plain_s: list[float] = field(default_factory=list)
    trace_s: list[float] = field(default_factory=list)
    same_finals: bool = False
    trace_mb: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.model} n={self.n}"


def labels_for(model: LoadedModel, n: int) -> list[int] | None:
    """One class per sample, cycling through the classes, for a class-conditional model; None otherwise."""
    return [i % model.num_classes for i in range(n)] if model.num_classes > 0 else None


def arms(model: LoadedModel, case: Case, seed: int) -> dict[str, Callable[[], torch.Tensor]]:
    labels = labels_for(model, case.n)

    def plain() -> torch.Tensor:
        return generate_samples(
            model.denoiser,
            model.event_shape,
            case.n,
            steps=case.steps,
            sampler=case.sampler,
            generator=torch.Generator().manual_seed(seed),
            labels=None if labels is None else torch.tensor(labels),
            null_class=model.null_class,
        )

    def trace() -> torch.Tensor:
        t = record_trace(model, seed=seed, n=case.n, steps=case.steps, sampler=case.sampler, labels=labels)
        case.trace_mb = t.nbytes() / 1e6
        return t.final

    return {"plain": plain, "trace": trace}


def timed(run: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    gc.collect()
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = run()
        return time.perf_counter() - t0, out


def recording_overhead(models: dict[str, LoadedModel], cases: list[Case], reps: int, seed: int) -> None:
    runs = {c.name: arms(models[c.model], c, seed) for c in cases}
    for c in cases:  # warm-up, and the same-work check
        finals = {arm: timed(run)[1] for arm, run in runs[c.name].items()}
        c.same_finals = bool(torch.equal(finals["plain"], finals["trace"]))
    for rep in range(reps):
        for c in cases:
            order = ["plain", "trace"] if rep % 2 == 0 else ["trace", "plain"]
            for arm in order:
                seconds, _ = timed(runs[c.name][arm])
                (c.plain_s if arm == "plain" else c.trace_s).append(seconds)
        print(f"  repetition {rep + 1}/{reps} done, load average {load_average()}", flush=True)


def branching_cost(model: LoadedModel, steps: int, rows: int, k: int, seed: int) -> dict[str, Any]:
    """Commitment's K continuations from ``rows`` recorded steps of a ``steps``-step trace."""
    try:
        from diffsight.explain.commitment import Commitment
    except ImportError as err:  # the explainer is optional for this benchmark
        return {"skipped": f"diffsight.explain.commitment is not importable ({err}); branching not measured"}
    trace = record_trace(model, seed=seed, n=1, steps=steps)
    explainer = Commitment(trace, model, steps=rows, k=k, seed=seed, bootstrap=0)
    chosen = [trace.step_index[r] for r in explainer.rows]
    with torch.inference_mode():
        t0 = time.perf_counter()
        expl = explainer.explain()
        seconds = time.perf_counter() - t0
    expected = sum(k * (trace.num_steps - s) for s in chosen)  # ddpm: one evaluation per step
    return {
        "steps": trace.num_steps,
        "branch_steps": chosen,
        "k": k,
        "nfe": int(expl.diagnostics["nfe"]),
        "nfe_expected": expected,
        "batched_calls": int(expl.diagnostics.get("batched_calls", -1)),
        "seconds": seconds,
        "ms_per_1000_nfe": 1e6 * seconds / max(1, int(expl.diagnostics["nfe"])),
        "summary": expl.summary,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: n 4, 5 steps, 1 repetition, small branching")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per arm (default 7; 1 with --quick)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (see benchmarks/sampling.py)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="write all results to this JSON file")
    args = ap.parse_args(argv)
    if args.reps is None:
        args.reps = 1 if args.quick else 7
    if args.reps < 1:
        ap.error("need reps >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads_note = choose_threads(args)
    started = time.perf_counter()
    machine = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "threads_choice": threads_note,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffsight": getattr(diffsight, "__version__", "?"),
        "load_average_start": load_average(),
    }
    print(f"diffsight trace benchmark  ({'quick' if args.quick else 'full'} run)")
    print(
        f"machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, torch threads "
        f"{machine['torch_threads']} ({threads_note}); python {machine['python']}, torch {machine['torch']}"
    )
    print(f"load average (1, 5, 15 min): {machine['load_average_start']}")
    models = {name: load_model(name) for name in ("shapes", "digits")}
    steps = 5 if args.quick else 20
    if args.quick:
        cases = [Case("shapes", 4, steps), Case("digits", 4, steps)]
    else:
        cases = [Case("shapes", 16, steps), Case("shapes", 64, steps), Case("digits", 64, steps)]
    gc.collect()
    gc.freeze()

    print(
        f"\n1. recording a full trace (stride 1, float32) vs plain sampling, dpmpp_2m {steps} steps, {args.reps} reps"
    )
    recording_overhead(models, cases, args.reps, args.seed)
    head = (
        f"{'case':16s} | {'plain s (med)':>13s} | {'trace s (med)':>13s} | {'paired ratio':>12s} | "
        f"{'trace MB':>8s} | same finals"
    )
    print("\n" + head + "\n" + "-" * len(head))
    rows = []
    for c in cases:
        paired = statistics.median(t / p for t, p in zip(c.trace_s, c.plain_s, strict=True))
        row = {
            **asdict(c),
            "plain_median_s": statistics.median(c.plain_s),
            "trace_median_s": statistics.median(c.trace_s),
            "ratio_paired_median": paired,
            "pooled": pooled_ratio(c.trace_s, c.plain_s),
        }
        rows.append(row)
        print(
            f"{c.name:16s} | {row['plain_median_s']:13.3f} | {row['trace_median_s']:13.3f} | {paired:12.3f} | "
            f"{c.trace_mb:8.2f} | {c.same_finals}"
        )
    pooled = pooled_ratio([v for c in cases for v in c.trace_s], [v for c in cases for v in c.plain_s])
    verdict = (
        "quick smoke run: too short to judge"
        if args.quick
        else ("goal met" if pooled["ratio"] <= RATIO_GOAL else "goal NOT met")
    )
    print(
        f"\nratio trace / plain (goal <= {RATIO_GOAL}), pooled over all {pooled['n']} pairs (geometric mean, ~95% "
        f"interval): {pooled['ratio']:.3f} [{pooled['low']:.3f}, {pooled['high']:.3f}] -> {verdict}"
    )

    k, branch_rows = (4, 3) if args.quick else (16, 8)
    print(f"\n2. branching: Commitment, K = {k} continuations from {branch_rows} steps of a {steps}-step shapes trace")
    branching = branching_cost(models["shapes"], steps, branch_rows, k, args.seed)
    if "skipped" in branching:
        print(f"  {branching['skipped']}")
    else:
        plain_rate = None
        big = [r for r in rows if r["model"] == "shapes"]
        if big:
            r = max(big, key=lambda r: r["n"])
            plain_rate = 1e6 * r["plain_median_s"] / (r["n"] * r["steps"])
            branching["plain_ms_per_1000_nfe"] = plain_rate
        print(
            f"  branch steps {branching['branch_steps']}; network evaluations per sample {branching['nfe']} "
            f"(schedule implies {branching['nfe_expected']}) in {branching['batched_calls']} batched calls; "
            f"{branching['seconds']:.2f} s = {branching['ms_per_1000_nfe']:.1f} ms per 1000 sample-NFE"
            + (f" (plain sampling at n={r['n']}: {plain_rate:.1f})" if plain_rate is not None else "")
        )
        print(f"  summary: {branching['summary']}")
    load_end = load_average()
    print(f"\nload average at the end: {load_end}; wall time {time.perf_counter() - started:.0f} s")

    if args.json is not None:
        report = {
            "benchmark": "trace",
            "args": {k_: (str(v) if isinstance(v, Path) else v) for k_, v in vars(args).items()},
            "machine": {**machine, "load_average_end": load_end},
            "ratio_goal": RATIO_GOAL,
            "pooled_ratio": pooled,
            "cases": rows,
            "branching": branching,
            "wall_s": time.perf_counter() - started,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
