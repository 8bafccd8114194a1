"""Test-session settings."""

import torch

# The tests fit many tiny models. One torch thread per process keeps pytest-xdist
# workers (and anything else running on the machine) from oversubscribing the cores:
# oversubscribed OpenMP threads spin-wait and slow small fits down by an order of
# magnitude.
torch.set_num_threads(1)
