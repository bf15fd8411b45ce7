"""Predictive distributions, information criteria and the summary."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.tree import DecisionTreeRegressor

from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    expert_n_parameters,
    select_n_experts,
)
from skmoe._predictive import (
    mixture_cdf,
    mixture_modes,
    mixture_quantiles,
    sample_mixture,
)
from skmoe.datasets import make_moe_classification, make_moe_regression


@pytest.fixture(scope="module")
def split():
    X, y, truth = make_moe_regression(
        n_samples=4000,
        n_experts=3,
        noise=[0.2, 0.5, 1.0],
        return_params=True,
        random_state=0,
    )
    return X[:2000], y[:2000], X[2000:], y[2000:], truth


@pytest.fixture(scope="module")
def fitted(split):
    X, y, *_ = split
    return MixtureOfExpertsRegressor(n_init=3, random_state=0).fit(X, y)


def test_quantiles_invert_the_mixture_cdf():
    rng = np.random.RandomState(0)
    w = rng.dirichlet(np.ones(3), size=50)
    mu = 5 * rng.standard_normal((50, 3))
    sd = rng.uniform(0.1, 2, size=(50, 3))
    q = np.array([0.01, 0.3, 0.5, 0.99])
    x = mixture_quantiles(w, mu, sd, q)
    np.testing.assert_allclose(
        mixture_cdf(x, w, mu, sd), np.tile(q, (50, 1)), atol=1e-12
    )
    # a single component gives the normal quantiles
    one = mixture_quantiles(np.ones((2, 1)), np.zeros((2, 1)), np.ones((2, 1)), q)
    np.testing.assert_allclose(one, np.tile(norm.ppf(q), (2, 1)), atol=1e-10)


def test_mode_of_a_bimodal_mixture_is_not_its_mean():
    w = np.array([[0.6, 0.4]])
    mu = np.array([[-3.0, 3.0]])
    sd = np.array([[0.5, 0.5]])
    mode = mixture_modes(w, mu, sd)
    assert mode[0] == pytest.approx(-3.0, abs=1e-6)
    assert abs((w * mu).sum()) < 1  # the mean lies between the modes
    # samples follow the weights and spreads
    draws = sample_mixture(w, mu, sd, 20000, np.random.RandomState(0))
    assert np.mean(draws < 0) == pytest.approx(0.6, abs=0.015)


def test_interval_coverage_on_held_out_data(split, fitted):
    _, _, X_test, y_test, _ = split
    q = fitted.predict_quantiles(X_test, [0.05, 0.5, 0.95])
    assert q.shape == (len(X_test), 3)
    assert np.all(q[:, 0] < q[:, 1]) and np.all(q[:, 1] < q[:, 2])
    inside = (y_test > q[:, 0]) & (y_test < q[:, 2])
    # 2000 rows: the 90% interval should cover 90% +- 2 points (3 s.e.)
    assert abs(inside.mean() - 0.90) < 0.02
    below_median = np.mean(y_test < q[:, 1])
    assert abs(below_median - 0.5) < 0.035


def test_std_and_samples_match_the_true_conditional(split, fitted):
    _, _, X_test, y_test, truth = split
    logits = X_test @ truth.gate_coef
    g = np.exp(logits - logits.max(axis=1, keepdims=True))
    g /= g.sum(axis=1, keepdims=True)
    mu = X_test @ truth.coef.T + truth.intercept
    true_mean = (g * mu).sum(axis=1)
    true_std = np.sqrt((g * (truth.noise**2 + mu**2)).sum(axis=1) - true_mean**2)
    mean, std = fitted.predict(X_test, return_std=True)
    assert np.median(np.abs(std - true_std) / true_std) < 0.05
    assert np.median(np.abs(mean - true_mean)) < 0.05
    draws = fitted.sample_y(X_test[:3], n_samples=20000, random_state=0)
    assert draws.shape == (3, 20000)
    np.testing.assert_allclose(draws.std(axis=1), std[:3], rtol=0.05)


def test_predict_components_and_mode(fitted, split):
    _, _, X_test, *_ = split
    comp = fitted.predict_components(X_test[:10])
    assert comp.weight.shape == comp.mean.shape == comp.std.shape == (10, 3)
    np.testing.assert_allclose(
        (comp.weight * comp.mean).sum(1), fitted.predict(X_test[:10])
    )
    mode = fitted.predict_mode(X_test[:10])
    # the mode sits near the mean of the expert with the largest weighted peak
    peak = comp.weight / comp.std
    best = comp.mean[np.arange(10), peak.argmax(axis=1)]
    np.testing.assert_allclose(mode, best, atol=0.3)


def test_multi_output_quantiles_and_samples(split):
    X, y, *_ = split
    Y = np.column_stack([y, 2 * y])
    est = MixtureOfExpertsRegressor(random_state=0).fit(X, Y)
    q = est.predict_quantiles(X[:4], [0.1, 0.9])
    assert q.shape == (4, 2, 2)
    np.testing.assert_allclose(q[:, 1], 2 * q[:, 0], rtol=1e-6)
    assert est.sample_y(X[:4], 5).shape == (4, 2, 5)
    assert est.predict_mode(X[:4]).shape == (4, 2)


def test_bad_quantiles_are_refused(fitted, split):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        fitted.predict_quantiles(split[2][:3], [0.0, 0.5])


def test_bic_picks_the_true_number_of_experts():
    X, y = make_moe_regression(n_samples=1500, n_experts=3, noise=0.2, random_state=1)
    best, table = select_n_experts(
        MixtureOfExpertsRegressor(n_init=3, random_state=0), X, y, range(1, 6)
    )
    assert best.n_experts_ == 3
    assert table["bic"].idxmin() == 3
    assert list(table.columns) == [
        "log_likelihood",
        "n_parameters",
        "bic",
        "aic",
        "icl",
        "converged",
        "rows_per_parameter",
    ]
    # the counts: gate 3 * 2, experts 3 * 3, noise 3
    assert table.loc[3, "n_parameters"] == 18
    assert best.bic(X, y) == pytest.approx(
        -2 * best.log_likelihood_ + 18 * np.log(1500)
    )
    assert best.aic(X, y) == pytest.approx(-2 * best.log_likelihood_ + 36)


def test_parameter_counts_of_experts():
    X, y = make_moe_classification(n_samples=300, n_classes=3, random_state=0)
    clf = MixtureOfExpertsClassifier(n_experts=2, random_state=0).fit(X, y)
    # gate (2 + 1) * 1, each logistic expert 3 * 2 coefs + 3 intercepts
    assert clf.n_parameters() == 3 + 2 * 9
    tree = DecisionTreeRegressor(max_leaf_nodes=5).fit(X, y)
    assert expert_n_parameters(tree) == 5
    assert expert_n_parameters(LogisticRegression().fit(X, y)) == 9
    with pytest.raises(ValueError, match="Cannot count the parameters of expert K"):
        expert_n_parameters(KNeighborsRegressor().fit(X, y))


def test_summary_adds_up(fitted, split):
    X, y, *_ = split
    table = fitted.summary()
    assert list(table.index) == ["expert0", "expert1", "expert2"]
    assert table["mean_gate"].sum() == pytest.approx(1.0)
    assert table["effective_samples"].sum() == pytest.approx(len(X))
    assert table["log_likelihood"].sum() == pytest.approx(fitted.log_likelihood_)
    # narrow enough to print whole in an 80-column terminal
    assert "..." not in repr(table)
    assert max(map(len, repr(table).splitlines())) <= 80
    np.testing.assert_allclose(table["noise_std"], np.sqrt(fitted.noise_variance_))
    # the true noise levels 0.2, 0.5, 1.0 are found, in some order
    np.testing.assert_allclose(np.sort(table["noise_std"]), [0.2, 0.5, 1.0], rtol=0.1)
