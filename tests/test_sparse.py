"""Sparse X: the sparse twins of the kernels, and fits equal to dense ones."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import skmoe._kernels as kern
from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe._scaling import weighted_standardisation
from skmoe._sparse import (
    sparse_gate_hessian,
    sparse_gate_objective,
    sparse_weighted_grams,
)
from skmoe.datasets import make_moe_classification, make_moe_regression


def _sparse_data(n=600, n_categories=30, seed=0):
    """Three dense columns and a one-hot column of many categories."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, 3))
    cat = rng.integers(0, n_categories, n)
    onehot = sp.csr_matrix((np.ones(n), (np.arange(n), cat)), (n, n_categories))
    return sp.hstack([sp.csr_matrix(dense), onehot]).tocsr()


@pytest.fixture(scope="module")
def kernel_case():
    rng = np.random.default_rng(1)
    X = _sparse_data(200)
    w = rng.uniform(0.1, 2.0, 200)
    mean, scale = weighted_standardisation(X.toarray(), w)
    theta = rng.normal(size=(X.shape[1] + 1, 2))
    targets = rng.dirichlet(np.ones(3), size=200)
    return X, w, mean, scale, theta, targets


def test_sparse_standardisation_equals_dense(kernel_case):
    X, w, mean, scale, *_ = kernel_case
    sparse_mean, sparse_scale = weighted_standardisation(X, w)
    np.testing.assert_allclose(sparse_mean, mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sparse_scale, scale, rtol=1e-10)


@pytest.mark.parametrize("standardised", [True, False])
def test_sparse_gate_objective_equals_the_kernel(kernel_case, standardised):
    X, w, mean, scale, theta, targets = kernel_case
    if not standardised:
        mean = scale = None
    log_proba, sparse_log_proba = np.empty((200, 3)), np.empty((200, 3))
    loss, grad = kern.gate_objective_numpy(
        X.toarray(), mean, scale, theta, targets, w, log_proba
    )
    sparse_loss, sparse_grad = sparse_gate_objective(
        X, mean, scale, theta, targets, w, sparse_log_proba
    )
    assert sparse_loss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(sparse_grad, grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sparse_log_proba, log_proba, rtol=1e-12)
    # from given log-probabilities: the same, without the product
    given = sparse_gate_objective(X, mean, scale, theta, targets, w, log_proba, True)
    assert given[0] == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("stride", [1, 3])
def test_sparse_gate_hessian_equals_the_kernel(kernel_case, stride):
    X, w, mean, scale, theta, _ = kernel_case
    H = kern.gate_hessian_numpy(X.toarray(), mean, scale, theta, w, stride)
    sparse_H = sparse_gate_hessian(X, mean, scale, theta, w, stride)
    np.testing.assert_allclose(sparse_H, H, rtol=1e-10, atol=1e-10)


def test_sparse_grams_equal_the_kernel(kernel_case):
    X, w, *_ = kernel_case
    rng = np.random.default_rng(2)
    Y = rng.normal(size=(200, 2)) + 5.0
    weights = rng.dirichlet(np.ones(3), size=200) * w[:, None]
    x_shift, y_shift = X.toarray()[::7].mean(axis=0), Y.mean(axis=0)
    grams = kern.weighted_grams_numpy(X.toarray(), x_shift, Y, weights, y_shift)
    sparse_grams = sparse_weighted_grams(X, x_shift, Y, weights, y_shift)
    np.testing.assert_allclose(sparse_grams, grams, rtol=1e-10, atol=1e-10)


