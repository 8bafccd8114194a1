"""Checks of scikit-learn's suite that cannot pass, each with its reason."""

# Minibatch stochastic training: a row of weight k and k repeated rows land in different
# minibatches and shuffles, so the two fits agree only in expectation, not to the
# check's 1e-7 tolerance. tests/test_training.py checks the equivalence with full-batch
# training, where it holds.
SGD_WEIGHTS = "minibatch SGD: weight k equals k repeated rows only in expectation"


def expected_failed_checks(estimator):
    """The expected failures for any skmoe estimator, keyed by check name."""
    return {
        "check_sample_weight_equivalence_on_dense_data": SGD_WEIGHTS,
        "check_sample_weight_equivalence_on_sparse_data": SGD_WEIGHTS,
    }
