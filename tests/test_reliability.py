"""Reliability: bad input, degenerate data, properties, persistence, threads.

The estimators must never return NaN, hang or silently fit the wrong thing:
bad input gets scikit-learn's usual error (or warning) naming the problem,
degenerate data a finite fit (with a warning where the result is doubtful).
"""

import json
import os
import pickle
import re
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe._kernels import _PARALLEL_MIN_ROWS
from skmoe.datasets import make_moe_classification, make_moe_regression

# Fast, reproducible property runs: few small examples, no example database
# written into the repository, the same examples on every run.
PROPERTY = settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def reg_data():
    return make_moe_regression(n_samples=200, n_features=2, n_experts=2, random_state=0)


@pytest.fixture(scope="module")
def clf_data():
    return make_moe_classification(n_samples=200, n_features=2, random_state=0)


@pytest.fixture(scope="module")
def fitted_reg(reg_data):
    X, y = reg_data
    return MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def fitted_clf(clf_data):
    X, y = clf_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MixtureOfExpertsClassifier(n_experts=2, max_iter=30, random_state=0).fit(
            X, y
        )


def _assert_finite_fit(est, X):
    """Finite parameters, curve and predictions; probabilities sum to one."""
    assert np.all(np.isfinite(est.log_likelihood_curve_))
    assert np.all(np.isfinite(est.gate_.coef_))
    assert np.all(np.isfinite(est.gate_.intercept_))
    gate = est.predict_gate(X)
    assert np.all(np.isfinite(gate))
    np.testing.assert_allclose(gate.sum(axis=1), 1.0)
    if isinstance(est, MixtureOfExpertsClassifier):
        proba = est.predict_proba(X)
        assert np.all(np.isfinite(proba))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        assert set(np.unique(est.predict(X))) <= set(est.classes_)
    else:
        assert np.all(np.isfinite(est.noise_variance_))
        assert np.all(est.noise_variance_ > 0)
        mean, std = est.predict(X, return_std=True)
        assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))


def _assert_curve_ascends(est, y, reseeded):
    """EM never lowers the log-likelihood (with gate_alpha=0: no penalty
    traded against it) up to round-off; a re-seeded collapsed expert may make
    it dip once, so one drop is allowed when the fit warned about that.

    Residuals are known to ``eps |y|``, so each row's log-density to about
    ``eps |y| / sigma``: that, summed over the rows, is the round-off.
    """
    curve = est.log_likelihood_curve_
    eps = np.finfo(np.float64).eps
    sigma = np.sqrt(est.noise_variance_.min())
    slack = 1e-9 * np.maximum(1.0, np.abs(curve[1:]))
    slack += len(y) * eps * np.abs(y).max() / sigma
    drops = np.flatnonzero(np.diff(curve) < -slack)
    assert drops.size <= (1 if reseeded else 0), curve


# ---------------------------------------------------------------------------
# Bad input: scikit-learn's usual errors and warnings, naming the problem
# ---------------------------------------------------------------------------

ESTIMATORS = [MixtureOfExpertsRegressor, MixtureOfExpertsClassifier]


def _data(Est, reg_data, clf_data):
    return reg_data if Est is MixtureOfExpertsRegressor else clf_data


