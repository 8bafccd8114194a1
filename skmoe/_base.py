"""Machinery shared by every skmoe estimator: parameter constraints, input validation,
seeding, the call into the training engine, chunked inference and fitted attributes.

Subclasses supply the target handling (classification or regression) and the torch
module (single- or multi-gate).
"""

import copy
import functools
import inspect
import types
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    _check_y,
    _num_samples,
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
from ._engine.distributed import data_parallel_group, ranks_agree
from ._engine.objectives import MISSING_CLASS
from ._engine.threads import prediction_workers
from ._engine.workers import capped_threads
from ._fitted_state import finite_or_none, history_from_json, history_to_json
from ._inference import InferenceCache, predict_blocks, predict_numpy
from ._input import check_float32_range, iter_chunks, to_rows
from ._preprocessing import InputEncoder, plain_float_rows, usable_weights
from ._targets import as_2d_target, missing_mask
from .nn.embeddings import EmbeddedModel, FeatureEmbedding
from .nn.experts import ACTIVATIONS
from .nn.gates import GATINGS

_MAX_SEED = np.iinfo(np.int32).max


SCORING_DOC = """\
    scoring : str, callable or None, default=None
        The validation score of early stopping (higher is better; the best epoch's
        weights are restored): a scikit-learn scorer name (``"roc_auc"``,
        ``"neg_log_loss"``, ``"r2"``, ...) or a callable ``scorer(estimator, X, y)``.
        ``None``: accuracy for classifiers, R² for regressors (averaged over
        outputs). Used only with ``early_stopping=True``.
"""


BATCH_SIZE_DOC = """\
    batch_size : int or "auto", default="auto"
        Minibatch size; ``"auto"`` is ``min(200, n_samples)``, ``n_samples`` being
        the rows left for training after ``validation_fraction``. ``batch_size_``
        is the size used. In a data-parallel fit (``torch.distributed``) it is the
        global batch, over the rows of every rank: each step takes from each rank
        its share, so the fit takes the steps of a single process on all the rows.
"""


def learning_rate_doc(default):
    """The ``learning_rate`` entry of an estimator's parameter docs."""
    return f"""\
    learning_rate : {{"constant", "cosine"}}, default="{default}"
        Schedule of Adam's step size over the epochs of ``fit``: ``"constant"``
        keeps ``learning_rate_init``; ``"cosine"`` decays it from
        ``learning_rate_init`` towards zero along half a cosine over ``max_iter``
        epochs (so a fit stopped early ends at a larger step). Reaching
        ``max_iter`` raises a ``ConvergenceWarning`` only with ``"constant"`` and
        ``early_stopping=True``, when the validation score was still improving.
        ``partial_fit`` always uses ``learning_rate_init``.
"""


def _stopped_short(estimator, early_stopping, history):
    """Whether a fit that asked to stop on ``tol`` ran out of epochs first.

    Only ``early_stopping`` asks for that: a fit without it plans ``max_iter``
    epochs (the training-loss rule only saves the ones that no longer help), and a
    cosine schedule ends at ``max_iter`` by design. Neither warns on reaching it.
    """
    return (
        early_stopping and not history.converged and estimator.learning_rate != "cosine"
    )


def with_params(init, **defaults):
    """``init`` extended by keyword parameters ``defaults`` stored under their names.

    An estimator adds its own parameters to a shared ``__init__`` this way, and the
    signature scikit-learn reads (``get_params``, ``clone``) lists them after the
    shared ones.
    """

    def __init__(self, *args, **kwargs):
        own = {name: kwargs.pop(name, default) for name, default in defaults.items()}
        unknown = [name for name in kwargs if name not in accepted]
        if unknown:  # named after the estimator, not the class that defines ``init``
            raise TypeError(
                f"{type(self).__name__}.__init__() got an unexpected keyword "
                f"argument {unknown[0]!r}"
            )
        init(self, *args, **kwargs)
        for name, value in own.items():
            setattr(self, name, value)

    signature = inspect.signature(init)
    accepted = set(signature.parameters)
    extra = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=value)
        for name, value in defaults.items()
    ]
    __init__.__signature__ = signature.replace(
        parameters=[*signature.parameters.values(), *extra]
    )
    __init__.__doc__ = init.__doc__
    return __init__