def test_a_sparse_fit_equals_the_dense_fit():
    X = _sparse_data()
    rng = np.random.default_rng(3)
    z = (X[:, 0].toarray().ravel() > 0).astype(int)
    y = np.where(z, 2 * X[:, 1].toarray().ravel(), -X[:, 2].toarray().ravel())
    y = y + X[:, 3:].toarray() @ rng.normal(size=30) * 0.3 + rng.normal(0, 0.1, 600)
    est = MixtureOfExpertsRegressor(Ridge(alpha=1e-2), n_experts=2, random_state=0)
    sparse_fit = est.fit(X, y)
    sparse_ll, sparse_pred = sparse_fit.log_likelihood_, sparse_fit.predict(X)
    dense_fit = MixtureOfExpertsRegressor(
        Ridge(alpha=1e-2), n_experts=2, random_state=0
    ).fit(X.toarray(), y)
    assert sparse_ll == pytest.approx(dense_fit.log_likelihood_, rel=1e-9)
    np.testing.assert_allclose(sparse_pred, dense_fit.predict(X.toarray()), atol=1e-7)
    # a fitted model takes either kind of rows
    np.testing.assert_allclose(
        dense_fit.predict(X[:50]), dense_fit.predict(X[:50].toarray()), atol=1e-12
    )


def test_a_sparse_classifier_fit():
    X0, y = make_moe_classification(600, n_features=3, random_state=0)
    X = sp.hstack([sp.csr_matrix(X0), _sparse_data(600)[:, 3:]]).tocsr()
    fits = [
        MixtureOfExpertsClassifier(n_experts=2, tol=1e-4, random_state=0).fit(data, y)
        for data in (X, X.toarray())
    ]
    # sparse rows go to LogisticRegression's own solver, dense ones to the
    # engine's Newton steps: the same optimum to the tolerance
    assert fits[0].log_likelihood_ == pytest.approx(fits[1].log_likelihood_, rel=1e-3)
    np.testing.assert_allclose(
        fits[0].predict_proba(X), fits[0].predict_proba(X.toarray()), atol=1e-12
    )


def test_many_sparse_columns_start_from_their_singular_directions():
    X = _sparse_data(500, n_categories=200, seed=4)
    y = X[:, 0].toarray().ravel() * np.where(X[:, 1].toarray().ravel() > 0, 2, -2)
    fits = [
        MixtureOfExpertsRegressor(Ridge(alpha=1.0), n_experts=2, random_state=0).fit(
            data, y
        )
        for data in (X, X.toarray())
    ]
    # another start (k-means on 64 singular directions), the same optimum
    assert fits[0].log_likelihood_ == pytest.approx(fits[1].log_likelihood_, rel=1e-9)


def test_one_hot_encoded_frame_in_a_pipeline():
    X, y = make_moe_regression(800, n_features=2, n_experts=2, random_state=0)
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(X, columns=["a", "b"]).assign(
        town=rng.choice([f"t{i}" for i in range(40)], 800)
    )
    encode = make_column_transformer(
        (OneHotEncoder(), ["town"]), (StandardScaler(), ["a", "b"])
    )
    pipe = make_pipeline(
        encode,
        MixtureOfExpertsRegressor(Ridge(alpha=1e-3), n_experts=2, random_state=0),
    )
    encoded = encode.fit_transform(frame)
    assert sp.issparse(encoded)
    pipe.fit(frame, y)
    dense = MixtureOfExpertsRegressor(
        Ridge(alpha=1e-3), n_experts=2, random_state=0
    ).fit(encoded.toarray(), y)
    assert pipe[-1].log_likelihood_ == pytest.approx(dense.log_likelihood_, rel=1e-9)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"estimator": HistGradientBoostingRegressor()}, "does not take sparse X"),
        ({"training": "gradient"}, "training='gradient' needs dense X"),
        ({"gate": "mlp"}, "needs the linear gate"),
        ({"gate_load_balance": 0.1}, "without a load-balancing penalty"),
    ],
)
def test_what_needs_dense_rows_says_so(params, message):
    X = _sparse_data(100)
    y = np.arange(100.0)
    est = MixtureOfExpertsRegressor(n_experts=2, **params)
    with pytest.raises(TypeError, match=message):
        est.fit(X, y)
    # the configuration is refused before the data is read
    assert not hasattr(est, "experts_")


def test_partial_fit_refuses_sparse_rows():
    X = _sparse_data(100)
    with pytest.raises(TypeError, match="[Ss]parse"):
        MixtureOfExpertsRegressor(LinearRegression()).partial_fit(X, np.arange(100.0))
