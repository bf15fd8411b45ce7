"""The known-mixture generators."""

import numpy as np
from scipy.stats import norm

from skmoe.datasets import make_moe_classification, make_moe_regression


def test_regression_log_likelihood_is_that_of_the_true_model():
    X, y, p = make_moe_regression(
        n_samples=300, n_features=3, n_experts=2, return_params=True, random_state=0
    )
    logits = X @ p.gate_coef + p.gate_intercept
    gate = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    dens = norm.pdf(y[:, None], loc=X @ p.coef.T + p.intercept, scale=p.noise)
    expected = np.log((gate * dens).sum(axis=1)).sum()
    assert abs(expected - p.log_likelihood) < 1e-8


def test_regression_rows_follow_their_expert():
    X, y, p = make_moe_regression(
        n_samples=5000, noise=0.05, return_params=True, random_state=1
    )
    own = (X @ p.coef.T + p.intercept)[np.arange(5000), p.expert]
    assert np.std(y - own) < 0.06
    # the drawn experts follow the gate: frequencies match gate probabilities
    logits = X @ p.gate_coef
    gate = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    freq = np.bincount(p.expert, minlength=3) / 5000
    np.testing.assert_allclose(freq, gate.mean(axis=0), atol=0.02)
    confident = gate.max(axis=1) > 0.9
    assert np.mean(p.expert[confident] == gate[confident].argmax(axis=1)) > 0.9


def test_classification_shapes_labels_and_reproducibility():
    X, y, p = make_moe_classification(
        n_samples=400, n_classes=3, return_params=True, random_state=2
    )
    assert X.shape == (400, 2) and set(np.unique(y)) == {0, 1, 2}
    assert p.coef.shape == (2, 2, 3) and np.isfinite(p.log_likelihood)
    assert p.log_likelihood < 0
    X2, y2 = make_moe_classification(n_samples=400, n_classes=3, random_state=2)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
