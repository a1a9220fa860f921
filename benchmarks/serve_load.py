"""Load benchmark of ``diffsight serve``: many concurrent streamed generations of the shipped ``digits`` model.

What it measures (``make bench`` runs it with the defaults):

1. **Idle time to first step.** With nothing else running on the server, ``--idle`` streamed generations one
   after another (DPM-Solver++ 2M, 20 steps): the time from sending the request to receiving the first ``step``
   event (p50, max). Goal: under 150 ms. Beside it, in this process, the time of one plain ``record_trace`` of
   the same run (the baseline: the whole sampling without HTTP), and one network evaluation.
2. **Load.** ``--clients`` concurrent clients (asyncio, one connection each), each running ``--per-client``
   streamed generations one after another (different seeds), against one server with ``--workers`` threads
   and ``--max-queue`` admitted requests. Reported: the count of responses by status (any 5xx other than the
   designed 503 is a failure), streams that ended in an ``error`` event, p50/p99 latency (request to ``final``
   event) and time to first step, generations per second, and the server's resident memory (VmRSS) before
   and after the load.

The server is a separate process (``python -m diffsight serve``) on a free loopback port; nothing leaves this
machine, and every loop is bounded in count and time.

Usage::

    .venv/bin/python benchmarks/serve_load.py              # 32 clients x 20 generations, ~2-4 minutes on 2 cores
    .venv/bin/python benchmarks/serve_load.py --quick      # 4 clients x 3 generations
    .venv/bin/python benchmarks/serve_load.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

TTFS_GOAL_MS = 150.0
RUN_LIMIT_S = 900.0  # the load phase stops by itself after this long


@dataclass
class Outcome:
    status: int
    latency: float | None = None
    first_step: float | None = None
    steps: int = 0
    ended: str = ""  # "final", "error", or the transport error's name


@dataclass
class Report:
    machine: str
    clients: int
    per_client: int
    steps: int
    workers: int
    max_queue: int
    idle_first_step_ms: list[float] = field(default_factory=list)
    baseline_trace_ms: float = 0.0
    baseline_nfe_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    error_events: int = 0
    unexpected_5xx: int = 0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    first_step_p50_ms: float = 0.0
    first_step_p99_ms: float = 0.0
    generations_per_s: float = 0.0
    wall_s: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def start_server(workdir: Path, workers: int, max_queue: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    command = [sys.executable, "-m", "diffsight", "serve", "--model", "digits", "--port", str(port)]
    command += ["--artifacts", str(workdir / "artifacts"), "--workers", str(workers), "--max-queue", str(max_queue)]
    command += ["--timeout", "600", "--no-access-log", "--log-level", "warning"]
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 180
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {(workdir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server was not ready after 180 s")


async def stream_one(client: httpx.AsyncClient, body: dict[str, Any]) -> Outcome:
    sent = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/generate/stream", json=body) as res:
            if res.status_code != 200:
                await res.aread()
                return Outcome(res.status_code, ended="refused")
            out = Outcome(200)
            event = ""
            async for line in res.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line == "" and event:
                    if event == "step":
                        out.steps += 1
                        if out.first_step is None:
                            out.first_step = time.perf_counter() - sent
                    elif event in ("final", "error"):
                        out.ended = event
                        out.latency = time.perf_counter() - sent
                    event = ""
            return out
    except httpx.HTTPError as err:
        return Outcome(0, ended=type(err).__name__)


async def idle_first_steps(url: str, count: int, steps: int) -> list[float]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await stream_one(client, {"model": "digits", "steps": steps, "seed": 10_000})  # connection set up
        found = []
        for i in range(count):
            out = await stream_one(client, {"model": "digits", "steps": steps, "seed": 10_001 + i})
            if out.first_step is not None:
                found.append(out.first_step * 1000)
        return found


async def load(url: str, clients: int, per_client: int, steps: int) -> tuple[list[Outcome], float]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    deadline = time.monotonic() + RUN_LIMIT_S

    async def client_loop(c: int, client: httpx.AsyncClient) -> list[Outcome]:
        found = []
        for i in range(per_client):
            if time.monotonic() > deadline:
                break
            found.append(await stream_one(client, {"model": "digits", "steps": steps, "seed": c * 1000 + i}))
        return found

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=RUN_LIMIT_S, limits=limits) as client:
        results = await asyncio.gather(*(client_loop(c, client) for c in range(clients)))
    return [o for r in results for o in r], time.perf_counter() - start


def baseline(steps: int) -> tuple[float, float]:
    """(ms for one record_trace of the benchmark's run, ms for one network evaluation), in this process."""
    import torch

    from diffsight.models import load_model
    from diffsight.trace import record_trace

    torch.set_num_threads(1)
    model = load_model("digits")
    with torch.no_grad():
        record_trace(model, steps=2)
        times = []
        for seed in range(5):
            t = time.perf_counter()
            record_trace(model, seed=seed, steps=steps)
            times.append(time.perf_counter() - t)
        x = torch.randn(1, 1, 8, 8)
        sigma = torch.full((1,), 1.0)
        t = time.perf_counter()
        for _ in range(50):
            model.denoiser(x, sigma, torch.full((1,), 10))
        nfe = (time.perf_counter() - t) / 50
    return statistics.median(times) * 1000, nfe * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--idle", type=int, default=10, help="idle streamed generations for the first-step time")
    parser.add_argument("--quick", action="store_true", help="4 clients x 3 generations, 3 idle runs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.clients, args.per_client, args.idle = 4, 3, 3
    load_avg = os.getloadavg()[0]
    report = Report(
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load_avg:.1f} at start",
        clients=args.clients,
        per_client=args.per_client,
        steps=args.steps,
        workers=args.workers,
        max_queue=args.max_queue,
    )
    report.baseline_trace_ms, report.baseline_nfe_ms = baseline(args.steps)
    with tempfile.TemporaryDirectory(prefix="diffsight-serve-bench-") as tmp:
        proc, url = start_server(Path(tmp), args.workers, args.max_queue)
        try:
            report.rss_before_mb = _rss_mb(proc.pid)
            report.idle_first_step_ms = asyncio.run(idle_first_steps(url, args.idle, args.steps))
            outcomes, wall = asyncio.run(load(url, args.clients, args.per_client, args.steps))
            report.rss_after_mb = _rss_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    for o in outcomes:
        report.statuses[str(o.status)] = report.statuses.get(str(o.status), 0) + 1
    report.error_events = sum(o.ended == "error" for o in outcomes)
    report.unexpected_5xx = sum(o.status >= 500 and o.status != 503 for o in outcomes) + sum(
        o.status == 0 for o in outcomes
    )
    done = [o for o in outcomes if o.ended == "final"]
    latencies = [o.latency * 1000 for o in done if o.latency is not None]
    firsts = [o.first_step * 1000 for o in done if o.first_step is not None]
    report.latency_p50_ms, report.latency_p99_ms = _percentile(latencies, 50), _percentile(latencies, 99)
    report.first_step_p50_ms, report.first_step_p99_ms = _percentile(firsts, 50), _percentile(firsts, 99)
    report.wall_s = wall
    report.generations_per_s = len(done) / wall if wall > 0 else float("nan")

    idle = report.idle_first_step_ms
    idle_p50 = statistics.median(idle) if idle else float("nan")
    print(f"diffsight serve load benchmark ({report.machine})")
    print(f"digits, dpmpp_2m {args.steps} steps, server: {args.workers} workers, max queue {args.max_queue}")
    print()
    print("| measure | value |")
    print("|---|---|")
    worst = max(idle or [float("nan")])
    print(f"| idle time to first streamed step, p50 (max) of {len(idle)} | {idle_p50:.1f} ms ({worst:.1f} ms) |")
    print(f"| goal | < {TTFS_GOAL_MS:.0f} ms: {'met' if idle_p50 < TTFS_GOAL_MS else 'NOT met'} |")
    print(
        f"| baseline in-process record_trace, whole run (one network evaluation) | {report.baseline_trace_ms:.1f} ms "
        f"({report.baseline_nfe_ms:.2f} ms) |"
    )
    print(f"| load: clients x generations | {args.clients} x {args.per_client} = {len(outcomes)} streams |")
    print(f"| responses by status | {json.dumps(report.statuses)} |")
    print(f"| 5xx other than the designed 503 (and transport errors) | {report.unexpected_5xx} |")
    print(f"| streams ending in an error event | {report.error_events} |")
    print(f"| latency to final event, p50 / p99 | {report.latency_p50_ms:.0f} / {report.latency_p99_ms:.0f} ms |")
    print(
        f"| time to first step under load, p50 / p99 | {report.first_step_p50_ms:.0f} / "
        f"{report.first_step_p99_ms:.0f} ms |"
    )
    print(f"| throughput | {report.generations_per_s:.2f} generations/s ({report.wall_s:.1f} s wall) |")
    print(f"| server RSS before / after load | {report.rss_before_mb:.0f} / {report.rss_after_mb:.0f} MB |")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    if report.unexpected_5xx:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
