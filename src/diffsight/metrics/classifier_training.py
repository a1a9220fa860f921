"""Train a :class:`FactorClassifier` on a :class:`TrainingData` with ground-truth factors, reproducibly.

The recipe is deliberately plain: a seeded train/validation split, AdamW (Loshchilov & Hutter 2019) with a
cosine learning-rate decay to zero (Loshchilov & Hutter 2017, SGDR without restarts), the sum of one
cross-entropy per factor, and one augmentation that cannot change any factor: small Gaussian pixel noise.
No flips, crops or shifts: a horizontal flip turns "top-left" into "top-right" and a shift can move a shape
across a quadrant boundary. The noise also makes the classifier less brittle on slightly noisy generated samples.

With the same data, arguments and torch build, two runs on a CPU give the same weights.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from diffsight.data.dataset import TrainingData
from diffsight.errors import DiffsightError
from diffsight.metrics.classifier import FactorClassifier

__all__ = ["split_indices", "train_classifier"]


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of ``range(n)`` into (train, validation) index tensors.

    The validation part holds ``round(n * val_fraction)`` indices (at least one when ``val_fraction > 0``).
    ``train_classifier`` uses exactly this split, so tests can find the images a classifier never saw.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DiffsightError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = 0 if val_fraction == 0 else max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise DiffsightError(f"{n} samples leave nothing to train on with val_fraction={val_fraction}")
    return order[n_val:], order[:n_val]


@torch.no_grad()
def _accuracy(model: FactorClassifier, x: torch.Tensor, targets: dict[str, torch.Tensor], batch: int) -> dict:
    correct = {name: 0 for name in targets}
    for start in range(0, x.shape[0], batch):
        logits = model(x[start : start + batch])
        for name in targets:
            correct[name] += int((logits[name].argmax(-1) == targets[name][start : start + batch]).sum())
    return {name: correct[name] / max(1, x.shape[0]) for name in targets}


def train_classifier(
    data: TrainingData,
    *,
    factors: list[str] | None = None,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    val_fraction: float = 0.2,
    noise_augment: float = 0.05,
    width: int = 32,
    feature_dim: int = 64,
    weight_decay: float = 1e-4,
    progress: bool = True,
) -> tuple[FactorClassifier, dict[str, Any]]:
    """Train one head per factor of ``data`` and report the held-out accuracy of each.

    Args:
        data: images (N, C, r, r) in [-1, 1] with ``data.factors`` (ground truth) and ``data.factor_values``.
        factors: which factors get a head (default: all of ``data.factors``, in their order).
        epochs: passes over the training part.
        batch_size: images per optimiser step.
        lr: peak AdamW learning rate, decayed to 0 along a cosine over all steps.
        seed: seeds the split, the initial weights, the batch order and the noise.
        val_fraction: share of the data held out for validation (see :func:`split_indices`).
        noise_augment: std of the Gaussian noise added to training images (in the [-1, 1] pixel scale).
        width, feature_dim: network size (see :class:`FactorClassifier`).
        weight_decay: AdamW's decoupled weight decay.
        progress: show a rich progress bar.

    Returns:
        The classifier in eval mode (also holding the report as ``model.report``), and the report:
        ``{"val_accuracy": {factor: acc}, "train_accuracy", "n_train", "n_val", "epochs", "seed", ...}``.
    """
    if not data.is_image or data.samples.shape[-1] != data.samples.shape[-2]:
        raise DiffsightError(f"{data.name}: the classifier needs square images (N, C, r, r), got {data.event_shape}")
    names = list(data.factors) if factors is None else list(factors)
    missing = [name for name in names if name not in data.factors]
    if missing or not names:
        raise DiffsightError(f"{data.name}: no ground truth for factor(s) {missing or names}; has {list(data.factors)}")
    if epochs < 1 or batch_size < 1 or lr <= 0 or noise_augment < 0:
        raise DiffsightError("epochs and batch_size must be >= 1, lr > 0 and noise_augment >= 0")

    train_idx, val_idx = split_indices(len(data), val_fraction, seed)
    x_all = data.samples.detach().to(torch.float32).cpu()
    targets = {name: data.factors[name].cpu() for name in names}
    x_train, x_val = x_all[train_idx], x_all[val_idx]  # (N_train, C, r, r), (N_val, C, r, r)
    y_train = {name: t[train_idx] for name, t in targets.items()}
    y_val = {name: t[val_idx] for name, t in targets.items()}

    torch.manual_seed(seed)  # initial weights; everything after draws from the explicit generator
    c, r = data.event_shape[0], data.event_shape[-1]
    model = FactorClassifier(
        c,
        r,
        {name: len(data.factor_values[name]) for name in names},
        width=width,
        feature_dim=feature_dim,
        factor_values={name: data.factor_values[name] for name in names},
    )
    generator = torch.Generator().manual_seed(seed + 1)
    steps_per_epoch = math.ceil(x_train.shape[0] / batch_size)
    total = epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("classifier {task.description}"), BarColumn(), TextColumn("{task.fields[info]}"))
    started = time.perf_counter()
    loss_sum, loss_n = 0.0, 0
    model.train()
    with Progress(*columns, TimeRemainingColumn(), disable=not progress, transient=True) as bar:
        task = bar.add_task(data.name, total=total, info="")
        for epoch in range(epochs):
            order = torch.randperm(x_train.shape[0], generator=generator)
            loss_sum, loss_n = 0.0, 0
            for step in range(steps_per_epoch):
                idx = order[step * batch_size : (step + 1) * batch_size]
                x = x_train[idx]
                if noise_augment > 0:
                    x = x + noise_augment * torch.randn(x.shape, generator=generator)
                logits = model(x)
                loss = sum(F.cross_entropy(logits[name], y_train[name][idx]) for name in names)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum, loss_n = loss_sum + float(loss.detach()) * idx.numel(), loss_n + idx.numel()
                bar.update(task, advance=1, info=f"epoch {epoch + 1}/{epochs} loss {loss_sum / loss_n:.4f}")
    model.eval()
    seconds = time.perf_counter() - started

    report: dict[str, Any] = {
        "val_accuracy": _accuracy(model, x_val, y_val, 512) if x_val.shape[0] else {},
        "train_accuracy": _accuracy(model, x_train, y_train, 512),
        "final_train_loss": loss_sum / max(1, loss_n),
        "n_train": int(x_train.shape[0]),
        "n_val": int(x_val.shape[0]),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "noise_augment": noise_augment,
        "seed": seed,
        "val_fraction": val_fraction,
        "split": "diffsight.metrics.split_indices(n, val_fraction, seed)",
        "train_seconds": round(seconds, 2),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "data": {k: v for k, v in data.describe().items() if k != "classes"},
    }
    model.report = report
    return model, report
