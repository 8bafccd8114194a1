"""The ``skmoe.nn`` modules inside skorch, with their balancing loss in the objective.

skorch optimises whatever ``NeuralNet.get_loss`` returns. The balancing loss of a
:class:`skmoe.nn.MixtureOfExperts` is stored on the layer by each training-mode forward
pass, so a net only optimises it when ``get_loss`` adds
:func:`skmoe.nn.auxiliary_loss`. The mixin below is the pattern shown in
``docs/skorch.md``.
"""

import numpy as np
import torch
from sklearn.datasets import make_classification, make_friedman1
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier, NeuralNetRegressor

from skmoe.nn import MixtureOfExperts, auxiliary_loss


class AuxiliaryLossMixin:
    """Add the balancing losses of the ``skmoe.nn`` layers to the training loss."""

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if training:
            loss = loss + auxiliary_loss(self.module_)
        return loss


class MoENetClassifier(AuxiliaryLossMixin, NeuralNetClassifier):
    """skorch classifier that also optimises the mixture's balancing loss."""


class MoENetRegressor(AuxiliaryLossMixin, NeuralNetRegressor):
    """skorch regressor that also optimises the mixture's balancing loss."""


def _classification_data(offset=None):
    """Return a small, well separated binary problem.

    Parameters
    ----------
    offset : float or None, default=None
        If given, append a constant column of this value. An un-centred feature of
        that size dominates the router logits, so almost every row goes to the same
        experts.

    Returns
    -------
    X : ndarray of shape (300, n_features), dtype float32
    y : ndarray of shape (300,), dtype int64
    """
    X, y = make_classification(
        n_samples=300,
        n_features=8,
        n_informative=5,
        class_sep=1.5,
        random_state=0,
    )
    if offset is not None:
        X = np.hstack([X, np.full((X.shape[0], 1), offset)])
    return X.astype(np.float32), y.astype(np.int64)


def _net_params(in_features, out_features, **module_params):
    """Return the skorch keyword arguments shared by the tests.

    Parameters
    ----------
    in_features, out_features : int
        Widths passed to :class:`skmoe.nn.MixtureOfExperts`.
    **module_params
        Further :class:`~skmoe.nn.MixtureOfExperts` parameters, without the
        ``module__`` prefix.

    Returns
    -------
    dict
    """
    params = {
        "module": MixtureOfExperts,
        "module__in_features": in_features,
        "module__out_features": out_features,
        "optimizer": torch.optim.Adam,
        "lr": 0.01,
        "batch_size": 64,
        "train_split": None,
        "iterator_train__shuffle": True,
        "verbose": 0,
    }
    params.update({f"module__{key}": value for key, value in module_params.items()})
    return params


def test_classifier_learns_separable_problem():
    X, y = _classification_data()
    torch.manual_seed(0)
    net = MoENetClassifier(
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=10,
        **_net_params(X.shape[1], 2, n_experts=4),
    )
    net.fit(X, y)

    train_loss = net.history[:, "train_loss"]
    assert train_loss[-1] < 0.5 * train_loss[0]
    assert accuracy_score(y, net.predict(X)) > 0.9
    proba = net.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_get_loss_adds_balancing_loss_when_training():
    X, y = _classification_data()
    torch.manual_seed(0)
    net = MoENetClassifier(
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=2,
        **_net_params(X.shape[1], 2, n_experts=4, top_k=2, load_balancing_coef=0.1),
    )
    net.fit(X, y)
    layer = net.module_
    assert layer.aux_loss is None  # collected by the last training step

    Xb, yb = torch.from_numpy(X[:64]), torch.from_numpy(y[:64])
    layer.train()
    y_pred = net.infer(Xb)
    aux = layer.aux_loss
    plain = net.criterion_(y_pred, yb)
    total = net.get_loss(y_pred, yb, X=Xb, training=True)

    assert aux is not None and aux.item() > 0
    torch.testing.assert_close(total - plain, aux)
    assert layer.aux_loss is None
    # The added term reaches the router, which the sparse task loss alone
    # cannot move towards the experts it did not pick.
    (grad,) = torch.autograd.grad(total - plain, layer.gate.router.weight)
    assert grad.abs().sum() > 0
    # Validation losses are the plain criterion.
    torch.testing.assert_close(net.get_loss(y_pred, yb, X=Xb, training=False), plain)


