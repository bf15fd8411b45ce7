"""Scaling out: restarts and expert fits through joblib on a Dask cluster."""

import warnings

import joblib
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.datasets import make_moe_classification, make_moe_regression

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def dask_client():
    """A real cluster of two worker processes on this machine."""
    with (
        distributed.LocalCluster(
            processes=True,
            n_workers=2,
            threads_per_worker=1,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
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
    with joblib.parallel_backend("dask"):
        on_cluster = _fit_quietly(MixtureOfExpertsRegressor(**params), X, y)
    _assert_same_fit(serial, on_cluster, X)


def test_dask_backend_expert_fits_match_serial(dask_client, regression_data):
    X, y = regression_data
    params = dict(n_experts=3, max_iter=5, random_state=0)
    tree = DecisionTreeRegressor(max_depth=2)
    serial = _fit_quietly(MixtureOfExpertsRegressor(tree, **params), X, y)
    with joblib.parallel_backend("dask"):
        on_cluster = _fit_quietly(MixtureOfExpertsRegressor(tree, **params), X, y)
    _assert_same_fit(serial, on_cluster, X)


def test_dask_backend_classifier_matches_serial(dask_client):
    X, y = make_moe_classification(n_samples=300, n_experts=2, random_state=0)
    params = dict(n_experts=2, n_init=2, max_iter=10, random_state=0)
    serial = _fit_quietly(MixtureOfExpertsClassifier(**params), X, y)
    with joblib.parallel_backend("dask"):
        on_cluster = _fit_quietly(MixtureOfExpertsClassifier(**params), X, y)
    assert serial.log_likelihood_ == pytest.approx(on_cluster.log_likelihood_, 1e-12)
    np.testing.assert_allclose(
        serial.predict_proba(X), on_cluster.predict_proba(X), rtol=1e-12
    )
