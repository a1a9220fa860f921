"""Copy a finished training run's model into the package's zoo and record its measured metrics in its card.

    .venv/bin/python scripts/ship_model.py digits --run runs/digits --note "..."

Steps: copy ``<run>/model`` to ``src/diffsight/zoo/models/<name>`` (atomically: temp folder, then rename), add the
note to ``training.notes`` in ``diffsight.json``, then run ``diffsight eval`` for the settings the model card
reports (conditional models: with the requested class, guided, and unconditional through the null class; the
20-step DPM-Solver++ FD against 250 Heun steps with the same noise) with ``--update-card``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--run", type=Path, required=True, help="the training run folder (holds model/)")
    ap.add_argument("--note", default="", help="free text for the card's training section (machine load, ...)")
    ap.add_argument("--reference-steps", type=int, default=250, help="heun steps of the solver check (0: skip)")
    ap.add_argument("--skip-eval", action="store_true")
    args = ap.parse_args()
    source = args.run / "model"
    if not (source / "diffsight.json").is_file():
        ap.error(f"{source} is not a finished model folder")
    zoo = ROOT / "src" / "diffsight" / "zoo" / "models"
    zoo.mkdir(parents=True, exist_ok=True)
    target = zoo / args.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{args.name}.tmp-", dir=zoo))
    shutil.copytree(source, tmp, dirs_exist_ok=True)
    info = json.loads((tmp / "diffsight.json").read_text())
    info["name"] = args.name
    if args.note:
        info.setdefault("training", {})["notes"] = args.note
    (tmp / "diffsight.json").write_text(json.dumps(info, indent=2))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    print(f"copied {source} -> {target}")
    if args.skip_eval:
        return 0
    cli = [sys.executable, "-m", "diffsight", "eval", args.name, "--update-card"]
    conditional = bool(info.get("conditioning"))
    runs = [[*cli, "--reference-steps", str(args.reference_steps)] if args.reference_steps else cli]
    if conditional:
        runs += [[*cli, "--guidance", "2"], [*cli, "--unconditional"]]
    for command in runs:
        print("$", " ".join(command[2:]), flush=True)
        subprocess.run(command, check=True, cwd=ROOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
