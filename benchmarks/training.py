"""Training-throughput benchmark: diffsight's trainer against a plain diffusers loop on the same UNet, same run.

The baseline is the loop of diffusers' unconditional training example, written plainly: draw a batch, noise it
with ``DDPMScheduler.add_noise``, ``F.mse_loss(unet(noisy, t).sample, noise)``, ``backward``, ``AdamW.step``.
diffsight's arm is ``Trainer.train_step`` itself, everything a real run does per step: the seeded data order,
the checkpointable noise generator, EDM preconditioning and loss weighting (or the VP eps loss with
``--kind vp``), Accelerate's backward, gradient clipping, the learning-rate warm-up and the EMA update.

Both arms get the same network (``small`` preset, identical initial weights), the same data and batch size.
They run in interleaved blocks of ``--block`` steps, the order alternating per repetition, after a warm-up;
the headline is the pooled ratio of images/s (ours / diffusers; geometric mean of the per-repetition ratios
with a ~95% interval). Goal (issue 3): >= 0.95.

Usage::

    .venv/bin/python benchmarks/training.py              # digits 8x8, 1-2 minutes on 2 cores
    .venv/bin/python benchmarks/training.py --size 16    # shapes 16x16 RGB
    .venv/bin/python benchmarks/training.py --quick --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import diffsight
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import diffsight

import diffusers
from diffusers import DDPMScheduler

from diffsight.models.unet import build_unet
from diffsight.training import Trainer
from diffsight.training.config import config_from_dict
from sampling import choose_threads, cpu_model, load_average, pooled_ratio  # the sampling benchmark's helpers

RATIO_GOAL = 0.95


def make_config(args: argparse.Namespace, kind: str) -> Any:
    data = {"name": "digits"} if args.size == 8 else {"name": "shapes", "n": 2000, "resolution": 16}
    return config_from_dict(
        {
            "name": f"bench-{kind}",
            "data": data,
            "model": {"preset": "small", "kind": kind, "conditional": False},
            "train": {"batch_size": args.batch, "steps": 10**9, "lr": 2e-4, "seed": args.seed, "sample_every": 0},
        }
    )


def ours_arm(args: argparse.Namespace, kind: str, run_dir: Path) -> tuple[Callable[[int], None], Trainer]:
    trainer = Trainer(make_config(args, kind), run_dir, progress=False)
    step = [0]

    def run(n_steps: int) -> None:
        for _ in range(n_steps):
            trainer.train_step(step[0])
            step[0] += 1

    return run, trainer


def diffusers_arm(args: argparse.Namespace, unet_config: dict[str, Any], data: torch.Tensor) -> Callable[[int], None]:
    torch.manual_seed(args.seed)
    unet = build_unet(unet_config)  # same config and seed as ours: identical initial weights
    unet.train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-4)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    g = torch.Generator().manual_seed(args.seed)

    def run(n_steps: int) -> None:
        for _ in range(n_steps):
            index = torch.randint(0, data.shape[0], (args.batch,), generator=g)
            clean = data[index]
            noise = torch.randn(clean.shape, generator=g)
            t = torch.randint(0, 1000, (args.batch,), generator=g)
            noisy = scheduler.add_noise(clean, noise, t)
            loss = F.mse_loss(unet(noisy, t).sample, noise)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return run


def timed(run: Callable[[int], None], steps: int) -> float:
    t0 = time.perf_counter()
    run(steps)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 steps per block, 2 repetitions")
    ap.add_argument("--size", type=int, default=8, choices=(8, 16), help="8: digits 8x8x1; 16: shapes 16x16x3")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--block", type=int, default=None, help="steps per timed block (default 10; 2 with --quick)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 7; 2 with --quick)")
    ap.add_argument("--kinds", nargs="+", default=["edm", "vp"], choices=("edm", "vp"), help="our arms")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = ap.parse_args(argv)
    args.block = args.block or (2 if args.quick else 10)
    args.reps = args.reps or (2 if args.quick else 7)
    threads_note = choose_threads(args)
    machine = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "threads_choice": threads_note,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "diffsight": diffsight.__version__,
        "load_average_start": load_average(),
    }
    print("diffsight training benchmark" + (" (quick)" if args.quick else ""))
    print(
        f"machine: {machine['cpu']}, {machine['logical_cpus']} CPUs, torch threads {machine['torch_threads']} "
        f"({threads_note}); load average {machine['load_average_start']}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        arms: dict[str, Callable[[int], None]] = {}
        trainer = None
        for kind in args.kinds:
            arms[f"diffsight {kind}"], trainer = ours_arm(args, kind, Path(tmp) / kind)
        assert trainer is not None
        data = trainer.data.samples
        unet_config = dict(trainer.network.config)
        arms["diffusers"] = diffusers_arm(args, unet_config, data)
        params = sum(p.numel() for p in trainer.network.parameters())
        print(
            f"network: UNet2DModel small preset, {params / 1e6:.2f} M parameters, data {trainer.data.name} "
            f"{tuple(data.shape[1:])}, batch {args.batch}, {args.block} steps per block, {args.reps} repetitions"
        )
        for run in arms.values():  # warm-up
            timed(run, 2)
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        names = list(arms)
        for rep in range(args.reps):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                seconds[name].append(timed(arms[name], args.block))
            print(f"  repetition {rep + 1}/{args.reps}, load average {load_average()}", flush=True)

    images = args.block * args.batch
    results: dict[str, Any] = {}
    print(f"\n{'arm':16s} {'img/s best':>10s} {'img/s median':>12s}")
    for name, secs in seconds.items():
        results[name] = {
            "seconds": secs,
            "images_per_s_best": images / min(secs),
            "images_per_s_median": images / statistics.median(secs),
        }
        print(f"{name:16s} {results[name]['images_per_s_best']:10.1f} {results[name]['images_per_s_median']:12.1f}")
    print(f"\nthroughput ratio ours / diffusers (pooled over repetitions; goal >= {RATIO_GOAL}):")
    ratios = {}
    for kind in args.kinds:
        # images/s ratio = diffusers seconds / our seconds, per repetition
        pooled = pooled_ratio(seconds["diffusers"], seconds[f"diffsight {kind}"])
        ratios[kind] = pooled
        verdict = "meets" if pooled["ratio"] >= RATIO_GOAL else "BELOW"
        print(f"  {kind}: {pooled['ratio']:.3f} [{pooled['low']:.3f}, {pooled['high']:.3f}]  {verdict} the goal")
    machine["load_average_end"] = load_average()
    print(f"load average at the end: {machine['load_average_end']}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "arms": results,
                    "ratios": ratios,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
