"""Sample weights reach the balancing losses of a mixture behind embeddings.

With categorical columns or ``num_embedding`` the estimators train an
:class:`~skmoe.nn.embeddings.EmbeddedModel`; its ``forward`` hands ``sample_weight``
to the mixture, so that a row of weight k counts as k copies of it in the
balancing statistics as well as in the task loss.
"""

import numpy as np
import pytest
import torch
from test_tabular_inputs import X_FRAME, Y_REG
from test_training import weighted_and_repeated_fits

from skmoe import MixtureOfExpertsRegressor
from skmoe._engine.trainer import accepts_sample_weight
from skmoe.nn import MixtureOfExperts, MultiGateMixtureOfExperts, auxiliary_loss
from skmoe.nn.embeddings import EmbeddedModel, FeatureEmbedding

N_NUMERICAL, CARDINALITIES = 3, [3, 5]


def _model(kind, seed=0, **mixture):
    """An embedded model (periodic numerical embedding, two categorical columns) in
    float64 and training mode; the same weights for a seed."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        embedding = FeatureEmbedding(
            N_NUMERICAL,
            n_passthrough=1,
            cardinalities=CARDINALITIES,
            d_embedding=4,
            num_embedding="periodic",
        )
        if kind == "single":
            body = MixtureOfExperts(
                embedding.out_features,
                3,
                n_experts=4,
                expert_hidden_layer_sizes=(7,),
                load_balancing_coef=0.3,
                router_z_loss_coef=0.05,
                **mixture,
            )
        else:
            body = MultiGateMixtureOfExperts(
                embedding.out_features,
                [1, 2],
                n_shared_experts=3,
                n_task_experts=2,
                expert_hidden_layer_sizes=(7, 4),
                load_balancing_coef=0.2,
                router_z_loss_coef=0.05,
                **mixture,
            )
        return EmbeddedModel(embedding, body).double().train()


def _rows(n_rows, gen):
    """``[numerical | missing indicator | categorical codes]``, codes 0 included."""
    numerical = torch.randn(n_rows, N_NUMERICAL, generator=gen, dtype=torch.float64)
    indicator = (torch.rand(n_rows, 1, generator=gen) < 0.3).double()
    codes = [
        torch.randint(0, c + 1, (n_rows, 1), generator=gen).double()
        for c in CARDINALITIES
    ]
    return torch.cat([numerical, indicator, *codes], dim=1)


@pytest.mark.parametrize(
    ("kind", "mixture"),
    [("single", dict(top_k=2)), ("multi", dict(architecture="ple", top_k=2))],
    ids=["single-gate top-2", "ple top-2"],
)
def test_forward_weighs_the_mixture_s_balancing_statistics(kind, mixture):
    model = _model(kind, **mixture)
    assert accepts_sample_weight(model)
    gen = torch.Generator().manual_seed(3)
    x = _rows(40, gen)
    w = torch.rand(40, generator=gen, dtype=torch.float64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out = model(x, sample_weight=w)
    weighted = auxiliary_loss(model)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        body_out = model.body(model.embedding(x), sample_weight=w)
    torch.testing.assert_close(out, body_out)
    torch.testing.assert_close(weighted, auxiliary_loss(model.body))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model(x)
    assert not torch.allclose(auxiliary_loss(model), weighted)


@pytest.mark.parametrize("fused", [True, False], ids=["fused node", "composed"])
def test_weights_equal_repeated_rows_to_float64_rounding_in_one_batch(fused):
    # A row of weight k counts as k copies of it, in the task loss and in the
    # balancing statistics alike.
    gen = torch.Generator().manual_seed(0)
    x = _rows(15, gen)
    y = torch.randint(0, 3, (15, 1), generator=gen)
    w = torch.randint(0, 5, (15,), generator=gen)

    def make_module():
        module = _model("single", top_k=2)
        module.body.fused_training = fused
        return module

    weighted, repeated = weighted_and_repeated_fits(make_module, x, y, w)
    torch.testing.assert_close(weighted, repeated, rtol=1e-10, atol=1e-12)


def test_integer_weight_equals_repeating_the_row_with_categories():
    # The estimator: in one batch the fits differ only by float32 rounding.
    weights = np.random.default_rng(0).integers(1, 4, size=len(Y_REG))
    params = dict(batch_size=10_000, max_iter=40, random_state=0, device="cpu")
    params.update(top_k=2, learning_rate_init=1e-2)
    weighted = MixtureOfExpertsRegressor(**params)
    weighted.fit(X_FRAME, Y_REG, sample_weight=weights)
    assert isinstance(weighted.module_, EmbeddedModel)
    repeated = MixtureOfExpertsRegressor(**params).fit(
        X_FRAME.loc[X_FRAME.index.repeat(weights)], np.repeat(Y_REG, weights)
    )
    np.testing.assert_allclose(
        weighted.predict(X_FRAME),
        repeated.predict(X_FRAME),
        rtol=1e-5,
        atol=1e-6 * np.ptp(Y_REG),
    )
