"""Optional dependencies, imported when a feature needs them."""

import importlib


def import_optional(*names, extra, feature):
    """Import ``names`` in turn and return the last module.

    Raises an ImportError naming the extra that installs them, for example
    ``pip install "skmoe[onnx]"``.

    Examples
    --------
    >>> import_optional("json", extra="none", feature="reading JSON").__name__
    'json'
    """
    module = None
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f'{feature} needs the "{extra}" extra: pip install "skmoe[{extra}]" '
                f"({exc})."
            ) from exc
    return module