@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_X_is_refused_in_fit_and_predict(
    Est, bad, reg_data, clf_data, fitted_reg, fitted_clf
):
    X, y = _data(Est, reg_data, clf_data)
    Xb = X.copy()
    Xb[7, 1] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        Est(n_experts=2).fit(Xb, y)
    fitted = fitted_reg if Est is MixtureOfExpertsRegressor else fitted_clf
    for method in ["predict", "predict_gate"]:
        with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
            getattr(fitted, method)(Xb)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_nan_in_y_is_refused(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    yb = y.astype(float)
    yb[3] = np.nan
    with pytest.raises(ValueError, match="Input y contains NaN"):
        Est(n_experts=2).fit(X, yb)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_wrong_shapes_are_refused(Est, reg_data, clf_data, fitted_reg, fitted_clf):
    X, y = _data(Est, reg_data, clf_data)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        Est().fit(X[:, 0], y)
    with pytest.raises(ValueError, match="dim 3"):
        Est().fit(X[:, :, None], y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        Est().fit(X, y[:-1])
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(3,\)"):
        Est().fit(X, y, sample_weight=np.ones(3))
    fitted = fitted_reg if Est is MixtureOfExpertsRegressor else fitted_clf
    with pytest.raises(ValueError, match="X has 1 features, but .* is expecting 2"):
        fitted.predict(X[:, :1])
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        fitted.predict(X[0])


def test_target_shapes_are_refused(reg_data, fitted_reg, clf_data):
    X, y = reg_data
    with pytest.raises(ValueError, match="dim 3"):
        MixtureOfExpertsRegressor().fit(X, y[:, None, None])
    with pytest.raises(ValueError, match=r"y has 2 output\(s\)"):
        fitted_reg.conditional_log_likelihood(X, np.column_stack([y, y]))
    Xc, yc = clf_data
    with pytest.raises(ValueError, match="y should be a 1d array"):
        MixtureOfExpertsClassifier().fit(Xc, np.column_stack([yc, yc]))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        MixtureOfExpertsClassifier().fit(X, y)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_empty_data_is_refused(Est, reg_data, clf_data, fitted_reg, fitted_clf):
    X, y = _data(Est, reg_data, clf_data)
    with pytest.raises(ValueError, match=r"0 sample\(s\)"):
        Est().fit(X[:0], y[:0])
    with pytest.raises(ValueError, match=r"0 feature\(s\)"):
        Est().fit(X[:, :0], y)
    fitted = fitted_reg if Est is MixtureOfExpertsRegressor else fitted_clf
    with pytest.raises(ValueError, match=r"0 sample\(s\)"):
        fitted.predict(X[:0])


@pytest.mark.parametrize("init", ["kmeans", "random"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_fewer_samples_than_experts_is_a_clear_error(Est, init):
    # not k-means' "n_samples=2 should be >= n_clusters=3", whatever the init
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]])
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_experts=3"):
        Est(n_experts=3, init=init).fit(X[:2], y[:2])
    # (one sample is also one class, which the classifier says first)
    with pytest.raises(ValueError, match="n_samples=1 should be >= 2|one class"):
        Est(n_experts=1, init=init).fit(X[:1], y[:1])
    # rows of zero weight are left out, so they do not count either
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_experts=3"):
        Est(n_experts=3, init=init).fit(X, y, sample_weight=[1, 1, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        Est(n_experts=3, init=init, max_iter=5).fit(X[:3], y[:3])


def test_single_class_is_refused(clf_data):
    X, _ = clf_data
    with pytest.raises(ValueError, match="only one class"):
        MixtureOfExpertsClassifier().fit(X, np.full(len(X), "a"))
    # nor may zero weights leave one class
    y = np.r_[np.zeros(100), np.ones(100)]
    w = np.r_[np.ones(100), np.zeros(100)]
    with pytest.raises(ValueError, match="only one class"):
        MixtureOfExpertsClassifier().fit(X, y, sample_weight=w)


def test_string_labels(clf_data):
    X, y = clf_data
    labels = np.array(["no", "yes"])[y]
    clf = MixtureOfExpertsClassifier(n_experts=2, max_iter=20, random_state=0)
    clf.fit(X, labels)
    assert list(clf.classes_) == ["no", "yes"]
    assert set(clf.predict(X)) <= {"no", "yes"}
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0)
    codes = MixtureOfExpertsClassifier(n_experts=2, max_iter=20, random_state=0)
    codes.fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), codes.predict_proba(X))
    with pytest.raises(ValueError, match="not seen in fit"):
        clf.conditional_log_likelihood(X, np.full(len(X), "maybe"))
    # and a regressor does not take strings for numbers
    with pytest.raises(ValueError, match="could not convert string to float"):
        MixtureOfExpertsRegressor().fit(X, labels)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_sparse_X_in_any_format_fits_as_dense(
    Est, fmt, reg_data, clf_data, fitted_reg, fitted_clf
):
    X, y = _data(Est, reg_data, clf_data)
    Xs = sp.random(len(X), 2, density=0.5, format=fmt, random_state=0)
    sparse_fit = Est(random_state=0).fit(Xs, y)
    dense_fit = Est(random_state=0).fit(Xs.toarray(), y)
    assert sparse_fit.log_likelihood_ == pytest.approx(
        dense_fit.log_likelihood_, rel=1e-6
    )
    fitted = fitted_reg if Est is MixtureOfExpertsRegressor else fitted_clf
    np.testing.assert_allclose(fitted.predict(Xs), fitted.predict(Xs.toarray()))


