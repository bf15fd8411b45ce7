"""training="gradient": joint L-BFGS / Adam on -log p(y|x), against EM."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor, SoftmaxGate
from skmoe import _kernels as kern
from skmoe._em._gradient import _GaussianProblem, _LogisticProblem
from skmoe.datasets import make_moe_classification, make_moe_regression


@pytest.fixture(scope="module")
def regression_data():
    return make_moe_regression(
        n_samples=600, n_experts=3, random_state=0, return_params=True
    )


@pytest.fixture(scope="module")
def em_regressor(regression_data):
    X, y, _ = regression_data
    return MixtureOfExpertsRegressor(
        n_experts=3, tol=1e-10, max_iter=500, random_state=0
    ).fit(X, y)


def _coefs(moe):
    return np.array([np.r_[e.coef_, e.intercept_] for e in moe.experts_])


def test_lbfgs_reaches_the_em_optimum_for_linear_experts(regression_data, em_regressor):
    X, y, params = regression_data
    grad = MixtureOfExpertsRegressor(
        n_experts=3, training="gradient", tol=1e-12, max_iter=2000, random_state=0
    ).fit(X, y)
    assert grad.converged_
    # same start, same optimum: log-likelihood within 1e-3 (of ~300)
    assert abs(grad.log_likelihood_ - em_regressor.log_likelihood_) < 1e-3
    np.testing.assert_allclose(_coefs(grad), _coefs(em_regressor), atol=1e-3)
    np.testing.assert_allclose(
        grad.noise_variance_, em_regressor.noise_variance_, rtol=1e-2
    )
    np.testing.assert_allclose(
        grad.predict_gate(X), em_regressor.predict_gate(X), atol=1e-3
    )
    # and the optimum is the truth's neighbourhood: coefficients recovered
    true = np.c_[params.coef, params.intercept]
    for row in _coefs(grad):
        assert np.min(np.abs(true - row).max(axis=1)) < 0.05


def test_adam_approaches_the_em_optimum(regression_data, em_regressor):
    X, y, _ = regression_data
    grad = MixtureOfExpertsRegressor(
        n_experts=3,
        training="gradient",
        gradient_solver="adam",
        learning_rate_init=0.03,
        batch_size=50,
        max_iter=300,
        random_state=0,
    ).fit(X, y)
    # Adam ends within 4 (1.3%) of EM's log-likelihood, where the gate's
    # sharpness is a flat direction of the objective (whether its step
    # schedule declares convergence within max_iter depends on the
    # shuffles); the experts agree
    assert abs(grad.log_likelihood_ - em_regressor.log_likelihood_) < 4.0
    np.testing.assert_allclose(_coefs(grad), _coefs(em_regressor), atol=5e-3)
    # a gate a little less sharp leaves a little more residual to the noise
    np.testing.assert_allclose(
        grad.noise_variance_, em_regressor.noise_variance_, rtol=0.15
    )


def test_lbfgs_reaches_the_em_optimum_for_logistic_experts():
    X, y = make_moe_classification(
        n_samples=600, n_experts=2, n_classes=3, random_state=0
    )
    em = MixtureOfExpertsClassifier(
        n_experts=2, tol=1e-8, max_iter=300, random_state=0
    ).fit(X, y)
    grad = MixtureOfExpertsClassifier(
        n_experts=2, training="gradient", tol=1e-10, max_iter=1000, random_state=0
    ).fit(X, y)
    # EM's experts are fitted by LogisticRegression to its tol=1e-4, which
    # bounds the agreement
    assert abs(grad.log_likelihood_ - em.log_likelihood_) < 1e-2
    np.testing.assert_allclose(grad.predict_proba(X), em.predict_proba(X), atol=5e-3)
    np.testing.assert_allclose(grad.gate_.coef_, em.gate_.coef_, atol=1e-2)


def test_fitted_attributes_are_those_of_em(regression_data):
    X, y, _ = regression_data
    moe = MixtureOfExpertsRegressor(
        n_experts=3, training="gradient", max_iter=50, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        moe.fit(X, y)
    assert all(type(e) is LinearRegression for e in moe.experts_)
    assert isinstance(moe.gate_, SoftmaxGate)
    assert moe.noise_variance_.shape == (3,)
    assert moe.log_likelihood_curve_.shape == (moe.n_iter_,)
    # the curve ends at the fitted model's log-likelihood
    assert moe.log_likelihood_ == pytest.approx(
        moe.conditional_log_likelihood(X, y).sum()
    )
    assert moe.predict(X).shape == (len(X),)
    assert np.isfinite(moe.bic(X, y))
    assert moe.summary().shape[0] == 3
    Xc, yc = make_moe_classification(n_samples=300, n_classes=3, random_state=1)
    clf = MixtureOfExpertsClassifier(
        n_experts=2, training="gradient", random_state=0
    ).fit(Xc, yc)
    assert all(type(e) is LogisticRegression for e in clf.experts_)
    assert clf.experts_[0].coef_.shape == (3, 2)
    np.testing.assert_allclose(clf.predict_proba(Xc).sum(axis=1), 1.0)
    assert clf.log_likelihood_ == pytest.approx(
        clf.conditional_log_likelihood(Xc, yc).sum()
    )
    assert np.isfinite(clf.bic(Xc, yc))
    assert clf.summary().shape[0] == 2


def test_integer_weights_equal_repeated_rows():
    X, y = make_moe_regression(n_samples=200, n_experts=2, random_state=3)
    w = np.random.RandomState(0).randint(0, 3, size=len(X))
    kw = dict(n_experts=2, training="gradient", tol=1e-12, max_iter=1000)
    a = MixtureOfExpertsRegressor(random_state=0, **kw).fit(X, y, sample_weight=w)
    b = MixtureOfExpertsRegressor(random_state=0, **kw).fit(
        np.repeat(X, w, axis=0), np.repeat(y, w)
    )
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, abs=1e-4)
    np.testing.assert_allclose(_coefs(a), _coefs(b), atol=1e-4)


def test_noise_variance_stays_at_the_floor():
    # noise-free pieces: EM floors the variances; so must the gradient
    X, y = make_moe_regression(n_samples=300, n_experts=2, noise=0.0, random_state=0)
    moe = MixtureOfExpertsRegressor(
        n_experts=2, training="gradient", max_iter=300, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        moe.fit(X, y)
    assert np.all(np.isfinite(moe.noise_variance_))
    assert np.all(moe.noise_variance_ >= moe._likelihood.noise_floor * (1 - 1e-9))
    assert np.isfinite(moe.log_likelihood_)


def test_ridge_and_no_intercept_multi_output():
    rng = np.random.RandomState(0)
    X, y = make_moe_regression(n_samples=300, n_experts=2, random_state=4)
    Y = np.c_[y, 2 * y + rng.standard_normal(len(y)) * 0.1]
    moe = MixtureOfExpertsRegressor(
        estimators=[
            ("ridge", Ridge(alpha=100.0)),
            ("origin", LinearRegression(fit_intercept=False)),
        ],
        training="gradient",
        tol=1e-10,
        max_iter=1000,
        random_state=0,
    ).fit(X, Y)
    assert moe.experts_[0].coef_.shape == (2, 2)
    assert moe.noise_variance_.shape == (2, 2)
    np.testing.assert_array_equal(moe.experts_[1].intercept_, 0.0)
    # the heavy ridge shrinks its expert's coefficients
    plain = MixtureOfExpertsRegressor(
        estimators=[("a", LinearRegression()), ("b", LinearRegression())],
        training="gradient",
        max_iter=1000,
        random_state=0,
    ).fit(X, Y)
    assert np.abs(moe.experts_[0].coef_).sum() < np.abs(plain.experts_[0].coef_).sum()


def _numeric_gradient(f, x, eps=1e-6):
    grad = np.empty_like(x)
    for j in range(x.size):
        step = np.zeros_like(x)
        step[j] = eps
        grad[j] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


def _common(rng, n, d, K, penalties, fit_intercept):
    return dict(
        x_mean=rng.standard_normal(d),
        x_scale=rng.uniform(0.5, 2.0, d),
        sample_weight=rng.uniform(0.2, 2.0, n),
        n_experts=K,
        penalties=penalties,
        fit_intercept=fit_intercept,
        gate_alpha=0.7,
    )


def test_gaussian_objective_gradient_is_the_derivative():
    rng = np.random.RandomState(0)
    n, d, K, q = 30, 3, 3, 2
    problem = _GaussianProblem(
        rng.standard_normal((n, d)),
        rng.standard_normal((n, q)),
        np.array([0.3, -1.0]),
        np.array([2.0, 0.5]),
        np.full(q, -30.0),
        **_common(rng, n, d, K, [0.0, 2.0, 0.5], [True, False, True]),
    )
    flat = 0.5 * rng.standard_normal(problem.bounds[-1])
    grad = problem.objective(flat)[1]
    numeric = _numeric_gradient(lambda x: problem.objective(x)[0], flat)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    # a mini-batch's data term is the sum over its rows
    rows = np.arange(0, n, 3)
    loss_rows, grad_rows = problem.data_term(flat, rows)
    sub = _GaussianProblem(
        problem.Xs[rows],
        problem.Ys[rows],
        np.array([0.3, -1.0]),
        np.array([2.0, 0.5]),
        np.full(q, -30.0),
        x_mean=problem.shift * problem.x_scale,
        x_scale=problem.x_scale,
        sample_weight=problem.sample_weight[rows],
        n_experts=K,
        penalties=[0.0, 2.0, 0.5],
        fit_intercept=[True, False, True],
        gate_alpha=0.7,
    )
    loss_sub, grad_sub = sub.data_term(flat)
    assert loss_rows == pytest.approx(loss_sub, rel=1e-12)
    np.testing.assert_allclose(grad_rows, grad_sub, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logistic_objective_gradient_is_the_derivative(n_classes):
    rng = np.random.RandomState(1)
    n, d, K = 30, 2, 3
    problem = _LogisticProblem(
        rng.standard_normal((n, d)),
        rng.randint(0, n_classes, n),
        n_classes,
        **_common(rng, n, d, K, [1.0, 0.0, 0.3], [True, True, False]),
    )
    flat = 0.5 * rng.standard_normal(problem.bounds[-1])
    grad = problem.objective(flat)[1]
    numeric = _numeric_gradient(lambda x: problem.objective(x)[0], flat)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.fixture(params=[50, 30_000], ids=["serial", "parallel"])
def n_rows(request):
    assert (request.param >= kern._PARALLEL_MIN_ROWS) == (request.param > 1000)
    return request.param


def test_gaussian_moe_gradient_kernel_matches_numpy(n_rows):
    rng = np.random.RandomState(2)
    K, q = 3, 2
    args = (
        5 * rng.standard_normal((n_rows, K)),
        rng.standard_normal((n_rows, K, q)),
        rng.standard_normal((n_rows, q)),
        rng.standard_normal((K, q)),
        rng.uniform(0, 2, n_rows),
    )
    for got, ref in zip(
        kern.gaussian_moe_gradient_numba(*args),
        kern.gaussian_moe_gradient_numpy(*args),
        strict=True,
    ):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_logistic_moe_gradient_kernel_matches_numpy(n_rows):
    rng = np.random.RandomState(3)
    K, C = 3, 4
    args = (
        5 * rng.standard_normal((n_rows, K)),
        3 * rng.standard_normal((n_rows, K, C)),
        rng.randint(0, C, n_rows),
        rng.uniform(0, 2, n_rows),
    )
    for got, ref in zip(
        kern.logistic_moe_gradient_numba(*args),
        kern.logistic_moe_gradient_numpy(*args),
        strict=True,
    ):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_kernel_loss_is_the_mixture_negative_log_likelihood():
    rng = np.random.RandomState(4)
    gate_logits = rng.standard_normal((20, 2))
    means = rng.standard_normal((20, 2, 1))
    Y = rng.standard_normal((20, 1))
    log_var = np.log([[0.5], [2.0]])
    w = rng.uniform(0.5, 1.5, 20)
    from scipy.stats import norm

    g = np.exp(kern.log_softmax_numpy(gate_logits))
    dens = norm.pdf(Y, means[:, :, 0], np.sqrt(np.exp(log_var[:, 0])))
    expected = -w @ np.log(np.sum(g * dens, axis=1))
    loss = kern.gaussian_moe_gradient_numba(gate_logits, means, Y, log_var, w)[0]
    assert loss == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "estimator, name",
    [
        (DecisionTreeRegressor(max_depth=2), "DecisionTreeRegressor"),
        (make_pipeline(StandardScaler(), LinearRegression()), "Pipeline"),
        (Ridge(positive=True), "Ridge"),
    ],
)
def test_error_names_the_expert_it_cannot_differentiate(estimator, name):
    X, y = make_moe_regression(n_samples=50, n_experts=2, random_state=0)
    moe = MixtureOfExpertsRegressor(estimator, n_experts=2, training="gradient")
    with pytest.raises(
        ValueError, match=f"cannot differentiate expert 'expert0' \\({name}"
    ):
        moe.fit(X, y)


@pytest.mark.parametrize(
    "expert",
    [
        LogisticRegression(l1_ratio=1.0, solver="saga"),
        LogisticRegression(class_weight="balanced"),
    ],
)
def test_error_for_logistic_experts_it_cannot_differentiate(expert):
    X, y = make_moe_classification(n_samples=50, random_state=0)
    clf = MixtureOfExpertsClassifier(
        estimators=[("plain", LogisticRegression()), ("odd", expert)],
        training="gradient",
    )
    with pytest.raises(ValueError, match="cannot differentiate expert 'odd'"):
        clf.fit(X, y)


def test_invalid_solver_is_rejected():
    X, y = make_moe_regression(n_samples=50, n_experts=2, random_state=0)
    with pytest.raises(ValueError, match="gradient_solver"):
        MixtureOfExpertsRegressor(training="gradient", gradient_solver="sgd").fit(X, y)
