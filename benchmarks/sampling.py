"""Sampling benchmark: diffsight's samplers against diffusers' scheduler loop on the same UNet, same run.

What it measures (``make bench`` runs it with the defaults):

1. A matrix-multiply calibration of this machine: best-of-5 GFLOP/s of a 2048^3 float32 ``torch.mm``.
2. The network: a randomly initialised (seeded) diffusers ``UNet2DModel`` sized like diffsight's CPU presets
   (8x8x1, block_out_channels (32, 64), one attention level; ~0.70 M parameters, ~32 MFLOP per image). Its
   FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmul and convolution, 2 FLOP per MAC).
3. Per-step loop overhead with the network replaced by a stub that costs almost nothing, so the time left
   is what the sampler and the denoiser adapter add around each network call.
4. The main comparison, at batch 64, 20 and 50 steps:

   - ``DDIMScheduler`` loop  vs  ``sample_ddim(eta=0)`` on ``from_diffusers(unet, scheduler.config)``;
   - ``DPMSolverMultistepScheduler`` (2M, data prediction) loop  vs  ``sample_dpmpp_2m``,

   with diffusers' loop written the plain way (``unet(x, t).sample`` then ``scheduler.step``). Both sides
   run under ``torch.inference_mode()``; ``set_timesteps``, our sigma arrays and the initial states are
   built outside the timed region. The two loops are interleaved (their order alternates from one
   repetition to the next so that neither always runs first), after one short warm-up of each. Reported:
   best and median wall seconds; ours/diffusers on the medians, on the bests and as the median of the
   per-repetition (paired) ratios, in wall and in process CPU time; all pairs pooled (geometric mean with a
   ~95% interval), the headline figure; the achieved GFLOP/s (FLOPs of one forward x NFE / seconds) beside
   the calibration; and the relative error between the two final samples, which shows both did the same work.

The load average is printed before, during and after. On a box where other jobs already hold the cores
(1-minute load >= CPU count) torch is set to 1 thread, because oversubscribed OpenMP barriers make each
forward 10-50x slower and the run would take an hour; ``--threads`` overrides.

Usage::

    .venv/bin/python benchmarks/sampling.py                  # full run, 1-3 minutes on 2 cores
    .venv/bin/python benchmarks/sampling.py --quick          # smoke run: batch 8, 5 steps, 1 repetition
    .venv/bin/python benchmarks/sampling.py --json out.json  # also write every figure as JSON
    .venv/bin/python benchmarks/sampling.py --size 16        # the 16x16 variant (~4x the FLOPs)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

try:
    import diffsight
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import diffsight

import diffusers
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UNet2DModel

from diffsight.models import from_diffusers
from diffsight.sampling.samplers import sample_ddim, sample_dpmpp_2m

RATIO_GOAL = 1.05  # ours / diffusers, from the issue

# The DDPM training schedule the network is assumed to be trained on (diffusers' defaults). clip_sample is
# off: diffusers' DDIM clips x0 but keeps the unclipped eps, diffsight recomputes eps from the clipped x0, so
# with clipping the two would not compute the same thing.
SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


# --- machine ----------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def matmul_calibration(n: int, reps: int) -> dict[str, Any]:
    """Best-of-``reps`` GFLOP/s of an n x n x n float32 matrix product (2 n^3 FLOP), after one warm-up."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - t0)
    flops = 2 * n**3
    return {
        "n": n,
        "reps": reps,
        "best_s": min(times),
        "median_s": statistics.median(times),
        "gflops_best": flops / min(times) / 1e9,
        "gflops_median": flops / statistics.median(times) / 1e9,
    }


def choose_threads(args: argparse.Namespace) -> str:
    """Set torch's intra-op thread count and say why.

    With more runnable threads than cores, OpenMP's spin-then-sleep barriers stall on every parallel region
    (a UNet forward has hundreds): measured here, a batch-64 forward went from ~80 ms on 1 thread to 0.4-4 s
    on 2 threads while other jobs ran. One thread keeps a busy box usable and the comparison fair.
    """
    if args.threads:
        torch.set_num_threads(args.threads)
        return "--threads"
    if args.quick:
        torch.set_num_threads(1)
        return "1 for --quick"
    load, cpus = load_average(), os.cpu_count() or 1
    if load is not None and load[0] >= cpus and torch.get_num_threads() > 1:
        torch.set_num_threads(1)
        return f"1: load average {load[0]} >= {cpus} CPUs; pass --threads to override"
    return "torch default"