@pytest.mark.parametrize(
    "column",
    [
        pd.Categorical(np.where(np.arange(200) % 2, "u", "v")),
        # numeric categories would be read silently as a number line
        pd.Categorical(np.arange(200) % 3),
    ],
    ids=["strings", "numbers"],
)
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_pandas_categorical_columns_are_refused(Est, column, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    df = pd.DataFrame({"a": X[:, 0], "b": column})
    with pytest.raises(ValueError, match=r"categorical column\(s\) \['b'\]"):
        Est(n_experts=2).fit(df, y)
    numeric = pd.DataFrame({"a": X[:, 0], "b": X[:, 1]})
    fitted = Est(n_experts=2, max_iter=20, random_state=0).fit(numeric, y)
    with pytest.raises(ValueError, match=r"categorical column\(s\) \['b'\]"):
        fitted.predict(df)


def test_feature_names_are_checked_at_predict(reg_data):
    X, y = reg_data
    df = pd.DataFrame(X, columns=["a", "b"])
    named = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(df, y)
    with pytest.raises(ValueError, match="feature names should match"):
        named.predict(df.rename(columns={"a": "z"}))
    with pytest.raises(ValueError, match="feature names should match"):
        named.predict(df[["b", "a"]])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        named.predict(X)
    unnamed = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    with pytest.warns(UserWarning, match="X has feature names"):
        unnamed.predict(df)


# ---------------------------------------------------------------------------
# Degenerate data: a finite fit, warning where it is doubtful
# ---------------------------------------------------------------------------


def _fit_recording(est, X, y, sample_weight=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y, sample_weight=sample_weight)
    return [str(w.message) for w in caught]


def _degenerate_regression():
    rng = np.random.RandomState(0)
    X, y = make_moe_regression(n_samples=200, n_experts=2, random_state=0)
    x1 = rng.uniform(-1, 1, (200, 1))
    pieces = np.where(x1[:, 0] > 0, 2 * x1[:, 0] + 1, -x1[:, 0] - 3)
    return {
        # round-off in var(y) once made the noise floor 1e-37: experts were
        # chosen by residual round-off, collapsed and gave NaN
        "constant y": (X, np.full(200, 3.0), 3),
        "zero y": (X, np.zeros(200), 3),
        "y constant up to one ulp": (X, 3.0 + 4.4e-16 * (rng.rand(200) > 0.5), 3),
        "constant X": (np.ones((200, 2)), y, 3),
        "constant X and y": (np.ones((200, 2)), np.ones(200), 3),
        "ten rows repeated": (np.repeat(X[:10], 20, 0), np.repeat(y[:10], 20), 3),
        # fewer distinct rows than experts: k-means leaves a cluster empty
        "two rows repeated": (np.repeat(X[:2], 100, 0), np.repeat(y[:2], 100), 3),
        "separable exact pieces": (x1, pieces, 2),
        "one exact line, 3 experts": (x1, 2 * x1[:, 0] + 1, 3),
        "6 experts on 2 regions": (X, y, 6),
        "6 experts on exact pieces": (x1, pieces, 6),
        "X and y tiny": (1e-12 * X, 1e-12 * y, 2),
        "X and y huge": (1e12 * X, 1e12 * y, 2),
        "y offset 1e9": (X, 1.7e9 + y, 2),
    }


DEGENERATE = _degenerate_regression()


@pytest.mark.parametrize("gate_alpha", [0.0, 1e-3])
@pytest.mark.parametrize("case", list(DEGENERATE))
def test_degenerate_regression_data_gives_a_finite_fit(case, gate_alpha):
    X, y, K = DEGENERATE[case]
    est = MixtureOfExpertsRegressor(
        n_experts=K, gate_alpha=gate_alpha, max_iter=40, random_state=0
    )
    messages = _fit_recording(est, X, y)
    _assert_finite_fit(est, X)
    if gate_alpha == 0:
        _assert_curve_ascends(est, y, any("collapsed" in m for m in messages))
    # every expert's noise variance is at least the floor, never 0
    assert np.all(est.noise_variance_ >= est._likelihood.noise_floor)
    # k-means clusters inputs and targets together
    if len(np.unique(np.column_stack([X, y]), axis=0)) < K:
        assert any("distinct clusters" in m for m in messages)
        assert any("collapsed" in m for m in messages)


def test_constant_y_is_fitted_exactly_at_the_floor():
    X, _ = make_moe_regression(n_samples=200, random_state=0)
    est = MixtureOfExpertsRegressor(random_state=0).fit(X, np.full(200, 3.0))
    np.testing.assert_allclose(est.predict(X), 3.0)
    # no spread to take a fraction of: 1e-6 times the scale y**2
    np.testing.assert_allclose(est.noise_variance_, 1e-6 * 9.0)


def test_exact_expert_sits_on_the_variance_floor():
    rng = np.random.RandomState(1)
    X = rng.uniform(-1, 1, (300, 1))
    exact = X[:, 0] > 0
    y = np.where(exact, 2 * X[:, 0], -X[:, 0] + 0.3 * rng.standard_normal(300))
    est = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    floor = 1e-6 * y.var()
    assert est.noise_variance_.min() == pytest.approx(floor, rel=1e-6)
    assert est.noise_variance_.max() > 1e3 * floor
    _assert_finite_fit(est, X)


@pytest.mark.parametrize(
    "scaled, scale",
    [
        ("X", 1e-12),
        ("X", 1e-6),
        ("X", 1e6),
        ("X", 1e12),
        ("y", 1e-12),
        ("y", 1e-6),
        ("y", 1e6),
        ("y", 1e12),
    ],
)
def test_fit_is_equivariant_to_the_scale_of_X_and_y(reg_data, scaled, scale):
    X, y = reg_data
    base = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    Xs, ys = (scale * X, y) if scaled == "X" else (X, scale * y)
    est = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(Xs, ys)
    y_scale = scale if scaled == "y" else 1.0
    np.testing.assert_allclose(
        est.predict(Xs), y_scale * base.predict(X), rtol=1e-6, atol=1e-8 * y_scale
    )
    # the density of y scales by 1 / y_scale per row
    expected = base.log_likelihood_ - len(y) * np.log(y_scale)
    assert est.log_likelihood_ == pytest.approx(expected, rel=1e-8, abs=1e-6)


def _degenerate_classification():
    rng = np.random.RandomState(0)
    X, y = make_moe_classification(n_samples=200, random_state=0)
    x1 = rng.uniform(-1, 1, (200, 1))
    return {
        "separable classes": (x1, (x1[:, 0] > 0).astype(int), 2),
        "constant X": (np.ones((200, 2)), y, 3),
        "two rows repeated": (np.repeat(X[:2], 100, 0), np.tile([0, 1], 100), 3),
        "6 experts on 2": (X, y, 6),
        "X tiny": (1e-12 * X, y, 2),
        "X huge": (1e12 * X, y, 2),
    }


DEGENERATE_CLF = _degenerate_classification()


@pytest.mark.parametrize("case", list(DEGENERATE_CLF))
def test_degenerate_classification_data_gives_a_finite_fit(case):
    X, y, K = DEGENERATE_CLF[case]
    # lbfgs experts on unscaled 1e12 inputs are slow: few EM steps suffice
    est = MixtureOfExpertsClassifier(n_experts=K, max_iter=10, random_state=0)
    _fit_recording(est, X, y)
    _assert_finite_fit(est, X)


# ---------------------------------------------------------------------------
# Properties (hypothesis): shapes, scales, weights, seeds
# ---------------------------------------------------------------------------

# the only errors valid data may give: too few samples, classes or weights
_CLEAR_ERRORS = (
    r"should be >= (n_experts=\d+|2)|only one class|"
    r"sample_weight sums to zero|at least one non-zero"
)


@st.composite
def regression_problems(draw, max_samples=120):
    n = draw(st.integers(1, max_samples))
    d = draw(st.integers(1, 3))
    K = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    x_scale = 10.0 ** draw(st.integers(-6, 6))
    y_scale = 10.0 ** draw(st.integers(-6, 6))
    kind = draw(st.sampled_from(["mixture", "constant", "repeated", "noise"]))
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, d))
    if kind == "mixture" and n > 0:
        X, y = make_moe_regression(n, d, min(K + 1, 4), random_state=seed)
    elif kind == "constant":
        y = np.full(n, rng.standard_normal())
    elif kind == "repeated":
        rows = rng.randint(0, max(1, n // 4), n)
        X, y = X[rows], rng.standard_normal(n)[rows]
    else:
        y = rng.standard_normal(n)
    return x_scale * X, y_scale * y, K, seed


@PROPERTY
@given(problem=regression_problems(), weighted=st.booleans())
def test_regression_fits_finite_or_says_why(problem, weighted):
    X, y, K, seed = problem
    rng = np.random.RandomState(seed)
    w = rng.randint(0, 3, len(y)).astype(float) if weighted else None
    est = MixtureOfExpertsRegressor(n_experts=K, max_iter=15, random_state=seed)
    try:
        _fit_recording(est, X, y, sample_weight=w)
    except ValueError as exc:
        assert re.search(_CLEAR_ERRORS, str(exc)), exc
        return
    _assert_finite_fit(est, X)
    assert np.all(np.isfinite(est.conditional_log_likelihood(X, y)))
    # and extrapolation far outside the data stays finite
    far = 1e100 * np.sign(X[:3] + 0.5)
    mean, std = est.predict(far, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))


@st.composite
def classification_problems(draw):
    n = draw(st.integers(1, 80))
    d = draw(st.integers(1, 3))
    K = draw(st.integers(1, 3))
    n_classes = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    x_scale = 10.0 ** draw(st.integers(-6, 6))
    rng = np.random.RandomState(seed)
    if draw(st.booleans()):
        X, y = make_moe_classification(
            n, d, min(K + 1, 3), n_classes=max(n_classes, 2), random_state=seed
        )
    else:
        X, y = rng.standard_normal((n, d)), rng.randint(0, n_classes, n)
    if draw(st.booleans()):
        y = np.array(["a", "b", "c"])[y]
    return x_scale * X, y, K, seed


@settings(PROPERTY, max_examples=15)
@given(problem=classification_problems(), weighted=st.booleans())
def test_classification_fits_finite_or_says_why(problem, weighted):
    X, y, K, seed = problem
    rng = np.random.RandomState(seed)
    w = rng.randint(0, 3, len(y)).astype(float) if weighted else None
    est = MixtureOfExpertsClassifier(n_experts=K, max_iter=5, random_state=seed)
    try:
        _fit_recording(est, X, y, sample_weight=w)
    except ValueError as exc:
        assert re.search(_CLEAR_ERRORS, str(exc)), exc
        return
    _assert_finite_fit(est, X)
    assert np.all(np.isfinite(est.conditional_log_likelihood(X, y)))


def _equivalence_problem(seed, n, d, K):
    X, y = make_moe_regression(n, d, K, noise=0.2, random_state=seed)
    return X, y, dict(n_experts=K, max_iter=25, tol=1e-8, random_state=seed)


def _assert_same_fit(a, b, X):
    """The same fit up to round-off, amplified a little by EM: the run may
    stop one iteration apart where the change crosses ``tol``, and the gate
    is compared through the predictions (pointwise, a sharp gate flips at its
    boundary)."""
    # An expert left at the variance floor interpolates a few distinct rows;
    # its slope is then set by rows of round-off responsibility, which the
    # closed-form fit cannot resolve (see test_closed_form_expert_...), so
    # such fits are not comparable
    assume(not np.any(a.noise_variance_ <= a._likelihood.noise_floor))
    assume(not np.any(b.noise_variance_ <= b._likelihood.noise_floor))
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-5, abs=1e-5)
    pred = a.predict(X)
    scale = 1.0 + np.abs(pred).max()
    np.testing.assert_allclose(pred, b.predict(X), rtol=0, atol=1e-4 * scale)


