"""Turn a user's ``device`` parameter into a ``torch.device``, or explain why not."""

import torch

_NAMES = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def mps_available():
    """Whether torch can use Apple's Metal (MPS) device on this machine."""
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def resolve_device(spec):
    """Resolve ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
    ``torch.device``.

    ``"auto"`` is CUDA when available, else MPS when available, else the CPU.

    Raises
    ------
    ValueError
        If the string is not a device name, or names a device this machine does not
        have.
    TypeError
        If ``spec`` is neither a string nor a ``torch.device``.
    """
    if isinstance(spec, str) and spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    if isinstance(spec, str):
        try:
            device = torch.device(spec)
        except RuntimeError as exc:
            raise ValueError(
                f"device={spec!r} is not a device name; use {_NAMES}."
            ) from exc
    elif isinstance(spec, torch.device):
        device = spec
    else:
        raise TypeError(
            f"device must be a string or a torch.device, got {type(spec).__name__}."
        )
    if device.type == "cpu":
        return device
    if device.type == "mps":
        if not mps_available():
            raise ValueError(
                f"device={spec!r} was requested but torch cannot use MPS on this "
                "machine (torch.backends.mps.is_available() is False). Use "
                "device='cpu' or device='auto'."
            )
        return device
    if device.type != "cuda":
        raise ValueError(f"device={spec!r} is not supported; use {_NAMES}.")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device={spec!r} was requested but CUDA is not available on this machine "
            "(torch.cuda.is_available() is False). Use device='cpu' or device='auto'."
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(
            f"device={spec!r} was requested but this machine has {count} CUDA "
            f"device(s) (cuda:0 to cuda:{count - 1})."
        )
    return device
