"""A synthetic recommender log: Zipf-popular users and items with latent factors."""

from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

# Rows are generated this many at a time, so the temporaries of a 10-million-row log
# (gathered factor rows, logits) stay small.
_CHUNK = 1 << 20

TASKS = ("click", "rating", "conversion")


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _zipf_ranks(n_values, exponent, size, rng):
    """``size`` draws of ranks ``0 .. n_values - 1``, ``p(k) ∝ (k + 1)**-exponent``."""
    cdf = np.cumsum(np.arange(1, n_values + 1, dtype=np.float64) ** -exponent)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(ranks, n_values - 1)


def _offset_for_rate(logits, rate, weights=None):
    """The ``b`` with ``average(sigmoid(logits + b), weights) == rate``."""
    low, high = -30.0, 30.0
    for _ in range(45):
        middle = (low + high) / 2
        if np.average(_sigmoid(logits + middle), weights=weights) < rate:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")


def _check_rate(name, value):
    if not isinstance(value, Real) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}.")


def make_interaction_log(
    n_samples=100_000,
    n_users=10_000,
    n_items=2_000,
    n_tags=40,
    n_context=4,
    n_factors=8,
    zipf_exponent=1.1,
    click_rate=0.1,
    conversion_rate=0.2,
    rating_noise=0.5,
    tags="list",
    as_frame=True,
    random_state=None,
):
    """A recommender's interaction log: ids, item tags, context and three tasks.

    Each row is one impression of an item to a user. Users and items are drawn
    by popularity, as in real logs: the ``k``-th most popular of ``n`` values has
    probability proportional to ``(k + 1) ** -zipf_exponent`` (a truncated Zipf
    law), and ids are a random permutation of the ranks, so an id's value says
    nothing about its popularity. The generative model, with ``d = n_factors``:

    1. every tag ``t`` has a vector ``T_t ~ N(0, I / sqrt(d))``; every item has 1
       to 4 distinct tags (tags themselves Zipf-popular, exponent 1) and a factor
       ``V_i = 0.8 * mean(T_tags(i)) * sqrt(n_tags(i)) + 0.6 * e_i``, so its tags
       carry most of what there is to know about a rarely seen item;
    2. every user has a factor ``U_u ~ N(0, I / sqrt(d))`` and biases
       ``b_u``, ``r_u``; every item biases ``b_i``, ``r_i``, ``c_i`` (each
       ``N(0, 0.5**2)``);
    3. a row has ``n_context`` standard normal context features ``x`` (time of
       day, device, position, ...) and the affinity ``a = U_u . V_i`` (of
       variance about 1);
    4. ``click ~ Bernoulli(sigmoid(b0 + (1 + 0.5 tanh(x_0)) a + b_u + b_i +
       w_c . x))``: the first context feature scales how much the affinity matters
       (a mixture of regimes), and ``b0`` is set so that about ``click_rate`` of
       the rows are clicked;
    5. ``rating = 3.5 + 0.8 a + r_u + r_i + 0.3 sin(2 x_1) + w_r . x + eps``,
       ``eps ~ N(0, rating_noise**2)``, on every row (a rating or a watch time);
    6. ``conversion ~ Bernoulli(sigmoid(c0 + 0.5 a + c_i + w_v . x))`` given a
       click, observed only on clicked rows (NaN elsewhere), ``c0`` set so that
       about ``conversion_rate`` of the clicked rows convert.

    The weights ``w_c``, ``w_r``, ``w_v`` are drawn once (``N(0, 0.3**2)`` per
    context feature). The third return value holds each row's true
    ``p(click | row)``, ``E[rating | row]`` and ``p(conversion | click, row)``:
    the Bayes-optimal predictions, for measuring how close a model comes (the
    best rating RMSE is ``rating_noise``). Everything a model may read is in
    ``X``; the factors and biases are not.

    Parameters
    ----------
    n_samples : int, default=100_000
        Number of rows (impressions).
    n_users : int, default=10_000
        Number of distinct user ids to draw from.
    n_items : int, default=2_000
        Number of distinct item ids to draw from.
    n_tags : int, default=40
        Number of distinct item tags.
    n_context : int, default=4
        Number of numeric context columns, at least 2.
    n_factors : int, default=8
        Width ``d`` of the latent user and item factors.
    zipf_exponent : float, default=1.1
        Exponent of the popularity law of users and items; ``0`` draws them
        uniformly, larger values concentrate the log on fewer ids.
    click_rate : float, default=0.1
        Approximate share of clicked rows, in ``(0, 1)``.
    conversion_rate : float, default=0.2
        Approximate share of clicked rows that convert, in ``(0, 1)``.
    rating_noise : float, default=0.5
        Standard deviation of the rating's Gaussian noise.
    tags : {"list", "string"}, default="list"
        How the ``item_tags`` column holds an item's tags: ``"list"``, a tuple of
        tag names per cell (a list-valued column; rows of one item share one
        tuple, so a 10-million-row log costs one pointer per row); ``"string"``,
        the names joined by ``"|"`` (pass ``list_separators={"item_tags": "|"}``
        to the estimators).
    as_frame : bool, default=True
        If True, ``X``, ``Y`` and the optimum are DataFrames and the id columns are
        of ``category`` dtype, so skmoe's estimators embed them with their default
        ``categorical_features="from_dtype"``. If False, ``X`` is a dict of
        NumPy arrays for hand-written models: ``"user_id"`` and ``"item_id"``
        (int64), ``"context"`` of shape ``(n_samples, n_context)``, and
        ``"item_tags"`` of shape ``(n_samples, 4)``, each row's tag indices padded
        with ``-1``; ``Y`` and the optimum are arrays.
    random_state : int, RandomState instance or None, default=None
        Seeds the log's definition (factors, biases, tags, weights) and its rows.
        Draw train and test rows from one call and split them, so both share one
        definition.

    Returns
    -------
    X : DataFrame of shape (n_samples, 3 + n_context) or dict
        ``user_id``, ``item_id``, ``item_tags`` and ``context_0`` ... (see
        ``as_frame``).
    Y : DataFrame or ndarray of shape (n_samples, 3)
        ``click`` (0 or 1), ``rating`` (float) and ``conversion`` (0, 1, or NaN
        where there was no click): fit ``MultiGateMoE`` with
        ``allow_missing_labels=True``, or with ``task_chain={"conversion":
        "click"}``.
    optimum : DataFrame or ndarray of shape (n_samples, 3)
        ``p_click``, ``expected_rating`` and ``p_conversion`` (given a click) of
        every row under the generative model.

    See Also
    --------
    make_click_conversion : Clicks and conversions from dense features.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe.datasets import make_interaction_log
    >>> X, Y, optimum = make_interaction_log(n_samples=2000, random_state=0)
    >>> list(X.columns)
    ['user_id', 'item_id', 'item_tags', 'context_0', 'context_1', 'context_2', \
'context_3']
    >>> list(Y.columns)
    ['click', 'rating', 'conversion']
    >>> bool(Y.loc[Y["click"] == 0, "conversion"].isna().all())
    True
    >>> residual = Y["rating"] - optimum["expected_rating"]
    >>> round(float(np.sqrt(np.mean(residual**2))), 1)
    0.5
    """
    for name, value, minimum in (
        ("n_samples", n_samples, 1),
        ("n_users", n_users, 1),
        ("n_items", n_items, 1),
        ("n_tags", n_tags, 1),
        ("n_context", n_context, 2),
        ("n_factors", n_factors, 1),
    ):
        _check_int(name, value, minimum)
    _check_rate("click_rate", click_rate)
    _check_rate("conversion_rate", conversion_rate)
    if not isinstance(zipf_exponent, Real) or zipf_exponent < 0:
        raise ValueError(f"zipf_exponent must be >= 0, got {zipf_exponent!r}.")
    if not isinstance(rating_noise, Real) or rating_noise < 0:
        raise ValueError(f"rating_noise must be >= 0, got {rating_noise!r}.")
    if tags not in ("list", "string"):
        raise ValueError(f'tags must be "list" or "string", got {tags!r}.')
    # A Generator (faster normals than RandomState's) seeded from random_state.
    rng = np.random.default_rng(check_random_state(random_state).randint(2**31, size=4))
    d = n_factors

    # The log's definition: tags, factors, biases, context weights.
    max_tags = 4
    tag_vectors = rng.normal(scale=d**-0.25, size=(n_tags, d))
    tag_count = rng.integers(1, min(max_tags, n_tags) + 1, size=n_items)
    # Draw tags with repetition, then keep each item's distinct tags, sorted.
    item_tags = _zipf_ranks(n_tags, 1.0, (n_items, max_tags), rng)
    item_tags[np.arange(max_tags) >= tag_count[:, None]] = n_tags
    item_tags.sort(axis=1)
    item_tags[:, 1:][item_tags[:, 1:] == item_tags[:, :-1]] = n_tags
    item_tags.sort(axis=1)
    tag_count = (item_tags < n_tags).sum(axis=1)
    item_tags[item_tags == n_tags] = -1
    tag_sum = np.zeros((n_items, d))
    for slot in range(max_tags):
        has = tag_count > slot
        tag_sum[has] += tag_vectors[item_tags[has, slot]]
    item_factors = 0.8 * tag_sum / np.sqrt(tag_count)[:, None] + 0.6 * rng.normal(
        scale=d**-0.25, size=(n_items, d)
    )
    user_factors = rng.normal(scale=d**-0.25, size=(n_users, d))
    user_click, user_rating = rng.normal(scale=0.5, size=(2, n_users))
    item_click, item_rating, item_conversion = rng.normal(scale=0.5, size=(3, n_items))
    w_click, w_rating, w_conversion = rng.normal(scale=0.3, size=(3, n_context))
    user_factors_t = np.ascontiguousarray(user_factors.T)
    item_factors_t = np.ascontiguousarray(item_factors.T)
    user_ids = rng.permutation(n_users)
    item_ids = rng.permutation(n_items)

    # The rows: by popularity rank, then renamed to ids.
    user_rank = _zipf_ranks(n_users, zipf_exponent, n_samples, rng)
    item_rank = _zipf_ranks(n_items, zipf_exponent, n_samples, rng)
    context = rng.standard_normal((n_samples, n_context))
    noise = rng.standard_normal(n_samples) * rating_noise
    uniform = rng.random((2, n_samples))

    click_logit = np.empty(n_samples)
    conversion_logit = np.empty(n_samples)
    expected_rating = np.empty(n_samples)
    for start in range(0, n_samples, _CHUNK):
        rows = slice(start, start + _CHUNK)
        u, i, x = user_rank[rows], item_rank[rows], context[rows]
        # One factor at a time: gathers from 1-D tables stay in cache, where
        # gathering whole rows of a (n_users, d) table does not.
        affinity = np.zeros(len(u))
        for k in range(d):
            affinity += user_factors_t[k][u] * item_factors_t[k][i]
        click_logit[rows] = (
            (1 + 0.5 * np.tanh(x[:, 0])) * affinity
            + user_click[u]
            + item_click[i]
            + x @ w_click
        )
        expected_rating[rows] = (
            3.5
            + 0.8 * affinity
            + user_rating[u]
            + item_rating[i]
            + 0.3 * np.sin(2 * x[:, 1])
            + x @ w_rating
        )
        conversion_logit[rows] = 0.5 * affinity + item_conversion[i] + x @ w_conversion
    # Offsets from at most 100,000 rows, so the rates cost no more for longer logs.
    probe = slice(0, 100_000)
    click_logit += _offset_for_rate(click_logit[probe], click_rate)
    p_click = _sigmoid(click_logit)
    # The rate among clicked rows: each row weighs its click probability.
    conversion_logit += _offset_for_rate(
        conversion_logit[probe], conversion_rate, weights=p_click[probe]
    )
    del click_logit
    p_conversion = _sigmoid(conversion_logit)
    del conversion_logit
    click = uniform[0] < p_click
    conversion = np.where(click, (uniform[1] < p_conversion).astype(np.float64), np.nan)
    rating = expected_rating + noise
    del uniform, noise

    user_id = user_ids[user_rank]
    item_id = item_ids[item_rank]
    if not as_frame:
        X = {
            "user_id": user_id,
            "item_id": item_id,
            "context": context,
            "item_tags": item_tags[item_rank],
        }
        Y = np.column_stack([click.astype(np.float64), rating, conversion])
        optimum = np.column_stack([p_click, expected_rating, p_conversion])
        return X, Y, optimum

    # One cell object per item, shared by all its rows.
    tag_names = np.array([f"tag_{t:0{len(str(n_tags - 1))}d}" for t in range(n_tags)])
    cells = np.empty(n_items, dtype=object)
    for i in range(n_items):
        names = tuple(tag_names[item_tags[i, : tag_count[i]]].tolist())
        cells[i] = names if tags == "list" else "|".join(names)
    X = pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(user_id, categories=range(n_users)),
            "item_id": pd.Categorical.from_codes(item_id, categories=range(n_items)),
            "item_tags": pd.Series(cells[item_rank], dtype=object),
        }
    )
    for j in range(n_context):
        X[f"context_{j}"] = context[:, j]
    Y = pd.DataFrame(
        {"click": click.astype(np.int64), "rating": rating, "conversion": conversion}
    )
    optimum = pd.DataFrame(
        {
            "p_click": p_click,
            "expected_rating": expected_rating,
            "p_conversion": p_conversion,
        }
    )
    return X, Y, optimum
