"""Train and save the classifiers shipped in ``diffsight/zoo/classifiers/`` (the features of our offline metrics).

Reproducible: fixed seeds, one CPU thread. Usage::

    OMP_NUM_THREADS=1 python scripts/train_classifiers.py              # both
    OMP_NUM_THREADS=1 python scripts/train_classifiers.py --only shapes

- ``digits``: scikit-learn's 1,797 digits, head "digit", 20% held out.
- ``shapes``: ``make_shapes(20000, seed=12345)``, heads shape/colour/size/position/background. The shipped
  generative model trains on ``make_shapes(..., seed=0)``, so the classifier sees different images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from diffsight.data import TrainingData, load_digits, make_shapes
from diffsight.metrics import save_classifier, train_classifier

RECIPES: dict[str, dict[str, Any]] = {
    "digits": {"epochs": 40, "batch_size": 64, "lr": 3e-3, "seed": 0, "noise_augment": 0.05},
    "shapes": {"epochs": 8, "batch_size": 128, "lr": 3e-3, "seed": 0, "noise_augment": 0.05},
}


def _data(name: str) -> TrainingData:
    if name == "digits":
        return load_digits()
    return make_shapes(20_000, seed=12345)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(RECIPES), help="train just this classifier")
    parser.add_argument("--out", type=Path, default=Path("src/diffsight/zoo/classifiers"), help="zoo folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    for name in [args.only] if args.only else sorted(RECIPES):
        recipe = RECIPES[name]
        model, report = train_classifier(_data(name), progress=not args.no_progress, **recipe)
        report["recipe"] = f"scripts/train_classifiers.py --only {name}"
        folder = save_classifier(model, args.out / name, report)
        size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        accuracy = json.dumps({k: round(v, 4) for k, v in report["val_accuracy"].items()})
        print(f"{name}: val accuracy {accuracy}, {report['train_seconds']:.0f} s, {size:.2f} MB -> {folder}")


if __name__ == "__main__":
    main()