def call_scorer(scorer, estimator, X, y, sample_weight):
    """``scorer(estimator, X, y)``, with ``sample_weight`` unless every row weighs the
    same (a plain ``scorer(estimator, X, y)`` callable need not accept it)."""
    if sample_weight.size == 0 or np.all(sample_weight == sample_weight[0]):
        return scorer(estimator, X, y)
    return scorer(estimator, X, y, sample_weight=sample_weight)


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
        "learning_rate": [StrOptions({"constant", "cosine"})],
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
        "scoring": [str, callable, None],
        "load_balancing_coef": [Interval(Real, 0, None, closed="left")],
        "router_z_loss_coef": [Interval(Real, 0, None, closed="left")],
        "device": [str, torch.device],
        "n_threads": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
            None,
        ],
        "num_embedding": [StrOptions({"periodic", "piecewise_linear"}), None],
        "categorical_features": ["array-like", StrOptions({"from_dtype"}), None],
        "input_scaling": [StrOptions({"auto", "robust"}), None],
        "min_frequency": [
            Interval(Integral, 1, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="neither"),
            None,
        ],
        "max_categories": [Interval(Integral, 1, None, closed="left"), None],
        "categorical_hash_buckets": [
            Interval(Integral, 1, None, closed="left"),
            dict,
            None,
        ],
        "categorical_embedding_dim": [
            Interval(Integral, 1, None, closed="left"),
            dict,
            None,
        ],
        "list_separators": [dict, None],
    }

    # Parameters that decide the network's structure: a warm start cannot honour a
    # change to them, so it is refused (see ``_check_network_unchanged``).
    _network_params: tuple = (
        "n_experts",
        "top_k",
        "gating",
        "expert_hidden_layer_sizes",
        "activation",
        "num_embedding",
        "categorical_features",
        "input_scaling",
        "min_frequency",
        "max_categories",
        "categorical_hash_buckets",
        "categorical_embedding_dim",
        "list_separators",
    )

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # An inherited __init__ would name the class that defines it in Python's own
        # errors ("SingleGateMoE.__init__() got an unexpected keyword argument");
        # each estimator gets a copy under its own name instead.
        init = cls.__init__
        if "__init__" in cls.__dict__ or not isinstance(init, types.FunctionType):
            return
        qualname = f"{cls.__qualname__}.__init__"
        code = init.__code__
        if hasattr(code, "co_qualname"):  # Python >= 3.11 reports co_qualname
            code = code.replace(co_qualname=qualname)
        copied = types.FunctionType(
            code, init.__globals__, "__init__", init.__defaults__, init.__closure__
        )
        copied.__kwdefaults__ = init.__kwdefaults__
        copied.__doc__ = init.__doc__
        copied.__module__ = cls.__module__
        copied.__qualname__ = qualname
        cls.__init__ = copied

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

    def _weigh_rows(self, targets, sample_weight, incremental):
        """Sample weights with any per-row factor (class weights) applied."""
        return sample_weight

    def _trained_module(self, module):
        """What the optimiser trains: ``module`` and any learned loss parameters."""
        return module

    def _epoch_callbacks(self):
        """Engine callbacks beyond the usage recorder."""
        return ()

    def _target_summary(self, y, sample_weight):
        """What this rank's targets contribute to target statistics agreed across
        the ranks of a data-parallel fit (picklable)."""
        return None

    def _agreed_targets(self, summaries):
        """From every rank's :meth:`_target_summary`, what :meth:`_prepare_targets`
        receives as ``classes`` so that every rank encodes targets alike."""
        return None

    # -- validation -------------------------------------------------------------------
    def _encode_input(self, X, reset):
        """Check the columns of raw ``X`` and encode it with the input encoder, which
        is fitted when ``reset``: a float ndarray (NaN handled) or a CSR matrix."""
        if not sp.issparse(X) and not hasattr(X, "iloc") and not plain_float_rows(X):
            # Shape and dtype errors first, in scikit-learn's words.
            X = check_array(
                X, dtype=None, ensure_all_finite=False, estimator=type(self).__name__
            )
        validate_data(self, X, reset=reset, skip_check_array=True)
        if not reset:
            return self._input_encoder.transform(X)
        self._input_encoder = InputEncoder.for_estimator(self)
        weights = getattr(self, "_fit_sample_weight", None)
        parallel = data_parallel_group()
        if parallel is None:
            return self._input_encoder.fit_transform(X, weights)
        # Every rank fits the same encoder, from the statistics of all the shards.
        what = getattr(self, "_fit_call", f"{type(self).__name__}.fit")
        names = getattr(self, "feature_names_in_", None)

        def exchange(summary):
            facts = {
                "n_features": X.shape[1],
                "feature names": None if names is None else list(names),
                "local_encoder": summary,
            }
            return [f["local_encoder"] for f in parallel.agree(facts, None, what)]

        return self._input_encoder.fit_transform_shared(X, weights, exchange)

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
        """How many experts a gate chooses from, or ``None`` where there is no gate."""
        return self.n_experts

    def _effective_top_k(self):
        """How many experts each gate keeps: ``top_k`` capped at the experts it
        chooses from, so that ``top_k >= n_experts`` uses every expert; ``None``
        (dense) where ``top_k`` is ``None`` or there is no gate."""
        choices = self._gate_choices()
        if self.top_k is None or choices is None:
            return None
        return min(int(self.top_k), choices)

    def _check_routing(self):
        top_k = self._effective_top_k()
        if self.gating == "switch" and top_k not in (None, 1):
            raise ValueError(
                f"{type(self).__name__}: gating='switch' routes each row to one "
                f"expert; got top_k={self.top_k}. Use top_k=None or top_k=1 with "
                "switch gating."
            )

    def _network_signature(self):
        """The values of the parameters that shape the network, comparable."""
        signature = {}
        for name in self._network_params:
            if name.endswith("hidden_layer_sizes"):
                signature[name] = self._hidden_sizes(name)
            else:
                value = getattr(self, name)
                if isinstance(value, (list, tuple, np.ndarray)):  # column choices
                    value = tuple(np.asarray(value).tolist())
                signature[name] = value
        return signature

    def _check_network_unchanged(self, action):
        """Refuse to ``action`` when a parameter that shapes the network changed
        since the fit that built ``module_``."""
        fitted = getattr(self, "_fitted_network", None)
        if fitted is None:
            return
        now = self._network_signature()
        changed = [name for name in fitted if now.get(name) != fitted[name]]
        if changed:
            name = changed[0]
            raise ValueError(
                f"{type(self).__name__}: {name} changed from {fitted[name]!r} to "
                f"{now[name]!r} since the last fit, but the fitted network was built "
                f"with {name}={fitted[name]!r}, so it cannot {action}. Set "
                f"{name}={fitted[name]!r} again, or fit a new network "
                "(warm_start=False)."
            )

    def _split_task_weights(self, sample_weight, y):
        """``(row weights, per-task factors or None)`` from ``sample_weight``;
        multi-task estimators take one weight per row and task."""
        return sample_weight, None

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
        """``batch_size`` on ``n_samples`` training rows; ``"auto"`` is
        scikit-learn's ``min(200, n_samples)``. Rules that give small data sets
        smaller batches (more steps) lost on the tuning half of
        ``benchmarks/tabular.py`` (docs/benchmarks.md)."""
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
        """``fit`` and ``partial_fit``, in named steps.

        Validate the parameters, rows, targets and weights (restoring a fitted
        estimator if that fails); seed; build the module (or keep it for a warm
        start); split off the validation rows; configure the engine
        (:meth:`_training_config`); make the optimizer (:meth:`_prepare_optimizer`);
        train (:meth:`_train`); set the fitted attributes.
        """
        reset = not self.__sklearn_is_fitted__() or not (incremental or self.warm_start)
        # Inside a process group of several ranks, each rank passes its own rows.
        parallel = data_parallel_group()
        what = self._call_name(incremental)
        # Validation sets attributes as it goes (n_features_in_, classes_, ...); if
        # it fails, put back what a fitted estimator had so that it stays usable.
        before = dict(self.__dict__)
        try:
            self._check_integer_params()
            hidden = self._hidden_sizes()
            self._check_routing()
            if not reset:
                what = "be trained further" if incremental else "be warm-started"
                self._check_network_unchanged(what)
            device = resolve_device(self.device) if reset else self.device_
            if parallel is not None:
                parallel.check_rows(_num_samples(X), what)
                parallel.check_batch_size(self.batch_size, type(self).__name__)
            raw_X = X
            sample_weight, task_weights = self._split_task_weights(sample_weight, y)
            self._fit_sample_weight = sample_weight  # weighs the encoder's quantiles
            self._fit_call = what
            X, y = self._validate_targets(X, y, reset)
            del self._fit_sample_weight
            sample_weight = self._check_sample_weight(sample_weight, X)
            check_float32_range(X)
            # Target statistics (regression scaling) weigh each task's rows by
            # its own weights.
            target_weight = (
                sample_weight
                if task_weights is None
                else sample_weight[:, None] * task_weights
            )
            if parallel is not None:
                classes = self._agree_across_ranks(
                    parallel, what, X, y, target_weight, reset, classes
                )
            targets, objective = self._prepare_targets(y, target_weight, reset, classes)
            weighed = self._weigh_rows(targets, sample_weight, incremental)
            if reset and weighed is not sample_weight:
                # Class weights count in the encoder's statistics as sample weights.
                self._fit_sample_weight = weighed
                X = self._encode_input(raw_X, reset=True)
                del self._fit_sample_weight
            sample_weight = weighed
            del self._fit_call
            if self._allows_missing_targets():
                X, targets, sample_weight, task_weights = _drop_unlabelled_rows(
                    X, targets, sample_weight, task_weights
                )
            if parallel is not None:
                parallel.agree({}, None, what)
        except Exception as exc:
            self.__dict__.clear()
            self.__dict__.update(before)
            if parallel is not None:  # every rank raises, none waits in a collective
                parallel.fail(exc, what)
            raise
        seed = self._next_seed(reset)
        if parallel is not None:
            seed = parallel.broadcast(seed)
        early_stopping = self.early_stopping and not incremental
        with seeded(seed, device), torch_threads(capped_threads(self.n_threads)):
            if reset:
                module = self._build_model(objective, hidden).to(device)
                history = TrainingHistory()
            else:
                module, history = self.module_, self._history
            with ranks_agree(parallel, what):  # a shard too small to split, say
                train_data, valid_data = self._split(
                    X,
                    targets,
                    sample_weight,
                    early_stopping,
                    seed,
                    device,
                    task_weights,
                )
            n_rows = len(train_data)
            if parallel is not None:  # batch_size is the global batch of all rows
                n_rows = parallel.set_rows(train_data)
            config = self._training_config(n_rows, incremental, early_stopping)
            self._prepare_optimizer(
                module,
                config,
                sample_weight,
                device,
                reset or not incremental,
                parallel,
            )
            if not incremental:
                _restart_stopping(history)
            recorder = self._train(
                module,
                objective,
                train_data,
                valid_data,
                config,
                history,
                seed,
                reset,
                parallel,
            )
        self.module_, self.device_, self._history = module, device, history
        if reset:
            self._fitted_network = self._network_signature()
        # Filled at the first prediction: predicting leaves __dict__ as it is.
        self._inference_cache = InferenceCache()
        self._set_fitted_attributes(history, recorder, early_stopping)
        self.batch_size_ = config.batch_size
        if _stopped_short(self, early_stopping, history):
            warnings.warn(
                f"Stochastic optimizer: maximum iterations ({self.max_iter}) reached "
                "and the validation score was still improving by more than tol; "
                "raise max_iter to let early stopping end the fit.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _training_config(self, n_rows, incremental, early_stopping):
        """What one call to the engine does: one epoch for ``partial_fit``."""
        return TrainingConfig(
            max_epochs=1 if incremental else self.max_iter,
            batch_size=self._batch_size(n_rows),
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            early_stopping=early_stopping,
            shuffle=self.shuffle,
            verbose=self.verbose,
            validation_score=self._validation_scorer() if early_stopping else None,
            learning_rate=self.learning_rate_init,
            learning_rate_schedule=self.learning_rate,
        )

    def _validation_scorer(self):
        """``scoring`` as ``score(outputs, targets, weights)`` of the engine's
        validation batches; ``None`` keeps the objective's own score.

        The scorer sees this estimator reading the validation outputs (``X`` is the
        row positions) and the validation labels as ``fit`` was given them.
        """
        if self.scoring is None:
            return None
        name = type(self).__name__
        try:
            scorer = check_scoring(self, scoring=self.scoring)
        except ValueError as exc:
            raise ValueError(
                f"{name}: scoring={self.scoring!r} is not a scorer: {exc}"
            ) from None

        def score(outputs, targets, weights):
            outputs = outputs.detach().cpu().double().numpy()
            rows, truth = self._validation_truth(targets.detach().cpu().numpy())
            view = self._reading_outputs(lambda X: outputs[rows][X])
            weights = weights.detach().cpu().double().numpy()[rows]
            try:
                return call_scorer(scorer, view, np.arange(len(truth)), truth, weights)
            except (ValueError, TypeError, AttributeError) as exc:
                raise ValueError(
                    f"{name}: scoring={self.scoring!r} failed on the validation "
                    f"rows: {str(exc).rstrip('.')}."
                ) from None

        return score

    def _reading_outputs(self, raw_output):
        """A shallow view of this estimator whose predictions read ``raw_output(X)``
        in place of the module's output on ``X``; this estimator is left as it is."""
        # Not copy.copy, which would go through __setstate__'s rebuild.
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._raw_output = raw_output  # every prediction method reads it
        return view

    def _prepare_optimizer(
        self, module, config, sample_weight, device, fresh, parallel=None
    ):
        """A fresh Adam where ``fresh`` (``fit``), else ``partial_fit`` keeps its own.

        The L2 penalty is ``MLPClassifier``'s, ``alpha / 2 * ||W||^2 /
        batch_size`` per batch on weights but not biases, with the batch size
        counted in sample weight so that a weight of k still equals k repeated rows.
        """
        if fresh or not hasattr(self, "_optimizer"):
            if parallel is None:
                expected_batch_weight = config.batch_size * float(sample_weight.mean())
            else:  # the penalty is per global batch
                expected_batch_weight = parallel.global_batch_weight(
                    config.batch_size, sample_weight
                )
            self._optimizer = make_optimizer(
                self._trained_module(module),
                self.learning_rate_init,
                self.alpha / expected_batch_weight,
                device,
            )

    def _train(
        self,
        module,
        objective,
        train_data,
        valid_data,
        config,
        history,
        seed,
        reset,
        parallel=None,
    ):
        """Run the engine, recording expert usage; undo what a divergence spoiled."""
        recorder = _UsageRecorder(
            self._usage_layers(module),
            [] if reset else getattr(self, "expert_usage_curve_", []),
        )
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
                callbacks=(recorder, *self._epoch_callbacks()),
                parallel=parallel,
            )
        except TrainingDivergedError:
            # The moments of a diverged optimizer are not finite; a fresh fit
            # leaves nothing usable behind, a continued one its last good weights.
            del self._optimizer
            if reset and hasattr(self, "module_"):
                del self.module_
            raise
        return recorder

    def __sklearn_is_fitted__(self):
        return hasattr(self, "module_")

    def _call_name(self, incremental):
        return f"{type(self).__name__}.{'partial_fit' if incremental else 'fit'}"

    def _agree_across_ranks(self, parallel, what, X, y, sample_weight, reset, classes):
        """Check that the ranks of a data-parallel fit build the same estimator on
        rows of the same shape; return the ``classes`` every rank encodes with."""
        params = {
            name: _comparable(value)
            for name, value in self.get_params(deep=False).items()
            # Per-rank by nature: each rank's device, threads and chatter.
            if name not in ("device", "n_threads", "verbose")
        }
        names = getattr(self, "feature_names_in_", None)
        summary = None
        if reset and classes is None:
            summary = self._target_summary(y, sample_weight)
        facts = parallel.agree(
            {
                "n_features": X.shape[1],
                "feature names": None if names is None else list(names),
                "parameters": params,
                "target shape": np.shape(y)[1:],
                "local_targets": summary,
            },
            None,
            what,
        )
        if summary is None:
            return classes
        return self._agreed_targets([f["local_targets"] for f in facts])

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
            categorical_dims=encoder.embedding_dims(self.categorical_embedding_dim),
            bag_sizes=encoder.bag_sizes,
            # Sparse gradients are not reduced across ranks: dense tables there.
            sparse=data_parallel_group() is None,
        )
        body = self._build_module(embedding.out_features, objective, hidden)
        return EmbeddedModel(embedding, body)

    def _stratify(self, targets):
        return None

    def _split(
        self, X, targets, sample_weight, early_stopping, seed, device, task_weights
    ):
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
                task_weights=None
                if task_weights is None
                else torch.tensor(
                    task_weights[rows], dtype=torch.float32, device=device
                ),
            )
            for part, rows in parts
        ]
        return batches[0], (batches[1] if early_stopping else None)

    def _set_fitted_attributes(self, history, recorder, early_stopping):
        self.top_k_ = self._effective_top_k()
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
        self.expert_usage_curve_ = recorder.curve()

    # -- fitted state, for persistence --------------------------------------------
    _FITTED_ATTRIBUTES = (
        "n_iter_",
        "loss_curve_",
        "loss_",
        "best_loss_",
        "validation_scores_",
        "best_validation_score_",
    )

    def _fitted_state(self):
        """Everything fitted besides ``module_``'s tensors, as JSON-ready values.

        :mod:`skmoe.persistence` saves this and hands it back to
        :meth:`_restore_fitted_state`; a new fitted attribute is added to both here
        (or in the target handling's override) and nowhere else.
        """
        attributes = {name: getattr(self, name) for name in self._FITTED_ATTRIBUTES}
        attributes["loss_curve_"] = list(self.loss_curve_)
        attributes["batch_size_"] = int(self.batch_size_)
        attributes["best_loss_"] = finite_or_none(self.best_loss_)
        attributes["expert_usage_"] = np.asarray(self.expert_usage_).tolist()
        attributes["expert_usage_curve_"] = [
            np.asarray(usage).tolist() for usage in self.expert_usage_curve_
        ]
        names = getattr(self, "feature_names_in_", None)
        return {
            "input_encoder": self._input_encoder.to_json(),
            "n_features_in_": int(self.n_features_in_),
            "feature_names_in_": None if names is None else names.tolist(),
            "n_outputs_": int(self.n_outputs_),
            "y_was_1d": bool(self._y_was_1d),
            "seed": int(self._seed),
            "n_calls": int(self._n_calls),
            "device": str(self.device_),
            "history": history_to_json(self._history),
            "attributes": attributes,
        }

    def _restore_fitted_state(self, state):
        """Set the attributes :meth:`_fitted_state` described; raise on bad ones."""
        n_features = state["n_features_in_"]
        n_outputs = state["n_outputs_"]
        if not (isinstance(n_features, int) and n_features > 0):
            raise ValueError(f"invalid n_features_in_ {n_features!r}")
        if not (isinstance(n_outputs, int) and n_outputs > 0):
            raise ValueError(f"invalid n_outputs_ {n_outputs!r}")
        self.n_features_in_ = n_features
        names = state["feature_names_in_"]
        if names is not None:
            if len(names) != n_features or not all(isinstance(n, str) for n in names):
                raise ValueError("feature_names_in_ does not match n_features_in_")
            self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_outputs_ = n_outputs
        self._y_was_1d = bool(state["y_was_1d"])
        if "input_encoder" in state:
            self._input_encoder = InputEncoder.from_json(state["input_encoder"], self)
        else:
            # Written before the input encoder existed: the network read X as given.
            self.set_params(input_scaling=None, categorical_features=None)
            self._input_encoder = InputEncoder.identity(self)
        self._seed = int(state["seed"])
        self._n_calls = int(state["n_calls"])
        self._history = history_from_json(state["history"])
        self._inference_cache = InferenceCache()
        attributes = state["attributes"]
        for name in self._FITTED_ATTRIBUTES:
            setattr(self, name, attributes[name])
        # Absent from files written before it existed: the batch size is unknown.
        self.batch_size_ = attributes.get("batch_size_")
        self.expert_usage_ = np.asarray(attributes["expert_usage_"], dtype=np.float64)
        self.expert_usage_curve_ = [  # absent from files written before it existed
            np.asarray(usage, dtype=np.float64)
            for usage in attributes.get("expert_usage_curve_", [])
        ]

    # -- inference --------------------------------------------------------------------
    def _validate_X(self, X):
        check_is_fitted(self)
        return self._encode_input(X, reset=False)

    def _inference_module(self):
        """``(module, dtype, small_batch)`` to predict with, derived from ``module_``.

        On the CPU a float64 copy of ``module_`` and its NumPy small-batch model
        (see :mod:`skmoe._inference`), rebuilt whenever ``module_`` changed; on
        CUDA ``module_`` itself in float32.
        """
        return self._inference_cache.get(self.module_, self.device_)

    def _infer(self, X, fn=None):
        """Run the inference module over validated rows ``X`` (float64 ndarray on
        the CPU; see :mod:`skmoe._inference` for why a row's bits never depend on
        the threads or the other rows)."""
        module, dtype, _ = self._inference_module()
        n_threads = capped_threads(getattr(self, "n_threads", None))
        if self.device_.type == "cpu":
            workers = functools.partial(prediction_workers, n_threads)
            return predict_blocks(module, X, workers, fn=fn)
        with torch_threads(n_threads):
            out = infer(module, iter_chunks(X, self.device_, dtype), X.shape[0], fn=fn)
        return out.double().numpy()

    def _raw_output(self, X):
        X = self._validate_X(X)
        small_batch = self._inference_module()[2]
        if small_batch is not None:
            # NumPy computes each row on its own, and for few rows its per-call cost
            # is a fraction of torch's.
            n_threads = capped_threads(getattr(self, "n_threads", None))
            workers = functools.partial(prediction_workers, n_threads)
            return predict_numpy(small_batch, X, workers)
        return self._infer(X)

    def __getstate__(self):
        # object.__getstate__ may hand back the live __dict__: copy before editing.
        state = dict(super().__getstate__())
        state.pop("_inference_cache", None)  # derived from module_ on demand
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
            self._inference_cache = InferenceCache()

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
        return self._infer(
            self._validate_X(X), fn=lambda module, x: module.gate_weights(x)
        )

    def apply(self, X):
        """Each example's top expert: the one its gate weighs most.

        Like a tree's ``apply``, it names the region of the input space a row falls
        into; on data from latent clusters the experts often recover them.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_tasks)
            Index of each row's top expert; one column per task for multi-gate
            estimators (experts numbered as in :meth:`gate_weights`).

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from skmoe import MixtureOfExpertsClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = MixtureOfExpertsClassifier(n_experts=3, max_iter=20,
        ...                                  random_state=0).fit(X, y)
        >>> clf.apply(X[:4]).shape
        (4,)
        """
        return self.gate_weights(X).argmax(axis=-1)

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


