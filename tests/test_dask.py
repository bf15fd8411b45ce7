"""Scaling out with Dask: restarts and expert fits through joblib on a
Dask cluster, and EM streamed over the chunks of Dask arrays."""

import copy
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor, SoftmaxGate
from skmoe.datasets import make_moe_classification, make_moe_regression

try:  # the streamed fits need dask[array], the cluster distributed: else skip
    import dask
    import dask.array as da
except ImportError:
    dask = da = None


@pytest.fixture(scope="module")
def dask_client():
    """A real cluster of two worker processes on this machine."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            processes=True,
            n_workers=2,
            threads_per_worker=1,
            dashboard_address=None,
        ) as cluster,
        # not the default scheduler: the streamed fits below run on threads
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def regression_data():
    return make_moe_regression(n_samples=400, n_experts=2, random_state=0)


def _fit_quietly(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def _assert_same_fit(a, b, X):
    # the same computation; the last bit may differ where BLAS takes another
    # path for differently aligned (unpickled) arrays
    np.testing.assert_allclose(
        a.log_likelihood_curve_, b.log_likelihood_curve_, rtol=1e-12
    )
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.gate_.coef_, b.gate_.coef_, rtol=1e-10, atol=1e-12)


def test_restart_zero_is_the_single_fit(regression_data):
    """Seeds are drawn up front: restart 0 of n_init=3 is the n_init=1 fit,
    and the kept restart is the best of the three."""
    X, y = regression_data
    params = dict(n_experts=3, init="random", max_iter=15, random_state=0)
    one = _fit_quietly(MixtureOfExpertsRegressor(**params), X, y)
    three = _fit_quietly(MixtureOfExpertsRegressor(n_init=3, **params), X, y)
    assert three.log_likelihood_ >= one.log_likelihood_


# threads here; processes in the Dask tests below (loky would only add
# seconds of worker start-up)
@pytest.mark.parametrize("backend", ["threading"])
def test_restarts_same_for_any_n_jobs(regression_data, backend):
    X, y = regression_data
    params = dict(n_experts=3, n_init=3, init="random", max_iter=15, random_state=1)
    serial = _fit_quietly(MixtureOfExpertsRegressor(**params), X, y)
    with joblib.parallel_backend(backend, n_jobs=2):
        parallel = _fit_quietly(MixtureOfExpertsRegressor(**params), X, y)
    _assert_same_fit(serial, parallel, X)


def test_dask_backend_restarts_match_serial(dask_client, regression_data):
    X, y = regression_data
    params = dict(n_experts=2, n_init=3, max_iter=30, random_state=0)
    serial = _fit_quietly(MixtureOfExpertsRegressor(**params), X, y)
    with joblib.parallel_backend("dask", client=dask_client):
        on_cluster = _fit_quietly(MixtureOfExpertsRegressor(**params), X, y)
    _assert_same_fit(serial, on_cluster, X)


def test_dask_backend_expert_fits_match_serial(dask_client, regression_data):
    X, y = regression_data
    params = dict(n_experts=3, max_iter=5, random_state=0)
    tree = DecisionTreeRegressor(max_depth=2)
    serial = _fit_quietly(MixtureOfExpertsRegressor(tree, **params), X, y)
    with joblib.parallel_backend("dask", client=dask_client):
        on_cluster = _fit_quietly(MixtureOfExpertsRegressor(tree, **params), X, y)
    _assert_same_fit(serial, on_cluster, X)


def test_dask_backend_classifier_matches_serial(dask_client):
    X, y = make_moe_classification(n_samples=300, n_experts=2, random_state=0)
    params = dict(n_experts=2, n_init=2, max_iter=10, random_state=0)
    serial = _fit_quietly(MixtureOfExpertsClassifier(**params), X, y)
    with joblib.parallel_backend("dask", client=dask_client):
        on_cluster = _fit_quietly(MixtureOfExpertsClassifier(**params), X, y)
    assert serial.log_likelihood_ == pytest.approx(on_cluster.log_likelihood_, 1e-12)
    np.testing.assert_allclose(
        serial.predict_proba(X), on_cluster.predict_proba(X), rtol=1e-12
    )


# -- EM streamed over the chunks of Dask arrays


def _chunked(a, rows=250):
    return da.from_array(a, chunks=(rows,) + a.shape[1:])


@pytest.fixture(scope="module")
def mixture_params():
    pytest.importorskip("dask.array")
    return make_moe_regression(
        n_samples=1500, n_features=2, n_experts=3, return_params=True, random_state=0
    )


@pytest.fixture(scope="module")
def mixture_data(mixture_params):
    return mixture_params[:2]


def _assert_same_em(a, b):
    """The same optimum, reached by the same expert M-steps.

    The gate's M-steps differ (in memory: at most two Newton steps per
    iteration; streamed: L-BFGS to its tolerance, one pass per evaluation),
    so the paths agree to the solvers' tolerance, not to round-off.
    """
    # the gate solvers stop at their own tolerances (relative 1e-8 of the
    # loss per M-step): the optima agree to about 1e-7 of the log-likelihood
    np.testing.assert_allclose(a.log_likelihood_, b.log_likelihood_, rtol=1e-6)
    for e, f in zip(a.experts_, b.experts_, strict=True):
        assert type(e) is type(f)
        np.testing.assert_allclose(e.coef_, f.coef_, atol=1e-4)
        np.testing.assert_allclose(e.intercept_, f.intercept_, atol=1e-4)
    np.testing.assert_allclose(a.gate_.coef_, b.gate_.coef_, rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(
        a.gate_.intercept_, b.gate_.intercept_, rtol=1e-2, atol=1e-2
    )
    np.testing.assert_allclose(a.noise_variance_, b.noise_variance_, rtol=1e-4)


@pytest.mark.parametrize(
    "case", ["plain", "sample_weight", "multi_output", "ridge_no_intercept", "mixed"]
)
def test_streamed_em_equals_in_memory_em(mixture_data, case):
    """From the same parameters, EM over the chunks reaches the in-memory
    fit's optimum."""
    X, y = mixture_data
    rng = np.random.RandomState(0)
    sample_weight = None
    est = MixtureOfExpertsRegressor(n_experts=3, random_state=0)
    if case == "sample_weight":
        sample_weight = rng.randint(0, 3, size=len(y)).astype(float)
    elif case == "multi_output":
        y = np.c_[y, 2 * y + rng.normal(size=len(y))]
    elif case == "ridge_no_intercept":
        est = MixtureOfExpertsRegressor(
            Ridge(alpha=3.0, fit_intercept=False), n_experts=3, random_state=0
        )
    elif case == "mixed":
        est = MixtureOfExpertsRegressor(
            estimators=[("ols", LinearRegression()), ("ridge", Ridge(1.0))],
            random_state=0,
        )
    start = _fit_quietly(est.set_params(max_iter=2), X, y)
    # to a tight tolerance: both runs then end at the optimum itself
    start.set_params(warm_start=True, max_iter=300, tol=1e-11)
    in_memory = copy.deepcopy(start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        in_memory.fit(X, y, sample_weight=sample_weight)
        streamed = copy.deepcopy(start).fit(
            _chunked(X),
            _chunked(y),
            sample_weight=None if sample_weight is None else _chunked(sample_weight),
        )
    assert streamed.n_iter_ > 2
    assert in_memory.converged_ and streamed.converged_
    _assert_same_em(in_memory, streamed)


def test_streamed_fit_is_a_complete_model(mixture_params):
    """Fitted attributes as in memory: it predicts NumPy inputs, its
    log-likelihood is that of the data under the fitted model, and it
    recovers the mixture the data were drawn from."""
    X, y, true = mixture_params
    est = MixtureOfExpertsRegressor(n_experts=3, random_state=0)
    est.fit(_chunked(X), _chunked(y))
    assert est.converged_
    assert all(type(e) is LinearRegression for e in est.experts_)
    assert type(est.gate_) is SoftmaxGate
    assert est.n_features_in_ == 2 and est.noise_variance_.shape == (3,)
    assert est.log_likelihood_ == est.log_likelihood_curve_[-1]
    assert est.conditional_log_likelihood(X, y).sum() == pytest.approx(
        est.log_likelihood_, 1e-10
    )
    # EM ascends the penalised log-likelihood; the penalty is tiny here
    assert np.all(np.diff(est.log_likelihood_curve_) > -1e-6)
    summary = est.summary()
    assert summary["effective_samples"].sum() == pytest.approx(len(y))
    assert summary["log_likelihood"].sum() == pytest.approx(est.log_likelihood_)
    coef = np.array([e.coef_ for e in est.experts_])
    order = [int(np.argmin(np.linalg.norm(coef - c, axis=1))) for c in true.coef]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(coef[order], true.coef, atol=0.05)
    np.testing.assert_allclose(
        np.sqrt(est.noise_variance_[order]), true.noise, rtol=0.15
    )


def test_streamed_default_start_reaches_the_in_memory_optimum(mixture_data):
    """The start differs (k-means on a subsample, rows to the nearest centre),
    the optimum reached does not."""
    X, y = mixture_data
    in_memory = MixtureOfExpertsRegressor(n_experts=3, random_state=0).fit(X, y)
    streamed = MixtureOfExpertsRegressor(n_experts=3, random_state=0)
    streamed.fit(_chunked(X), _chunked(y))
    # tol=1e-6 per unit weight stops both within about n * tol of the optimum
    assert streamed.log_likelihood_ == pytest.approx(
        in_memory.log_likelihood_, abs=len(y) * 1e-5
    )
    np.testing.assert_allclose(streamed.predict(X), in_memory.predict(X), atol=1e-3)


def test_streamed_fit_does_not_depend_on_the_chunking(mixture_data):
    X, y = mixture_data
    fits = [
        MixtureOfExpertsRegressor(n_experts=3, n_init=2, random_state=0).fit(
            _chunked(X, rows), _chunked(y, rows)
        )
        for rows in (250, 700)
    ]
    assert fits[0].n_iter_ == fits[1].n_iter_
    np.testing.assert_allclose(
        fits[0].log_likelihood_curve_, fits[1].log_likelihood_curve_, rtol=1e-10
    )


def test_streamed_fit_reseeds_a_collapsed_expert(mixture_data):
    """An expert the gate has switched off is re-seeded on the worst-explained
    rows, as in memory, and the fit recovers the same optimum."""
    X, y = mixture_data
    start = _fit_quietly(
        MixtureOfExpertsRegressor(n_experts=3, max_iter=2, random_state=0), X, y
    )
    start.set_params(warm_start=True, max_iter=30)
    start.gate_._theta[-1, 1] = -80.0  # expert 2's gate weight ~ 1e-35
    start.gate_._set_public()
    fits = []
    for X_fit, y_fit in ((X, y), (_chunked(X), _chunked(y))):
        with pytest.warns(UserWarning, match=r"Expert\(s\) \[2\] collapsed"):
            fits.append(copy.deepcopy(start).fit(X_fit, y_fit))
    in_memory, streamed = fits
    assert streamed.summary()["effective_samples"].iloc[2] > 0.05 * len(y)
    assert streamed.log_likelihood_ == pytest.approx(
        in_memory.log_likelihood_, abs=len(y) * 1e-5
    )


def test_predict_on_a_dask_array_is_lazy(mixture_data):
    X, y = mixture_data
    est = MixtureOfExpertsRegressor(n_experts=3, random_state=0).fit(X, y)
    mean = est.predict(_chunked(X))
    mean_std = est.predict(_chunked(X), return_std=True)
    assert isinstance(mean, da.Array) and mean.shape == (len(X),)
    np.testing.assert_array_equal(mean.compute(), est.predict(X))
    np.testing.assert_array_equal(mean_std[1].compute(), est.predict(X, True)[1])
    gate = est.predict_gate(_chunked(X))
    assert isinstance(gate, da.Array) and gate.numblocks == (len(X) // 250, 1)
    np.testing.assert_array_equal(gate.compute(), est.predict_gate(X))
    with pytest.raises(ValueError, match="X has 3 features, but"):
        est.predict_gate(_chunked(np.c_[X, X[:, :1]]))


def test_classifier_predictions_on_a_dask_array_are_lazy():
    X, y = make_moe_classification(n_samples=600, n_classes=3, random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    est = MixtureOfExpertsClassifier(n_experts=2, random_state=0).fit(X, labels)
    dX = _chunked(X, rows=200)
    proba, pred, gate = est.predict_proba(dX), est.predict(dX), est.predict_gate(dX)
    for lazy in (proba, pred, gate):
        assert isinstance(lazy, da.Array) and lazy.numblocks[0] == 3
    # block by block: BLAS may round the last bit otherwise
    np.testing.assert_allclose(proba.compute(), est.predict_proba(X), rtol=1e-12)
    np.testing.assert_array_equal(pred.compute(), est.predict(X))
    np.testing.assert_allclose(gate.compute(), est.predict_gate(X), rtol=1e-12)
    np.testing.assert_allclose(
        np.exp(est.predict_log_proba(dX).compute()), est.predict_proba(X), rtol=1e-12
    )


def test_streamed_fit_refuses_what_it_cannot_fit(mixture_data):
    X, y = mixture_data
    dX, dy = _chunked(X), _chunked(y)
    tree = MixtureOfExpertsRegressor(DecisionTreeRegressor(), n_experts=2)
    with pytest.raises(ValueError, match="out of core.* cannot fit expert 'expert0'"):
        tree.fit(dX, dy)
    moe = MixtureOfExpertsRegressor(n_experts=2)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        moe.fit(dX, dy[:-1])
    X_nan = X.copy()
    X_nan[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity: 1 value"):
        moe.fit(_chunked(X_nan), dy)
    with pytest.raises(ValueError, match="1 negative value"):
        moe.fit(dX, dy, sample_weight=_chunked(np.r_[-1.0, np.ones(len(y) - 1)]))


def test_importing_skmoe_does_not_import_dask():
    code = "import sys, skmoe; assert 'dask' not in sys.modules, 'dask imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_streamed_fit_on_a_cluster_equals_the_threaded_one(dask_client, mixture_data):
    """With a distributed Client active, the passes run on its workers; the
    sums are added in the same order, so the fit is the same."""
    X, y = mixture_data
    params = dict(n_experts=3, max_iter=2, random_state=0)
    threaded = _fit_quietly(
        MixtureOfExpertsRegressor(**params), _chunked(X), _chunked(y)
    )
    distributed = pytest.importorskip("distributed")
    with (
        dask.config.set(scheduler=dask_client),
        distributed.get_task_stream(dask_client) as tasks,
    ):
        on_cluster = _fit_quietly(
            MixtureOfExpertsRegressor(**params), _chunked(X), _chunked(y)
        )
    assert len(tasks.data) > 0  # the chunks' tasks ran on the workers
    _assert_same_em(threaded, on_cluster)


def test_streamed_em_reads_the_rows_once_per_iteration(mixture_data):
    """After the start's pass, one pass per EM iteration: the E-step at the
    new parameters is the pass that tests the gate's Newton step. The same
    gate steps as the in-memory fit, which holds every row."""
    X, y = mixture_data
    w = np.random.RandomState(0).randint(0, 3, len(y)).astype(float)
    kw = dict(n_experts=3, random_state=0, tol=1e-10, max_iter=300)
    streamed = MixtureOfExpertsRegressor(**kw).fit(
        _chunked(X), _chunked(y), sample_weight=_chunked(w)
    )
    in_memory = MixtureOfExpertsRegressor(**kw).fit(X, y, sample_weight=w)
    assert streamed.converged_ and streamed.n_iter_ > 5
    assert streamed._fit_counts["passes"] == streamed.n_iter_ + 1
    for name in ("gate_fits", "gate_steps", "gate_hessian_rows"):
        assert streamed._fit_counts[name] == in_memory._fit_counts[name]


def test_streamed_full_gate_step_is_the_tested_one(mixture_data, monkeypatch):
    """A full Newton step that raises EM's objective is taken untested; with
    the line search's test (the previous responsibilities recomputed in each
    chunk) every step, the fit is the same to round-off."""
    import skmoe._backends._dask as dask_backend

    X, y = mixture_data
    kw = dict(n_experts=3, random_state=0, tol=1e-10, max_iter=300)
    untested = MixtureOfExpertsRegressor(**kw).fit(_chunked(X), _chunked(y))
    monkeypatch.setattr(
        dask_backend.StreamedBackend, "_full_step_ascends", lambda *args: False
    )
    tested = MixtureOfExpertsRegressor(**kw).fit(_chunked(X), _chunked(y))
    assert tested.n_iter_ == untested.n_iter_
    np.testing.assert_allclose(
        tested.log_likelihood_curve_, untested.log_likelihood_curve_, rtol=1e-12
    )


def test_streamed_gate_step_that_lowers_the_objective_is_halved(
    mixture_data, monkeypatch
):
    """Newton steps made eight times too long: the full step lowers the
    log-likelihood, the line search then halves it (a pass per trial) and
    soft EM still never lowers its objective."""
    import skmoe._backends._dask as dask_backend

    real = dask_backend.gradient_newton_step

    def too_long(*args, **kwargs):
        step, slope, loss, done = real(*args, **kwargs)
        return (None if step is None else 8 * step), 8 * slope, loss, done

    monkeypatch.setattr(dask_backend, "gradient_newton_step", too_long)
    X, y = mixture_data
    fit = MixtureOfExpertsRegressor(n_experts=3, random_state=0, max_iter=30).fit(
        _chunked(X), _chunked(y)
    )
    # more passes than iterations: the full steps failed and were halved
    assert fit._fit_counts["passes"] > fit.n_iter_ + 5
    assert np.all(
        np.diff(fit.objective_curve_) >= -1e-9 * abs(fit.objective_curve_[:-1])
    )


def test_lazily_generated_data_is_drawn_chunk_by_chunk():
    """The graph holds the mixture's parameters, not the rows; every
    compute draws the same rows; a chunk alone is the chunk in the whole."""
    import pickle

    from skmoe.datasets import make_moe_regression_dask

    pytest.importorskip("dask.array")
    X, y = make_moe_regression_dask(1_000_000, 5, 3, chunk_rows=50_000, random_state=0)
    assert X.shape == (1_000_000, 5) and X.numblocks == (20, 1)
    assert len(pickle.dumps(dict(X.__dask_graph__()))) < 200_000  # 40 MB of rows
    X_small, y_small = make_moe_regression_dask(
        9_000, 2, 3, chunk_rows=2_000, random_state=1
    )
    whole = X_small.compute()
    np.testing.assert_array_equal(whole, X_small.compute())
    np.testing.assert_array_equal(X_small.blocks[3].compute(), whole[6000:8000])
    assert y_small.chunks == ((2000,) * 4 + (1000,),)
    with pytest.raises(ValueError, match="chunk_rows"):
        make_moe_regression_dask(100, chunk_rows=0)


def test_streamed_fit_recovers_a_lazily_generated_mixture():
    from skmoe.datasets import make_moe_regression_dask

    pytest.importorskip("dask.array")
    X, y, params = make_moe_regression_dask(
        40_000, 3, 3, chunk_rows=5_000, noise=0.2, return_params=True, random_state=3
    )
    fit = _fit_quietly(MixtureOfExpertsRegressor(n_experts=3, random_state=0), X, y)
    order = np.argsort([float(e.intercept_) for e in fit.experts_])
    true = np.argsort(params.intercept)
    np.testing.assert_allclose(
        np.array([e.coef_ for e in fit.experts_])[order], params.coef[true], atol=0.02
    )
    np.testing.assert_allclose(
        fit.noise_variance_[order], params.noise[true] ** 2, rtol=0.05
    )


def test_streamed_fit_survives_a_worker_lost_mid_fit(mixture_data, monkeypatch):
    """A worker process killed between two passes: distributed runs the
    tasks on the worker left, and since the chunks' sums are added in a
    fixed order the fit is the threaded one."""
    import os
    import signal

    import skmoe._backends._dask as dask_backend

    distributed = pytest.importorskip("distributed")
    X, y = mixture_data
    params = dict(n_experts=3, random_state=0, max_iter=8)
    threaded = _fit_quietly(
        MixtureOfExpertsRegressor(**params), _chunked(X), _chunked(y)
    )
    real = dask_backend.StreamedBackend._fused_pass
    killed = []
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):

        def losing_a_worker(self, *args):
            if not killed and self.counts.get("passes", 0) >= 3:
                pid = next(iter(client.run(os.getpid).values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            return real(self, *args)

        monkeypatch.setattr(
            dask_backend.StreamedBackend, "_fused_pass", losing_a_worker
        )
        with dask.config.set(scheduler=client):
            on_cluster = _fit_quietly(
                MixtureOfExpertsRegressor(**params), _chunked(X), _chunked(y)
            )
        assert killed[0] not in client.run(os.getpid).values()
    assert on_cluster.n_iter_ == threaded.n_iter_ > 3
    _assert_same_fit(threaded, on_cluster, X)


def test_dask_progress_bar_reports_the_streamed_passes(mixture_data, capsys):
    from dask.diagnostics import ProgressBar

    X, y = mixture_data
    with ProgressBar(minimum=0):
        fit = _fit_quietly(
            MixtureOfExpertsRegressor(n_experts=3, random_state=0, max_iter=3),
            _chunked(X),
            _chunked(y),
        )
    out = capsys.readouterr().out
    # one bar per pass: the set-up pass, then those EM counts
    assert out.count("100% Completed") == fit._fit_counts["passes"] + 1


def test_verbose_streamed_fit_prints_one_line_per_iteration(mixture_data, capsys):
    X, y = mixture_data
    fit = _fit_quietly(
        MixtureOfExpertsRegressor(n_experts=3, random_state=0, max_iter=4, verbose=1),
        _chunked(X),
        _chunked(y),
    )
    lines = [s for s in capsys.readouterr().out.splitlines() if "iteration" in s]
    assert len(lines) == fit.n_iter_ == 4


def test_streamed_fit_holds_a_few_chunks_not_all():
    """Memory for a few chunks at a time, whatever the number of rows: with
    five times the chunks, the traced peak does not grow (a view kept of
    each chunk, say of its rows of the subsample, held them all: the peak
    doubled)."""
    import tracemalloc

    from skmoe.datasets import make_moe_regression_dask

    pytest.importorskip("dask.array")

    def peak(n):
        X, y = make_moe_regression_dask(n, 10, 3, chunk_rows=50_000, random_state=0)
        with dask.config.set(scheduler="sync"):
            tracemalloc.start()
            _fit_quietly(
                MixtureOfExpertsRegressor(n_experts=3, random_state=0, max_iter=2),
                X,
                y,
            )
            top = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return top

    small, large = peak(200_000), peak(1_000_000)
    assert large < 1.5 * small, (small, large)


def test_streamed_restarts_side_by_side_equal_the_serial_ones(
    mixture_data, monkeypatch
):
    """n_init restarts run on threads, their passes interleaved on the
    scheduler: each is the run it is alone, and the best is kept."""
    import threading

    import skmoe._backends._dask as dask_backend

    X, y = mixture_data
    params = dict(n_experts=3, n_init=3, random_state=0, max_iter=30)
    threads = set()
    real = dask_backend.StreamedBackend.start

    def start(self, *args):
        threads.add(threading.get_ident())
        return real(self, *args)

    monkeypatch.setattr(dask_backend.StreamedBackend, "start", start)
    side_by_side = _fit_quietly(
        MixtureOfExpertsRegressor(**params), _chunked(X), _chunked(y)
    )
    assert len(threads) == 3
    monkeypatch.setattr(dask_backend.StreamedBackend, "restarts_in_threads", False)
    serial = _fit_quietly(MixtureOfExpertsRegressor(**params), _chunked(X), _chunked(y))
    _assert_same_fit(side_by_side, serial, X)
    assert side_by_side._fit_counts == {
        **serial._fit_counts,
        "start_s": side_by_side._fit_counts["start_s"],
        "iterations_s": side_by_side._fit_counts["iterations_s"],
    }


# -- the classifier streamed


@pytest.fixture(scope="module")
def classification_data():
    pytest.importorskip("dask.array")
    return make_moe_classification(
        n_samples=3000, n_features=3, n_experts=3, n_classes=3, random_state=0
    )


def _classifier_case(case, X, y):
    """An estimator, labels and weights for one of the streamed cases."""
    rng = np.random.RandomState(0)
    est = MixtureOfExpertsClassifier(n_experts=3, random_state=0)
    sample_weight = None
    if case == "sample_weight":
        sample_weight = rng.randint(0, 3, size=len(y)).astype(float)
    elif case == "binary_strings":
        y = np.where(y == 0, "cat", "dog")
        est.set_params(n_experts=2)
    elif case == "penalty_no_intercept":
        est.set_params(estimator=LogisticRegression(C=0.05, fit_intercept=False))
    return est, y, sample_weight


def _test_every_step(monkeypatch):
    """The streamed classifier's steps all tested, none taken untested."""
    import skmoe._backends._dask_classifier as dask_classifier

    monkeypatch.setattr(
        dask_classifier.StreamedClassifierBackend,
        "_full_step_ascends",
        lambda *args: None,
    )


@pytest.fixture
def tested_steps(monkeypatch):
    _test_every_step(monkeypatch)


@pytest.mark.parametrize(
    "case", ["plain", "sample_weight", "binary_strings", "penalty_no_intercept"]
)
def test_streamed_classifier_equals_in_memory(classification_data, case, tested_steps):
    """From the same parameters, the streamed classifier takes the in-memory
    fit's steps (up to 4,000 rows the Hessians of both see every row): the
    same curve to round-off, with one pass per EM iteration (and one more
    each for the E-step at the start and the gate's mean probabilities)."""
    X, y = classification_data
    est, y, w = _classifier_case(case, X, y)
    start = _fit_quietly(est.set_params(max_iter=2), X, y)
    start.set_params(warm_start=True, max_iter=40, tol=1e-12)
    in_memory = _fit_quietly(copy.deepcopy(start), X, y) if w is None else None
    if w is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            in_memory = copy.deepcopy(start).fit(X, y, sample_weight=w)
            streamed = copy.deepcopy(start).fit(
                _chunked(X, 500), _chunked(y, 500), sample_weight=_chunked(w, 500)
            )
    else:
        streamed = _fit_quietly(
            copy.deepcopy(start), _chunked(X, 500), _chunked(y, 500)
        )
    assert streamed.n_iter_ == in_memory.n_iter_ > 10
    np.testing.assert_allclose(
        streamed.log_likelihood_curve_, in_memory.log_likelihood_curve_, rtol=1e-11
    )
    np.testing.assert_allclose(
        streamed.predict_proba(X), in_memory.predict_proba(X), atol=1e-9
    )
    np.testing.assert_array_equal(streamed.classes_, in_memory.classes_)
    assert streamed._fit_counts["passes"] == streamed.n_iter_ + 2
    for name in ("gate_fits", "gate_steps", "gate_hessian_rows"):
        assert streamed._fit_counts[name] == in_memory._fit_counts[name]


def test_streamed_classifier_is_a_complete_model(classification_data):
    """Fitted from its own start (k-means and the first fits on the in-memory
    subsample), it reaches the in-memory fit's optimum, ascends EM's
    objective at every iteration, and is a model like any other: its
    log-likelihood is that of the data, its summary adds up, and it
    predicts NumPy and Dask inputs alike."""
    X, y = classification_data
    in_memory = MixtureOfExpertsClassifier(n_experts=3, random_state=0).fit(X, y)
    streamed = MixtureOfExpertsClassifier(n_experts=3, random_state=0)
    streamed.fit(_chunked(X), _chunked(y))
    assert streamed.converged_
    assert all(type(e) is LogisticRegression for e in streamed.experts_)
    assert streamed.log_likelihood_ == pytest.approx(
        in_memory.log_likelihood_, abs=len(y) * 1e-4
    )
    assert np.all(np.diff(streamed.objective_curve_) >= -1e-9 * len(y))
    assert streamed.log_likelihood_ == streamed.log_likelihood_curve_[-1]
    assert streamed.conditional_log_likelihood(X, y).sum() == pytest.approx(
        streamed.log_likelihood_, 1e-10
    )
    summary = streamed.summary()
    assert summary["effective_samples"].sum() == pytest.approx(len(y))
    assert summary["mean_gate"].sum() == pytest.approx(1.0)
    lazy = streamed.predict_proba(_chunked(X))
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), streamed.predict_proba(X), rtol=1e-12)
    assert streamed._fit_counts["passes"] <= 1.1 * streamed.n_iter_ + 2


def test_streamed_classifier_refits_an_expert_whose_classes_change():
    """A k-means cluster of one class makes a class-pure expert; when its
    rows gain the other classes it is refitted on the subsample, and EM goes
    on to the in-memory fit's optimum."""
    pytest.importorskip("dask.array")
    rng = np.random.RandomState(0)
    X = np.r_[rng.normal(size=(1000, 2)) + [10, 0], rng.normal(size=(2000, 2))]
    p = 1 / (1 + np.exp(-3 * X[1000:, 0]))
    y = np.r_[np.zeros(1000, int), (rng.rand(2000) < p).astype(int) + 1]
    kw = dict(n_experts=3, random_state=0)
    in_memory = _fit_quietly(MixtureOfExpertsClassifier(**kw), X, y)
    streamed = _fit_quietly(MixtureOfExpertsClassifier(**kw), _chunked(X), _chunked(y))
    assert streamed._fit_counts["subsample_expert_fits"] >= 2
    assert streamed.log_likelihood_ == pytest.approx(
        in_memory.log_likelihood_, abs=len(y) * 1e-5
    )


def test_streamed_classifier_full_steps_are_the_tested_ones(
    classification_data, monkeypatch
):
    """Full steps that raise EM's objective are taken untested; tested, each
    against the last responsibilities recomputed in every chunk, the fit is
    the same to round-off here, where no full step fails its test."""
    X, y = classification_data
    kw = dict(n_experts=3, random_state=0, tol=1e-10, max_iter=60)
    untested = _fit_quietly(MixtureOfExpertsClassifier(**kw), _chunked(X), _chunked(y))
    _test_every_step(monkeypatch)
    tested = _fit_quietly(MixtureOfExpertsClassifier(**kw), _chunked(X), _chunked(y))
    assert tested.n_iter_ == untested.n_iter_
    np.testing.assert_allclose(
        tested.log_likelihood_curve_, untested.log_likelihood_curve_, rtol=1e-12
    )


def test_streamed_classifier_reseeds_a_collapsed_expert(
    classification_data, tested_steps
):
    X, y = classification_data
    start = _fit_quietly(
        MixtureOfExpertsClassifier(n_experts=3, max_iter=2, random_state=0), X, y
    )
    start.set_params(warm_start=True, max_iter=20)
    start.gate_._theta[-1, 1] = -80.0  # expert 2's gate weight ~ 1e-35
    start.gate_._set_public()
    fits = []
    for X_fit, y_fit in ((X, y), (_chunked(X), _chunked(y))):
        with (
            pytest.warns(UserWarning, match=r"Expert\(s\) \[2\] collapsed"),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(copy.deepcopy(start).fit(X_fit, y_fit))
    in_memory, streamed = fits
    assert streamed.summary()["effective_samples"].iloc[2] > 0.05 * len(y)
    assert streamed.log_likelihood_ == pytest.approx(
        in_memory.log_likelihood_, rel=1e-9
    )


def test_streamed_classifier_refuses_what_it_cannot_fit(classification_data):
    X, y = classification_data
    dX, dy = _chunked(X), _chunked(y)
    for expert, name in (
        (LogisticRegression(class_weight="balanced"), "LogisticRegression"),
        (LogisticRegression(solver="liblinear"), "LogisticRegression"),
        (DecisionTreeClassifier(), "DecisionTreeClassifier"),
    ):
        with pytest.raises(ValueError, match=f"cannot fit expert 'expert0' .{name}"):
            MixtureOfExpertsClassifier(expert, n_experts=2).fit(dX, dy)
    moe = MixtureOfExpertsClassifier(n_experts=2)
    with pytest.raises(ValueError, match="1-D array of class labels, got 2-D"):
        moe.fit(dX, _chunked(np.c_[y, y]))
    with pytest.raises(ValueError, match="y contains NaN or infinity: 2 label"):
        moe.fit(dX, _chunked(np.r_[np.nan, np.inf, y[2:]]))
    with pytest.raises(ValueError, match="only one class"):
        moe.fit(dX, _chunked(np.zeros(len(y))))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        moe.fit(dX, _chunked(X[:, 0]))
    fitted = _fit_quietly(MixtureOfExpertsClassifier(n_experts=2, max_iter=3), dX, dy)
    before = copy.deepcopy(fitted.gate_.coef_)
    fitted.set_params(warm_start=True)
    with pytest.raises(ValueError, match="needs the classes of the previous fit"):
        fitted.fit(dX, _chunked(np.minimum(y, 1)))
    np.testing.assert_array_equal(fitted.gate_.coef_, before)


def test_streamed_classifier_on_a_cluster_equals_the_threaded_one(
    dask_client, classification_data
):
    X, y = classification_data
    params = dict(n_experts=3, max_iter=4, random_state=0)
    threaded = _fit_quietly(
        MixtureOfExpertsClassifier(**params), _chunked(X), _chunked(y)
    )
    with dask.config.set(scheduler=dask_client):
        on_cluster = _fit_quietly(
            MixtureOfExpertsClassifier(**params), _chunked(X), _chunked(y)
        )
    np.testing.assert_allclose(
        on_cluster.log_likelihood_curve_, threaded.log_likelihood_curve_, rtol=1e-12
    )
    np.testing.assert_allclose(
        on_cluster.predict_proba(X), threaded.predict_proba(X), rtol=1e-10
    )


def test_streamed_classifier_halves_steps_that_are_too_long(
    classification_data, monkeypatch
):
    """Every expert's and the gate's Newton steps made 8x too long: each
    backtracks on its own Armijo test, one pass per trial point, and EM's
    objective still never falls."""
    import skmoe._backends._dask_classifier as dask_classifier
    import skmoe._em._logistic as logistic

    X, y = classification_data
    real_gate, real_expert = (
        dask_classifier.gradient_newton_step,
        logistic.newton_direction,
    )

    def gate_too_long(*args, **kwargs):
        step, slope, loss, done = real_gate(*args, **kwargs)
        return (None if step is None else 8 * step), 8 * slope, loss, done

    def expert_too_long(*args):
        step, slope, done = real_expert(*args)
        return 8 * step, 8 * slope, done

    monkeypatch.setattr(dask_classifier, "gradient_newton_step", gate_too_long)
    monkeypatch.setattr(logistic, "newton_direction", expert_too_long)
    est = _fit_quietly(
        MixtureOfExpertsClassifier(n_experts=3, max_iter=15, random_state=0),
        _chunked(X),
        _chunked(y),
    )
    assert est._fit_counts["passes"] >= 2 * est.n_iter_
    assert np.all(np.diff(est.objective_curve_) > 0)
