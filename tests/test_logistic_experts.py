"""LogisticRegression experts fitted by Newton's method in the M-step.

The Newton M-step must give what scikit-learn's own fit gives with the same
sample weights (to the solvers' tolerance, and an objective no higher),
respect the expert's C, penalty, fit_intercept and class_weight, leave real
LogisticRegression objects, and keep EM's objective from decreasing.
"""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skmoe import MixtureOfExpertsClassifier
from skmoe._em._logistic import (
    fit_logistic_experts,
    logistic_penalty,
    logistic_settings,
    newton_step_logistic_experts,
)
from skmoe._kernels import (
    NUMBA_AVAILABLE,
    logistic_experts_pass_numba,
    logistic_experts_pass_numpy,
    logistic_gradient_sums_numba,
    logistic_gradient_sums_numpy,
)
from skmoe._scaling import weighted_standardisation as standardisation
from skmoe.datasets import make_moe_classification


def _problem(n_classes, n=600, seed=0):
    rng = np.random.RandomState(seed)
    # columns of very different scales and offsets: the standardisation
    # must not change the minimum
    X = rng.standard_normal((n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, -2.0, 0.0]
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    logits = Xs @ rng.standard_normal((4, n_classes))
    u = rng.random_sample(n)[:, None]
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    codes = (np.cumsum(proba, axis=1) < u).sum(axis=1)
    weights = rng.uniform(0.0, 2.0, (n, 2))
    weights[:25, 0] = 0.0  # zero weight is removal, as in scikit-learn
    return X, codes, weights


def _objective(est, X, y, w):
    """scikit-learn's objective: weighted log-loss plus ||coef||^2 / (2 C)."""
    keep = w > 0  # rows of weight 0 may hold classes the expert does not
    X, y, w = X[keep], y[keep], w[keep]
    proba = est.predict_proba(X)
    column = np.searchsorted(est.classes_, y)
    loss = -np.sum(w * np.log(proba[np.arange(len(y)), column]))
    C = est.C if est.penalty != None else np.inf  # noqa: E711
    return loss + (0.5 / C) * np.sum(est.coef_**2) if np.isfinite(C) else loss


PARAMS = [
    {},
    dict(C=0.05),
    dict(C=np.inf),
    dict(fit_intercept=False),
    dict(solver="newton-cholesky"),
]


@pytest.mark.parametrize("n_classes", [2, 3, 4])
@pytest.mark.parametrize("params", PARAMS, ids=lambda p: str(p) or "default")
def test_newton_m_step_equals_logistic_regression(n_classes, params):
    X, codes, weights = _problem(n_classes)
    template = LogisticRegression(**params)
    settings = [logistic_settings(template)] * 2
    experts = fit_logistic_experts(
        [template, template],
        settings,
        X,
        codes,
        weights,
        standardisation(X, np.ones(len(X))),
    )
    for k, est in enumerate(experts):
        assert type(est) is LogisticRegression
        keep = weights[:, k] > 0
        # scikit-learn's exact Newton solver: the most precise reference
        reference = clone(template).set_params(
            solver="newton-cholesky", tol=1e-12, max_iter=1000
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            reference.fit(X[keep], codes[keep], sample_weight=weights[keep, k])
        np.testing.assert_array_equal(est.classes_, reference.classes_)
        assert est.coef_.shape == reference.coef_.shape
        assert est.intercept_.shape == reference.intercept_.shape
        np.testing.assert_allclose(
            est.predict_proba(X), reference.predict_proba(X), atol=1e-7
        )
        np.testing.assert_allclose(est.coef_, reference.coef_, rtol=1e-6, atol=1e-7)
        if not template.fit_intercept:
            assert np.all(est.intercept_ == 0)
        # Newton's minimum is at least as low as L-BFGS's
        w = weights[keep, k]
        ours = _objective(est, X[keep], codes[keep], w)
        theirs = _objective(reference, X[keep], codes[keep], w)
        assert ours <= theirs + 1e-9 * abs(theirs)


@pytest.mark.parametrize("class_weight", ["balanced", {0: 3.0, 1: 0.5, 2: 1.0}])
def test_class_weights_are_those_of_logistic_regression(class_weight):
    X, codes, weights = _problem(3)
    template = LogisticRegression(class_weight=class_weight)
    (est,) = fit_logistic_experts(
        [template],
        [logistic_settings(template)],
        X,
        codes,
        weights[:, :1],
        standardisation(X, np.ones(len(X))),
    )
    keep = weights[:, 0] > 0
    reference = clone(template).set_params(solver="newton-cholesky", tol=1e-12)
    reference.fit(X[keep], codes[keep], sample_weight=weights[keep, 0])
    np.testing.assert_allclose(
        est.predict_proba(X), reference.predict_proba(X), atol=1e-5
    )
    # and they matter: without them the fit is another
    plain = LogisticRegression().fit(
        X[keep], codes[keep], sample_weight=weights[keep, 0]
    )
    assert np.abs(plain.predict_proba(X) - est.predict_proba(X)).max() > 1e-2


def test_one_newton_step_from_the_last_expert_lowers_its_objective():
    X, codes, weights = _problem(3)
    template = LogisticRegression()
    settings = [logistic_settings(template)]
    std = standardisation(X, np.ones(len(X)))
    (first,) = fit_logistic_experts([template], settings, X, codes, weights[:, :1], std)
    # other weights: one warm step from the previous expert
    w2 = weights[:, 1:]
    (warm,) = fit_logistic_experts([template], settings, X, codes, w2, std, [first])
    (cold,) = fit_logistic_experts([template], settings, X, codes, w2, std)
    assert warm.n_iter_[0] == 1 and cold.n_iter_[0] > 1
    before = _objective(first, X, codes, w2[:, 0])
    after = _objective(warm, X, codes, w2[:, 0])
    best = _objective(cold, X, codes, w2[:, 0])
    assert best <= after < before


def test_an_expert_with_one_class_is_left_to_the_general_path():
    X, codes, weights = _problem(3)
    weights[codes != 1, 0] = 0.0
    template = LogisticRegression()
    experts = fit_logistic_experts(
        [template, template],
        [logistic_settings(template)] * 2,
        X,
        codes,
        weights,
        standardisation(X, np.ones(len(X))),
    )
    assert experts[0] is None and isinstance(experts[1], LogisticRegression)


def test_an_expert_missing_a_class_is_fitted_on_the_classes_it_has():
    X, codes, weights = _problem(3)
    weights[codes == 2, 0] = 0.0
    template = LogisticRegression()
    (est,) = fit_logistic_experts(
        [template],
        [logistic_settings(template)],
        X,
        codes,
        weights[:, :1],
        standardisation(X, np.ones(len(X))),
    )
    keep = weights[:, 0] > 0
    reference = LogisticRegression(solver="newton-cholesky", tol=1e-12).fit(
        X[keep], codes[keep], sample_weight=weights[keep, 0]
    )
    np.testing.assert_array_equal(est.classes_, [0, 1])
    np.testing.assert_allclose(
        est.predict_proba(X), reference.predict_proba(X), atol=1e-5
    )


@pytest.mark.parametrize(
    "template",
    [
        LogisticRegression(solver="liblinear"),
        LogisticRegression(l1_ratio=1.0, solver="saga"),
        LogisticRegression(penalty="l1", solver="saga"),
    ],
    ids=["liblinear", "l1_ratio", "l1"],
)
def test_other_logistic_experts_keep_their_own_fit(template):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert logistic_settings(template) is None


def test_the_classifier_fits_its_default_experts_by_newton(monkeypatch):
    X, y = make_moe_classification(n_samples=600, n_classes=3, random_state=0)

    def refuse(self, X, y, sample_weight=None):
        raise AssertionError("LogisticRegression.fit called")

    monkeypatch.setattr(LogisticRegression, "fit", refuse)
    est = MixtureOfExpertsClassifier(n_experts=3, random_state=0, max_iter=300)
    est.fit(X, y)
    assert all(type(e) in (LogisticRegression, DummyClassifier) for e in est.experts_)
    assert est.score(X, y) > 0.7


@pytest.mark.parametrize("C", [1.0, np.inf])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_em_objective_never_decreases_with_newton_experts(C, n_classes):
    X, y = make_moe_classification(
        n_samples=800, n_features=3, n_experts=3, n_classes=n_classes, random_state=1
    )
    est = MixtureOfExpertsClassifier(
        LogisticRegression(C=C), n_experts=3, random_state=0, max_iter=60, tol=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    curve = np.asarray(est.objective_curve_)
    assert len(curve) == 60
    # per unit weight, to round-off
    assert np.all(np.diff(curve) >= -1e-10 * len(y))
    # the penalised objective counts the experts' penalties
    gate = est.gate_.penalty()
    experts = logistic_penalty(est.experts_, [logistic_settings(est.estimator)] * 3)
    assert curve[-1] == pytest.approx(est.log_likelihood_ - gate - experts, rel=1e-9)
    if np.isfinite(C):
        assert experts > 0


def test_fused_classifier_iterations_equal_the_unfused_ones(monkeypatch):
    # with the linear gate, the gate's trial point, the E-step and the next
    # gate gradient are one pass (classifier_pass); without the fusion the
    # same iteration takes its separate passes: the same curve, iteration by
    # iteration, to round-off
    import skmoe._backends._numpy as numpy_backend

    X, y = make_moe_classification(
        n_samples=3000, n_features=4, n_experts=4, n_classes=3, random_state=5
    )
    w = np.random.RandomState(0).uniform(0.5, 2.0, len(y))
    kw = dict(n_experts=4, max_iter=40, tol=1e-10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fused = MixtureOfExpertsClassifier(**kw).fit(X, y, sample_weight=w)
        # one pass per iteration after the first two (the cold M-step, and
        # the first warm one, which has no pass's gradient yet), more only
        # where the line search halves a step
        passes = fused._fit_counts["classifier_passes"]
        assert fused.n_iter_ - 1 <= passes <= fused.n_iter_ + 2
        monkeypatch.setattr(numpy_backend, "one_step_warm_gate", lambda gate: False)
        plain = MixtureOfExpertsClassifier(**kw).fit(X, y, sample_weight=w)
    assert "classifier_passes" not in plain._fit_counts
    assert fused.n_iter_ == plain.n_iter_ > 10
    np.testing.assert_allclose(
        fused.log_likelihood_curve_, plain.log_likelihood_curve_, rtol=1e-10
    )
    np.testing.assert_allclose(fused.gate_.coef_, plain.gate_.coef_, rtol=1e-7)
    np.testing.assert_allclose(
        fused.predict_proba(X), plain.predict_proba(X), rtol=1e-8, atol=1e-12
    )


def test_newton_experts_reach_the_log_likelihood_of_the_general_path():
    X, y = make_moe_classification(
        n_samples=1500, n_features=4, n_experts=3, n_classes=3, random_state=2
    )
    fast = MixtureOfExpertsClassifier(n_experts=3, random_state=0, max_iter=500)
    fast.fit(X, y)
    # the same model through scikit-learn's own fits: a Pipeline of one
    # LogisticRegression is not taken by the Newton path
    general = MixtureOfExpertsClassifier(
        make_pipeline(LogisticRegression(tol=1e-8, max_iter=1000)),
        n_experts=3,
        random_state=0,
        max_iter=500,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        general.fit(X, y)
    assert fast.converged_
    assert fast.log_likelihood_ >= general.log_likelihood_ - 1e-4 * abs(
        general.log_likelihood_
    )


@pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba is not installed")
@pytest.mark.parametrize("n", [700, 50_000])  # the serial and parallel builds
def test_logistic_experts_pass_numba_equals_numpy(n):
    rng = np.random.RandomState(0)
    widths = [1, 3, 2]  # experts holding 2, 4 and 3 classes
    offsets = np.r_[0, np.cumsum(widths)]
    X = rng.standard_normal((n, 4))
    X[:5] *= 200  # logits far from 0: no overflow, no lost probability
    D, b = rng.standard_normal((4, offsets[-1])) * 3, rng.standard_normal(6)
    codes = rng.randint(0, 4, n)
    local = np.array([[0, 1, -1, -1], [0, 1, 2, 3], [-1, 0, 1, 2]])
    s = rng.random_sample((n, 3))
    s[local[np.arange(3)[:, None], codes].T < 0] = 0.0  # rows of absent classes
    results = []
    for kernel in (logistic_experts_pass_numba, logistic_experts_pass_numpy):
        log_label, residual = np.full((n, 3), np.nan), np.full((n, 6), np.nan)
        losses = kernel(X, D, b, offsets, codes, local, s, log_label, residual)
        results.append((losses, log_label, residual))
    (fast, slow) = results
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12)
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast[2], slow[2], atol=1e-13)
    assert np.all(fast[1][codes >= 2, 0] == -np.inf)
    assert np.all(fast[1][codes == 0, 2] == -np.inf)
    assert np.all(np.isfinite(fast[1][:, 1]))
    assert np.all(np.isfinite(fast[0])) and np.all(fast[0] > 0)


@pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba is not installed")
@pytest.mark.parametrize("n", [700, 50_000])
def test_logistic_gradient_sums_numba_equals_numpy(n):
    rng = np.random.RandomState(1)
    X = rng.standard_normal((n, 5)) * [1.0, 100.0, 0.01, 1.0, 3.0]
    residual = rng.uniform(-1, 1, (n, 6))
    S = rng.random_sample((n, 3))
    expert_of_column = np.array([0, 1, 1, 1, 2, 2])
    log_label = np.log(rng.random_sample((n, 3)))
    log_label[::5, 2] = -np.inf  # a class expert 2 does not hold, weight 0
    S[::5, 2] = 0.0
    args = X, residual, log_label, S, expert_of_column
    fast = logistic_gradient_sums_numba(*args)
    slow = logistic_gradient_sums_numpy(*args)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    # against the sums written out
    R = residual * S[:, expert_of_column]
    np.testing.assert_allclose(fast[1], X.T @ R, rtol=1e-10, atol=1e-10)
    keep = S[:, 2] > 0
    expected = -np.sum(S[keep, 2] * log_label[keep, 2])
    np.testing.assert_allclose(fast[0][2], expected, rtol=1e-10)


def _step_problem(n_classes, C=1.0, class_weight=None):
    X, codes, weights = _problem(n_classes)
    weights = np.column_stack([weights, weights[::-1, 0]])
    if n_classes > 2:
        weights[codes == n_classes - 1, 2] = 0.0  # expert 2 lacks a class
    template = LogisticRegression(C=C, class_weight=class_weight)
    settings = [logistic_settings(template)] * 3
    std = standardisation(X, np.ones(len(X)))
    rng = np.random.RandomState(1)
    # the experts of the last M-step: fitted on other weights
    old = weights * rng.uniform(0.2, 1.8, weights.shape)
    previous = fit_logistic_experts([template] * 3, settings, X, codes, old, std)
    return X, codes, weights, template, settings, std, previous


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("C, class_weight", [(1.0, None), (np.inf, "balanced")])
def test_batched_newton_step_is_each_experts_own_step(n_classes, C, class_weight):
    X, codes, weights, template, settings, std, previous = _step_problem(
        n_classes, C, class_weight
    )
    stepped = newton_step_logistic_experts(
        [template] * 3, settings, X, codes, weights, std, previous, None
    )
    alone = fit_logistic_experts(
        [template] * 3, settings, X, codes, weights, std, previous
    )
    for k in range(3):
        got, want = stepped.experts[k], alone[k]
        np.testing.assert_array_equal(got.classes_, want.classes_)
        np.testing.assert_allclose(got.coef_, want.coef_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.intercept_, want.intercept_, atol=1e-10)
        # the step lowers each expert's own objective
        w = weights[:, k]
        assert _objective(got, X, codes, w) < _objective(previous[k], X, codes, w)
        # what it leaves for the E-step: the label's log-probability
        keep = w > 0
        proba = got.predict_proba(X[keep])
        column = np.searchsorted(got.classes_, codes[keep])
        np.testing.assert_allclose(
            stepped.log_label[keep, k],
            np.log(proba[np.arange(keep.sum()), column]),
            rtol=1e-10,
        )
    if n_classes > 2:
        # rows of the class expert 2 does not hold: probability 0 there
        assert np.all(stepped.log_label[codes == n_classes - 1, 2] == -np.inf)


def test_batched_newton_step_reuses_the_pass_it_left():
    X, codes, weights, template, settings, std, previous = _step_problem(3)
    first = newton_step_logistic_experts(
        [template] * 3, settings, X, codes, weights, std, previous, None
    )
    again = [template] * 3, settings, X, codes, weights * 0.9
    cached = newton_step_logistic_experts(*again, std, first.experts, first)
    fresh = newton_step_logistic_experts(*again, std, first.experts, None)
    for a, b in zip(cached.experts, fresh.experts, strict=True):
        np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-10, atol=1e-13)


def test_batched_newton_step_needs_a_previous_expert_per_class_set():
    X, codes, weights, template, settings, std, previous = _step_problem(3)
    # expert 2's rows now hold every class: its last fit cannot step
    weights[:, 2] = 1.0
    args = [template] * 3, settings, X, codes, weights, std
    assert newton_step_logistic_experts(*args, previous, None) is None
    assert newton_step_logistic_experts(*args, None, None) is None


def test_batched_newton_step_writes_into_the_spare_arrays():
    X, codes, weights, template, settings, std, previous = _step_problem(3)
    args = [template] * 3, settings, X, codes, weights
    first = newton_step_logistic_experts(*args, std, previous, None)
    spare = first._replace(
        log_label=np.full_like(first.log_label, np.nan),
        residual=np.full_like(first.residual, np.nan),
    )
    lent = newton_step_logistic_experts(*args, std, previous, None, spare)
    assert lent.log_label is spare.log_label and lent.residual is spare.residual
    np.testing.assert_array_equal(lent.log_label, first.log_label)
    np.testing.assert_array_equal(lent.residual, first.residual)