# --- network ----------------------------------------------------------------------------------------------------


def build_unet(size: int, seed: int) -> UNet2DModel:
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=size,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
    )
    return unet.eval()


def count_flops(net: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward at this batch (FlopCounterMode: matmul/conv/attention, 2 FLOP per MAC)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net(x, torch.tensor(500))
    return int(counter.get_total_flops())


def time_forward(net: nn.Module, x: torch.Tensor, reps: int) -> list[float]:
    t = torch.tensor(500)
    times = []
    with torch.inference_mode():
        net(x, t)
        for _ in range(reps):
            t0 = time.perf_counter()
            net(x, t)
            times.append(time.perf_counter() - t0)
    return times


class StubUNet(nn.Module):
    """Stands in for the UNet at (almost) no cost: same call signature, returns ``.sample``."""

    def forward(self, x: torch.Tensor, t: Any, class_labels: Any = None) -> types.SimpleNamespace:
        return types.SimpleNamespace(sample=x * 0.5)


# --- the two loops ----------------------------------------------------------------------------------------------


@dataclass
class Pair:
    """One comparison: ``ours`` and ``theirs`` each prepare outside the timer and return a timed callable."""

    name: str
    steps: int
    ours: Callable[[], Callable[[], torch.Tensor]]
    theirs: Callable[[], Callable[[], torch.Tensor]]


def diffusers_loop(net: nn.Module, sched: Any, x_T: torch.Tensor, steps: int) -> Callable[[], torch.Tensor]:
    sched.set_timesteps(steps)  # also resets DPM-Solver's multistep state
    x_init = x_T * sched.init_noise_sigma

    def run() -> torch.Tensor:
        x = x_init
        for t in sched.timesteps:
            out = net(x, t).sample
            x = sched.step(out, t, x).prev_sample
        return x

    return run


def make_pairs(net: nn.Module, x_T: torch.Tensor, steps_list: list[int]) -> list[Pair]:
    pairs = []
    for kind in ("ddim", "dpmpp_2m"):
        for steps in steps_list:
            if kind == "ddim":
                sched = DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=True)
            else:
                sched = DPMSolverMultistepScheduler(**SCHEDULE, algorithm_type="dpmsolver++", solver_order=2)
            pairs.append(Pair(kind, steps, _ours(kind, net, sched, x_T, steps), _theirs(net, sched, x_T, steps)))
    return pairs


def _theirs(net: nn.Module, sched: Any, x_T: torch.Tensor, steps: int) -> Callable[[], Callable[[], torch.Tensor]]:
    return lambda: diffusers_loop(net, sched, x_T, steps)


def _ours(
    kind: str, net: nn.Module, sched: Any, x_T: torch.Tensor, steps: int
) -> Callable[[], Callable[[], torch.Tensor]]:
    """Our sampler on the same network through the diffusers adapter, on the same timesteps as ``sched``."""
    den = from_diffusers(net, sched.config)
    if kind == "ddim":
        cfg = sched.config
        sigmas = den.schedule.sigmas(steps, spacing=cfg.timestep_spacing, steps_offset=cfg.steps_offset)
        sampler = sample_ddim
    else:
        sched.set_timesteps(steps)  # DPM-Solver's timesteps: diffsight takes the scheduler's own
        sigmas = torch.cat([den.schedule.train_sigmas[sched.timesteps], torch.zeros(1, dtype=torch.float64)])
        sampler = sample_dpmpp_2m
    x_init = (x_T * math.sqrt(1.0 + float(sigmas[0]) ** 2)).to(torch.float32)  # x = x_t / alpha at sigma_0
    return lambda: lambda: sampler(den, x_init, sigmas)


def timed(prepare: Callable[[], Callable[[], torch.Tensor]]) -> tuple[float, float, torch.Tensor]:
    """(wall seconds, process CPU seconds, output) of one run; ``prepare`` runs outside the timer."""
    run = prepare()
    gc.collect()
    with torch.inference_mode():
        c0, t0 = time.process_time(), time.perf_counter()
        out = run()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, out


