"""The whole float64 range: every fit is finite, or names the value at fault.

Across every gate, training and backend:

- rescaling X or y by a power of two gives the same fit, up to the scale,
  wherever the scaled data stay in the safe range (``safe_limits``), and a
  ValueError naming the column exactly where they leave it. Powers of two
  are exact in floating point, so a fit that uses an absolute threshold
  anywhere (a variance floor, a "constant column" test, a tolerance) shows
  up as a difference, not as round-off;
- any magnitude from 1e-150 to 1e150, and outliers up to 1e308, give finite
  predictions, standard deviations and probabilities that sum to one, or a
  ValueError or TypeError that says what is wrong;
- a fit that did not reach its result never reports ``converged_=True``.

The experts are ones whose own fit is free of units (LinearRegression,
GaussianNB): scikit-learn's penalised LogisticRegression and its trees are
not (the penalty and the trees' 1e-7 feature threshold act on raw values),
and a mixture cannot make its experts so. A LogisticRegression expert is
covered by scaling its C with X, which makes its problem the same.
"""

import functools
import re
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe._validation import safe_limits
from skmoe.datasets import make_moe_classification, make_moe_regression

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

R, C = MixtureOfExpertsRegressor, MixtureOfExpertsClassifier
LARGEST, SMALLEST_SPREAD = safe_limits(np.float64)


def _logistic(x_scale):
    # C / x_scale^2 penalises the coefficients of x_scale * X as C does
    # those of X: the same problem in other units (beyond the safe range,
    # where the fit is refused anyway, C stays a float)
    inside = 1e-150 < x_scale < 1e150
    return LogisticRegression(C=1.0 / x_scale**2 if inside else 1.0)


# name: (estimator, parameters (or a function of the X scale), backend,
# relative tolerances of the fit with X rescaled and with y rescaled; None:
# finiteness only). The non-convex MLP gate amplifies the last-bit
# differences that a rescaled y leaves in the responsibilities (the
# log-density's constant -log sigma is rounded anew; GaussianNB experts do
# the same for X) into another local optimum; sklearn's LogisticRegression
# stops at an absolute gradient tolerance, so the classifier's gradient
# training starts a little elsewhere and is run to a tight tol.
EXACT = (1e-9, 1e-9)
CONFIGS = {
    "regressor em": (R, {}, "memory", EXACT),
    "regressor cem": (R, dict(training="cem"), "memory", EXACT),
    "regressor sem": (R, dict(training="sem", max_iter=15), "memory", EXACT),
    "regressor lbfgs": (R, dict(training="gradient", max_iter=60), "memory", EXACT),
    "regressor adam": (
        R,
        dict(training="gradient", gradient_solver="adam", max_iter=8),
        "memory",
        EXACT,
    ),
    "regressor mlp gate": (
        R,
        dict(gate="mlp", gate_hidden_layer_sizes=(3,), max_iter=10),
        "memory",
        (1e-9, None),
    ),
    "regressor hierarchical": (
        R,
        dict(gate="hierarchical", n_experts=4, max_iter=10),
        "memory",
        EXACT,
    ),
    "regressor gate_features": (R, dict(gate_features=[1]), "memory", EXACT),
    "regressor load balance": (R, dict(gate_load_balance=0.1), "memory", EXACT),
    "regressor random start": (R, dict(init="random"), "memory", EXACT),
    "regressor dask": (R, {}, "dask", EXACT),
    "regressor array api": (R, {}, "array_api_strict", EXACT),
    "regressor partial_fit": (R, {}, "partial_fit", EXACT),
    "classifier em": (C, dict(estimator=GaussianNB(), max_iter=15), "memory", EXACT),
    "classifier mlp gate": (
        C,
        dict(estimator=GaussianNB(), gate="mlp", gate_hidden_layer_sizes=(3,)),
        "memory",
        (None, None),
    ),
    "classifier hierarchical": (
        C,
        dict(estimator=GaussianNB(), gate="hierarchical", n_experts=4, max_iter=10),
        "memory",
        EXACT,
    ),
    "classifier logistic em": (
        C,
        lambda c: dict(estimator=_logistic(c), max_iter=5),
        "memory",
        (None, None),  # sklearn's own stopping rule decides
    ),
    "classifier lbfgs": (
        C,
        lambda c: dict(
            estimator=_logistic(c), training="gradient", tol=1e-12, max_iter=400
        ),
        "memory",
        (1e-4, None),
    ),
    "classifier partial_fit": (C, dict(estimator=GaussianNB()), "partial_fit", EXACT),
}


