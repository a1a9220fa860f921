"""The training loop, on Hugging Face Accelerate: the same code on one CPU, one GPU or many processes.

What makes a run reproducible and resumable bit for bit (DESIGN.md, "Artifacts"):

- the data order is a pure function of (seed, step) (:mod:`diffsight.training.data_order`);
- every random draw of the loss (noise levels, noise, label dropout) comes from one dedicated generator whose
  state is checkpointed; it draws for the *global* batch on every process, each process keeps its slice, so the
  draws do not depend on the number of processes;
- the network's initial weights come from the seed; weights, EMA, optimizer moments and the generator are saved
  atomically (:mod:`diffsight.training.checkpoint`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffsight.data import TrainingData, load_data
from diffsight.data.image_io import save_grid
from diffsight.errors import DiffsightError
from diffsight.models.discrete import UNetBackbone, from_diffusers
from diffsight.models.folder import save_model_folder, vp_scheduler_config
from diffsight.models.mlp import SigmaMLP
from diffsight.models.precond import EDMPrecond
from diffsight.models.unet import C_NOISE_SCALE, UNetEDMBackbone, build_unet, unet_config
from diffsight.models.vp_schedule import DiscreteVPSchedule, make_betas
from diffsight.sampling.generate import generate_samples
from diffsight.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from diffsight.training.config import TrainConfig
from diffsight.training.data_order import DataOrder
from diffsight.training.distributed import launched
from diffsight.training.ema import EMA
from diffsight.training.loss import edm_loss, edm_sigmas, vp_loss

__all__ = ["TrainResult", "Trainer", "train"]

# Settings that may change between a run and its resumption without changing the result.
_RESUME_FREE = {
    "steps",
    "checkpoint_every",
    "keep_checkpoints",
    "sample_every",
    "sample_n",
    "sample_steps",
    "log_every",
    "threads",
}


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    model_dir: Path
    steps: int
    final_loss: float
    wall_time_s: float
    images_per_s: float


def machine_description() -> str:
    threads = torch.get_num_threads()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = f"{line.split(':', 1)[1].strip()}, {platform.machine()}"
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__} with {threads} thread(s){gpu}"


def build_network(config: TrainConfig, data: TrainingData) -> tuple[nn.Module, str, int]:
    """(network, network kind "unet"/"mlp", number of classes) for this config and data."""
    m = config.model
    num_classes = data.num_classes if m.conditional and data.labels is not None else 0
    network = m.network if m.network != "auto" else ("unet" if data.is_image else "mlp")
    if network == "unet":
        if not data.is_image:
            raise DiffsightError("a UNet needs image data (N, C, H, W); use network = 'mlp' for vectors")
        _, channels, height, width = data.samples.shape
        if height != width:
            raise DiffsightError(f"images must be square for the UNet, got {height}x{width}; set a resolution")
        cfg = unet_config(m.preset, in_channels=channels, resolution=height, num_classes=num_classes, overrides=m.unet)
        return build_unet(cfg), "unet", num_classes
    if data.is_image:
        raise DiffsightError("the MLP takes vectors (N, D); use network = 'unet' for images")
    if m.kind != "edm":
        raise DiffsightError("vector models train with kind = 'edm' (the VP losses are for diffusers UNets)")
    return SigmaMLP(dim=data.samples.shape[1], num_classes=num_classes, **m.mlp), "mlp", num_classes


class Trainer:
    """One training run writing into ``run_dir``.

    Layout: ``checkpoints/step-XXXXXXXX/``, ``samples/step-XXXXXXXX.png``, ``metrics.jsonl``, ``config.json`` and,
    at the end, the model folder ``model/`` (EMA weights, diffusers layout, ``diffsight.json``, model card).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        data: TrainingData | None = None,
        progress: bool = True,
        command: str | None = None,
    ) -> None:
        from accelerate import Accelerator

        config.validate()
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.command = command
        t = config.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        # Accelerate only forms a CPU process group (gloo) when told cpu=True; without it, `torchrun` or
        # `accelerate launch` on a machine with no GPU would silently run N independent copies of the run.
        cpu_group = launched() and not torch.cuda.is_available()
        self.accelerator = Accelerator(mixed_precision=t.mixed_precision, cpu=cpu_group)
        world = self.accelerator.num_processes
        if t.batch_size % (world * t.grad_accum) != 0:
            raise DiffsightError(
                f"batch_size {t.batch_size} must be divisible by processes x grad_accum = {world * t.grad_accum}"
            )
        self.data = (
            data
            if data is not None
            else load_data(
                config.data.name,
                resolution=config.data.resolution,
                channels=config.data.channels,
                n=config.data.n,
                seed=config.data.seed,
                options=config.data.options,
            )
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(t.seed)
            network, self.network_kind, self.num_classes = build_network(config, self.data)
        self.null_class = self.num_classes if self.num_classes > 0 else None
        self.ema = EMA(network, t.ema_decay)
        # foreach=True: the multi-tensor AdamW; torch only picks it by default on CUDA, and on a CPU the per-tensor
        # loop costs ~3% of a small model's step in Python overhead (benchmarks/training.py).
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=t.lr, betas=tuple(t.adam_betas), weight_decay=t.weight_decay, foreach=True
        )
        self.model, self.optimizer = self.accelerator.prepare(network, optimizer)
        self.network = self.accelerator.unwrap_model(self.model)
        self.ema.model.to(self.accelerator.device)  # prepare() moved the network to the GPU; the average follows it
        self.fingerprint = self.data.fingerprint()  # hashed once, recorded in every checkpoint
        self.order = DataOrder(len(self.data), t.batch_size, t.seed)
        self.generator = torch.Generator().manual_seed(t.seed + 7_919)  # noise levels, noise, label dropout
        self.samples_cpu = self.data.samples
        self.labels_cpu = self.data.labels if self.num_classes > 0 else None
        if config.model.kind == "vp":
            self.schedule = DiscreteVPSchedule(make_betas(config.model.beta_schedule, config.model.num_train_timesteps))
            self.loss_model: Any = UNetBackbone(self.model)
        else:
            self.schedule = None
            self.loss_model = self._edm(self.model)
        self.step = 0
        self.elapsed = 0.0  # training seconds accumulated over all sessions of this run

    # -- the pieces ------------------------------------------------------------------------------------------
    def _edm(self, network: nn.Module) -> EDMPrecond:
        m = self.config.model
        backbone = network if self.network_kind == "mlp" else UNetEDMBackbone(network, c_noise_scale=C_NOISE_SCALE)
        return EDMPrecond(backbone, sigma_data=m.sigma_data, sigma_min=m.sigma_min, sigma_max=m.sigma_max)

    def ema_denoiser(self) -> nn.Module:
        """The denoiser made of the EMA weights (what the model folder will hold)."""
        if self.schedule is None:
            return self._edm(self.ema.model).eval()
        return from_diffusers(self.ema.model, self._scheduler_config()).eval()

    def _scheduler_config(self) -> dict[str, Any]:
        m = self.config.model
        return vp_scheduler_config(
            num_train_timesteps=m.num_train_timesteps, beta_schedule=m.beta_schedule, prediction_type=m.prediction_type
        )

    def _draws(self, batch: int) -> dict[str, torch.Tensor]:
        """Every random draw of one optimizer step, for the global batch, in a fixed order."""
        g = self.generator
        shape = (batch, *self.data.event_shape)
        if self.schedule is None:
            level = torch.randn(batch, generator=g)
        else:
            level = torch.randint(0, self.config.model.num_train_timesteps, (batch,), generator=g)
        draws = {"level": level, "noise": torch.randn(shape, generator=g)}
        if self.num_classes > 0:
            draws["drop"] = torch.rand(batch, generator=g) < self.config.train.class_dropout
        return draws

    def _set_lr(self, step: int) -> float:
        t = self.config.train
        lr = t.lr * min(1.0, (step + 1) / max(1, t.warmup_steps))
        if t.lr_schedule == "cosine" and step >= t.warmup_steps:
            # cosine decay (Loshchilov & Hutter 2017, SGDR eq. 5 with one cycle) from lr to 0 over the remaining steps
            progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
            lr = t.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train_step(self, step: int) -> torch.Tensor:
        """One optimizer step (all micro-batches); returns the mean loss of this process's share (detached)."""
        t = self.config.train
        acc = self.accelerator
        device = acc.device
        index = self.order.batch(step)  # (B,) global batch
        draws = self._draws(t.batch_size)
        local = t.batch_size // acc.num_processes
        start = acc.process_index * local
        part = slice(start, start + local)
        x = self.samples_cpu[index[part]].to(device)
        noise = draws["noise"][part].to(device)
        level = draws["level"][part].to(device)
        cond = None
        if self.num_classes > 0:
            labels = self.labels_cpu[index[part]].clone()
            labels[draws["drop"][part]] = self.null_class
            cond = labels.to(device)
        self._set_lr(step)
        micro = local // t.grad_accum
        total = torch.zeros((), device=device)
        for k in range(t.grad_accum):
            mb = slice(k * micro, (k + 1) * micro)
            sync = k == t.grad_accum - 1 or acc.num_processes == 1
            context = acc.no_sync(self.model) if not sync else contextlib.nullcontext()
            with context, acc.autocast():
                c = None if cond is None else cond[mb]
                if self.schedule is None:
                    sigma = edm_sigmas(level[mb], t.p_mean, t.p_std)
                    loss = edm_loss(self.loss_model, x[mb], sigma, noise[mb], c, self.config.model.sigma_data)
                else:
                    loss = vp_loss(
                        self.loss_model,
                        x[mb],
                        level[mb],
                        noise[mb],
                        c,
                        self.schedule.alphas_cumprod,
                        self.config.model.prediction_type,
                    )
                acc.backward(loss / t.grad_accum)
            total += loss.detach() / t.grad_accum
        if t.grad_clip > 0:
            self._clip_gradients(t.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.network, step)
        return total

    def _clip_gradients(self, max_norm: float) -> None:
        from accelerate.utils import DistributedType

        acc = self.accelerator
        if acc.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
            acc.unscale_gradients()  # a no-op without fp16 loss scaling
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), max_norm, foreach=True)  # one fused norm
        else:  # FSDP, DeepSpeed, ...: Accelerate knows how to clip sharded gradients
            acc.clip_grad_norm_(self.model.parameters(), max_norm)

    # -- checkpoints -----------------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "data_fingerprint": self.fingerprint,
            "processes": self.accelerator.num_processes,
            "elapsed_s": self.elapsed,
        }

    def save_checkpoint(self) -> Path | None:
        if not self.accelerator.is_main_process:
            return None
        checkpoint = Checkpoint(
            step=self.step,
            model=dict(self.network.state_dict()),
            ema=dict(self.ema.model.state_dict()),
            optimizer=self.optimizer.state_dict(),
            rng={"noise": self.generator.get_state()},
            meta=self._meta(),
        )
        return save_checkpoint(self.run_dir / "checkpoints", checkpoint, keep=self.config.train.keep_checkpoints)

    def resume(self) -> int:
        """Load the newest checkpoint of ``run_dir``; returns its step (0 when there is none)."""
        root = self.run_dir / "checkpoints"
        if root.is_dir():  # leftovers of a write interrupted by a crash: never complete, safe to drop
            for partial in root.glob(".step-*.tmp-*"):
                shutil.rmtree(partial, ignore_errors=True)
        path = latest_checkpoint(root)
        if path is None:
            return 0
        checkpoint = load_checkpoint(path)
        saved = checkpoint.meta.get("config", {})
        now = self.config.to_dict()
        diffs = [
            f"{section}.{key}"
            for section in ("data", "model", "train")
            for key in set(saved.get(section, {})) | set(now[section])
            if key not in _RESUME_FREE and saved.get(section, {}).get(key) != now[section].get(key)
        ]
        if diffs:
            raise CheckpointError(
                f"cannot resume from {path}: the config differs in {', '.join(sorted(diffs))}; "
                "use the original settings (only steps and logging intervals may change) or a new --out"
            )
        if checkpoint.meta.get("data_fingerprint") != self.fingerprint:
            raise CheckpointError(f"cannot resume from {path}: the training data changed since it was written")
        self.network.load_state_dict(checkpoint.model)
        self.ema.model.load_state_dict(checkpoint.ema)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        self.generator.set_state(checkpoint.rng["noise"])
        self.step = checkpoint.step
        self.elapsed = float(checkpoint.meta.get("elapsed_s", 0.0))
        self._truncate_metrics(self.step)
        return self.step

    def _truncate_metrics(self, step: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file() or not self.accelerator.is_main_process:
            return
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
        path.write_text("".join(line + "\n" for line in kept))

    # -- the run ---------------------------------------------------------------------------------------------
    def sample_grid(self, path: Path) -> Path:
        t = self.config.train
        n = t.sample_n
        labels = torch.arange(n) % self.num_classes if self.num_classes > 0 else None
        with torch.no_grad():
            images = generate_samples(
                self.ema_denoiser(),
                self.data.event_shape,
                n,
                steps=t.sample_steps,
                generator=torch.Generator().manual_seed(1234),
                labels=labels,
            )
        nrow = self.num_classes if self.num_classes and n % self.num_classes == 0 and self.num_classes > 4 else None
        return save_grid(images, path, nrow=nrow)

    def run(self, *, resume: bool = False) -> TrainResult:
        t = self.config.train
        acc = self.accelerator
        main = acc.is_main_process
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        if resume:
            self.resume()
        elif latest_checkpoint(self.run_dir / "checkpoints") is not None:
            raise DiffsightError(
                f"{self.run_dir} already holds checkpoints; pass --resume to continue that run or choose a new --out"
            )
        if self.step >= t.steps:
            raise DiffsightError(f"the run is already at step {self.step} >= steps {t.steps}; raise --steps")
        writer = _tensorboard(self.run_dir) if main else None
        metrics = open(self.run_dir / "metrics.jsonl", "a") if main else None  # noqa: SIM115
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = [
            TextColumn("[bold]train[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[ips]:.0f} img/s"),
            TimeRemainingColumn(),
        ]
        bar = Progress(*columns, disable=not (self.progress and main), transient=False)
        task = bar.add_task("train", total=t.steps, completed=self.step, loss=float("nan"), ips=0.0)
        window_loss, window_steps, window_start = torch.zeros(()), 0, time.perf_counter()
        last_loss = float("nan")
        session_start = time.perf_counter()
        start_elapsed = self.elapsed
        images_per_s = 0.0
        try:
            with bar:
                while self.step < t.steps:
                    loss = self.train_step(self.step)
                    self.step += 1
                    window_loss += loss.cpu()
                    window_steps += 1
                    self.elapsed = start_elapsed + time.perf_counter() - session_start
                    if self.step % t.log_every == 0 or self.step == t.steps:
                        mean = acc.reduce(window_loss.to(acc.device) / window_steps, reduction="mean")
                        last_loss = float(mean)
                        if not torch.isfinite(mean):
                            raise DiffsightError(f"the loss became {last_loss} at step {self.step}; lower train.lr")
                        now = time.perf_counter()
                        images_per_s = window_steps * t.batch_size / max(now - window_start, 1e-9)
                        record = {
                            "step": self.step,
                            "loss": last_loss,
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "images_per_s": images_per_s,
                            "epoch": self.order.epoch_of(self.step),
                            "elapsed_s": self.elapsed,
                        }
                        if metrics is not None:
                            metrics.write(json.dumps(record) + "\n")
                            metrics.flush()
                        if writer is not None:
                            for key in ("loss", "lr", "images_per_s"):
                                writer.add_scalar(f"train/{key}", record[key], self.step)
                        bar.update(task, loss=last_loss, ips=images_per_s)
                        window_loss, window_steps, window_start = torch.zeros(()), 0, time.perf_counter()
                    bar.update(task, completed=self.step)
                    if self.step % t.checkpoint_every == 0 or self.step == t.steps:
                        self.save_checkpoint()
                    if main and t.sample_every and (self.step % t.sample_every == 0 or self.step == t.steps):
                        self.sample_grid(self.run_dir / "samples" / f"step-{self.step:08d}.png")
        finally:
            if metrics is not None:
                metrics.close()
            if writer is not None:
                writer.close()
        model_dir = self.run_dir / "model"
        if main:
            self.save_model(model_dir, final_loss=last_loss)
        acc.wait_for_everyone()
        return TrainResult(self.run_dir, model_dir, self.step, last_loss, self.elapsed, images_per_s)

    def model_info(self, final_loss: float) -> dict[str, Any]:
        m, t = self.config.model, self.config.train
        info: dict[str, Any] = {
            "name": self.config.name,
            "description": self.config.description or f"A diffusion model of {self.data.name}, trained by diffsight.",
            "kind": m.kind,
            "network": self.network_kind,
            "parameters": sum(p.numel() for p in self.network.parameters()),
            "event_shape": list(self.data.event_shape),
            "conditioning": None
            if self.num_classes == 0
            else {
                "num_classes": self.num_classes,
                "null_class": self.null_class,
                "class_names": list(self.data.class_names),
                "label_dropout": t.class_dropout,
            },
            "factors": {k: list(v) for k, v in self.data.factor_values.items()},
            "data": self.data.describe(),
            "sampling": {"sampler": "dpmpp_2m", "steps": 20, "schedule": "karras", "rho": 7.0},
            "training": {
                "command": self.command,
                "steps": self.step,
                "batch_size": t.batch_size,
                "images_seen": self.step * t.batch_size,
                "wall_time_s": round(self.elapsed, 1),
                "machine": machine_description(),
                "processes": self.accelerator.num_processes,
                "final_loss": final_loss,
                "config": self.config.to_dict(),
            },
            "metrics": {},
        }
        if m.kind == "edm":
            info["edm"] = {
                "sigma_data": m.sigma_data,
                "sigma_min": m.sigma_min,
                "sigma_max": m.sigma_max,
                "c_noise_scale": C_NOISE_SCALE,
            }
        else:
            info["vp"] = {"scheduler_config": self._scheduler_config(), "clip_x0": 1.0}
        return info

    def save_model(self, path: Path, *, final_loss: float) -> Path:
        return save_model_folder(path, self.ema.model, self.model_info(final_loss))


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train(
    config: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True, command: str | None = None
) -> TrainResult:
    """Train ``config`` into ``run_dir`` (see :class:`Trainer`); ``resume=True`` continues from the last checkpoint."""
    if config.model.latent:  # latent diffusion: the autoencoder first, then this trainer on its latents
        from diffsight.training.latent import train_latent

        return train_latent(config, run_dir, resume=resume, progress=progress, command=command)
    return Trainer(config, run_dir, progress=progress, command=command).run(resume=resume)
