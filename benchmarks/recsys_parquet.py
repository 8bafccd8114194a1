"""Peak memory and time of ``fit_chunks`` over a synthetic interaction log in parquet.

Writes ``make_interaction_log`` (200,000 users, 50,000 items, 8 context columns, the
click as target) to a parquet file in row groups of ``--chunk-rows`` rows, then, in a
fresh process, trains ``MixtureOfExpertsClassifier`` through ``skmoe.fit_chunks``,
one row group loaded at a time, with the two id columns hashed
(``categorical_hash_buckets``): the vocabulary needs no first pass over the file.
Prints the fit time, the tables' sizes and the training process's peak memory
(``ru_maxrss``, Linux).

    python benchmarks/recsys_parquet.py --rows 10000000
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write(path, rows, chunk_rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skmoe.datasets import make_interaction_log

    X, Y, _ = make_interaction_log(
        n_samples=rows,
        n_users=200_000,
        n_items=50_000,
        n_context=8,
        tags="string",
        random_state=0,
    )
    X = X.drop(columns=["item_tags"])
    X["click"] = Y["click"].to_numpy()
    table = pa.Table.from_pandas(X, preserve_index=False)
    pq.write_table(table, path, row_group_size=chunk_rows)


def train(path, buckets):
    import pyarrow.parquet as pq

    from skmoe import MixtureOfExpertsClassifier, fit_chunks

    source = pq.ParquetFile(path)

    def loader(i):
        def load():
            frame = source.read_row_group(i).to_pandas()
            return frame.drop(columns=["click"]), frame["click"].to_numpy()

        return load

    model = MixtureOfExpertsClassifier(
        categorical_features=["user_id", "item_id"],
        categorical_hash_buckets=buckets,
        random_state=0,
    )
    start = time.perf_counter()
    fit_chunks(
        model,
        lambda: [loader(i) for i in range(source.num_row_groups)],
        n_epochs=1,
        classes=[0, 1],
        random_state=0,
    )
    return {
        "rows": source.metadata.num_rows,
        "fit_seconds": round(time.perf_counter() - start, 1),
        "tables": [t.num_embeddings for t in model.module_.embedding.categorical],
        "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--chunk-rows", type=int, default=1_000_000)
    parser.add_argument("--buckets", type=int, default=2**18)
    parser.add_argument("--train", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train is not None:  # the fresh training process
        print(json.dumps(train(args.train, args.buckets)))
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log.parquet"
        start = time.perf_counter()
        write(path, args.rows, args.chunk_rows)
        print(f"wrote {args.rows:,} rows in {time.perf_counter() - start:.1f} s")
        done = subprocess.run(
            [sys.executable, __file__, "--train", str(path), "--buckets",
             str(args.buckets)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"fit_chunks over {result['rows']:,} rows: {result['fit_seconds']} s, "
        f"tables {result['tables']}, peak memory {result['peak_gb']} GB"
    )


if __name__ == "__main__":
    main()