_seeds = st.integers(0, 2**16)


@PROPERTY
@given(seed=_seeds, n=st.integers(10, 200), d=st.integers(1, 3), K=st.integers(1, 3))
def test_zero_weights_equal_removing_the_rows(seed, n, d, K):
    X, y, kw = _equivalence_problem(seed, n, d, K)
    rng = np.random.RandomState(seed)
    w = rng.uniform(0.5, 2.0, n) * (rng.rand(n) < 0.7)
    keep = w > 0
    if keep.sum() < K:
        return  # both refuse, see test_fewer_samples_than_experts_...
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = MixtureOfExpertsRegressor(**kw).fit(X, y, sample_weight=w)
        removed = MixtureOfExpertsRegressor(**kw).fit(X[keep], y[keep], w[keep])
    _assert_same_fit(weighted, removed, X)


@PROPERTY
@given(seed=_seeds, n=st.integers(10, 120), d=st.integers(1, 3), K=st.integers(1, 3))
def test_integer_weights_equal_repeating_the_rows(seed, n, d, K):
    X, y, kw = _equivalence_problem(seed, n, d, K)
    w = np.random.RandomState(seed).randint(0, 4, n)
    if np.count_nonzero(w) < K:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = MixtureOfExpertsRegressor(**kw).fit(X, y, sample_weight=w)
        repeated = MixtureOfExpertsRegressor(**kw).fit(X.repeat(w, axis=0), y.repeat(w))
    _assert_same_fit(weighted, repeated, X)


