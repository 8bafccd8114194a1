"""Seeded execution that leaves the caller's global random state untouched."""

import contextlib

import torch


@contextlib.contextmanager
def seeded(seed, device):
    """Run the block with torch's RNGs seeded by ``seed``, restoring them afterwards.

    Both the CPU generator and, when ``device`` is a CUDA device, that device's
    generator are forked, so module initialisation, dropout and gating noise inside the
    block are reproducible while the user's own random streams are not consumed.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        yield


def permutation_generator(seed):
    """A CPU ``torch.Generator`` for shuffling, seeded with ``seed``."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
