"""partial_fit: online generalised EM over mini-batches, against the batch fit."""

import re

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDRegressor
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_classification, make_moe_regression


def _epochs(moe, X, y, n_epochs, batch_size=200, **kwargs):
    """partial_fit over shuffled batches; the full-data log-likelihood per epoch."""
    rng = np.random.RandomState(0)
    curve = []
    for _ in range(n_epochs):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch_size):
            rows = order[start : start + batch_size]
            moe.partial_fit(X[rows], y[rows], **kwargs)
        curve.append(moe.conditional_log_likelihood(X, y).sum())
    return np.array(curve)


@pytest.fixture(scope="module")
def regression_data():
    return make_moe_regression(
        n_samples=2000, n_experts=3, random_state=3, return_params=True
    )


def test_partial_fit_approaches_the_batch_fit_for_linear_experts(regression_data):
    X, y, params = regression_data
    batch = MixtureOfExpertsRegressor(n_experts=3, random_state=0).fit(X, y)
    online = MixtureOfExpertsRegressor(n_experts=3, random_state=0)
    curve = _epochs(online, X, y, n_epochs=5)
    assert online.n_iter_ == 5 * 10
    # within 5 (0.7%) of the batch log-likelihood after five epochs
    assert abs(curve[-1] - batch.log_likelihood_) < 5.0
    assert curve[-1] > curve[0]
    # and the experts are the true ones (in some order)
    true = np.c_[params.coef, params.intercept]
    for est in online.experts_:
        fitted = np.r_[est.coef_, est.intercept_]
        assert np.min(np.abs(true - fitted).max(axis=1)) < 0.05
    np.testing.assert_allclose(
        np.sort(online.noise_variance_), np.sort(batch.noise_variance_), rtol=0.2
    )


def test_partial_fit_with_sgd_experts(regression_data):
    X, y, _ = regression_data
    batch = MixtureOfExpertsRegressor(n_experts=3, random_state=0).fit(X, y)
    online = MixtureOfExpertsRegressor(
        SGDRegressor(learning_rate="constant", eta0=0.01), n_experts=3, random_state=0
    )
    curve = _epochs(online, X, y, n_epochs=4)
    assert all(type(e) is SGDRegressor for e in online.experts_)
    assert np.all(np.isfinite(online.noise_variance_))
    # SGD experts lag the exact least squares: within 5% of the batch fit
    assert curve[-1] > curve[0]
    assert abs(curve[-1] - batch.log_likelihood_) < 0.05 * abs(batch.log_likelihood_)


def test_one_full_batch_is_the_first_em_iteration(regression_data):
    X, y, _ = regression_data
    em = MixtureOfExpertsRegressor(n_experts=3, max_iter=1, random_state=0)
    with pytest.warns(ConvergenceWarning):
        em.fit(X, y)
    online = MixtureOfExpertsRegressor(n_experts=3, random_state=0).partial_fit(X, y)
    for a, b in zip(online.experts_, em.experts_, strict=True):
        np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-8)
    np.testing.assert_allclose(online.noise_variance_, em.noise_variance_, rtol=1e-8)
    assert online.log_likelihood_ == pytest.approx(em.log_likelihood_, rel=1e-8)
    # with learning_decay=0 every step is a whole M-step: online EM on the
    # same batch climbs to the batch optimum
    online.set_params(learning_decay=0.0)
    for _ in range(15):
        online.partial_fit(X, y)
    batch = MixtureOfExpertsRegressor(n_experts=3, random_state=0).fit(X, y)
    assert online.log_likelihood_ == pytest.approx(batch.log_likelihood_, abs=0.5)


def test_partial_fit_classifier_with_logistic_and_naive_bayes_experts():
    X, y = make_moe_classification(
        n_samples=2000, n_experts=2, n_classes=3, random_state=2
    )
    # the batch optimum, reached fast by gradient training (test_gradient.py
    # checks that it is EM's)
    batch = MixtureOfExpertsClassifier(
        n_experts=2, training="gradient", random_state=0
    ).fit(X, y)
    online = MixtureOfExpertsClassifier(n_experts=2, random_state=0)
    curve = _epochs(online, X, y, n_epochs=5, classes=[0, 1, 2])
    assert all(type(e) is LogisticRegression for e in online.experts_)
    np.testing.assert_array_equal(online.classes_, [0, 1, 2])
    assert curve[-1] > curve[0]
    # within 0.05 nats per sample of the batch fit after five epochs (online
    # steps on the gate and logistic experts are Newton steps of decaying
    # length, slower than EM's full M-steps)
    assert abs(curve[-1] - batch.log_likelihood_) / len(X) < 0.05
    nb = MixtureOfExpertsClassifier(GaussianNB(), n_experts=2, random_state=0)
    curve = _epochs(nb, X, y, n_epochs=2, classes=[0, 1, 2])
    assert all(type(e) is GaussianNB for e in nb.experts_)
    assert curve[-1] > curve[0]
    np.testing.assert_allclose(nb.predict_proba(X).sum(axis=1), 1.0)


def test_partial_fit_after_fit_continues():
    X, y = make_moe_regression(n_samples=600, n_experts=2, random_state=1)
    moe = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    fitted = moe.log_likelihood_
    gate = moe.gate_.coef_.copy()
    moe.partial_fit(X, y)
    # a step from the optimum on the same data stays there
    assert moe.log_likelihood_ == pytest.approx(fitted, abs=0.5)
    np.testing.assert_allclose(moe.gate_.coef_, gate, rtol=0.05, atol=0.05)


def test_first_call_needs_classes():
    X, y = make_moe_classification(n_samples=100, random_state=0)
    clf = MixtureOfExpertsClassifier(n_experts=2)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="not seen in fit"):
        clf.partial_fit(X[:5], np.full(5, 7))


@pytest.mark.parametrize(
    "moe, message",
    [
        (
            MixtureOfExpertsRegressor(DecisionTreeRegressor(), n_experts=2),
            r"partial_fit cannot update expert 'expert0' \(DecisionTreeRegressor\)",
        ),
        (
            MixtureOfExpertsRegressor(LinearRegression(positive=True), n_experts=2),
            r"partial_fit cannot update expert 'expert0' \(LinearRegression\)",
        ),
        (
            MixtureOfExpertsClassifier(
                estimators=[
                    ("lr", LogisticRegression()),
                    ("svc", SVC(probability=True)),
                ]
            ),
            r"partial_fit cannot update expert 'svc' \(SVC\)",
        ),
    ],
)
def test_error_names_an_expert_without_partial_fit(moe, message):
    X, y = make_moe_classification(n_samples=60, random_state=0)
    # hidden, as sklearn meta-estimators hide partial_fit over estimators
    # without it; the AttributeError is caused by the ValueError naming it
    assert not hasattr(moe, "partial_fit")
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as info:
        moe.partial_fit(X, y)
    assert isinstance(info.value.__cause__, ValueError)
    assert re.search(message, str(info.value.__cause__))


def test_batch_feature_count_is_checked():
    X, y = make_moe_regression(n_samples=100, n_experts=2, random_state=0)
    moe = MixtureOfExpertsRegressor(n_experts=2).partial_fit(X, y)
    with pytest.raises(ValueError, match="features"):
        moe.partial_fit(X[:, :1], y)


def test_first_batch_too_small():
    X, y = make_moe_regression(n_samples=100, n_experts=2, random_state=0)
    moe = MixtureOfExpertsRegressor(n_experts=3)
    with pytest.raises(ValueError, match="first batch has 2 sample"):
        moe.partial_fit(X[:2], y[:2])
