"""Run a block with a given number of torch CPU threads, then restore the setting."""

import contextlib

import torch


@contextlib.contextmanager
def torch_threads(n_threads):
    """Use ``n_threads`` intra-op threads inside the block; ``None`` changes nothing."""
    if n_threads is None:
        yield
        return
    before = torch.get_num_threads()
    if before != n_threads:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
