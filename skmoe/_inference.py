"""What prediction needs from a fitted module, derived on demand from ``module_``.

On the CPU the estimators predict in float64: float32 matrix products round
differently for different batch shapes, which would make a row's prediction depend
on the rows beside it. ``module_`` (float32, what training updates) stays the one
source of truth; its float64 copy and the NumPy small-batch model are derived from it
at the first prediction that needs them and derived again whenever ``module_``
changed since: a parameter or buffer edited in place (each tensor's version counter
moves), replaced, or a submodule swapped. Nothing derived is pickled or saved.
"""

import torch

from ._small_batch import small_batch_model
from .nn.embeddings import float64_copy


class WeightsWatch:
    """Tells, in a few microseconds, whether a module's tensors changed.

    It records every submodule, parameter and buffer with its version counter and
    storage; :meth:`unchanged` compares them with the module's present state.

    Parameters
    ----------
    module : torch.nn.Module

    Examples
    --------
    >>> import torch
    >>> layer = torch.nn.Linear(2, 1)
    >>> watch = WeightsWatch(layer)
    >>> watch.unchanged()
    True
    >>> with torch.no_grad():
    ...     _ = layer.weight.mul_(2.0)
    >>> watch.unchanged()
    False
    """

    def __init__(self, module):
        self.places, self.tensors = [], []
        for owner in module.modules():
            for store in (owner._modules, owner._parameters, owner._buffers):
                for name, value in store.items():
                    self.places.append((store, name, value))
                    if isinstance(value, torch.Tensor):
                        self.tensors.append(value)
        self.stamps = [_stamp(t) for t in self.tensors]

    def unchanged(self):
        """Whether every recorded tensor and submodule is still in place, unedited."""
        for store, name, value in self.places:
            if store.get(name) is not value:
                return False
        return [_stamp(t) for t in self.tensors] == self.stamps


def _stamp(value):
    """A tensor's version counter and storage address.

    A tensor without a version counter (some torch builds' special tensors) gets a
    fresh object, never equal to the last one: whatever holds it is always rebuilt.
    """
    version = getattr(value, "_version", None)
    if version is None:
        return object()
    return version, value.data_ptr()


class InferenceCache:
    """The float64 predictor and small-batch model of an estimator's ``module_``.

    Built by :meth:`get` when first needed and rebuilt when ``module_`` changed
    (see :class:`WeightsWatch`); on CUDA the module predicts itself in float32.
    """

    def __init__(self):
        self.source = self.watch = self.predictor = self.small_batch = None

    def get(self, module, device):
        """``(module, dtype, small_batch_model_or_None)`` to predict with."""
        if device.type != "cpu":
            return module, torch.float32, None
        if self.source is not module or not self.watch.unchanged():
            predictor = float64_copy(module)
            self.small_batch = small_batch_model(predictor)
            self.predictor, self.source = predictor, module
            self.watch = WeightsWatch(module)
        return self.predictor, torch.float64, self.small_batch