@dataclass
class CaseResult:
    sampler: str
    steps: int
    nfe: int
    ours_s: list[float] = field(default_factory=list)  # wall seconds, one per repetition
    diffusers_s: list[float] = field(default_factory=list)
    ours_cpu_s: list[float] = field(default_factory=list)  # process CPU seconds, same runs
    diffusers_cpu_s: list[float] = field(default_factory=list)
    rel_err: float = float("nan")

    def summary(self, flops_per_nfe: int, peak_gflops: float) -> dict[str, Any]:
        ob, om = min(self.ours_s), statistics.median(self.ours_s)
        db, dm = min(self.diffusers_s), statistics.median(self.diffusers_s)
        paired = statistics.median(o / d for o, d in zip(self.ours_s, self.diffusers_s, strict=True))
        cpu_paired = statistics.median(o / d for o, d in zip(self.ours_cpu_s, self.diffusers_cpu_s, strict=True))
        flops = flops_per_nfe * self.nfe
        return {
            "ours_best_s": ob,
            "ours_median_s": om,
            "diffusers_best_s": db,
            "diffusers_median_s": dm,
            "ratio_median": om / dm,
            "ratio_best": ob / db,
            "ratio_paired_median": paired,
            "cpu_ratio_median": statistics.median(self.ours_cpu_s) / statistics.median(self.diffusers_cpu_s),
            "cpu_ratio_paired_median": cpu_paired,
            "ours_gflops_best": flops / ob / 1e9,
            "diffusers_gflops_best": flops / db / 1e9,
            "ours_pct_of_matmul": 100 * flops / ob / 1e9 / peak_gflops,
            "diffusers_pct_of_matmul": 100 * flops / db / 1e9 / peak_gflops,
        }


def pooled_ratio(ours: list[float], theirs: list[float]) -> dict[str, float]:
    """Geometric mean of paired ratios ours[i] / theirs[i] with a ~95% interval (mean log +- 2 standard errors)."""
    logs = [math.log(o / d) for o, d in zip(ours, theirs, strict=True)]
    mean = statistics.fmean(logs)
    half = 2 * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else float("nan")
    return {"ratio": math.exp(mean), "low": math.exp(mean - half), "high": math.exp(mean + half), "n": len(logs)}


def run_interleaved(pairs: list[Pair], reps: int, warmup: list[Pair]) -> list[CaseResult]:
    # Warm-up: one short run of each loop (oneDNN primitive caches, allocator, first-call paths).
    for p in warmup:
        timed(p.ours)
        timed(p.theirs)
    results = [CaseResult(p.name, p.steps, p.steps) for p in pairs]
    for rep in range(reps):
        for p, res in zip(pairs, results, strict=True):
            arms = [("ours", p.ours), ("diffusers", p.theirs)]
            if rep % 2:
                arms.reverse()
            outs = {}
            for arm, prepare in arms:
                wall, cpu, outs[arm] = timed(prepare)
                (res.ours_s if arm == "ours" else res.diffusers_s).append(wall)
                (res.ours_cpu_s if arm == "ours" else res.diffusers_cpu_s).append(cpu)
            if rep == 0:
                ref = outs["diffusers"].double()
                res.rel_err = float((outs["ours"].double() - ref).norm() / ref.norm().clamp_min(1e-300))
        print(f"  repetition {rep + 1}/{reps} done, load average {load_average()}", flush=True)
    return results


def loop_overhead(x_T: torch.Tensor, steps: int, reps: int) -> dict[str, dict[str, float]]:
    """Microseconds per step of each loop around a stub network (best of ``reps``)."""
    stub = StubUNet()
    pairs = make_pairs(stub, x_T, [steps])
    out: dict[str, dict[str, float]] = {}
    for p in pairs:
        timed(p.ours)  # warm-up
        timed(p.theirs)
        ours = min(timed(p.ours)[0] for _ in range(reps))
        theirs = min(timed(p.theirs)[0] for _ in range(reps))
        out[p.name] = {
            "steps": steps,
            "ours_us_per_step": 1e6 * ours / steps,
            "diffusers_us_per_step": 1e6 * theirs / steps,
        }
    return out


