"""Sampling throughput of a model on one device: images per second at several batch sizes (issue 9, GPU check).

Run by ``benchmarks/gpu.sh`` after it trains the shapes model; runs on a CPU too (smaller default batches), so
the script itself is tested here. Each batch size is timed over ``--repeats`` full DPM-Solver++ runs after one
warm-up run; the device's name is printed with the figures, because a GPU's numbers only mean something with
its card named.

Usage::

    .venv/bin/python benchmarks/gpu_throughput.py MODEL [--steps 20] [--batches 64,256,1024] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from diffsight.models import load_model  # noqa: E402
from diffsight.sampling import generate_samples  # noqa: E402


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="model folder or shipped model name")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batches", default="", help="comma-separated batch sizes (default: by device)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.model, device=device)
    batches = [int(b) for b in args.batches.split(",") if b] or ([64, 256, 1024] if device.type == "cuda" else [16])
    rows = []
    for batch in batches:
        gen = torch.Generator().manual_seed(0)

        def run(batch: int = batch, gen: torch.Generator = gen) -> None:
            shape = model.event_shape
            generate_samples(model.denoiser, shape, batch, steps=args.steps, generator=gen, batch_size=batch)

        with torch.no_grad():
            run()  # warm-up: kernels, allocator
            synchronize(device)
            start = time.perf_counter()
            for _ in range(args.repeats):
                run()
            synchronize(device)
        seconds = (time.perf_counter() - start) / args.repeats
        rows.append({"batch": batch, "seconds": seconds, "images_per_s": batch / seconds})
        rate = batch / seconds
        print(f"{model.name} on {device_name(device)}: batch {batch:5d}, {args.steps} steps: {rate:9.1f} images/s")
    if args.json is not None:
        args.json.write_text(json.dumps({"model": model.name, "device": device_name(device), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
