"""`diffsight train` under torchrun: 2 CPU processes (gloo) give the weights of 1 process with the same global batch.

Issue 9: data-parallel training through Accelerate. Each process takes its slice of the same global batch (the
same noise draws), DDP averages the gradients, so the result equals the 1-process run up to float32 summation
order. A run at half the batch is the control that shows the comparison can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

CONFIG = """
name = "tiny-mp"
[data]
name = "digits"
[model]
preset = "tiny"
[train]
steps = 6
batch_size = {batch}
lr = 1e-3
warmup_steps = 2
log_every = 3
checkpoint_every = 6
sample_every = 0
"""


def _train(tmp: Path, name: str, processes: int, batch: int = 16) -> dict[str, torch.Tensor]:
    config = tmp / f"{name}.toml"
    config.write_text(CONFIG.format(batch=batch))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes == 1:
        cmd = [sys.executable, "-m", "diffsight", "train", str(config), "--out", str(tmp / name), "--no-progress"]
    else:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
        cmd = [torchrun, "--standalone", f"--nproc_per_node={processes}", "-m", "diffsight", "train", str(config)]
        cmd += ["--out", str(tmp / name), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 6 steps") == 1, proc.stdout  # only the main process reports
    info = (tmp / name / "model" / "diffsight.json").read_text()
    assert f'"processes": {processes}' in info
    return load_file(str(tmp / name / "checkpoints" / "step-00000006" / "model.safetensors"))


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    one = _train(tmp_path, "one", 1)
    two = _train(tmp_path, "two", 2)
    assert one.keys() == two.keys()
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    print(f"largest weight difference, 1 vs 2 processes: {worst:.2e}")
    assert worst < 2e-4
    half = _train(tmp_path, "half", 1, batch=8)  # what each process would train on without the gradient all-reduce
    assert max((one[k] - half[k]).abs().max().item() for k in one) > 1e-2