@PROPERTY
@given(seed=_seeds, n=st.integers(10, 200), d=st.integers(1, 3), K=st.integers(1, 3))
def test_permuting_the_rows_does_not_change_the_fit(seed, n, d, K):
    X, y, kw = _equivalence_problem(seed, n, d, K)
    perm = np.random.RandomState(seed).permutation(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MixtureOfExpertsRegressor(**kw).fit(X, y)
        b = MixtureOfExpertsRegressor(**kw).fit(X[perm], y[perm])
    _assert_same_fit(a, b, X)


@settings(PROPERTY, max_examples=8)
@given(seed=_seeds, n=st.integers(20, 150), d=st.integers(1, 3), K=st.integers(1, 3))
def test_classifier_weights_and_row_order_do_not_change_the_fit(seed, n, d, K):
    X, y = make_moe_classification(n, d, 2, n_classes=3, random_state=seed)
    rng = np.random.RandomState(seed)
    w = rng.randint(0, 4, n)
    perm = rng.permutation(n)
    assume(np.unique(y[w > 0]).size == 3 and np.count_nonzero(w) >= K)
    kw = dict(n_experts=K, max_iter=5, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fits = [
            MixtureOfExpertsClassifier(**kw).fit(X, y, sample_weight=w),
            MixtureOfExpertsClassifier(**kw).fit(X[w > 0], y[w > 0], w[w > 0]),
            MixtureOfExpertsClassifier(**kw).fit(X.repeat(w, axis=0), y.repeat(w)),
            MixtureOfExpertsClassifier(**kw).fit(X[perm], y[perm], w[perm]),
        ]
    for other in fits[1:]:
        assert other.log_likelihood_ == pytest.approx(fits[0].log_likelihood_, rel=1e-6)
        np.testing.assert_allclose(
            other.predict_proba(X), fits[0].predict_proba(X), rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("tiny", [1e-14, 1e-18])
def test_closed_form_expert_on_one_heavy_row_matches_linear_regression(tiny):
    from sklearn.linear_model import LinearRegression

    from skmoe._experts import fit_experts

    rng = np.random.RandomState(0)
    X = np.r_[rng.standard_normal(6) + 3, -0.2345712912][:, None]
    y = np.r_[2 * X[:6, 0], -4.8896103726]
    w = np.r_[np.full(6, tiny), 3.0]
    closed = fit_experts(
        [LinearRegression()],
        X,
        y[:, None],
        w[:, None],
        is_classifier=False,
        y_is_1d=True,
    )[0]
    reference = LinearRegression().fit(X, y, sample_weight=w)
    np.testing.assert_allclose(closed.coef_, reference.coef_, rtol=1e-6)


# ---------------------------------------------------------------------------
# Persistence
# ---------------------------------------------------------------------------


def _outputs(est, X, y):
    """Everything a fitted model answers, for exact comparison."""
    out = {"predict": est.predict(X), "predict_gate": est.predict_gate(X)}
    out["score_samples"] = est.conditional_log_likelihood(X, y)
    if isinstance(est, MixtureOfExpertsClassifier):
        out["predict_proba"] = est.predict_proba(X)
    else:
        out["std"] = est.predict(X, return_std=True)[1]
    return out


def _assert_same_outputs(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_pickle_and_joblib_round_trips(Est, reg_data, clf_data, tmp_path):
    X, y = _data(Est, reg_data, clf_data)
    est = Est(n_experts=2, max_iter=20, top_k=1, random_state=0).fit(X, y)
    expected = _outputs(est, X, y)
    _assert_same_outputs(_outputs(pickle.loads(pickle.dumps(est)), X, y), expected)
    joblib.dump(est, tmp_path / "model.joblib")
    _assert_same_outputs(
        _outputs(joblib.load(tmp_path / "model.joblib"), X, y), expected
    )


_FRESH_PROCESS = """
import pickle, sys
import numpy as np
with open(sys.argv[1], "rb") as f:
    models, X_reg, y_reg, X_clf, y_clf = pickle.load(f)
reg, clf = models
np.savez(
    sys.argv[2],
    reg_predict=reg.predict(X_reg),
    reg_std=reg.predict(X_reg, return_std=True)[1],
    reg_score=reg.conditional_log_likelihood(X_reg, y_reg),
    clf_proba=clf.predict_proba(X_clf),
    clf_score=clf.conditional_log_likelihood(X_clf, y_clf),
)
"""


def test_loaded_in_a_fresh_process(
    fitted_reg, fitted_clf, reg_data, clf_data, tmp_path
):
    (X_reg, y_reg), (X_clf, y_clf) = reg_data, clf_data
    with open(tmp_path / "models.pkl", "wb") as f:
        pickle.dump(((fitted_reg, fitted_clf), X_reg, y_reg, X_clf, y_clf), f)
    subprocess.run(
        [
            sys.executable,
            "-c",
            _FRESH_PROCESS,
            str(tmp_path / "models.pkl"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        timeout=300,
    )
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["reg_predict"], fitted_reg.predict(X_reg))
    np.testing.assert_array_equal(
        out["reg_std"], fitted_reg.predict(X_reg, return_std=True)[1]
    )
    np.testing.assert_array_equal(
        out["reg_score"], fitted_reg.conditional_log_likelihood(X_reg, y_reg)
    )
    np.testing.assert_array_equal(out["clf_proba"], fitted_clf.predict_proba(X_clf))
    np.testing.assert_array_equal(
        out["clf_score"], fitted_clf.conditional_log_likelihood(X_clf, y_clf)
    )


# ---------------------------------------------------------------------------
# Thread safety
# ---------------------------------------------------------------------------


def _concurrent_calls(fitted_reg, fitted_clf):
    # enough rows for the parallel numba kernels, and few for the serial ones
    X = np.random.RandomState(0).standard_normal((_PARALLEL_MIN_ROWS + 1000, 2))
    top1 = pickle.loads(pickle.dumps(fitted_reg)).set_params(top_k=1)
    calls = []
    for rows in [X, X[:300]]:
        calls += [
            (fitted_reg.predict, rows),
            (lambda Z: fitted_reg.predict(Z, return_std=True)[1], rows),
            (fitted_reg.predict_gate, rows),
            (top1.predict, rows),
            (fitted_clf.predict_proba, rows),
            (fitted_clf.predict, rows),
        ]
    return calls


def test_concurrent_predictions_equal_serial_ones(fitted_reg, fitted_clf):
    calls = _concurrent_calls(fitted_reg, fitted_clf)
    serial = [f(Z) for f, Z in calls]
    jobs = [j for _ in range(4) for j in range(len(calls))]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda j: calls[j][0](calls[j][1]), jobs))
    for j, result in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(result, serial[j])


_BLAS_AFTER_THREADS = """
import pickle, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from threadpoolctl import threadpool_info

def blas():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)
X = np.random.RandomState(0).standard_normal((2000, model.n_features_in_))
model.predict(X)
before = blas()
for _ in range(10):  # a race: give it a few chances
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: model.predict(X), range(200)))
    if blas() != before:
        sys.exit(f"BLAS threads {before} before, {blas()} after")
"""


def test_concurrent_predictions_leave_the_blas_thread_count_alone(fitted_reg, tmp_path):
    # in a fresh process: this session's conftest holds BLAS at one thread
    with open(tmp_path / "model.pkl", "wb") as f:
        pickle.dump(fitted_reg, f)
    run = subprocess.run(
        [sys.executable, "-c", _BLAS_AFTER_THREADS, str(tmp_path / "model.pkl")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


_THREADS_IN_FIT = """
import json
import numba
import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression
from threadpoolctl import threadpool_info, threadpool_limits

from skmoe import MixtureOfExpertsRegressor

seen = []


class Recorder(RegressorMixin, BaseEstimator):
    def fit(self, X, y, sample_weight=None):
        info = threadpool_info()
        seen.append({
            "blas": max(i["num_threads"] for i in info if i["user_api"] == "blas"),
            "numba": numba.get_num_threads(),
        })
        self.model_ = LinearRegression().fit(X, y, sample_weight=sample_weight)
        return self

    def predict(self, X):
        return self.model_.predict(X)


def blas():
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


rng = np.random.RandomState(0)
out = {"blas_before": blas(), "numba_before": numba.get_num_threads()}
X, y = rng.standard_normal((500, 2)), rng.standard_normal(500)
MixtureOfExpertsRegressor(Recorder(), n_experts=2, max_iter=2, tol=0).fit(X, y)
out["small"] = seen[-1]
out["blas_after"] = blas()
X, y = rng.standard_normal((30_000, 2)), rng.standard_normal(30_000)
with threadpool_limits(limits=1, user_api="openmp"):  # as joblib limits workers
    MixtureOfExpertsRegressor(Recorder(), n_experts=2, max_iter=2, tol=0).fit(X, y)
out["limited"] = seen[-1]
out["numba_after"] = numba.get_num_threads()
print(json.dumps(out))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")
def test_fits_use_threads_only_where_they_pay_and_respect_outer_limits():
    # a small fit holds BLAS (and OpenMP) to one thread, and gives them back;
    # a large one keeps numba's kernels within an OpenMP limit set around it
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
    }
    run = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _THREADS_IN_FIT],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["blas_before"] > 1 and out["numba_before"] > 1
    assert out["small"]["blas"] == 1
    assert out["blas_after"] == out["blas_before"]
    assert out["limited"]["numba"] == 1
    assert out["numba_after"] == out["numba_before"]
