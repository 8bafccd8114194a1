"""Large embedding tables: sparse gradients, a lazy Adam step, one copy of each
table for prediction."""

import numpy as np
import pandas as pd
import pytest
import torch

from skmoe import MixtureOfExpertsRegressor
from skmoe._engine.optim import SplitOptimizer, make_optimizer
from skmoe.nn import MixtureOfExperts
from skmoe.nn.embeddings import EmbeddedModel, FeatureEmbedding, float64_copy
from skmoe.nn.thresholds import SPARSE_EMBEDDING_ROWS

BIG = SPARSE_EMBEDDING_ROWS  # a table of BIG + 1 rows is sparse


def _model(sparse, seed=0):
    torch.manual_seed(seed)
    embedding = FeatureEmbedding(2, cardinalities=[BIG], sparse=sparse)
    return EmbeddedModel(embedding, MixtureOfExperts(embedding.out_features, 1))


def _batch(codes, seed=0):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=(len(codes), 2)), codes])
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(
        rng.normal(size=(len(codes), 1)), dtype=torch.float32
    )


def _step(model, optimizer, codes, seed):
    x, y = _batch(codes, seed)
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()


def test_only_large_tables_are_sparse():
    embedding = FeatureEmbedding(1, cardinalities=[3, BIG - 2, BIG - 1])
    assert [t.sparse for t in embedding.categorical] == [False, False, True]
    assert (
        not FeatureEmbedding(1, cardinalities=[BIG], sparse=False).categorical[0].sparse
    )


def test_lazy_adam_equals_dense_adam_on_a_first_step_then_differs_as_documented():
    sparse, dense = _model(True), _model(False)
    dense.load_state_dict(sparse.state_dict())
    opt_sparse = make_optimizer(sparse, 1e-2, 0.0, torch.device("cpu"))
    opt_dense = make_optimizer(dense, 1e-2, 0.0, torch.device("cpu"))
    assert isinstance(opt_sparse, SplitOptimizer)
    assert not isinstance(opt_dense, SplitOptimizer)
    before = sparse.embedding.categorical[0].weight.detach().clone()
    first, second = np.array([1, 5, 5, 9]), np.array([2, 3])

    _step(sparse, opt_sparse, first, 0)
    _step(dense, opt_dense, first, 0)
    table_s = sparse.embedding.categorical[0].weight.detach()
    table_d = dense.embedding.categorical[0].weight.detach()
    torch.testing.assert_close(table_s, table_d, rtol=0, atol=1e-7)
    touched = np.unique(first)
    untouched = np.setdiff1d(np.arange(BIG + 1), touched)
    assert not torch.equal(table_s[touched], before[touched])
    assert torch.equal(table_s[untouched], before[untouched])

    # Second step reads other rows: dense Adam moves rows 1, 5, 9 again on their
    # momentum, the lazy step leaves them where the first step put them.
    after_first = table_s.clone()
    _step(sparse, opt_sparse, second, 1)
    _step(dense, opt_dense, second, 1)
    table_s = sparse.embedding.categorical[0].weight.detach()
    table_d = dense.embedding.categorical[0].weight.detach()
    assert torch.equal(table_s[touched], after_first[touched])
    assert not torch.allclose(table_d[touched], after_first[touched])
    torch.testing.assert_close(table_s[second], table_d[second], rtol=0, atol=1e-6)
    # The rest of the network takes the same dense Adam steps in both.
    for (name, p_s), (_, p_d) in zip(
        sparse.body.named_parameters(), dense.body.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p_s, p_d, rtol=0, atol=1e-6, msg=name)


def test_the_float64_predictor_reads_the_float32_tables_in_place():
    model = _model(True)
    copy64 = float64_copy(model)
    table = model.embedding.categorical[0].weight
    shared = copy64.embedding.categorical[0].table
    assert shared.dtype == torch.float32
    assert shared.data_ptr() == table.data_ptr()
    assert all(p.dtype == torch.float64 for p in copy64.parameters())
    assert sum(p.numel() for p in copy64.parameters()) < table.numel()
    x, _ = _batch(np.array([0, 7, BIG]))
    with torch.no_grad():
        reference = model.double()(x.double())
    torch.testing.assert_close(copy64(x.double()), reference, rtol=0, atol=0)


def test_an_estimator_with_a_large_id_column_trains_its_table_sparsely():
    rng = np.random.default_rng(0)
    n = 3000
    ids = rng.integers(0, 10 * BIG, n)
    X = pd.DataFrame({"item": ids.astype(str), "x": rng.normal(size=n)})
    y = X["x"].to_numpy() + (ids % 2)
    est = MixtureOfExpertsRegressor(
        max_iter=2, random_state=0, device="cpu", categorical_hash_buckets=BIG
    )
    est.fit(X, y)
    table = est.module_.embedding.categorical[0]
    assert table.sparse and table.num_embeddings == BIG + 1
    assert isinstance(est._optimizer, SplitOptimizer)
    prediction = est.predict(X.iloc[:20])
    cache = est._inference_cache
    assert cache.predictor.embedding.categorical[0].table.data_ptr() == (
        table.weight.data_ptr()
    )
    np.testing.assert_array_equal(est.predict(X.iloc[:20]), prediction)


@pytest.mark.parametrize("sparse", [True, False])
def test_sparse_and_dense_tables_train_to_similar_quality(sparse):
    """Lazy Adam changes the optimiser, not what the model can learn."""
    rng = np.random.default_rng(1)
    n = 4000
    effect = rng.normal(size=BIG + 10)
    ids = rng.integers(0, 200, n)  # few distinct ids, a table past the threshold
    X = np.column_stack([rng.normal(size=(n, 2)), ids]).astype(np.float32)
    y = torch.as_tensor(effect[ids] + X[:, 0], dtype=torch.float32)[:, None]
    torch.manual_seed(0)
    embedding = FeatureEmbedding(2, cardinalities=[BIG + 9], sparse=sparse)
    model = EmbeddedModel(embedding, MixtureOfExperts(embedding.out_features, 1))
    optimizer = make_optimizer(model, 1e-2, 0.0, torch.device("cpu"))
    x = torch.as_tensor(X)
    for _ in range(3):
        for start in range(0, n, 128):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(
                model(x[start : start + 128]), y[start : start + 128]
            )
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        final = torch.nn.functional.mse_loss(model(x), y).item()
    assert final < 0.5 * float(y.var())