# --- main -------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: batch 8, 5 steps, 1 repetition, small calibration")
    ap.add_argument("--size", type=int, default=8, choices=(8, 16), help="image side (default 8)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 64; 8 with --quick)")
    ap.add_argument("--steps", type=int, nargs="+", default=None, help="step counts (default 20 50; 5 with --quick)")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per loop (default 5 at 8x8, 3 at 16x16)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads. Default: 1 with --quick; otherwise torch's own choice, unless the\n"
        "1-minute load average already reaches the CPU count, then 1 (OpenMP threads on an\n"
        "oversubscribed box stall at every barrier; see BENCHMARKS.md)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="write all results to this JSON file")
    args = ap.parse_args(argv)
    if args.batch is None:
        args.batch = 8 if args.quick else 64
    if args.steps is None:
        args.steps = [5] if args.quick else [20, 50]
    if args.reps is None:
        args.reps = 1 if args.quick else (5 if args.size == 8 else 3)
    if args.batch < 1 or args.reps < 1 or any(s < 1 or s > SCHEDULE["num_train_timesteps"] for s in args.steps):
        ap.error("need batch >= 1, reps >= 1 and every step count in [1, 1000]")
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
        "diffusers": diffusers.__version__,
        "diffsight": getattr(diffsight, "__version__", "?"),
        "load_average_start": load_average(),
    }
    print(f"diffsight sampling benchmark  ({'quick' if args.quick else 'full'} run)")
    print(
        f"machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, torch threads {machine['torch_threads']} "
        f"({threads_note}); "
        f"python {machine['python']}, torch {machine['torch']}, diffusers {machine['diffusers']}"
    )
    print(f"load average (1, 5, 15 min): {machine['load_average_start']}")

    n_mm, reps_mm = (1024, 3) if args.quick else (2048, 5)
    calib = matmul_calibration(n_mm, reps_mm)
    peak = calib["gflops_best"]
    print(
        f"\ncalibration: {n_mm}^3 float32 matmul, best of {reps_mm}: {calib['gflops_best']:.1f} GFLOP/s "
        f"(median {calib['gflops_median']:.1f})"
    )

    unet = build_unet(args.size, args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    x_T = torch.randn(args.batch, 1, args.size, args.size, generator=g)
    n_params = sum(p.numel() for p in unet.parameters())
    flops = count_flops(unet, x_T)
    fwd = time_forward(unet, x_T, 3 if args.quick else 9)
    model = {
        "size": args.size,
        "params": n_params,
        "batch": args.batch,
        "flops_per_forward": flops,
        "mflop_per_image": flops / args.batch / 1e6,
        "forward_best_s": min(fwd),
        "forward_median_s": statistics.median(fwd),
        "forward_gflops_best": flops / min(fwd) / 1e9,
    }
    print(
        f"\nnetwork: UNet2DModel {args.size}x{args.size}x1, {n_params / 1e6:.2f} M params, "
        f"{model['mflop_per_image']:.1f} MFLOP/image forward ({flops / 1e9:.2f} GFLOP at batch {args.batch})"
    )
    print(
        f"bare forward at batch {args.batch}: best {1e3 * min(fwd):.1f} ms, "
        f"median {1e3 * model['forward_median_s']:.1f} ms -> {model['forward_gflops_best']:.1f} GFLOP/s "
        f"({100 * model['forward_gflops_best'] / peak:.0f}% of matmul)"
    )

    # Move everything alive now (torch, diffusers, the model) out of the collector's reach, so the
    # gc.collect() before each timed run is cheap (it took 0.2-0.4 s per call without this).
    gc.collect()
    gc.freeze()

    oh_steps = 20 if args.quick else 200
    overhead = loop_overhead(x_T, oh_steps, 1 if args.quick else 5)
    print(f"\nloop overhead around a stub network ({oh_steps} steps, batch {args.batch}, best of runs), us per step:")
    for name, o in overhead.items():
        print(f"  {name:9s} ours {o['ours_us_per_step']:7.1f}   diffusers {o['diffusers_us_per_step']:7.1f}")

    print(
        f"\nmain comparison: batch {args.batch}, steps {args.steps}, {args.reps} interleaved repetition(s) "
        f"after a warm-up"
    )
    pairs = make_pairs(unet, x_T, args.steps)
    warmup = make_pairs(unet, x_T, [min(5, *args.steps)])
    results = run_interleaved(pairs, args.reps, warmup)
    load_end = load_average()

    rows = []
    head = (
        f"{'sampler':9s} {'NFE':>4s} | {'diffusers s best/med':>20s} | {'ours s best/med':>15s} | "
        f"{'wall ratio med/best/paired':>26s} | {'CPU ratio':>9s} | {'GFLOP/s ours/diff':>17s} | {'% matmul':>8s} | "
        "rel.err"
    )
    print("\n" + head)
    print("-" * len(head))
    for r in results:
        s = r.summary(flops, peak)
        rows.append({**asdict(r), **s})
        print(
            f"{r.sampler:9s} {r.nfe:4d} | {s['diffusers_best_s']:9.3f} /{s['diffusers_median_s']:8.3f} | "
            f"{s['ours_best_s']:7.3f} /{s['ours_median_s']:6.3f} | {s['ratio_median']:8.3f} /{s['ratio_best']:6.3f} /"
            f"{s['ratio_paired_median']:6.3f} | {s['cpu_ratio_paired_median']:9.3f} | "
            f"{s['ours_gflops_best']:7.1f} / {s['diffusers_gflops_best']:7.1f} | {s['ours_pct_of_matmul']:7.0f}% | "
            f"{r.rel_err:.1e}"
        )
    worst_wall = max(row["ratio_paired_median"] for row in rows)
    worst_cpu = max(row["cpu_ratio_paired_median"] for row in rows)
    pooled = {
        "wall": pooled_ratio([v for r in results for v in r.ours_s], [v for r in results for v in r.diffusers_s]),
        "cpu": pooled_ratio(
            [v for r in results for v in r.ours_cpu_s], [v for r in results for v in r.diffusers_cpu_s]
        ),
    }
    # What the stub measurement predicts: the extra loop cost per step over one network forward.
    predicted = {
        name: 1 + (o["ours_us_per_step"] - o["diffusers_us_per_step"]) * 1e-6 / model["forward_median_s"]
        for name, o in overhead.items()
    }
    print(
        "\nwall ratio = ours/diffusers on medians / on bests / median of the per-repetition ratios (paired);\n"
        "CPU ratio = median of the per-repetition ratios of process CPU time (less sensitive to other jobs);\n"
        f"% matmul = ours' GFLOP/s (best run) / calibration {peak:.1f} GFLOP/s; "
        "rel.err = |ours - diffusers| / |diffusers|"
    )
    pw, pc = pooled["wall"], pooled["cpu"]
    if args.quick:
        verdict = "quick smoke run: too short to judge"
    else:
        verdict = "goal met" if pw["ratio"] <= RATIO_GOAL else "goal NOT met"
    print(f"\nratio ours/diffusers (goal <= {RATIO_GOAL}):")
    print(
        f"  pooled over all {pw['n']} pairs (geometric mean, ~95% interval): wall {pw['ratio']:.3f} "
        f"[{pw['low']:.3f}, {pw['high']:.3f}], CPU {pc['ratio']:.3f} [{pc['low']:.3f}, {pc['high']:.3f}] -> {verdict}"
    )
    print(f"  worst single case (median of paired ratios): wall {worst_wall:.3f}, CPU {worst_cpu:.3f}")
    print(
        "  predicted from the stub overhead and the bare forward: "
        + ", ".join(f"{name} {v:.3f}" for name, v in predicted.items())
    )
    print(f"load average at the end: {load_end}; wall time {time.perf_counter() - started:.0f} s")
    cores = machine["logical_cpus"] or 1
    if load_end and load_end[0] > cores:
        print(f"note: load average {load_end[0]} exceeds {cores} CPUs; other jobs shared the machine, expect noise")

    if args.json is not None:
        report = {
            "benchmark": "sampling",
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": {**machine, "load_average_end": load_end},
            "calibration": calib,
            "model": model,
            "loop_overhead_us_per_step": overhead,
            "ratio_goal": RATIO_GOAL,
            "pooled_ratio": pooled,
            "predicted_ratio_from_overhead": predicted,
            "cases": rows,
            "wall_s": time.perf_counter() - started,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
