"""Machinery shared by every skmoe estimator: parameter constraints, input validation,
seeding, the call into the training engine, chunked inference and fitted attributes.

Subclasses supply the target handling (classification or regression) and the torch
module (single- or multi-gate).
"""

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    _check_y,
    check_array,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from ._engine import (
    Batches,
    TrainingConfig,
    TrainingDivergedError,
    TrainingHistory,
    infer,
    make_optimizer,
    resolve_device,
    seeded,
    torch_threads,
    train,
)
from ._engine.objectives import MISSING_CLASS
from ._input import check_float32_range, iter_chunks, to_rows
from ._preprocessing import InputEncoder, usable_weights
from ._small_batch import SMALL_BATCH_MAX_ROWS, small_batch_model
from ._targets import as_2d_target, missing_mask
from .nn.embeddings import EmbeddedModel, FeatureEmbedding
from .nn.experts import ACTIVATIONS
from .nn.gates import GATINGS

_MAX_SEED = np.iinfo(np.int32).max


class BaseMixtureOfExperts(BaseEstimator):
    """Common base of the skmoe estimators; not meant to be used directly."""

    _parameter_constraints: dict = {
        "n_experts": [Interval(Integral, 1, None, closed="left")],
        "top_k": [Interval(Integral, 1, None, closed="left"), None],
        "gating": [StrOptions(set(GATINGS))],
        "expert_hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "load_balancing_coef": [Interval(Real, 0, None, closed="left")],
        "router_z_loss_coef": [Interval(Real, 0, None, closed="left")],
        "device": [str, torch.device],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "num_embedding": [StrOptions({"periodic", "piecewise_linear"}), None],
        "categorical_features": ["array-like", StrOptions({"from_dtype"}), None],
        "input_scaling": [StrOptions({"robust"}), None],
    }

    # -- hooks for subclasses -------------------------------------------------------
    def _allows_missing_targets(self):
        """Whether NaN in ``y`` marks a missing label instead of being an error."""
        return False

    def _output_weights(self, n_outputs):
        """Per-output loss weights, or ``None`` for equal weights."""
        return None

    def _validate_targets(self, X, y, reset):
        """Return validated ``(X, y)``."""
        raise NotImplementedError

    def _prepare_targets(self, y, sample_weight, reset, classes):
        """Return ``(targets ndarray (n, n_outputs), objective)``."""
        raise NotImplementedError

    def _objective(self):
        """The training objective of the fitted target encoding."""
        raise NotImplementedError

    def _build_module(self, n_features, objective, hidden_layer_sizes):
        """The torch module mapping features to ``objective.n_outputs`` values."""
        raise NotImplementedError

    def _usage_layers(self, module):
        """Modules with ``reset_usage`` / ``expert_usage`` to record during training."""
        raise NotImplementedError

    # -- validation -------------------------------------------------------------------
    def _encode_input(self, X, reset):
        """Check the columns of raw ``X`` and encode it with the input encoder, which
        is fitted when ``reset``: a float ndarray (NaN handled) or a CSR matrix."""
        if not sp.issparse(X) and not hasattr(X, "iloc"):
            # Shape and dtype errors first, in scikit-learn's words.
            X = check_array(
                X, dtype=None, ensure_all_finite=False, estimator=type(self).__name__
            )
        validate_data(self, X, reset=reset, skip_check_array=True)
        if reset:
            self._input_encoder = InputEncoder(
                type(self).__name__,
                self.categorical_features,
                self.input_scaling,
                self.num_embedding,
            )
            return self._input_encoder.fit_transform(
                X, getattr(self, "_fit_sample_weight", None)
            )
        return self._input_encoder.transform(X)

    def _validate_training_data(self, X, y, reset, y_numeric):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is "
                "None."
            )
        if not self._allows_missing_targets():
            X = self._encode_input(X, reset)
            y = _check_y(y, multi_output=True, y_numeric=y_numeric, estimator=self)
        else:
            y = check_array(
                y,
                ensure_2d=False,
                dtype=np.float64 if y_numeric else None,
                ensure_all_finite="allow-nan",
                input_name="y",
            )
            # Rows with no label at all are dropped before training: the input
            # encoder must not learn from them either.
            unlabelled = missing_mask(as_2d_target(y)[0]).all(axis=1)
            if unlabelled.any():
                weight = getattr(self, "_fit_sample_weight", None)
                weight = usable_weights(weight, len(unlabelled))
                self._fit_sample_weight = np.where(unlabelled, 0.0, weight)
            X = self._encode_input(X, reset)
        check_consistent_length(X, y)
        return X, y

    def _hidden_sizes(self, name="expert_hidden_layer_sizes"):
        sizes = getattr(self, name)
        if isinstance(sizes, (Integral, np.integer)) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise TypeError(f"{name} must be a tuple of ints, got {sizes!r}.") from None
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, (Integral, np.integer)):
                raise TypeError(
                    f"{name} must be a tuple of ints, got {getattr(self, name)!r}."
                )
            if size < 1:
                raise ValueError(
                    f"{name} must contain only positive sizes, got "
                    f"{getattr(self, name)!r}."
                )
        return tuple(int(s) for s in sizes)

    def _check_integer_params(self):
        """Refuse a bool where a count belongs (``Interval(Integral)`` admits bools)."""
        for name, constraints in self._parameter_constraints.items():
            value = getattr(self, name)
            counts = any(
                isinstance(c, Interval) and c.type is Integral for c in constraints
            )
            if counts and isinstance(value, (bool, np.bool_)):
                raise TypeError(
                    f"The '{name}' parameter must be an int, got the bool {value!r}."
                )

    def _gate_choices(self):
        """How many experts a gate chooses from and how to name them, or ``None``
        where there is no gate."""
        return self.n_experts, f"n_experts={self.n_experts}"

    def _check_routing(self):
        choices = self._gate_choices()
        if choices is None:
            return
        n_choices, described = choices
        if self.top_k is not None and self.top_k > n_choices:
            raise ValueError(
                f"top_k={self.top_k} is larger than {described}; choose a smaller "
                "top_k, or top_k=None for dense routing."
            )
        if self.gating == "switch" and self.top_k not in (None, 1):
            raise ValueError(
                "gating='switch' routes each row to one expert; got "
                f"top_k={self.top_k}. Use top_k=None or top_k=1 with switch gating."
            )

    def _check_sample_weight(self, sample_weight, X):
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        if not sample_weight.sum() > 0:
            raise ValueError(
                "Sample weights must contain at least one non-zero number."
            )
        return sample_weight

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return max(1, min(200, n_samples))
        return min(self.batch_size, n_samples)

    # -- training ---------------------------------------------------------------------
    def _next_seed(self, reset):
        if reset:
            if self.random_state is None:
                # Fresh OS entropy: the global numpy generator is left alone.
                self._seed = int(np.random.default_rng().integers(_MAX_SEED))
            else:
                rng = check_random_state(self.random_state)
                self._seed = int(rng.randint(_MAX_SEED))
            self._n_calls = 0
        self._n_calls += 1
        return int(
            np.random.SeedSequence([self._seed, self._n_calls]).generate_state(1)[0]
        )

    def _fit(self, X, y, sample_weight=None, incremental=False, classes=None):
        reset = not self.__sklearn_is_fitted__() or not (incremental or self.warm_start)
        # Validation sets attributes as it goes (n_features_in_, classes_, ...); if
        # it fails, put back what a fitted estimator had so that it stays usable.
        before = dict(self.__dict__)
        try:
            self._check_integer_params()
            hidden = self._hidden_sizes()
            self._check_routing()
            device = resolve_device(self.device) if reset else self.device_
            self._fit_sample_weight = sample_weight  # weighs the encoder's quantiles
            X, y = self._validate_targets(X, y, reset)
            del self._fit_sample_weight
            sample_weight = self._check_sample_weight(sample_weight, X)
            targets, objective = self._prepare_targets(y, sample_weight, reset, classes)
            check_float32_range(X)
            if self._allows_missing_targets():
                X, targets, sample_weight = _drop_unlabelled_rows(
                    X, targets, sample_weight
                )
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        seed = self._next_seed(reset)
        early_stopping = self.early_stopping and not incremental
        with seeded(seed, device), torch_threads(self.n_threads):
            if reset:
                module = self._build_model(objective, hidden).to(device)
                history = TrainingHistory()
            else:
                module, history = self.module_, self._history
            train_data, valid_data = self._split(
                X, targets, sample_weight, early_stopping, seed, device
            )
            config = TrainingConfig(
                max_epochs=1 if incremental else self.max_iter,
                batch_size=self._batch_size(len(train_data)),
                tol=self.tol,
                n_iter_no_change=self.n_iter_no_change,
                early_stopping=early_stopping,
                shuffle=self.shuffle,
                verbose=self.verbose,
            )
            if reset or not incremental or not hasattr(self, "_optimizer"):
                # MLPClassifier's penalty, alpha / 2 * ||W||^2 / batch_size per batch
                # on weights but not biases, with the batch size counted in sample
                # weight so that a weight of k still equals k repeated rows.
                expected_batch_weight = config.batch_size * float(sample_weight.mean())
                self._optimizer = make_optimizer(
                    module,
                    self.learning_rate_init,
                    self.alpha / expected_batch_weight,
                    device,
                )
            if not incremental:
                history.no_improvement_count = 0
                history.converged = False
                history.best_validation_score = -np.inf
                history.validation_scores = []
            recorder = _UsageRecorder(self._usage_layers(module))
            try:
                train(
                    module,
                    objective,
                    self._optimizer,
                    train_data,
                    config,
                    history,
                    seed,
                    valid_data=valid_data,
                    callbacks=(recorder,),
                )
            except TrainingDivergedError:
                # The moments of a diverged optimizer are not finite; a fresh fit
                # leaves nothing usable behind, a continued one its last good weights.
                del self._optimizer
                if reset and hasattr(self, "module_"):
                    del self.module_
                if self.__sklearn_is_fitted__():
                    self._refresh_inference_module()
                raise
        self.module_, self.device_, self._history = module, device, history
        self._refresh_inference_module()
        self._set_fitted_attributes(history, recorder, early_stopping)
        if not incremental and not history.converged:
            warnings.warn(
                f"Stochastic optimizer: maximum iterations ({self.max_iter}) reached "
                "and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def __sklearn_is_fitted__(self):
        return hasattr(self, "module_")

    def _build_model(self, objective, hidden):
        """The whole network: the mixture, behind a :class:`FeatureEmbedding` when
        the fitted input encoder has categorical columns or numerical embeddings."""
        encoder = self._input_encoder
        if not encoder.needs_embedding():
            return self._build_module(encoder.n_columns, objective, hidden)
        embedding = FeatureEmbedding(
            encoder.n_numerical,
            encoder.n_indicators,
            encoder.cardinalities,
            num_embedding=self.num_embedding,
            bins=encoder.bins,
        )
        body = self._build_module(embedding.out_features, objective, hidden)
        return EmbeddedModel(embedding, body)

    def _stratify(self, targets):
        return None

    def _split(self, X, targets, sample_weight, early_stopping, seed, device):
        if early_stopping:
            index = np.arange(X.shape[0])
            try:
                train_idx, valid_idx = train_test_split(
                    index,
                    test_size=self.validation_fraction,
                    random_state=seed,
                    stratify=self._stratify(targets),
                )
            except ValueError as exc:
                raise ValueError(
                    f"early_stopping could not set aside a validation set: {exc}"
                ) from None
            parts = [(X[train_idx], train_idx), (X[valid_idx], valid_idx)]
        else:
            parts = [(X, slice(None))]
        batches = [
            Batches(
                to_rows(part, device),
                torch.as_tensor(targets[rows], device=device),
                torch.tensor(sample_weight[rows], dtype=torch.float32, device=device),
            )
            for part, rows in parts
        ]
        return batches[0], (batches[1] if early_stopping else None)

    def _set_fitted_attributes(self, history, recorder, early_stopping):
        self.n_iter_ = history.n_iter
        self.loss_curve_ = list(history.loss_curve)
        self.loss_ = self.loss_curve_[-1]
        if early_stopping:
            self.validation_scores_ = list(history.validation_scores)
            self.best_validation_score_ = history.best_validation_score
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = history.best_loss
        self.expert_usage_ = recorder.last_usage()

    # -- inference --------------------------------------------------------------------
    def _validate_X(self, X):
        check_is_fitted(self)
        return self._encode_input(X, reset=False)

    def _refresh_inference_module(self):
        """Make the module that predicts: a float64 copy of ``module_`` on the CPU.

        Training runs in float32; predicting in float64 makes each row's result
        independent of the other rows in its batch (float32 matrix products round
        differently for different batch shapes). CUDA devices predict in float32 with
        ``module_`` itself. Built once per fit so that predicting changes nothing.
        """
        if self.device_.type == "cpu":
            self._predictor = copy.deepcopy(self.module_).double().eval()
        else:
            self._predictor = None
        self._small_batch = (
            None if self._predictor is None else small_batch_model(self._predictor)
        )

    def _inference_module(self):
        if self._predictor is None:
            return self.module_, torch.float32
        return self._predictor, torch.float64

    def _infer(self, X, fn=None):
        """Run the inference module over validated rows ``X``."""
        module, dtype = self._inference_module()
        with torch_threads(getattr(self, "n_threads", None)):
            return infer(module, iter_chunks(X, self.device_, dtype), X.shape[0], fn=fn)

    def _raw_output(self, X):
        X = self._validate_X(X)
        small_batch = getattr(self, "_small_batch", None)
        if (
            small_batch is not None
            and X.shape[0] <= SMALL_BATCH_MAX_ROWS
            and not sp.issparse(X)
        ):
            # A handful of rows: NumPy's per-call cost is a fraction of torch's.
            check_float32_range(X)
            return small_batch(X.astype(np.float64, copy=False))
        return self._infer(X).double().numpy()

    def __getstate__(self):
        # object.__getstate__ may hand back the live __dict__: copy before editing.
        state = dict(super().__getstate__())
        state.pop("_predictor", None)
        state.pop("_small_batch", None)
        device = state.get("device_")
        if device is not None and device.type != "cpu":
            # Pickle CPU tensors so that the model unpickles on machines without that
            # device; the optimizer's moments live on the device and are dropped.
            state["module_"] = copy.deepcopy(self.module_).cpu()
            state.pop("_optimizer", None)
            state["device_"] = torch.device("cpu")
            state["_pickled_device"] = str(device)
        return state

    def __setstate__(self, state):
        pickled_device = state.pop("_pickled_device", None)
        super().__setstate__(state)
        if pickled_device is not None:
            try:
                device = resolve_device(pickled_device)
            except ValueError:  # fitted on a device this machine does not have
                device = torch.device("cpu")
            self.module_.to(device)
            self.device_ = device
        if self.__sklearn_is_fitted__():
            self._refresh_inference_module()

    def gate_weights(self, X):
        """Gate weights of each example over the experts.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        ndarray of shape (n_samples, n_experts)
            Each row sums to one; with ``top_k=k`` it has exactly ``k`` non-zeros.
        """
        weights = self._infer(
            self._validate_X(X), fn=lambda module, x: module.gate_weights(x)
        )
        return weights.double().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Numerical embeddings and named categorical columns need dense input.
        tags.input_tags.sparse = self.num_embedding is None and (
            self.categorical_features is None
            or isinstance(self.categorical_features, str)
        )
        tags.input_tags.allow_nan = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


def _drop_unlabelled_rows(X, targets, sample_weight):
    """Rows whose every label is missing teach nothing; they would only dilute the
    per-batch loss, so they are left out."""
    if targets.dtype.kind == "f":
        labelled = ~np.isnan(targets).all(axis=1)
    else:
        labelled = (targets != MISSING_CLASS).any(axis=1)
    if not labelled.any():
        raise ValueError("Every label of every row is missing; nothing to learn.")
    if labelled.all():
        return X, targets, sample_weight
    return X[labelled], targets[labelled], sample_weight[labelled]


class _UsageRecorder:
    """Engine callback: each epoch's mean gate weight per expert (one read an epoch)."""

    def __init__(self, layers):
        self.layers = list(layers)
        self.history = []

    def on_epoch_begin(self, epoch):
        for layer in self.layers:
            layer.reset_usage()

    def on_epoch_end(self, epoch, history):
        self.history.append(
            [
                layer.expert_usage().detach().cpu().double().numpy()
                for layer in self.layers
            ]
        )

    def last_usage(self):
        if not self.history:
            return None
        usage = self.history[-1]
        return usage[0] if len(usage) == 1 else np.stack(usage)