def test_balancing_loss_spreads_a_collapsed_gate():
    # The constant column sends almost every row to the same two experts at first;
    # only the load-balancing loss pulls the others back in.
    X, y = _classification_data(offset=20.0)
    params = _net_params(
        X.shape[1],
        2,
        n_experts=4,
        top_k=2,
        load_balancing_coef=2.0,
        router_z_loss_coef=0.0,
    )

    usage = {}
    for name, net_class in [("plain", NeuralNetClassifier), ("aux", MoENetClassifier)]:
        torch.manual_seed(0)
        net = net_class(criterion=torch.nn.CrossEntropyLoss, max_epochs=10, **params)
        net.fit(X, y)
        layer = net.module_.eval()
        with torch.no_grad():
            usage[name] = layer.gate_weights(torch.from_numpy(X)).mean(0).numpy()
        assert accuracy_score(y, net.predict(X)) > 0.85

    # Without the override the coefficient has no effect and an expert stays unused;
    # with it every expert takes a share of the routing weight.
    assert usage["plain"].min() < 0.01
    assert usage["aux"].min() > 0.05


def test_regressor_fits_nonlinear_target():
    X, y = make_friedman1(n_samples=300, random_state=0)
    X = X.astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32).reshape(-1, 1)
    torch.manual_seed(0)
    net = MoENetRegressor(
        criterion=torch.nn.MSELoss,
        max_epochs=20,
        **_net_params(X.shape[1], 1, n_experts=4, top_k=2),
    )
    net.fit(X, y)

    train_loss = net.history[:, "train_loss"]
    assert train_loss[-1] < train_loss[0]
    assert r2_score(y, net.predict(X)) > 0.5


def test_cross_val_score_in_pipeline():
    X, y = _classification_data()
    torch.manual_seed(0)
    pipe = make_pipeline(
        StandardScaler(),
        MoENetClassifier(
            criterion=torch.nn.CrossEntropyLoss,
            max_epochs=5,
            **_net_params(X.shape[1], 2, n_experts=4, top_k=2),
        ),
    )
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,)
    assert scores.mean() > 0.8


def test_a_plain_net_trains_as_if_both_coefficients_were_zero():
    # docs/skorch.md: without the override, the coefficients change nothing at all.
    X, y = _classification_data(offset=20.0)
    weights = {}
    for coefs in [(2.0, 0.1), (0.0, 0.0)]:
        params = _net_params(
            X.shape[1],
            2,
            n_experts=4,
            top_k=2,
            load_balancing_coef=coefs[0],
            router_z_loss_coef=coefs[1],
        )
        torch.manual_seed(0)
        net = NeuralNetClassifier(
            criterion=torch.nn.CrossEntropyLoss, max_epochs=3, **params
        ).fit(X, y)
        weights[coefs] = net.module_.state_dict()
    assert weights[(2.0, 0.1)].keys() == weights[(0.0, 0.0)].keys()
    for key, value in weights[(0.0, 0.0)].items():
        torch.testing.assert_close(weights[(2.0, 0.1)][key], value, rtol=0, atol=0)
    # With the override, the same coefficients do change the training.
    torch.manual_seed(0)
    aux = MoENetClassifier(
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=3,
        **_net_params(
            X.shape[1],
            2,
            n_experts=4,
            top_k=2,
            load_balancing_coef=2.0,
            router_z_loss_coef=0.1,
        ),
    ).fit(X, y)
    router = "gate.router.weight"
    assert not torch.equal(
        aux.module_.state_dict()[router], weights[(0.0, 0.0)][router]
    )
