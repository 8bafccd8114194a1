"""Turn a user's ``device`` parameter into a ``torch.device``, or explain why not."""

import torch


def resolve_device(spec):
    """Resolve ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.

    Raises
    ------
    ValueError
        If the string is not a device name, or names a CUDA device this machine does
        not have.
    TypeError
        If ``spec`` is neither a string nor a ``torch.device``.
    """
    if isinstance(spec, str) and spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(spec, str):
        try:
            device = torch.device(spec)
        except RuntimeError as exc:
            raise ValueError(
                f"device={spec!r} is not a device name; use 'auto', 'cpu', 'cuda' or "
                "'cuda:N'."
            ) from exc
    elif isinstance(spec, torch.device):
        device = spec
    else:
        raise TypeError(
            f"device must be a string or a torch.device, got {type(spec).__name__}."
        )
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(
            f"device={spec!r} is not supported; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        )
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
