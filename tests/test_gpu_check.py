"""``benchmarks/gpu_check.py`` runs what it can without a GPU, bf16 included."""

import math
import re

import torch
from _scripts import run_script


def test_gpu_check_runs_its_cpu_parts_for_every_estimator_and_routing():
    done = run_script("benchmarks/gpu_check.py", "--quick", "--bf16", timeout=600)
    rows = re.findall(r"^\| (M\w* \w+) \| ([\w -]+) \| (\S+) \|", done.stdout, re.M)
    assert len(rows) == 4 * 4
    # bf16 autocast against a float32 fit: finite everywhere; with dense routing
    # (no routing decision for rounding to flip) close after one epoch.
    assert all(math.isfinite(float(diff)) for *_, diff in rows)
    assert all(float(diff) < 0.1 for _, routing, diff in rows if routing == "dense")
    if not torch.cuda.is_available():
        assert "No CUDA device" in done.stdout
        assert "CPU parts done." in done.stdout
