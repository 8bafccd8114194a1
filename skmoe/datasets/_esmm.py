"""Clicks and conversions with sample-selection bias, as in ESMM's motivation."""

import numpy as np
from sklearn.utils import check_random_state


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def make_click_conversion(
    n_samples=20_000,
    n_features=10,
    click_rate=0.1,
    selection_bias=2.0,
    random_state=None,
):
    """Clicks, and conversions seen only after a click, with selection bias.

    The setting of ESMM (Ma et al., "Entire Space Multi-Task Model", SIGIR 2018):
    a conversion is observed only for clicked rows, yet predictions are needed for
    every row. Here

    - ``p(click | x) = sigmoid(a @ x + b)``, with ``b`` set so that about
      ``click_rate`` of the rows are clicked;
    - ``p(conversion | click, x) = sigmoid(c @ x - selection_bias * (a @ x) / |a|)``:
      among the rows that get clicked most, conversion is *less* likely, so the
      clicked rows are a biased sample of the population for the conversion model.

    ``conversion`` is NaN where there was no click; ``p_conversion`` holds the true
    ``p(conversion | click, x)`` of every row, to evaluate a model over the whole
    population (the ESMM paper's "entire space").

    Parameters
    ----------
    n_samples : int, default=20_000
        Number of rows.
    n_features : int, default=10
        Number of standard normal features.
    click_rate : float, default=0.1
        Approximate share of clicked rows, in ``(0, 1)``.
    selection_bias : float, default=2.0
        How strongly the click score lowers the conversion score; ``0`` makes the
        clicked rows an unbiased sample for the conversion model.
    random_state : int, RandomState instance or None, default=None
        Seeds the task definition and the samples.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Features.
    Y : ndarray of shape (n_samples, 2)
        ``click`` (0 or 1) and ``conversion`` (0, 1, or NaN where not clicked).
    p_conversion : ndarray of shape (n_samples,)
        The true ``p(conversion | click, x)`` of every row.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe.datasets import make_click_conversion
    >>> X, Y, p = make_click_conversion(n_samples=5000, random_state=0)
    >>> X.shape, Y.shape
    ((5000, 10), (5000, 2))
    >>> bool(np.isnan(Y[Y[:, 0] == 0, 1]).all())
    True
    """
    if not 0.0 < click_rate < 1.0:
        raise ValueError(f"click_rate must lie in (0, 1), got {click_rate}.")
    if n_samples < 1 or n_features < 2:
        raise ValueError(
            "n_samples must be positive and n_features at least 2; got "
            f"n_samples={n_samples}, n_features={n_features}."
        )
    rng = check_random_state(random_state)
    a = rng.standard_normal(n_features)
    c = rng.standard_normal(n_features)
    X = rng.standard_normal((n_samples, n_features))
    click_score = X @ a
    # Offset so that the mean click probability is about click_rate.
    offsets = np.linspace(-12.0, 12.0, 481)
    rates = np.array([_sigmoid(click_score + o).mean() for o in offsets])
    offset = offsets[np.argmin(np.abs(rates - click_rate))]
    click = rng.random(n_samples) < _sigmoid(click_score + offset)
    p_conversion = _sigmoid(
        X @ c / np.linalg.norm(c) - selection_bias * click_score / np.linalg.norm(a)
    )
    conversion = (rng.random(n_samples) < p_conversion).astype(np.float64)
    conversion[~click] = np.nan
    return X, np.column_stack([click.astype(np.float64), conversion]), p_conversion
