"""Every tuned CPU threshold of skmoe, in one place.

Each was measured on the benchmark machine of ``docs/performance.md`` (2 x86-64
cores, torch 2.13 CPU, one thread), where the figures behind it are recorded; on other
hardware the crossovers move, and re-measuring means rerunning the line given.
Either side of every threshold computes the same values (up to rounding): they only
choose the faster route.
"""

DISPATCH_MIN_SAVED_ROWS = 1024
"""Top-k rows are dispatched to their experts only when that saves this many
expert-row evaluations; ``benchmarks/speed.py`` section 3 at batch 256."""

TIER_MIN_SAVED_SLOTS = 512
"""An overflow buffer for crowded experts is used once it saves this many padded
slots; ``benchmarks/speed.py`` section 3, 16 to 64 experts."""

TOPK_ROUNDS_MIN_COLUMNS_PER_K = 6
"""``top_k_rows`` takes k rounds of ``max`` instead of ``torch.topk`` from this many
columns per pick; timed on fresh random ``(256, width)`` inputs per call."""

NARROW_FLOAT32_WIDTH = 16
"""float32 softmaxes narrower than this run over the transposed view; timed on
``(256, width)`` and ``(4096, width)`` inputs, width 2 to 32."""

NARROW_FLOAT64_WIDTH = 48
"""The same crossover for float64; same timing."""

SOFTMAX_MIN_ROWS = 64
"""The transposed softmax needs at least this many rows; same timing, 1 to 256 rows."""

CROSS_ENTROPY_MIN_ROWS = 128
"""The transposed cross-entropy needs at least this many rows; timed as the softmax."""

CROSS_ENTROPY_MIN_WIDTH = 4
"""... and at least this many classes; same timing."""

SMALL_BATCH_MAX_ROWS = 16
"""Up to this many rows the estimators used to predict with NumPy (one-row to 64-row
``predict`` timed for 8 and 64 experts, top-1 and top-2). The NumPy evaluator now
predicts every row count where it knows the module, so that a row's prediction does
not depend on the batch; the tests still use this as a "small batch" size."""

SPARSE_EMBEDDING_ROWS = 16_384
"""Categorical embedding tables of at least this many rows take sparse gradients
and a lazy Adam step (only the rows a batch reads are updated), so that a step's cost
does not grow with the vocabulary; smaller tables keep dense Adam, whose cost at
this size is about that of one expert layer's update."""
