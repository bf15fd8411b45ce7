"""Coefficient tables: standard errors from the observed information."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_classification, make_moe_regression


@pytest.fixture(scope="module")
def fitted():
    X, y = make_moe_regression(
        300, n_features=2, n_experts=2, noise=0.4, random_state=3
    )
    est = MixtureOfExpertsRegressor(
        LinearRegression(),
        n_experts=2,
        gate_alpha=0.0,
        tol=1e-12,
        max_iter=2000,
        n_init=3,
        random_state=0,
    ).fit(X, y)
    return est, X, y


def _mixture_log_likelihood(theta, X, y):
    """Sum of log p(y | x) for 2 experts: gate (3), experts (3 + sigma each)."""
    D = np.hstack([np.ones((len(X), 1)), X])
    v, b0, s0, b1, s1 = theta[:3], theta[3:6], theta[6], theta[7:10], theta[10]
    log_gate = np.stack([np.zeros(len(X)), D @ v], axis=1)
    log_gate -= logsumexp(log_gate, axis=1, keepdims=True)
    log_p = np.stack(
        [
            -0.5 * np.log(2 * np.pi * s**2) - 0.5 * ((y - D @ b) / s) ** 2
            for b, s in [(b0, s0), (b1, s1)]
        ],
        axis=1,
    )
    return logsumexp(log_gate + log_p, axis=1).sum()


def test_standard_errors_are_those_of_the_likelihood_hessian(fitted):
    est, X, y = fitted
    table = est.coefficient_table(X, y)
    std = np.sqrt(est.noise_variance_)
    theta = np.concatenate(
        [
            table["estimate"].to_numpy()[:3],
            table["estimate"].to_numpy()[3:6],
            [std[0]],
            table["estimate"].to_numpy()[6:9],
            [std[1]],
        ]
    )
    # at a maximum the gradient is zero (EM ran to tol 1e-12)
    step = 1e-4
    P = theta.size
    hessian = np.empty((P, P))
    f0 = _mixture_log_likelihood(theta, X, y)
    for a in range(P):
        for b in range(P):
            ea, eb = np.eye(P)[a] * step, np.eye(P)[b] * step
            hessian[a, b] = (
                _mixture_log_likelihood(theta + ea + eb, X, y)
                - _mixture_log_likelihood(theta + ea - eb, X, y)
                - _mixture_log_likelihood(theta - ea + eb, X, y)
                + _mixture_log_likelihood(theta - ea - eb, X, y)
            ) / (4 * step**2)
    assert np.isfinite(f0)
    covariance = np.linalg.inv(-hessian)
    se = np.sqrt(np.diag(covariance))
    expected = np.concatenate([se[:3], se[3:6], se[7:10]])
    np.testing.assert_allclose(table["std_error"], expected, rtol=1e-4)
    np.testing.assert_allclose(table["z_value"], table["estimate"] / table["std_error"])
    assert list(table.index.get_level_values("part").unique()) == [
        "gate: expert1",
        "expert0",
        "expert1",
    ]
    assert list(table.loc["expert0"].index) == ["(Intercept)", "x0", "x1"]


def test_one_expert_gives_ordinary_least_squares_errors():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.3 + rng.normal(scale=0.7, size=200)
    est = MixtureOfExpertsRegressor(LinearRegression(), n_experts=1).fit(X, y)
    table = est.coefficient_table(X, y)
    D = np.hstack([np.ones((200, 1)), X])
    beta, rss = np.linalg.lstsq(D, y, rcond=None)[:2]
    # maximum likelihood: the noise variance RSS / n (not n - p)
    se = np.sqrt(rss[0] / 200 * np.diag(np.linalg.inv(D.T @ D)))
    np.testing.assert_allclose(table["estimate"], beta, rtol=1e-8)
    np.testing.assert_allclose(table["std_error"], se, rtol=1e-6)


def test_one_logistic_expert_gives_logistic_regression_errors():
    X, y = make_moe_classification(400, n_features=2, n_classes=2, random_state=0)
    est = MixtureOfExpertsClassifier(LogisticRegression(penalty=None), n_experts=1).fit(
        X, y
    )
    table = est.coefficient_table(X, y)
    D = np.hstack([np.ones((400, 1)), X])
    p = est.predict_proba(X)[:, 1]
    se = np.sqrt(np.diag(np.linalg.inv((D.T * (p * (1 - p))) @ D)))
    np.testing.assert_allclose(table["std_error"], se, rtol=1e-6)
    assert list(table.loc["expert0"].index) == ["(Intercept)", "x0", "x1"]


def test_multiclass_experts_are_against_the_first_class():
    X, y = make_moe_classification(600, n_features=2, n_classes=3, random_state=1)
    est = MixtureOfExpertsClassifier(
        LogisticRegression(penalty=None),
        n_experts=2,
        gate_alpha=0.0,
        random_state=0,
    ).fit(X, y)
    table = est.coefficient_table(X, y)
    terms = list(table.loc["expert0"].index)
    assert terms[:3] == ["1: (Intercept)", "1: x0", "1: x1"]
    assert len(terms) == 6
    W = est.experts_[0].coef_
    np.testing.assert_allclose(
        table.loc[("expert0", "2: x1"), "estimate"], W[2, 1] - W[0, 1]
    )
    assert (table["std_error"] > 0).all()


def test_feature_names_and_weights():
    X, y = make_moe_regression(300, n_features=2, n_experts=2, random_state=0)
    frame = pd.DataFrame(X, columns=["age", "dose"])
    est = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(frame, y)
    table = est.coefficient_table(frame, y)
    assert list(table.loc["gate: expert1"].index) == ["(Intercept)", "age", "dose"]
    doubled = est.coefficient_table(frame, y, sample_weight=np.full(300, 2.0))
    # twice the data, the same estimates: errors shrink by sqrt(2)
    np.testing.assert_allclose(
        doubled["std_error"], table["std_error"] / np.sqrt(2), rtol=1e-10
    )


def test_what_has_no_standard_errors_is_refused():
    X, y = make_moe_regression(300, n_features=2, n_experts=2, random_state=0)
    trees = MixtureOfExpertsRegressor(
        DecisionTreeRegressor(max_depth=2), n_experts=2, random_state=0
    ).fit(X, y)
    with pytest.raises(ValueError, match="needs linear experts.*DecisionTree"):
        trees.coefficient_table(X, y)
    mlp = MixtureOfExpertsRegressor(n_experts=2, gate="mlp", max_iter=5, random_state=0)
    with pytest.warns():
        mlp.fit(X, y)
    with pytest.raises(ValueError, match="needs the linear softmax gate"):
        mlp.coefficient_table(X, y)
    # a column that copies another: the coefficients are not determined
    X_dup = np.hstack([X, X[:, :1]])
    dup = MixtureOfExpertsRegressor(
        LinearRegression(), n_experts=2, random_state=0
    ).fit(X_dup, y)
    with pytest.raises(ValueError, match="not positive definite"):
        dup.coefficient_table(X_dup, y)


def _glm_mixture_data(family, n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1))
    gate = 1 / (1 + np.exp(-2 * X[:, 0]))
    z = rng.random(n) < gate
    mu = np.exp(np.where(z, 1.5 + 0.5 * X[:, 0], 0.2 - 0.4 * X[:, 0]))
    if family == "poisson":
        return X, rng.poisson(mu).astype(float)
    return X, rng.gamma(shape=np.where(z, 4.0, 9.0), scale=mu / np.where(z, 4.0, 9.0))


def _glm_log_likelihood(theta, X, y, family):
    """Sum of log p(y | x): gate (2), experts (2 coefficients [+ shape] each)."""
    from scipy import stats as st

    D = np.hstack([np.ones((len(X), 1)), X])
    per = 2 if family == "poisson" else 3
    v = theta[:2]
    log_gate = np.stack([np.zeros(len(X)), D @ v], axis=1)
    log_gate -= logsumexp(log_gate, axis=1, keepdims=True)
    parts = []
    for k in range(2):
        block = theta[2 + k * per : 2 + (k + 1) * per]
        mu = np.exp(D @ block[:2])
        if family == "poisson":
            parts.append(st.poisson.logpmf(y, mu))
        else:
            a = block[2]
            parts.append(st.gamma.logpdf(y, a, scale=mu / a))
    return logsumexp(log_gate + np.stack(parts, axis=1), axis=1).sum()


@pytest.mark.parametrize("family", ["poisson", "gamma"])
def test_glm_experts_standard_errors_are_those_of_the_hessian(family):
    X, y = _glm_mixture_data(family)
    est = MixtureOfExpertsRegressor(
        n_experts=2,
        family=family,
        gate_alpha=0.0,
        tol=1e-12,
        max_iter=3000,
        n_init=3,
        random_state=0,
    ).fit(X, y)
    table = est.coefficient_table(X, y)
    estimate = table["estimate"].to_numpy()
    if family == "poisson":
        theta = estimate
        shown = np.arange(6)
    else:
        a = est.shape_
        theta = np.concatenate(
            [estimate[:2], estimate[2:4], [a[0]], estimate[4:6], [a[1]]]
        )
        shown = np.array([0, 1, 2, 3, 5, 6])
    step, P = 1e-4, theta.size
    hessian = np.empty((P, P))
    for i in range(P):
        for j in range(P):
            ei, ej = np.eye(P)[i] * step, np.eye(P)[j] * step
            hessian[i, j] = (
                _glm_log_likelihood(theta + ei + ej, X, y, family)
                - _glm_log_likelihood(theta + ei - ej, X, y, family)
                - _glm_log_likelihood(theta - ei + ej, X, y, family)
                + _glm_log_likelihood(theta - ei - ej, X, y, family)
            ) / (4 * step**2)
    se = np.sqrt(np.diag(np.linalg.inv(-hessian)))[shown]
    np.testing.assert_allclose(table["std_error"], se, rtol=1e-3)


def test_glm_family_needs_glm_experts():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(300, 1))
    y = rng.poisson(50 + 10 * X[:, 0]).astype(float)  # linear means stay positive
    est = MixtureOfExpertsRegressor(
        LinearRegression(), n_experts=2, family="poisson", random_state=0
    ).fit(X, y)
    with pytest.raises(ValueError, match="needs PoissonRegressor experts"):
        est.coefficient_table(X, y)
