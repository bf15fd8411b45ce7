"""One EM engine: the same contract on every backend, and fits that fail cleanly.

Every path (in memory, the Array API on array-api-strict, Dask arrays on the
threaded scheduler and on a ``distributed.LocalCluster``, ``partial_fit``)
runs the one loop of ``skmoe/_em/_loop.py`` over its backend's statistics:
the fitted attributes are the same, a degenerate start is handled the same
way, and where the maths is the same the log-likelihoods agree to round-off.
"""

import copy
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_classification, make_moe_regression

BACKENDS = ["memory", "array_api_strict", "dask_threads", "dask_cluster", "partial_fit"]


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as local,
        distributed.Client(local, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def data():
    return make_moe_regression(
        n_samples=1500, n_features=2, n_experts=3, random_state=0
    )


def _fit(backend, est, X, y, request, sample_weight=None):
    """``est`` fitted on (X, y) through ``backend``."""
    if backend == "memory":
        return est.fit(X, y, sample_weight=sample_weight)
    if backend == "partial_fit":
        return est.partial_fit(X, y, sample_weight=sample_weight)
    if backend == "array_api_strict":
        xp = pytest.importorskip("array_api_strict")
        from skmoe._backends._array_api import fit_array_api

        return fit_array_api(est, X, y, sample_weight, xp=xp)
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    chunks = max(1, len(y) // 3)
    dX = da.from_array(X, chunks=(chunks, X.shape[1]))
    dy = da.from_array(y, chunks=chunks)
    dw = None if sample_weight is None else da.from_array(sample_weight, chunks=chunks)
    if backend == "dask_threads":
        return est.fit(dX, dy, sample_weight=dw)
    client = request.getfixturevalue("cluster")
    with dask.config.set(scheduler=client):
        return est.fit(dX, dy, sample_weight=dw)


def _quietly(fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit()


def _public_fitted(est):
    return sorted(k for k in vars(est) if k.endswith("_") and not k.startswith("_"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_leaves_the_same_fitted_attributes(backend, data, request):
    X, y = data
    kw = dict(n_experts=3, random_state=0)
    memory = MixtureOfExpertsRegressor(**kw).fit(X, y)
    est = MixtureOfExpertsRegressor(**kw)
    _quietly(lambda: _fit(backend, est, X, y, request))
    assert _public_fitted(est) == _public_fitted(memory)
    assert est.n_iter_ == len(est.log_likelihood_curve_) == len(est.objective_curve_)
    assert est.log_likelihood_ == est.log_likelihood_curve_[-1]
    assert est.noise_variance_.shape == (3,)
    assert all(type(e) is LinearRegression for e in est.experts_)
    assert type(est.gate_) is type(memory.gate_)
    # the log-likelihood is that of the data under the fitted model
    np.testing.assert_allclose(
        est.conditional_log_likelihood(X, y).sum(), est.log_likelihood_, rtol=1e-10
    )
    summary = est.summary()
    assert summary["effective_samples"].sum() == pytest.approx(len(y))
    assert summary["log_likelihood"].sum() == pytest.approx(est.log_likelihood_)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "memory"])
def test_same_log_likelihood_as_in_memory_where_the_maths_is_the_same(
    backend, data, request
):
    # the same start, the same M-steps (closed-form experts, the gate's
    # Newton step), sums taken in another order: the same curve to round-off.
    # One batch of partial_fit is the first EM iteration.
    X, y = data
    w = np.random.RandomState(0).randint(0, 3, len(y)).astype(float)
    kw = dict(n_experts=3, random_state=0, tol=1e-10, max_iter=300)
    if backend == "partial_fit":
        kw["max_iter"] = 1
    memory = _quietly(lambda: MixtureOfExpertsRegressor(**kw).fit(X, y, w))
    est = _quietly(
        lambda: _fit(backend, MixtureOfExpertsRegressor(**kw), X, y, request, w)
    )
    assert est.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(
        est.log_likelihood_curve_, memory.log_likelihood_curve_, rtol=1e-9
    )
    np.testing.assert_allclose(est.predict(X), memory.predict(X), atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_degenerate_start_is_reseeded_on_every_backend(backend, request):
    # 300 copies of one row for three experts: k-means finds one cluster,
    # two experts start empty and are re-seeded on the first rows, and the
    # fit is the constant it must be (in memory and over Dask chunks alike:
    # the chunks' start once died dividing by a zero weight)
    X, y = make_moe_regression(n_samples=10, n_features=2, random_state=0)
    X, y = np.repeat(X[:1], 300, 0), np.repeat(y[:1], 300)
    est = MixtureOfExpertsRegressor(n_experts=3, max_iter=20, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(backend, est, X, y, request)
    assert any("collapsed" in str(w.message) for w in caught)
    np.testing.assert_allclose(est.predict(X[:5]), y[0], rtol=1e-9)
    assert np.all(np.isfinite(est.noise_variance_))


# ---------------------------------------------------------------------------
# a fit that raises leaves the estimator as it was
# ---------------------------------------------------------------------------


def _snapshot(est, X, y):
    """Every fitted attribute, pickled, and what the model answers."""
    state = pickle.dumps({k: v for k, v in vars(est).items() if k.endswith("_")})
    answers = {"gate": est.predict_gate(X)}
    if isinstance(est, MixtureOfExpertsClassifier):
        answers["predict"] = est.predict(X)
        answers["proba"] = est.predict_proba(X)
    else:
        answers["predict"] = est.predict(X)
    return sorted(vars(est)), state, answers


def _assert_unchanged(est, before, X, y):
    names, state, answers = before
    after_names, after_state, after_answers = _snapshot(est, X, y)
    assert after_names == names
    assert after_state == state
    for key in answers:
        np.testing.assert_array_equal(after_answers[key], answers[key])


class _FailingRegressor(RegressorMixin, BaseEstimator):
    """A linear expert whose ``fit`` raises from its ``fail_at``-th call on."""

    calls = 0

    def __init__(self, fail_at=3):
        self.fail_at = fail_at

    def fit(self, X, y, sample_weight=None):
        type(self).calls += 1
        if type(self).calls >= self.fail_at:
            raise RuntimeError("expert failed mid-EM")
        self.model_ = LinearRegression().fit(X, y, sample_weight=sample_weight)
        return self

    def predict(self, X):
        return self.model_.predict(X)


@pytest.mark.parametrize("warm_start", [False, True])
def test_an_expert_failing_mid_em_leaves_the_fitted_model_intact(warm_start):
    X, y = make_moe_regression(n_samples=300, n_experts=2, random_state=0)
    est = MixtureOfExpertsRegressor(
        _FailingRegressor(fail_at=10**9), n_experts=2, random_state=0, max_iter=5
    )
    _quietly(lambda: est.fit(X, y))
    before = _snapshot(est, X, y)
    _FailingRegressor.calls = 0
    est.set_params(estimator__fail_at=5, warm_start=warm_start)
    with pytest.raises(RuntimeError, match="expert failed mid-EM"):
        est.fit(X, y)
    assert _FailingRegressor.calls >= 5  # it failed in the third M-step
    _assert_unchanged(est, before, X, y)


def test_a_failed_refit_of_a_classifier_keeps_its_classes():
    X, y = make_moe_classification(n_samples=300, random_state=0)
    labels = np.array(["a", "b"])[y]
    clf = MixtureOfExpertsClassifier(n_experts=3, random_state=0)
    _quietly(lambda: clf.fit(X, labels))
    before = _snapshot(clf, X, labels)
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_experts=3"):
        clf.fit(X[:2], ["x", "y"])
    _assert_unchanged(clf, before, X, labels)
    with pytest.raises(ValueError, match="only one class"):
        clf.fit(X, np.full(len(X), "z"))
    _assert_unchanged(clf, before, X, labels)
    assert set(clf.predict(X)) <= {"a", "b"}


def test_a_failed_refit_with_more_columns_keeps_the_feature_count():
    X, y = make_moe_regression(n_samples=300, n_features=4, random_state=0)
    est = MixtureOfExpertsRegressor(n_experts=2, random_state=0).fit(X, y)
    before = _snapshot(est, X, y)
    wider = np.column_stack([X, X[:, :1]])
    bad_y = y.copy()
    bad_y[0] = np.nan
    with pytest.raises(ValueError, match="Input y contains NaN"):
        est.fit(wider, bad_y)
    _assert_unchanged(est, before, X, y)
    assert est.n_features_in_ == 4
    est.predict(X)


def test_warm_start_needs_the_previous_classes_and_outputs():
    X, y = make_moe_classification(n_samples=300, random_state=0)
    clf = MixtureOfExpertsClassifier(n_experts=2, warm_start=True, random_state=0)
    _quietly(lambda: clf.fit(X, y))
    before = _snapshot(clf, X, y)
    for other in (y + 1, np.where(y == 1, 2, y)):
        with pytest.raises(ValueError, match="needs the classes of the previous fit"):
            clf.fit(X, other)
        _assert_unchanged(clf, before, X, y)
    Xr, yr = make_moe_regression(n_samples=300, random_state=0)
    reg = MixtureOfExpertsRegressor(n_experts=2, warm_start=True, random_state=0)
    reg.fit(Xr, yr)
    before = _snapshot(reg, Xr, yr)
    with pytest.raises(ValueError, match="fitted on 1"):
        reg.fit(Xr, np.column_stack([yr, yr]))
    _assert_unchanged(reg, before, Xr, yr)


def test_a_failed_partial_fit_leaves_the_model_and_the_next_batch_works():
    X, y = make_moe_regression(n_samples=600, n_experts=2, random_state=0)
    est = MixtureOfExpertsRegressor(n_experts=2, random_state=0)
    est.partial_fit(X[:300], y[:300])
    before = _snapshot(est, X, y)
    online = copy.deepcopy(est._online_state.__dict__)
    bad = X[300:].copy()
    bad[0, 0] = 1e200  # squares overflow: the statistics would be inf
    with pytest.raises(ValueError, match=r"X column 0 holds a value of 1e\+200"):
        est.partial_fit(bad, y[300:])
    _assert_unchanged(est, before, X, y)
    assert est._online_state.t == online["t"] == 1
    assert est._online_state.weight_seen == online["weight_seen"]
    est.partial_fit(X[300:], y[300:])
    assert est.n_iter_ == 2 and np.all(np.isfinite(est.predict(X)))


def test_tree_experts_fail_cleanly_too():
    # the general path (experts fitted by their own code) keeps the same
    # promise: the refit that raises leaves the model
    X, y = make_moe_regression(n_samples=300, random_state=0)
    est = MixtureOfExpertsRegressor(
        DecisionTreeRegressor(max_depth=2), n_experts=2, random_state=0, max_iter=5
    )
    _quietly(lambda: est.fit(X, y))
    before = _snapshot(est, X, y)
    with pytest.raises(ValueError):
        est.fit(X[:, :0], y)
    _assert_unchanged(est, before, X, y)


# -- experts whose M-step is not exact


@pytest.mark.parametrize("training", ["em", "cem"])
def test_tree_experts_keep_their_best_iteration_without_a_warning(training):
    X, y = make_moe_regression(2000, random_state=0)
    est = MixtureOfExpertsRegressor(
        DecisionTreeRegressor(max_depth=3), training=training, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X, y)
    curve = est.log_likelihood_curve_
    # the log-likelihood saw-tooths: it does fall at some iterations
    assert np.any(np.diff(curve) < 0)
    assert est.converged_ and est.n_iter_ < est.max_iter
    if training == "em":
        # the best iteration is kept (to the gate's penalty, which it monitors)
        assert est.log_likelihood_ == pytest.approx(curve.max(), abs=1e-3)
        assert est.log_likelihood_ == pytest.approx(
            est.conditional_log_likelihood(X, y).sum()
        )
    # stopped once the best had not risen for the window
    assert est.n_iter_ - int(np.argmax(est.objective_curve_)) - 1 <= 20


def test_exact_experts_run_to_the_tolerance():
    X, y = make_moe_regression(2000, random_state=0)
    est = MixtureOfExpertsRegressor(random_state=0, tol=1e-10, max_iter=2000).fit(X, y)
    curve = est.log_likelihood_curve_
    # never falling, so nothing to keep but the last iteration
    assert np.all(np.diff(curve) >= -1e-9 * np.abs(curve[1:]))
    assert est.log_likelihood_ == pytest.approx(curve[-1], abs=1e-9)


# -- starts


def test_restarts_alternate_random_rows_and_random_responsibilities():
    from skmoe._em._start import initial_responsibilities

    X, y = make_moe_regression(300, n_features=2, n_experts=3, random_state=0)
    T, w = y[:, None], np.ones(300)
    rng = np.random.RandomState(0)
    kmeans = initial_responsibilities(X, T, w, 3, "kmeans", 0, rng)
    flat = initial_responsibilities(X, T, w, 3, "kmeans", 1, rng)
    rows = initial_responsibilities(X, T, w, 3, "kmeans", 2, rng)
    for hard in (kmeans, rows):
        assert set(np.unique(hard)) == {0.0, 1.0}
        np.testing.assert_array_equal(hard.sum(axis=1), 1.0)
    assert not np.array_equal(kmeans, rows)
    assert np.all((flat > 0) & (flat < 1))
    # a classifier (no target columns): the nearest of random rows
    cells = initial_responsibilities(X, T[:, :0], w, 3, "kmeans", 2, rng)
    assert set(np.unique(cells)) == {0.0, 1.0}


@pytest.mark.parametrize("compiled", [True, False])
def test_kmeans_start_is_scikit_learns_kmeans(compiled, monkeypatch):
    # the compiled Lloyd run, and KMeans itself where a run leaves a cluster
    # without weight (forced here), label the rows alike
    from sklearn.cluster import KMeans

    from skmoe._em import _start

    starts = []
    lloyd = _start.weighted_lloyd

    def watched(Z, w, centers, **kw):
        starts.append(np.array(centers))
        return (None, centers, 0, False) if not compiled else lloyd(Z, w, centers, **kw)

    monkeypatch.setattr(_start, "weighted_lloyd", watched)
    rng = np.random.RandomState(1)
    Z = np.r_[rng.standard_normal((300, 3)), 3.0 + rng.standard_normal((200, 3))]
    w = rng.uniform(0.5, 2.0, 500)
    seen = []
    real_fit = KMeans.fit
    monkeypatch.setattr(
        KMeans, "fit", lambda self, *a, **k: seen.append(1) or real_fit(self, *a, **k)
    )
    labels = _start.kmeans_labels(Z, w, 3, np.random.RandomState(0))
    assert len(seen) == (0 if compiled else 1)
    # KMeans from the same (PCA-Part) start
    (start,) = starts
    ref = real_fit(KMeans(3, init=start, n_init=1), Z, sample_weight=w)
    np.testing.assert_array_equal(labels, ref.labels_)


def test_random_rows_start_an_expert_on_a_thin_regime():
    from skmoe._em._start import subset_responsibilities

    # a third of the rows on the exact line y = x, the rest scattered
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 3, 300)
    on_line = np.arange(300) < 100
    y = np.where(on_line, x, 2 + rng.normal(0, 0.5, 300))
    found = 0
    for seed in range(20):
        resp = subset_responsibilities(
            x[:, None], y[:, None], np.ones(300), 2, np.random.RandomState(seed)
        )
        # one expert holds the line's rows and few others
        k = resp[on_line].sum(axis=0).argmax()
        share = resp[on_line, k].mean()
        purity = resp[on_line, k].sum() / resp[:, k].sum()
        found += share > 0.95 and purity > 0.5
    assert found >= 1