@functools.cache
def _data(is_classifier):
    if is_classifier:
        return make_moe_classification(n_samples=90, n_features=2, random_state=1)
    return make_moe_regression(n_samples=90, n_features=2, n_experts=2, random_state=1)


def _estimator(name, x_scale=1.0):
    Est, params, _, _ = CONFIGS[name]
    if callable(params):
        params = params(x_scale)
    return Est(**(dict(n_experts=2, random_state=0) | params))


def _fit(name, X, y, x_scale=1.0):
    est = _estimator(name, x_scale)
    backend = CONFIGS[name][2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        if backend == "memory":
            return est.fit(X, y)
        if backend == "partial_fit":
            extra = {"classes": np.unique(y)} if est._is_classifier_moe else {}
            est.partial_fit(X[:45], y[:45], **extra)
            return est.partial_fit(X[45:], y[45:])
        if backend == "array_api_strict":
            xp = pytest.importorskip("array_api_strict")
            from skmoe._backends._array_api import fit_array_api

            return fit_array_api(est, X, y, xp=xp)
        da = pytest.importorskip("dask.array")
        return est.fit(da.from_array(X, chunks=(30, 2)), da.from_array(y, chunks=30))


@functools.cache
def _base_fit(name):
    X, y = _data(CONFIGS[name][0] is C)
    return _fit(name, X, y)


def _answers(est, X):
    if est._is_classifier_moe:
        return {"proba": est.predict_proba(X), "predict": est.predict(X)}
    mean, std = est.predict(X, return_std=True)
    return {"mean": mean, "std": std}


def _assert_finite(est, X):
    out = _answers(est, X)
    for key, value in out.items():
        if key != "predict":
            assert np.all(np.isfinite(value)), key
    if "proba" in out:
        np.testing.assert_allclose(out["proba"].sum(axis=1), 1.0, rtol=1e-12)
        assert np.all(out["proba"] >= 0)
    else:
        assert np.all(out["std"] > 0)
    if est.converged_:
        assert np.isfinite(est.log_likelihood_)
    return out


def _leaves_the_safe_range(*arrays):
    """Whether a column of any array leaves ``safe_limits``."""
    for A in arrays:
        A = np.asarray(A, dtype=float).reshape(len(A), -1)
        low, high = A.min(axis=0), A.max(axis=0)
        top = np.maximum(np.abs(low), np.abs(high))
        width = high - low
        if np.any(top > LARGEST) or np.any((width > 0) & (width < SMALLEST_SPREAD)):
            return True
    return False


_CLEAR_RANGE_ERROR = r"(X|y) column \d+ (holds a value of|varies by only)"


@PROPERTY
@given(
    name=st.sampled_from(sorted(CONFIGS)),
    x_power=st.integers(-520, 520),
    y_power=st.integers(-520, 520),
)
def test_rescaled_fits_equal_the_unscaled_one_up_to_the_scale(name, x_power, y_power):
    Est, _, _, (x_rtol, y_rtol) = CONFIGS[name]
    X0, y0 = _data(Est is C)
    cx = 2.0**x_power
    cy = 1.0 if Est is C else 2.0**y_power
    X, y = cx * X0, (y0 if Est is C else cy * y0)
    leaves = _leaves_the_safe_range(X) or (Est is R and _leaves_the_safe_range(y))
    try:
        est = _fit(name, X, y, cx)
    except ValueError as exc:
        # refused exactly where the data leave the range, naming the column
        assert leaves, exc
        assert re.search(_CLEAR_RANGE_ERROR, str(exc)), exc
        return
    assert not leaves, "fitted data beyond the safe range"
    out = _assert_finite(est, X)
    tolerances = [x_rtol] + ([y_rtol] if Est is R and y_power != 0 else [])
    if None in tolerances:
        return
    rtol = max(tolerances)
    base = _answers(_base_fit(name), X0)
    if Est is C:
        np.testing.assert_allclose(out["proba"], base["proba"], rtol=0, atol=rtol)
    else:
        scale = cy * (1.0 + np.abs(base["mean"]).max())
        np.testing.assert_allclose(
            out["mean"], cy * base["mean"], rtol=0, atol=rtol * scale
        )
        np.testing.assert_allclose(out["std"], cy * base["std"], rtol=10 * rtol)
        # the density of y scales by 1 / cy per row (after partial_fit, the
        # log-likelihood is the last batch's)
        n_rows = len(y) // 2 if CONFIGS[name][2] == "partial_fit" else len(y)
        expected = _base_fit(name).log_likelihood_ - n_rows * np.log(cy)
        assert est.log_likelihood_ == pytest.approx(
            expected, rel=10 * rtol, abs=10 * rtol
        )


@PROPERTY
@given(
    name=st.sampled_from(sorted(CONFIGS)),
    x_power=st.integers(-150, 150),
    y_power=st.integers(-150, 150),
    outlier=st.one_of(
        st.none(),
        st.tuples(
            st.sampled_from(["X", "y"]),
            st.integers(0, 89),
            st.integers(1, 308),
            st.sampled_from([-1.0, 1.0]),
        ),
    ),
    far=st.integers(1, 308),
)
def test_any_magnitude_fits_finite_or_says_which_value(
    name, x_power, y_power, outlier, far
):
    Est = CONFIGS[name][0]
    X0, y0 = _data(Est is C)
    cx = 10.0**x_power
    X = cx * X0
    y = y0 if Est is C else 10.0**y_power * y0
    if outlier is not None:
        target, row, power, sign = outlier
        if target == "X" or Est is C:
            X = X.copy()
            X[row, row % 2] = sign * 10.0**power
        else:
            y = y.copy()
            y[row] = sign * 10.0**power
    try:
        est = _fit(name, X, y, cx)
    except (ValueError, TypeError) as exc:
        assert re.search(_CLEAR_RANGE_ERROR, str(exc)), exc
        assert _leaves_the_safe_range(X) or (Est is R and _leaves_the_safe_range(y))
        return
    _assert_finite(est, X)
    # prediction far away is finite, or a clear error: beyond the range, or
    # from an expert whose own arithmetic overflows there (GaussianNB
    # squares the distance over its variances)
    X_far = np.sign(X[:4] + 0.5) * 10.0**far
    try:
        _assert_finite(est, X_far)
    except ValueError as exc:
        beyond = re.search(r"X column \d+ holds a value of", str(exc))
        assert beyond or re.search(r"Expert '\w+' gives non-finite", str(exc)), exc
        assert not beyond or 10.0**far > LARGEST


# -- the cases that went wrong, one by one


@pytest.mark.parametrize(
    "params",
    [
        dict(gate="mlp", gate_hidden_layer_sizes=(4,)),
        dict(training="gradient"),
        dict(gate="hierarchical", n_experts=4),
    ],
    ids=["mlp", "gradient", "hierarchical"],
)
def test_inputs_of_tiny_spread_are_routed_as_unscaled_ones(params):
    X, y = make_moe_regression(n_samples=300, n_features=2, n_experts=2, random_state=0)
    kw = dict(n_experts=2, random_state=0, max_iter=30) | params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        base = R(**kw).fit(X, y)
        tiny = R(**kw).fit(X * 2.0**-50, y)  # about 1e-15
    np.testing.assert_allclose(tiny.predict(X * 2.0**-50), base.predict(X), atol=1e-9)
    assert tiny.score(X * 2.0**-50, y) == pytest.approx(base.score(X, y), abs=1e-9)


@pytest.mark.parametrize(
    "params",
    [{}, dict(gate="hierarchical", n_experts=4), dict(training="gradient")],
    ids=["em", "hierarchical", "gradient"],
)
@pytest.mark.parametrize("Est", [R, C])
def test_a_value_beyond_the_range_is_refused_naming_its_column(Est, params, capfd):
    X, y = (make_moe_classification if Est is C else make_moe_regression)(
        n_samples=100, n_features=3, random_state=0
    )
    X = X.copy()
    X[7, 2] = 1e160
    with pytest.raises(ValueError, match=r"X column 2 holds a value of 1e\+160"):
        Est(**(dict(n_experts=2, random_state=0) | params)).fit(X, y)
    # and no LAPACK complaint ("On entry to DLASCL ...") on the way
    assert "DLASCL" not in capfd.readouterr().err


@pytest.mark.parametrize("training", ["em", "sem", "cem", "gradient"])
@pytest.mark.parametrize("y_scale", [1e155, 1e-162, 1e300])
def test_targets_beyond_the_range_are_refused_naming_them(training, y_scale):
    X, y = make_moe_regression(n_samples=100, random_state=0)
    with pytest.raises(ValueError, match=r"y column 0 (holds a value|varies by only)"):
        R(n_experts=2, training=training, max_iter=10).fit(X, y_scale * y)


def test_prediction_beyond_the_range_is_refused_and_within_it_finite():
    X, y = make_moe_regression(n_samples=100, random_state=0)
    est = R(n_experts=2, random_state=0).fit(X, y)
    clf = C(n_experts=2, random_state=0).fit(X, y > np.median(y))
    for x in (1e200, 1.7e308, -1e151):
        with pytest.raises(ValueError, match="X column 0 holds a value"):
            est.predict(np.full((1, X.shape[1]), x), return_std=True)
        with pytest.raises(ValueError, match="X column 0 holds a value"):
            clf.predict_proba(np.full((1, X.shape[1]), x))
    for x in (1e150, -1e150, 1e-300):
        mean, std = est.predict(np.full((1, X.shape[1]), x), return_std=True)
        assert np.isfinite(mean).all() and np.isfinite(std).all() and std[0] > 0
        proba = clf.predict_proba(np.full((1, X.shape[1]), x))
        assert np.isfinite(proba).all() and proba.sum() == pytest.approx(1.0)


def test_gradient_training_with_an_outlier_stays_in_the_range_of_y():
    X, y = make_moe_regression(n_samples=300, n_features=2, n_experts=2, random_state=0)
    X = X.copy()
    X[5, 0] = 1e50
    est = R(n_experts=2, training="gradient", random_state=0).fit(X, y)
    pred = est.predict(X)
    assert np.isfinite(pred).all()
    # a mixture of linear experts cannot extrapolate past the outlier's
    # influence, but on the other rows it stays within the targets' range
    others = np.arange(len(y)) != 5
    assert y.min() - 1 < pred[others].min() and pred[others].max() < y.max() + 1


@pytest.mark.parametrize("rate", [10.0, 1e3])
def test_adam_that_diverges_does_not_report_convergence(rate):
    X, y = make_moe_regression(n_samples=300, n_features=2, n_experts=2, random_state=0)
    est = R(
        n_experts=2,
        training="gradient",
        gradient_solver="adam",
        learning_rate_init=rate,
        random_state=0,
    )
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    assert not est.converged_
    assert np.all(np.isfinite(est.noise_variance_))
    # what it returns is the start, not the diverged parameters: as good as
    # a single EM step from the same start
    one_step = R(n_experts=2, random_state=0, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one_step.fit(X, y)
    assert est.score(X, y) == pytest.approx(one_step.score(X, y), abs=0.05)


def test_a_small_learning_rate_still_converges():
    X, y = make_moe_regression(n_samples=300, n_features=2, n_experts=2, random_state=0)
    est = R(
        n_experts=2,
        training="gradient",
        gradient_solver="adam",
        learning_rate_init=0.05,
        max_iter=500,
        random_state=0,
    ).fit(X, y)
    assert est.converged_


def test_many_experts_on_few_rows_warn():
    X, y = make_moe_regression(n_samples=12, random_state=0)
    with pytest.warns(UserWarning, match="12 samples for 10 experts"):
        R(n_experts=10, random_state=0, max_iter=5).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        R(n_experts=4, random_state=0, max_iter=5).fit(X, y)


@pytest.mark.parametrize("Est", [R, C])
@pytest.mark.parametrize(
    "params, error, match",
    [
        (lambda Est: dict(estimator=GaussianNB), TypeError, "is the class GaussianNB"),
        (lambda Est: dict(n_jobs=0), ValueError, "n_jobs"),
        (lambda Est: dict(n_experts=True), TypeError, "a bool"),
        (
            lambda Est: dict(
                estimators=[("a", GaussianNB()), ("b", GaussianNB())], n_experts=5
            ),
            ValueError,
            "conflicts with the 2 experts",
        ),
    ],
    ids=["class", "n_jobs=0", "n_experts=True", "n_experts vs estimators"],
)
def test_bad_parameters_are_refused_by_both_estimators(Est, params, error, match):
    X, y = make_moe_classification(n_samples=60, random_state=0)
    with pytest.raises(error, match=match):
        Est(**params(Est)).fit(X, y)


@pytest.mark.parametrize("Est", [R, C])
@pytest.mark.parametrize("kind", ["datetime", "timedelta"])
def test_date_and_time_columns_are_refused(Est, kind):
    pd = pytest.importorskip("pandas")
    X, y = make_moe_classification(n_samples=60, random_state=0)
    frame = pd.DataFrame({"a": X[:, 0], "t": pd.date_range("2020", periods=60)})
    if kind == "timedelta":
        frame["t"] = frame["t"] - frame["t"].iloc[0]
    with pytest.raises(ValueError, match=r"date or time column\(s\) \['t'\]"):
        Est(n_experts=2).fit(frame, y)


def test_dask_with_an_mlp_gate_names_what_it_supports():
    da = pytest.importorskip("dask.array")
    X, y = make_moe_regression(n_samples=120, random_state=0)
    with pytest.raises(ValueError, match="cannot fit gate='mlp'") as info:
        R(gate="mlp").fit(da.from_array(X, chunks=40), da.from_array(y, chunks=40))
    # it asks for what is missing (in memory), not for what is already set
    assert "X.compute()" in str(info.value)
    assert "use training='em'" not in str(info.value).lower()


@pytest.mark.parametrize("relabel", ["shifted", "merged"])
def test_warm_start_with_other_labels_is_refused(relabel):
    X, y = make_moe_classification(n_samples=200, n_classes=3, random_state=0)
    est = C(n_experts=2, random_state=0, warm_start=True, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    before = est.predict_proba(X)
    other = y + 1 if relabel == "shifted" else np.minimum(y, 1)
    with pytest.raises(ValueError, match="needs the classes of the previous fit"):
        est.fit(X, other)
    np.testing.assert_array_equal(est.predict_proba(X), before)


# -- threads


# warnings.catch_warnings is not thread-safe: the filter is set once, outside
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_concurrent_fits_from_threads_equal_serial_ones():
    Xr, yr = make_moe_regression(n_samples=400, n_features=3, random_state=0)
    Xc, yc = make_moe_classification(n_samples=400, n_features=3, random_state=0)
    jobs = [
        (R(n_experts=3, random_state=0), Xr, yr),
        (R(n_experts=2, gate="mlp", random_state=1, max_iter=20), Xr, yr),
        (R(n_experts=2, training="gradient", random_state=2), Xr, yr),
        (C(n_experts=2, random_state=3, max_iter=20), Xc, yc),
        (R(n_experts=4, gate="hierarchical", random_state=4, max_iter=20), Xr, yr),
        (C(n_experts=2, estimator=GaussianNB(), random_state=5), Xc, yc),
    ]

    def fit(job):
        est, X, y = job
        est = type(est)(**est.get_params(deep=False)).fit(X, y)
        if est._is_classifier_moe:
            return est.predict_proba(X)
        return np.column_stack(est.predict(X, return_std=True))

    serial = [fit(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=3) as pool:
        # each job twice, interleaved, so that fits really overlap
        threaded = list(pool.map(fit, jobs + jobs))
    for i, expected in enumerate(serial + serial):
        np.testing.assert_array_equal(threaded[i], expected)
