"""Data larger than memory: partial_fit over chunks of a memory-mapped array, of a
parquet file's row groups and of a dask array, through ``skmoe.fit_chunks``."""

import numpy as np
import pytest
from _scripts import run_script

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor, fit_chunks

N, WIDTH, CHUNK = 1200, 6, 300


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, WIDTH)).astype(np.float32)
    y = (X[:, 0] - 2 * X[:, 1] + 0.5 * X[:, 2] ** 2).astype(np.float64)
    return X, y


def _regressor():
    return MixtureOfExpertsRegressor(
        n_experts=3, top_k=2, expert_hidden_layer_sizes=(16,),
        learning_rate_init=1e-2, random_state=0, device="cpu",
    )  # fmt: skip


def _in_memory(X, y):
    return lambda: [(X[i : i + CHUNK], y[i : i + CHUNK]) for i in range(0, N, CHUNK)]


def _weights(model):
    return [p.detach().numpy().copy() for p in model.module_.parameters()]


@pytest.fixture(scope="module")
def reference():
    X, y = _data()
    model = fit_chunks(_regressor(), _in_memory(X, y), n_epochs=4, random_state=0)
    return X, y, model


def test_streamed_training_learns(reference):
    X, y, model = reference
    assert model.n_iter_ == 4 * 2  # two partial_fit calls an epoch: 4 chunks, mix=2
    assert model.score(X, y) > 0.6


def test_a_memory_mapped_array_trains_like_the_array_in_memory(reference, tmp_path):
    X, y, expected = reference
    path = tmp_path / "X.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    model = fit_chunks(_regressor(), _in_memory(mapped, y), n_epochs=4, random_state=0)
    for got, want in zip(_weights(model), _weights(expected), strict=True):
        np.testing.assert_array_equal(got, want)


def test_parquet_row_groups_train_like_the_array_in_memory(reference, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X, y, expected = reference
    columns = {f"x{j}": X[:, j] for j in range(WIDTH)} | {"y": y}
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=CHUNK)
    source = pq.ParquetFile(path)
    assert source.num_row_groups == N // CHUNK

    def row_group(i):
        def load():
            table = source.read_row_group(i)
            X = np.column_stack([table[f"x{j}"].to_numpy() for j in range(WIDTH)])
            return X, table["y"].to_numpy()

        return load

    factory = lambda: [row_group(i) for i in range(source.num_row_groups)]  # noqa: E731
    model = fit_chunks(_regressor(), factory, n_epochs=4, random_state=0)
    for got, want in zip(_weights(model), _weights(expected), strict=True):
        np.testing.assert_array_equal(got, want)


def test_dask_array_blocks_train_like_the_array_in_memory(reference):
    da = pytest.importorskip("dask.array")
    X, y, expected = reference
    X_dask = da.from_array(X, chunks=(CHUNK, WIDTH))
    y_dask = da.from_array(y, chunks=CHUNK)

    def block(i):
        return lambda: (X_dask.blocks[i].compute(), y_dask.blocks[i].compute())

    factory = lambda: [block(i) for i in range(X_dask.numblocks[0])]  # noqa: E731
    model = fit_chunks(_regressor(), factory, n_epochs=4, random_state=0)
    for got, want in zip(_weights(model), _weights(expected), strict=True):
        np.testing.assert_array_equal(got, want)


def test_shuffling_changes_the_order_and_the_seed_fixes_it(reference):
    X, y, expected = reference
    again = fit_chunks(_regressor(), _in_memory(X, y), n_epochs=4, random_state=0)
    other = fit_chunks(_regressor(), _in_memory(X, y), n_epochs=4, random_state=1)
    in_order = fit_chunks(_regressor(), _in_memory(X, y), n_epochs=4, shuffle=False)
    assert in_order.n_iter_ == 4 * 4  # one call a chunk without shuffling
    expected = _weights(expected)
    assert all(map(np.array_equal, _weights(again), expected))
    assert not all(map(np.array_equal, _weights(other), expected))


def test_a_classifier_collects_its_classes_in_a_first_pass():
    X, y = _data()
    labels = np.where(y > 0, "up", "down")

    def chunks():  # a generator: read once, in order
        return ((X[i : i + CHUNK], labels[i : i + CHUNK]) for i in range(0, N, CHUNK))

    model = fit_chunks(
        MixtureOfExpertsClassifier(random_state=0, device="cpu"), chunks, n_epochs=2
    )
    assert list(model.classes_) == ["down", "up"]
    assert model.score(X, labels) > 0.7


def test_a_chunk_of_another_width_is_refused():
    X, y = _data()
    chunks = lambda: [(X[:300], y[:300]), (X[300:600, :4], y[300:600])]  # noqa: E731
    with pytest.raises(ValueError, match="different numbers of columns"):
        fit_chunks(_regressor(), chunks)
    with pytest.raises(ValueError, match="features"):
        fit_chunks(_regressor(), chunks, shuffle=False)


def test_a_label_outside_the_classes_is_refused():
    X, y = _data()
    labels = np.where(y > 0, "up", "down").astype(object)
    labels[900] = "sideways"
    with pytest.raises(ValueError, match="sideways"):
        fit_chunks(
            MixtureOfExpertsClassifier(device="cpu"),
            _in_memory(X, labels),
            classes=["down", "up"],
        )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"n_epochs": 0}, ValueError), ({"mix": 1.5}, TypeError)],
)
def test_bad_counts_are_refused(kwargs, error):
    X, y = _data()
    with pytest.raises(error, match=next(iter(kwargs))):
        fit_chunks(_regressor(), _in_memory(X, y), **kwargs)


def test_a_chunk_that_is_not_a_pair_is_refused():
    X, _ = _data()
    with pytest.raises(ValueError, match=r"tuple \(X, y\)"):
        fit_chunks(_regressor(), lambda: [X])


def test_peak_memory_stays_below_a_quarter_of_the_mapped_data():
    done = run_script("benchmarks/streaming_memory.py", "--quick", timeout=300)
    assert "peak growth" in done.stdout