def _restart_stopping(history):
    """A new ``fit`` call (warm or not) restarts the stopping rules' counters."""
    history.no_improvement_count = 0
    history.converged = False
    history.best_validation_score = -np.inf
    history.validation_scores = []


def _comparable(value):
    """A parameter's value as ranks can compare it: a random generator (whose repr
    holds an address) by its type, anything but a plain value by its repr."""
    if isinstance(value, (np.random.RandomState, np.random.Generator)):
        return type(value).__name__
    if value is None or isinstance(value, (bool, Integral, Real, str, tuple)):
        return value
    return repr(value)


def _drop_unlabelled_rows(X, targets, sample_weight, task_weights):
    """Rows whose every label is missing teach nothing; they would only dilute the
    per-batch loss, so they are left out."""
    if targets.dtype.kind == "f":
        labelled = ~np.isnan(targets).all(axis=1)
    else:
        labelled = (targets != MISSING_CLASS).any(axis=1)
    if not labelled.any():
        raise ValueError("Every label of every row is missing; nothing to learn.")
    if labelled.all():
        return X, targets, sample_weight, task_weights
    if task_weights is not None:
        task_weights = task_weights[labelled]
    return X[labelled], targets[labelled], sample_weight[labelled], task_weights


class _UsageRecorder:
    """Engine callback: each epoch's mean gate weight per expert (one read an epoch)."""

    def __init__(self, layers, previous=()):
        self.layers = list(layers)
        self.history = []
        self.previous = list(previous)  # the curve of earlier fit calls (warm start)

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

    def curve(self):
        """Usage per epoch, earlier calls' epochs first (``expert_usage_curve_``)."""
        return self.previous + [
            usage[0] if len(usage) == 1 else np.stack(usage) for usage in self.history
        ]

    def last_usage(self):
        if not self.history:
            return None
        usage = self.history[-1]
        return usage[0] if len(usage) == 1 else np.stack(usage)
