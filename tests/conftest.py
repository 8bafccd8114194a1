"""Test-session settings."""

import os

import torch

# Under pytest-xdist every worker is its own process; one torch thread per worker keeps
# two workers on two cores from oversubscribing the CPU (OpenMP threads spin-wait).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
